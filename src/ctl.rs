//! `anypop ctl`: the command-line client of the REST API.
//!
//! Talks HTTP/1.1 to the API (hyper client, no TLS: the API listens on
//! loopback or a management network). The API address and token come from
//! flags, then the environment (`ANYPOP_API`, `ANYPOP_TOKEN`,
//! `ANYPOP_TOKEN_FILE`), then the `api` section of a config file
//! (`--config`), then the default `127.0.0.1:8080`. Output is human tables
//! by default and the API's JSON with `--json`.
//!
//! Exit codes: 0 success, 1 the API refused or failed the request (4xx/5xx,
//! message on stderr), 2 the API could not be reached or the arguments are
//! unusable.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::io::Write as _;
use tokio::net::TcpStream;

/// Default API address when nothing else says where it is.
pub const DEFAULT_API: &str = "127.0.0.1:8080";

/// Exit code: the API refused or failed the request.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code: the API could not be reached, or unusable arguments.
pub const EXIT_UNREACHABLE: i32 = 2;

/// `anypop ctl` arguments.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// API address (`host:port` or `http://host:port`).
    #[arg(long, env = "ANYPOP_API", global = true)]
    pub api: Option<String>,
    /// Bearer token for changes (and protected reads).
    #[arg(long, env = "ANYPOP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "ANYPOP_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Take the API address and token file from this anypop config.
    #[arg(long, env = "ANYPOP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on a request after this long (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_timeout, global = true)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub command: CtlCommand,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// DNS first, wait, BGP graceful shutdown, wait, final action.
    Graceful,
    /// Straight to the final state.
    Immediate,
}

impl ModeArg {
    fn as_str(self) -> &'static str {
        match self {
            ModeArg::Graceful => "graceful",
            ModeArg::Immediate => "immediate",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Node, PoPs, announcements and BGP peers at a glance.
    Status,
    /// PoPs: state, health, DNS, reason, admin override.
    Pops,
    /// One PoP in detail.
    Pop { name: String },
    /// Every check with its last result and rise/fall counters.
    Checks,
    /// BGP peers.
    Peers,
    /// Take a PoP out of service (graceful by default).
    Drain {
        pop: String,
        /// Why (shown in state, events and logs).
        #[arg(long)]
        reason: Option<String>,
        /// Undrain automatically after this long (e.g. 30m, 2h).
        #[arg(long)]
        duration: Option<String>,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Allow draining the last PoP serving traffic.
        #[arg(long)]
        force: bool,
        /// Stay until the drain is complete, printing each step.
        #[arg(long)]
        wait: bool,
    },
    /// Put a drained PoP back in service (ramp by default).
    Undrain {
        pop: String,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Stay until the PoP is back in service, printing each step.
        #[arg(long)]
        wait: bool,
    },
    /// Disable a PoP: out of DNS, prefixes withdrawn at once.
    Disable {
        pop: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Remove a PoP's admin override (disable or drain) at once.
    Enable { pop: String },
    /// Explain the DNS answer for a name.
    Explain {
        name: String,
        /// Query type (A, AAAA, ...).
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// Client (or ECS subnet) address to answer for.
        #[arg(long)]
        client: Option<String>,
    },
    /// Stream state-change events (replay of recent ones first).
    Events {
        /// Replay at most this many past events.
        #[arg(long)]
        replay: Option<usize>,
        /// Exit after this many events.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Reload the config file on the server (like SIGHUP).
    Reload,
    /// The fleet: peers and their reports, and per PoP the owner's
    /// verdict, each vantage point's, the admin state and the fleet verdict.
    Fleet,
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
struct Target {
    /// `host:port` to connect to.
    authority: String,
    token: Option<String>,
    timeout: Duration,
}

/// A non-2xx answer.
#[derive(Debug)]
struct Refused {
    status: StatusCode,
    body: Value,
}

impl Target {
    fn resolve(args: &CtlArgs) -> anyhow::Result<Target> {
        let cfg = match &args.config {
            Some(p) => Some(
                crate::config::load(p)
                    .map_err(|e| anyhow!("config {} is not usable:\n{e}", p.display()))?,
            ),
            None => None,
        };
        let api = match (&args.api, &cfg) {
            (Some(a), _) => a.clone(),
            (None, Some(c)) => match c.api.listen {
                Some(addr) if addr.ip().is_unspecified() => {
                    let ip = if addr.is_ipv4() { "127.0.0.1" } else { "[::1]" };
                    format!("{ip}:{}", addr.port())
                }
                Some(addr) => addr.to_string(),
                None => bail!("the config has no API listener (api.listen is off)"),
            },
            (None, None) => DEFAULT_API.to_string(),
        };
        let authority = parse_api(&api)?;
        let token_file = args
            .token_file
            .clone()
            .or_else(|| cfg.as_ref().and_then(|c| c.api.token_file.clone()));
        let token = match (&args.token, token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(f)) => {
                Some(crate::api::auth::read_token_file(&f).map_err(|e| anyhow!("{e}"))?)
            }
            (None, None) => None,
        };
        Ok(Target {
            authority,
            token,
            timeout: args.timeout,
        })
    }
}

/// Accepts `host:port`, `http://host:port[/]`; refuses other schemes.
fn parse_api(s: &str) -> anyhow::Result<String> {
    let s = s.trim();
    let rest = if let Some(r) = s.strip_prefix("http://") {
        r
    } else if s.contains("://") {
        bail!("API address {s:?}: only http:// is supported");
    } else {
        s
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        bail!("API address {s:?}: expected host:port or http://host:port");
    }
    if rest
        .rsplit_once(':')
        .is_none_or(|(_, p)| p.parse::<u16>().is_err())
    {
        bail!("API address {s:?}: missing port (e.g. 127.0.0.1:8080)");
    }
    Ok(rest.to_string())
}

async fn connect(
    t: &Target,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::time::timeout(t.timeout, TcpStream::connect(&t.authority))
        .await
        .map_err(|_| anyhow!("connecting to the API at {} timed out", t.authority))?
        .with_context(|| {
            format!(
                "cannot connect to the API at {} (is anypop running?)",
                t.authority
            )
        })?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the API failed")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn build(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Request<Full<Bytes>>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, &t.authority)
        .header(ACCEPT, "application/json");
    if let Some(tok) = &t.token {
        b = b.header(AUTHORIZATION, format!("Bearer {tok}"));
    }
    let body = match body {
        Some(v) => {
            b = b.header(CONTENT_TYPE, "application/json");
            Full::new(Bytes::from(serde_json::to_vec(v)?))
        }
        None => Full::new(Bytes::new()),
    };
    Ok(b.body(body)?)
}

/// One request, whole body. `Ok(Err(_))`: the API answered non-2xx.
async fn call(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Result<Value, Refused>> {
    let req = build(t, method, path, body)?;
    let fut = async {
        let mut sender = connect(t).await?;
        let resp = sender
            .send_request(req)
            .await
            .context("API request failed")?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the API answer failed")?
            .to_bytes();
        let value = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        anyhow::Ok(if status.is_success() {
            Ok(value)
        } else {
            Err(Refused {
                status,
                body: value,
            })
        })
    };
    tokio::time::timeout(t.timeout, fut).await.map_err(|_| {
        anyhow!(
            "the API at {} did not answer within {:?}",
            t.authority,
            t.timeout
        )
    })?
}

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

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
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
    match result {
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(EXIT_UNREACHABLE)
        }
        Ok(Err(refused)) => {
            if args.json {
                println!("{}", pretty(&refused.body));
            }
            eprintln!("{}", refused_text(&refused));
            Ok(EXIT_REFUSED)
        }
        Ok(Ok(v)) => {
            if args.json {
                println!("{}", pretty(&v));
            } else {
                print!("{}", human(&args.command, &v, now_secs()));
            }
            match &args.command {
                CtlCommand::Drain {
                    pop, wait: true, ..
                } => follow(&target, pop, &v, |p| p["admin"]["step"] == "drained").await,
                CtlCommand::Undrain {
                    pop, wait: true, ..
                } => follow(&target, pop, &v, |p| p["admin"].is_null()).await,
                _ => Ok(0),
            }
        }
    }
}

/// How often `--wait` looks at the PoP.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Polls the PoP until `done`, printing each step change.
async fn follow(
    t: &Target,
    pop: &str,
    first: &Value,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<i32> {
    let step_of = |v: &Value| match v["admin"]["step"].as_str() {
        Some(s) => s.to_string(),
        None => "in_service".to_string(),
    };
    let mut last = step_of(first);
    if done(first) {
        return Ok(0);
    }
    let path = format!("/v1/pops/{}", enc(pop));
    loop {
        tokio::time::sleep(FOLLOW_POLL).await;
        let v = match call(t, Method::GET, &path, None).await {
            Ok(Ok(v)) => v,
            Ok(Err(r)) => {
                eprintln!("{}", refused_text(&r));
                return Ok(EXIT_REFUSED);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return Ok(EXIT_UNREACHABLE);
            }
        };
        let step = step_of(&v);
        if step != last {
            let mut line = format!("{} pop {pop}: {last} -> {step}", clock(now_secs()));
            if let Some(next) = v["admin"]["next_at"].as_f64() {
                let _ = write!(line, " (next step in {})", span((next - now_secs()).ceil()));
            }
            println!("{line}");
            last = step;
        }
        if done(&v) {
            println!("pop {pop}: {} ({})", s(&v["state"]), s(&v["reason"]));
            return Ok(0);
        }
    }
}

async fn dispatch(t: &Target, cmd: &CtlCommand) -> anyhow::Result<Result<Value, Refused>> {
    match cmd {
        CtlCommand::Status => call(t, Method::GET, "/v1/state", None).await,
        CtlCommand::Pops => call(t, Method::GET, "/v1/pops", None).await,
        CtlCommand::Pop { name } => {
            call(t, Method::GET, &format!("/v1/pops/{}", enc(name)), None).await
        }
        CtlCommand::Checks => call(t, Method::GET, "/v1/checks", None).await,
        CtlCommand::Peers => call(t, Method::GET, "/v1/peers", None).await,
        CtlCommand::Drain {
            pop,
            reason,
            duration,
            mode,
            force,
            ..
        } => {
            let mut body = json!({"who": who(), "force": force});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            if let Some(d) = duration {
                body["duration"] = json!(d);
            }
            if let Some(m) = mode {
                body["mode"] = json!(m.as_str());
            }
            pop_action(t, pop, "drain", &body).await
        }
        CtlCommand::Undrain { pop, mode, .. } => {
            let mut body = json!({"who": who()});
            if let Some(m) = mode {
                body["mode"] = json!(m.as_str());
            }
            pop_action(t, pop, "undrain", &body).await
        }
        CtlCommand::Disable { pop, reason, force } => {
            let mut body = json!({"who": who(), "force": force});
            if let Some(r) = reason {
                body["reason"] = json!(r);
            }
            pop_action(t, pop, "disable", &body).await
        }
        CtlCommand::Enable { pop } => {
            let body = json!({"who": who()});
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
            call(t, Method::GET, &path, None).await
        }
        CtlCommand::Reload => call(t, Method::POST, "/v1/reload", None).await,
        CtlCommand::Fleet => call(t, Method::GET, "/v1/fleet", None).await,
        CtlCommand::Events { .. } => bail!("events are streamed, not fetched"),
    }
}

/// POSTs an admin action on one PoP: `/v1/pops/{pop}/{action}`.
async fn pop_action(
    t: &Target,
    pop: &str,
    action: &str,
    body: &Value,
) -> anyhow::Result<Result<Value, Refused>> {
    let path = format!("/v1/pops/{}/{action}", enc(pop));
    call(t, Method::POST, &path, Some(body)).await
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn refused_text(r: &Refused) -> String {
    let mut s = format!("error: {}", r.status);
    match &r.body {
        Value::Object(o) => {
            if let Some(e) = o.get("error").and_then(Value::as_str) {
                let _ = write!(s, ": {e}");
            }
            match o.get("field").and_then(Value::as_str) {
                Some("force") if r.status == StatusCode::CONFLICT => {
                    s.push_str(" (add --force to do it anyway)");
                }
                Some(f) => {
                    let _ = write!(s, " (field {f})");
                }
                None => {}
            }
            if let Some(list) = o.get("errors").and_then(Value::as_array) {
                for e in list {
                    let _ = write!(s, "\n  {}", e.as_str().unwrap_or_default());
                }
            }
        }
        Value::String(t) if !t.is_empty() => {
            let _ = write!(s, ": {t}");
        }
        _ => {}
    }
    s
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
    let mut req = match build(t, Method::GET, &path, None) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
    };
    req.headers_mut().insert(
        ACCEPT,
        hyper::header::HeaderValue::from_static("text/event-stream"),
    );
    let resp = async {
        let mut sender = connect(t).await?;
        sender.send_request(req).await.context("API request failed")
    };
    let resp = match tokio::time::timeout(t.timeout, resp).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_UNREACHABLE);
        }
        Err(_) => {
            eprintln!(
                "error: the API at {} did not answer within {:?}",
                t.authority, t.timeout
            );
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
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        eprintln!("{}", refused_text(&Refused { status, body }));
        return Ok(EXIT_REFUSED);
    }
    let mut parser = SseParser::default();
    let mut seen = 0usize;
    let mut out = std::io::stdout();
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
                format_event(&msg)
            };
            writeln!(out, "{line}")?;
            out.flush()?;
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(0);
            }
        }
    }
    eprintln!("event stream ended (server shut down)");
    Ok(0)
}

/// One Server-Sent Events message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SseMessage {
    pub(crate) id: Option<String>,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
}

/// Incremental `text/event-stream` parser.
#[derive(Default)]
pub(crate) struct SseParser {
    buf: String,
    cur: SseMessage,
    has_data: bool,
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.buf.push_str(&String::from_utf8_lossy(bytes));
        let mut out = Vec::new();
        while let Some(nl) = self.buf.find('\n') {
            let line: String = self.buf.drain(..=nl).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if self.has_data {
                    out.push(std::mem::take(&mut self.cur));
                }
                self.cur = SseMessage::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => self.cur.id = Some(value.to_string()),
                "event" => self.cur.event = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        out
    }
}

fn format_event(m: &SseMessage) -> String {
    let v: Value = serde_json::from_str(&m.data).unwrap_or(Value::Null);
    let kind = m.event.as_deref().unwrap_or("message");
    if kind == "lagged" {
        return format!("(missed {} events: client too slow)", v["missed"]);
    }
    let at = v["at"]
        .as_f64()
        .map(clock)
        .unwrap_or_else(|| "--:--:--".into());
    let msg = v["message"].as_str().unwrap_or(&m.data);
    format!(
        "{at} #{:<5} {kind:<10} {msg}",
        m.id.as_deref().unwrap_or("-")
    )
}

// ------------------------------------------------------------ tables

fn now_secs() -> f64 {
    crate::unix_time::secs(SystemTime::now())
}

/// `HH:MM:SS` UTC of a Unix time.
fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64 % 86_400;
    format!("{:02}:{:02}:{:02}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// `12s`, `5m`, `3h`, `2d` (rounded down).
fn span(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        other => other.to_string(),
    }
}

/// A left-aligned text table.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn admin_text(a: &Value, now: f64) -> String {
    if a.is_null() {
        return "-".into();
    }
    let mut t = format!("{} ({})", s(&a["step"]), s(&a["who"]));
    if let Some(next) = a["next_at"].as_f64() {
        let _ = write!(t, ", next in {}", span((next - now).ceil()));
    }
    if let Some(until) = a["until"].as_f64() {
        let _ = write!(t, ", expires in {}", span((until - now).ceil()));
    }
    t
}

fn pops_table(pops: &serde_json::Map<String, Value>, now: f64) -> String {
    let rows: Vec<Vec<String>> = pops
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                s(&p["state"]),
                match p["healthy"].as_bool() {
                    Some(true) => "healthy".into(),
                    Some(false) => "unhealthy".into(),
                    None => "unknown".into(),
                },
                s(&p["serves_dns"]),
                p["since"]
                    .as_f64()
                    .map(|t| span(now - t))
                    .unwrap_or_default(),
                admin_text(&p["admin"], now),
                s(&p["reason"]),
            ]
        })
        .collect();
    table(
        &["POP", "STATE", "HEALTH", "DNS", "FOR", "ADMIN", "REASON"],
        &rows,
    )
}

fn announcements_table(a: &serde_json::Map<String, Value>) -> String {
    let rows: Vec<Vec<String>> = a
        .iter()
        .map(|(pfx, v)| {
            let attrs = &v["attrs"];
            let mut at = Vec::new();
            if attrs["prepend"].as_u64().unwrap_or(0) > 0 {
                at.push(format!("prepend {}", attrs["prepend"]));
            }
            if !attrs["med"].is_null() {
                at.push(format!("med {}", attrs["med"]));
            }
            if !attrs["local_pref"].is_null() {
                at.push(format!("local-pref {}", attrs["local_pref"]));
            }
            for c in attrs["communities"].as_array().into_iter().flatten() {
                at.push(format!("{}:{}", c[0], c[1]));
            }
            for c in attrs["large_communities"].as_array().into_iter().flatten() {
                at.push(format!("{}:{}:{}", c[0], c[1], c[2]));
            }
            vec![pfx.clone(), s(&v["pop"]), s(&v["mode"]), at.join(" ")]
        })
        .collect();
    table(&["PREFIX", "POP", "MODE", "ATTRIBUTES"], &rows)
}

fn peers_table(peers: &Value) -> String {
    let Some(map) = peers.as_object() else {
        return format!("{}\n", pretty(peers));
    };
    let rows: Vec<Vec<String>> = map
        .iter()
        .map(|(name, p)| {
            let state = p.get("state").map(s).unwrap_or_else(|| "-".into());
            let rest: Vec<String> = p
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| match (k.as_str(), v) {
                            ("state", _) => None,
                            ("bfd", Value::Object(b)) => Some(format!(
                                "bfd={}{}",
                                b.get("state").map(s).unwrap_or_else(|| "-".into()),
                                if b.get("holds_bgp_down") == Some(&Value::Bool(true)) {
                                    " (holds BGP down)"
                                } else {
                                    ""
                                }
                            )),
                            (_, v) if v.is_object() || v.is_array() => None,
                            (k, v) => Some(format!("{k}={}", s(v))),
                        })
                        .collect()
                })
                .unwrap_or_default();
            vec![name.clone(), state, rest.join(" ")]
        })
        .collect();
    table(&["PEER", "STATE", "DETAILS"], &rows)
}

fn checks_table(checks: &[Value], now: f64) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            let last = &c["last"];
            let last_txt = if last.is_null() {
                "-".into()
            } else {
                format!(
                    "{} {:.1}ms {} ago: {}",
                    if last["ok"].as_bool() == Some(true) {
                        "ok"
                    } else {
                        "FAIL"
                    },
                    last["took"].as_f64().unwrap_or(0.0),
                    last["at"]
                        .as_f64()
                        .map(|t| span(now - t))
                        .unwrap_or_default(),
                    s(&last["detail"]),
                )
            };
            vec![
                s(&c["pop"]),
                s(&c["check"]),
                s(&c["verdict"]),
                format!("{}/{}", c["successes"], c["rise"]),
                format!("{}/{}", c["failures"], c["fall"]),
                last_txt,
            ]
        })
        .collect();
    table(
        &["POP", "CHECK", "VERDICT", "OK/RISE", "FAIL/FALL", "LAST"],
        &rows,
    )
}

fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// The explain answer in words.
fn explain_text(v: &Value) -> String {
    let c = &v["client"];
    let client = if c["prefix"].as_u64() == Some(0) {
        "no client information".to_string()
    } else if c["from_ecs"].as_bool() == Some(true) {
        format!("client subnet {}/{}", s(&c["addr"]), s(&c["prefix"]))
    } else {
        format!("client {}", s(&c["addr"]))
    };
    let mut out = format!(
        "{} {} ({client}): {}{}, state version {}\n",
        s(&v["name"]),
        s(&v["qtype"]),
        s(&v["rcode"]),
        if v["authoritative"].as_bool() == Some(true) {
            " authoritative"
        } else {
            ""
        },
        s(&v["snapshot_version"]),
    );
    if let Some(z) = v["zone"].as_str() {
        let _ = writeln!(out, "zone {z}");
    }
    for (title, key) in [("answer", "answers"), ("authority", "authority")] {
        for r in v[key].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  {title:<9} {}", s(r));
        }
    }
    let st = &v["steering"];
    if st.is_object() {
        let _ = writeln!(
            out,
            "steered by record {} (policy {}, {})",
            s(&st["record"]),
            s(&st["policy"]),
            s(&st["family"])
        );
        let _ = writeln!(
            out,
            "  chosen    {} -> {}",
            list(&st["chosen"]),
            list(&st["addresses"])
        );
        if let Some(d) = st["decision"].as_str().filter(|d| !d.is_empty()) {
            let _ = writeln!(out, "  decision  {d}");
        }
        let _ = writeln!(out, "  eligible  {}", list(&st["eligible"]));
        for e in st["excluded"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  excluded  {}: {}", s(&e["pop"]), s(&e["reason"]));
        }
        if st["fail_open"].as_bool() == Some(true) {
            let _ = writeln!(out, "  FAIL-OPEN {}", s(&st["fail_open_reason"]));
        }
        let _ = writeln!(
            out,
            "  ttl       {} ({}){}",
            s(&st["ttl"]),
            s(&st["ttl_reason"]),
            if st["client_dependent"].as_bool() == Some(true) {
                format!(
                    ", depends on the client (ECS scope /{})",
                    s(&v["ecs_scope"])
                )
            } else {
                String::new()
            }
        );
    }
    out
}

/// An age in seconds as `0.2s` (one decimal below a minute), with `!`
/// when the report it belongs to is stale.
fn age_text(age: &Value, fresh: bool) -> String {
    let mut t = match age.as_f64() {
        Some(a) if a < 60.0 => format!("{a:.1}s"),
        Some(a) => span(a),
        None => return "-".into(),
    };
    if !fresh {
        t.push('!');
    }
    t
}

/// A setting in seconds as a duration (`1s`, `500ms`).
fn secs_text(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.is_finite() && x >= 0.0 => {
            crate::config::format_duration(Duration::from_secs_f64(x))
        }
        _ => s(v),
    }
}

/// `GET /v1/fleet` as tables: the peers, then one row per PoP with one
/// column per fleet node as a vantage point (`-` where it owns the PoP).
fn fleet_text(v: &Value) -> String {
    let empty = serde_json::Map::new();
    let me = s(&v["node"]);
    if v["enabled"] != Value::Bool(true) {
        return format!("node {me}: no fleet (the config has no fleet: section)\n");
    }
    let st = &v["settings"];
    let peers = v["peers"].as_object().unwrap_or(&empty);
    let mut out = format!(
        "node {me} (pop {}): {} peers, pull {}, stale after {}, quorum {}, {}\n\n",
        s(&v["pop"]),
        peers.len(),
        secs_text(&st["pull_interval"]),
        secs_text(&st["stale_after"]),
        s(&st["unreachable_quorum"]),
        if st["stream"] == Value::Bool(true) {
            "streaming"
        } else {
            "polling"
        }
    );
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|(name, p)| {
            vec![
                name.clone(),
                s(&p["pop"]),
                s(&p["status"]),
                age_text(&p["age"], true),
                s(&p["errors"]),
                s(&p["last_error"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PEER", "POP", "REPORT", "AGE", "ERRORS", "LAST ERROR"],
        &rows,
    ));
    out.push('\n');
    let mut nodes: Vec<String> = peers.keys().cloned().collect();
    nodes.push(me.clone());
    nodes.sort();
    let rows: Vec<Vec<String>> = v["pops"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, p)| {
            let owners: Vec<String> = p["owners"]
                .as_array()
                .map(|a| a.iter().map(s).collect())
                .unwrap_or_default();
            let o = &p["owner"];
            let fresh = o["fresh"] == Value::Bool(true);
            let mut owner = format!("{} ({})", s(&o["verdict"]), owners.join(", "));
            if !owners.contains(&me) && !owners.is_empty() {
                let _ = write!(owner, " {}", age_text(&o["age"], fresh));
            }
            let mut row = vec![name.clone(), owner];
            for n in &nodes {
                let x = &p["vantage"][n.as_str()];
                row.push(if owners.contains(n) || x.is_null() {
                    "-".into()
                } else if n == &me {
                    s(&x["verdict"])
                } else {
                    let fresh = x["fresh"] == Value::Bool(true);
                    format!("{} {}", s(&x["verdict"]), age_text(&x["age"], fresh))
                });
            }
            row.push(if p["admin"].is_null() {
                "-".into()
            } else {
                s(&p["admin"]["step"])
            });
            row.push(s(&p["verdict"]));
            row.push(s(&p["why"]));
            row
        })
        .collect();
    let mut header: Vec<&str> = vec!["POP", "OWNER"];
    header.extend(nodes.iter().map(String::as_str));
    header.extend(["ADMIN", "FLEET", "WHY"]);
    out.push_str(&table(&header, &rows));
    out
}

/// Human rendering of a successful answer.
fn human(cmd: &CtlCommand, v: &Value, now: f64) -> String {
    let empty = serde_json::Map::new();
    match cmd {
        CtlCommand::Status => {
            let n = &v["node"];
            let mut out = format!(
                "node {} (pop {}, AS{}, router-id {}), state version {}\n\n",
                s(&n["name"]),
                s(&n["pop"]),
                s(&n["asn"]),
                s(&n["router_id"]),
                s(&v["version"])
            );
            out.push_str(&pops_table(v["pops"].as_object().unwrap_or(&empty), now));
            out.push('\n');
            let ann = v["announcements"].as_object().unwrap_or(&empty);
            if ann.is_empty() {
                out.push_str("no prefixes announced\n");
            } else {
                out.push_str(&announcements_table(ann));
            }
            let peers = v["peers"].as_object().unwrap_or(&empty);
            if !peers.is_empty() {
                out.push('\n');
                out.push_str(&peers_table(&v["peers"]));
            }
            out
        }
        CtlCommand::Pops => pops_table(v["pops"].as_object().unwrap_or(&empty), now),
        CtlCommand::Pop { .. } => {
            let mut pops = serde_json::Map::new();
            pops.insert(s(&v["name"]), v.clone());
            let mut out = pops_table(&pops, now);
            let checks: Vec<Value> = v["checks"]
                .as_object()
                .unwrap_or(&empty)
                .iter()
                .map(|(name, c)| {
                    let mut c = c.clone();
                    c["pop"] = v["name"].clone();
                    c["check"] = json!(name);
                    c
                })
                .collect();
            out.push('\n');
            out.push_str(&checks_table(&checks, now));
            let rows: Vec<Vec<String>> = v["prefixes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    vec![
                        s(&p["prefix"]),
                        if p["announced"].as_bool() == Some(true) {
                            s(&p["mode"])
                        } else {
                            "not announced".into()
                        },
                    ]
                })
                .collect();
            if !rows.is_empty() {
                out.push('\n');
                out.push_str(&table(&["PREFIX", "ANNOUNCED"], &rows));
            }
            out
        }
        CtlCommand::Checks => checks_table(
            v["checks"].as_array().map(Vec::as_slice).unwrap_or(&[]),
            now,
        ),
        CtlCommand::Peers => {
            if v["peers"].as_object().is_some_and(|m| m.is_empty()) {
                "no BGP peers\n".into()
            } else {
                peers_table(&v["peers"])
            }
        }
        CtlCommand::Drain { .. }
        | CtlCommand::Undrain { .. }
        | CtlCommand::Disable { .. }
        | CtlCommand::Enable { .. } => {
            let mut out = format!("pop {}: {}", s(&v["pop"]), s(&v["state"]));
            if !v["admin"].is_null() {
                let _ = write!(out, ", {}", admin_text(&v["admin"], now));
            }
            let _ = writeln!(
                out,
                " (dns {}, state version {})",
                if v["serves_dns"].as_bool() == Some(true) {
                    "on"
                } else {
                    "off"
                },
                s(&v["version"])
            );
            out
        }
        CtlCommand::Reload => format!("config reloaded (state version {})\n", s(&v["version"])),
        CtlCommand::Fleet => fleet_text(v),
        CtlCommand::Explain { .. } => explain_text(v),
        CtlCommand::Events { .. } => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        ctl: CtlArgs,
    }

    #[test]
    fn api_addresses() {
        assert_eq!(parse_api("127.0.0.1:8080").expect("ok"), "127.0.0.1:8080");
        assert_eq!(parse_api("http://[::1]:9/").expect("ok"), "[::1]:9");
        assert_eq!(
            parse_api("http://localhost:8080").expect("ok"),
            "localhost:8080"
        );
        assert!(parse_api("https://x:1").is_err());
        assert!(parse_api("localhost").is_err());
        assert!(parse_api("http://x:1/v1").is_err());
    }

    #[test]
    fn args_parse() {
        let c = Cli::try_parse_from([
            "ctl",
            "--api",
            "127.0.0.1:1",
            "drain",
            "ams",
            "--reason",
            "fibre",
            "--duration",
            "30m",
            "--mode",
            "immediate",
            "--force",
            "--json",
        ])
        .expect("parse");
        assert!(c.ctl.json);
        match c.ctl.command {
            CtlCommand::Drain {
                pop,
                reason,
                duration,
                mode,
                force,
                ..
            } => {
                assert_eq!(pop, "ams");
                assert_eq!(reason.as_deref(), Some("fibre"));
                assert_eq!(duration.as_deref(), Some("30m"));
                assert_eq!(mode, Some(ModeArg::Immediate));
                assert!(force);
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["ctl", "drain", "ams", "--mode", "slow"]).is_err());
        assert!(Cli::try_parse_from(["ctl", "drain"]).is_err());
    }

    #[test]
    fn sse_parser_handles_split_frames_and_comments() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: 3\nevent: drain_st").is_empty());
        let got = p.push(b"ep\ndata: {\"a\":1}\n\nid: 4\ndata: x\ndata: y\n\n");
        assert_eq!(
            got,
            vec![
                SseMessage {
                    id: Some("3".into()),
                    event: Some("drain_step".into()),
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: Some("4".into()),
                    event: None,
                    data: "x\ny".into()
                },
            ]
        );
    }

    #[test]
    fn encoding_and_time_helpers() {
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(clock(3661.0), "01:01:01Z");
        assert_eq!(span(59.9), "59s");
        assert_eq!(span(600.0), "10m");
        assert_eq!(span(-3.0), "0s");
    }

    #[test]
    fn human_tables_show_the_essentials() {
        let v = json!({"version": 7, "pop": "ams", "state": "draining", "serves_dns": false,
            "admin": {"kind": "drain", "step": "dns_removed", "who": "me", "reason": "x", "next_at": 130.0}});
        let cmd = CtlCommand::Drain {
            pop: "ams".into(),
            reason: None,
            duration: None,
            mode: None,
            force: false,
            wait: false,
        };
        let out = human(&cmd, &v, 100.0);
        assert_eq!(
            out,
            "pop ams: draining, dns_removed (me), next in 30s (dns off, state version 7)\n"
        );
        let timed = json!({"kind": "drain", "step": "drained", "who": "me", "reason": "x",
            "next_at": 160.0, "until": 160.0});
        assert_eq!(
            admin_text(&timed, 100.0),
            "drained (me), next in 60s, expires in 60s"
        );
        let pops = json!({"pops": {"ams": {"state": "up", "healthy": true, "serves_dns": true, "since": 40.0,
            "admin": null, "reason": "all checks up"}}});
        let out = human(&CtlCommand::Pops, &pops, 100.0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("POP"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&cells[..6], &["ams", "up", "healthy", "yes", "60s", "-"]);
        let peers = json!({"peers": {"r1": {"state": "idle", "flaps": 2, "families": [],
            "bfd": {"state": "down", "holds_bgp_down": true, "failures": 2}}}});
        let out = human(&CtlCommand::Peers, &peers, 100.0);
        assert!(out.contains("bfd=down (holds BGP down) flaps=2"), "{out}");
    }

    #[test]
    fn fleet_matrix_shows_owners_vantage_points_and_staleness() {
        let v = json!({"enabled": true, "node": "a", "pop": "a",
            "settings": {"pull_interval": 1.0, "stale_after": 5.0, "stream": true, "unreachable_quorum": 2},
            "peers": {
                "b": {"pop": "b", "status": "fresh", "age": 0.21, "errors": 0, "last_error": null},
                "c": {"pop": "c", "status": "stale", "age": 7.4, "errors": 4, "last_error": "connect refused"}},
            "pops": {
                "c": {"owners": ["c"], "owner": {"verdict": "unknown", "age": 7.4, "fresh": false},
                      "admin": null,
                      "vantage": {"a": {"verdict": "up", "age": 0.0, "fresh": true},
                                  "b": {"verdict": "up", "age": 0.21, "fresh": true}},
                      "verdict": "up", "why": "owner unknown; reachable from 2 of 2 vantage points"}}});
        let out = fleet_text(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "node a (pop a): 2 peers, pull 1s, stale after 5s, quorum 2, streaming"
        );
        assert!(
            lines[4].starts_with("c     c    stale   7.4s  4       connect refused"),
            "{out}"
        );
        assert!(lines[6].starts_with("POP  OWNER"), "{out}");
        let cells: Vec<&str> = lines[7].split_whitespace().collect();
        assert_eq!(
            &cells[..9],
            &["c", "unknown", "(c)", "7.4s!", "up", "up", "0.2s", "-", "-"],
            "{out}"
        );
        assert!(
            lines[7].ends_with("up     owner unknown; reachable from 2 of 2 vantage points"),
            "{out}"
        );
        let off = json!({"enabled": false, "node": "a", "pop": null, "peers": {}, "pops": {}});
        assert_eq!(
            fleet_text(&off),
            "node a: no fleet (the config has no fleet: section)\n"
        );
    }

    #[test]
    fn refusals_are_explained() {
        let r = Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({"error": "bad", "field": "duration", "errors": ["a: b"]}),
        };
        assert_eq!(
            refused_text(&r),
            "error: 422 Unprocessable Entity: bad (field duration)\n  a: b"
        );
    }

    #[test]
    fn explain_in_words() {
        let v = json!({"name": "www.example.test.", "qtype": "A", "rcode": "NOERROR", "authoritative": true,
            "snapshot_version": 9, "zone": "example.test.", "client": {"addr": "198.51.100.0", "prefix": 24, "from_ecs": true},
            "answers": ["www.example.test. 5 IN A 192.0.2.10"], "authority": [], "ecs_scope": 24,
            "steering": {"record": "www.example.test.", "policy": "failover", "family": "v4", "chosen": ["ams"],
                "addresses": ["192.0.2.10"], "eligible": ["ams"], "excluded": [{"pop": "fra", "reason": "draining"}],
                "fail_open": false, "fail_open_reason": null, "client_dependent": true, "ttl": 5, "ttl_reason": "a PoP changed recently",
                "decision": "first healthy PoP in failover order: ams"}});
        let out = explain_text(&v);
        assert!(
            out.starts_with(
                "www.example.test. A (client subnet 198.51.100.0/24): NOERROR authoritative"
            ),
            "{out}"
        );
        assert!(
            out.contains("  answer    www.example.test. 5 IN A 192.0.2.10\n"),
            "{out}"
        );
        assert!(out.contains("  chosen    ams -> 192.0.2.10\n"), "{out}");
        assert!(
            out.contains("  decision  first healthy PoP in failover order: ams\n"),
            "{out}"
        );
        assert!(out.contains("  excluded  fra: draining\n"), "{out}");
        assert!(
            out.contains(
                "  ttl       5 (a PoP changed recently), depends on the client (ECS scope /24)"
            ),
            "{out}"
        );
        assert!(!out.contains("FAIL-OPEN"));
        let r = Refused {
            status: StatusCode::CONFLICT,
            body: json!({"error": "PoP ams is the last PoP serving traffic", "field": "force"}),
        };
        assert!(refused_text(&r).ends_with("(add --force to do it anyway)"));
    }
}
