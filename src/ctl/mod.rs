//! `anypop ctl`: the command-line client of the REST API.
//!
//! [`args`] holds the clap definitions, [`client`] the HTTP side (address,
//! token, requests, the event stream parser) and [`render`] the text
//! output. Answers are decoded into the API's own DTOs
//! ([`crate::api::dto`]), so the client and the server share one wire
//! format. The API address and token come from flags, then the environment
//! (`ANYPOP_API`, `ANYPOP_TOKEN`, `ANYPOP_TOKEN_FILE`), then the `api`
//! section of a config file (`--config`), then the default
//! `127.0.0.1:8080`. Output is human tables by default and the API's JSON
//! with `--json`.
//!
//! Exit codes: 0 success, 1 the API refused or failed the request (4xx/5xx,
//! message on stderr), 2 the API could not be reached or the arguments are
//! unusable. A reader that closes stdout early (`| head`) ends the command
//! silently by SIGPIPE, as it ends `cat` ([`output`]).

pub mod args;
pub mod client;
pub mod output;
pub mod render;

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Serialize;

pub use args::{CtlArgs, CtlCommand, ModeArg};
pub(crate) use client::SseParser;
pub use client::DEFAULT_API;

use crate::api::dto::{self, AdminStatus};
use client::{call, decode, enc, get, Refused, Target};
use render::{clock, human, now_secs, refused_text, span, Answer};

/// Exit code: the API refused or failed the request.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code: the API could not be reached, or unusable arguments.
pub const EXIT_UNREACHABLE: i32 = 2;

fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        format!("{user} via ctl")
    } else {
        format!("{user}@{host} via ctl")
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn print_refused(r: &Refused, json: bool) {
    if json {
        output::print_line(&pretty(&r.json()));
    }
    eprintln!("{}", refused_text(r.status, r.error().as_ref(), &r.body));
}

/// Runs one ctl command; returns the process exit code.
pub async fn run(args: CtlArgs) -> anyhow::Result<i32> {
    let target = match Target::resolve(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
    };
    let result = match &args.command {
        CtlCommand::Events { replay, count } => {
            return events(&target, *replay, *count, args.json).await;
        }
        cmd => dispatch(&target, cmd).await,
    };
    let bytes = match result {
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
        Ok(Err(refused)) => {
            print_refused(&refused, args.json);
            return Ok(EXIT_REFUSED);
        }
        Ok(Ok(bytes)) => bytes,
    };
    let answer = match answer(&args.command, &bytes) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
    };
    if args.json {
        output::print_line(&pretty(&client::raw_json(&bytes)));
    } else {
        output::print(&human(&answer, now_secs()));
    }
    let admin = match &answer {
        Answer::Admin(a) => a.admin.clone(),
        _ => None,
    };
    match &args.command {
        CtlCommand::Drain {
            pop, wait: true, ..
        } => {
            follow(&target, pop, admin.as_ref(), |a| {
                a.is_some_and(|a| a.step == dto::view::Step::Drained)
            })
            .await
        }
        CtlCommand::Undrain {
            pop, wait: true, ..
        } => follow(&target, pop, admin.as_ref(), |a| a.is_none()).await,
        _ => Ok(0),
    }
}

/// Decodes the answer to `cmd` into its DTO.
fn answer(cmd: &CtlCommand, bytes: &[u8]) -> anyhow::Result<Answer> {
    Ok(match cmd {
        CtlCommand::Status => Answer::State(Box::new(decode(bytes)?)),
        CtlCommand::Pops => Answer::Pops(decode(bytes)?),
        CtlCommand::Pop { .. } => Answer::Pop(decode(bytes)?),
        CtlCommand::Checks => Answer::Checks(decode::<dto::Checks>(bytes)?.checks),
        CtlCommand::Peers => Answer::Peers(decode::<dto::Peers>(bytes)?.peers),
        CtlCommand::Drain { .. }
        | CtlCommand::Undrain { .. }
        | CtlCommand::Disable { .. }
        | CtlCommand::Enable { .. } => Answer::Admin(decode(bytes)?),
        CtlCommand::Reload => Answer::Reload(decode(bytes)?),
        CtlCommand::Fleet => Answer::Fleet(Box::new(decode(bytes)?)),
        CtlCommand::Explain { .. } => Answer::Explain(Box::new(decode(bytes)?)),
        CtlCommand::Events { .. } => anyhow::bail!("events are streamed, not fetched"),
    })
}

/// How often `--wait` looks at the PoP.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Polls the PoP until `done`, printing each step change.
async fn follow(
    t: &Target,
    pop: &str,
    first: Option<&AdminStatus>,
    done: impl Fn(Option<&AdminStatus>) -> bool,
) -> anyhow::Result<i32> {
    let step_of = |a: Option<&AdminStatus>| match a {
        Some(a) => a.step.as_str(),
        None => "in_service",
    };
    let mut last = step_of(first);
    if done(first) {
        return Ok(0);
    }
    let path = format!("/v1/pops/{}", enc(pop));
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let p: dto::Pop = match get(t, &path).await {
            Ok(Ok(bytes)) => match decode(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(EXIT_UNREACHABLE);
                }
            },
            Ok(Err(r)) => {
                eprintln!("{}", refused_text(r.status, r.error().as_ref(), &r.body));
                return Ok(EXIT_REFUSED);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(EXIT_UNREACHABLE);
            }
        };
        let admin = p.admin.as_ref();
        let step = step_of(admin);
        if step != last {
            let mut line = format!("{} pop {pop}: {last} -> {step}", clock(now_secs()));
            if let Some(next) = admin.and_then(|a| a.next_at) {
                let _ = write!(line, " (next step in {})", span((next - now_secs()).ceil()));
            }
            output::print_line(&line);
            last = step;
        }
        if done(admin) {
            output::print_line(&format!("pop {pop}: {} ({})", p.state.as_str(), p.reason));
            return Ok(0);
        }
    }
}

async fn dispatch(t: &Target, cmd: &CtlCommand) -> anyhow::Result<Result<Bytes, Refused>> {
    match cmd {
        CtlCommand::Status => get(t, "/v1/state").await,
        CtlCommand::Pops => get(t, "/v1/pops").await,
        CtlCommand::Pop { name } => get(t, &format!("/v1/pops/{}", enc(name))).await,
        CtlCommand::Checks => get(t, "/v1/checks").await,
        CtlCommand::Peers => get(t, "/v1/peers").await,
        CtlCommand::Drain {
            pop,
            reason,
            duration,
            mode,
            force,
            ..
        } => {
            let body = dto::DrainRequest {
                reason: reason.clone(),
                duration: duration.clone(),
                mode: mode.map(|m| m.as_str().to_string()),
                force: *force,
                who: Some(who()),
            };
            pop_action(t, pop, "drain", &body).await
        }
        CtlCommand::Undrain { pop, mode, .. } => {
            let body = dto::UndrainRequest {
                mode: mode.map(|m| m.as_str().to_string()),
                who: Some(who()),
            };
            pop_action(t, pop, "undrain", &body).await
        }
        CtlCommand::Disable { pop, reason, force } => {
            let body = dto::DisableRequest {
                reason: reason.clone(),
                force: *force,
                who: Some(who()),
            };
            pop_action(t, pop, "disable", &body).await
        }
        CtlCommand::Enable { pop } => {
            let body = dto::EnableRequest { who: Some(who()) };
            pop_action(t, pop, "enable", &body).await
        }
        CtlCommand::Explain {
            name,
            qtype,
            client,
        } => {
            let mut path = format!("/v1/explain?name={}&type={}", enc(name), enc(qtype));
            if let Some(c) = client {
                let _ = write!(path, "&client={}", enc(c));
            }
            get(t, &path).await
        }
        CtlCommand::Reload => call(t, Method::POST, "/v1/reload", None::<&()>).await,
        CtlCommand::Fleet => get(t, "/v1/fleet").await,
        CtlCommand::Events { .. } => anyhow::bail!("events are streamed, not fetched"),
    }
}

/// POSTs an admin action on one PoP: `/v1/pops/{pop}/{action}`.
async fn pop_action(
    t: &Target,
    pop: &str,
    action: &str,
    body: &impl Serialize,
) -> anyhow::Result<Result<Bytes, Refused>> {
    let path = format!("/v1/pops/{}/{action}", enc(pop));
    call(t, Method::POST, &path, Some(body)).await
}

// ------------------------------------------------------------ events

async fn events(
    t: &Target,
    replay: Option<usize>,
    count: Option<usize>,
    json_out: bool,
) -> anyhow::Result<i32> {
    let path = match replay {
        Some(n) => format!("/v1/events?replay={n}"),
        None => "/v1/events".to_string(),
    };
    let resp = match client::open_stream(t, &path).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
    };
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let r = Refused {
            status,
            body: bytes,
        };
        eprintln!("{}", refused_text(r.status, r.error().as_ref(), &r.body));
        return Ok(EXIT_REFUSED);
    }
    let mut parser = SseParser::default();
    let mut seen = 0usize;
    if count == Some(0) {
        return Ok(0);
    }
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: event stream broken: {e}");
                return Ok(EXIT_UNREACHABLE);
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        for msg in parser.push(&data) {
            let line = if json_out {
                msg.data.clone()
            } else {
                render::event_line(msg.id.as_deref(), msg.event.as_deref(), &msg.data)
            };
            output::print_line(&line);
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(0);
            }
        }
    }
    eprintln!("event stream ended (server shut down)");
    Ok(0)
}
