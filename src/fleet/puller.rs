//! One task per peer that fetches its report (`GET /v1/fleet/report`,
//! long-polled with `stream`) and hands it to the core as an
//! [`Input::Fleet`]; failures back off exponentially with jitter. The
//! supervisor keeps the tasks in line with `fleet.peers` of the current
//! config (started, stopped, restarted on a change).
//!
//! Decides nothing: whether a report counts (freshness, the merge) is the
//! core's business. It only checks that a body is a report
//! ([`wire::parse`]) of the expected node ([`report::check`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, StatusCode};
use rand::Rng;
use tracing::debug;

use super::client::{client_for, Clients, PeerClient};
use super::wire;
use crate::core::fleet::{report, FleetInput, Report};
use crate::core::{CoreHandle, Input};
use crate::health::AbortOnDrop;
use crate::model::{Config, FleetConfig, FleetPeer};

/// Longest wait between failed pulls (unless `pull_interval` is longer).
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What one puller needs; a change restarts it.
#[derive(Debug, Clone, PartialEq)]
struct Spec {
    peer: FleetPeer,
    pull_interval: Duration,
    timeout: Duration,
    stream: bool,
}

impl Spec {
    fn new(peer: &FleetPeer, f: &FleetConfig) -> Spec {
        Spec {
            peer: peer.clone(),
            pull_interval: f.pull_interval,
            timeout: f.timeout,
            stream: f.stream,
        }
    }
}

/// The running pullers; dropping it stops them.
pub struct Pullers {
    _task: AbortOnDrop<()>,
}

/// Starts the supervisor of the pullers of `core`'s config (none without
/// `fleet:`). `clients` is shared with forwarded admin calls.
pub fn supervise(core: CoreHandle, clients: Clients) -> Pullers {
    Pullers {
        _task: AbortOnDrop(tokio::spawn(run(core, clients))),
    }
}

async fn run(core: CoreHandle, clients: Clients) {
    let mut snaps = core.snapshots.clone();
    let mut tasks: BTreeMap<String, (Spec, AbortOnDrop<()>)> = BTreeMap::new();
    let mut seen: Option<Arc<Config>> = None;
    loop {
        let config = snaps.borrow_and_update().config.clone();
        if !seen.as_ref().is_some_and(|c| Arc::ptr_eq(c, &config)) {
            let wanted: BTreeMap<String, Spec> = config
                .fleet
                .as_ref()
                .map(|f| {
                    f.peers
                        .values()
                        .map(|p| (p.name.to_string(), Spec::new(p, f)))
                        .collect()
                })
                .unwrap_or_default();
            tasks.retain(|name, running| wanted.get(name) == Some(&running.0));
            for (name, spec) in wanted {
                if tasks.contains_key(&name) {
                    continue;
                }
                let client = client_for(&clients, &spec.peer);
                let task = tokio::spawn(pull(spec.clone(), client, core.clone()));
                tasks.insert(name, (spec, AbortOnDrop(task)));
            }
            seen = Some(config);
        }
        if snaps.changed().await.is_err() {
            return;
        }
    }
}

/// The wait after the `n`-th failure in a row (n ≥ 1), before jitter:
/// `interval × 2^(n−1)`, at most [`MAX_BACKOFF`] (or `interval` if that is
/// longer).
pub fn backoff(interval: Duration, n: u32) -> Duration {
    let cap = MAX_BACKOFF.max(interval);
    let factor = 1u32 << n.saturating_sub(1).min(16);
    interval.saturating_mul(factor).min(cap)
}

/// `d` shortened by a random 0–50 %.
fn jitter(d: Duration) -> Duration {
    let keep: f64 = rand::rng().random_range(0.5..=1.0);
    d.mul_f64(keep)
}

/// The path of the next pull: a long-poll after the report `last` with
/// `stream`, a plain fetch otherwise.
pub fn report_path(stream: bool, wait: Duration, last: Option<&Report>) -> String {
    if !stream {
        return "/v1/fleet/report".to_string();
    }
    let mut p = format!("/v1/fleet/report?wait={}ms", wait.as_millis());
    if let Some(r) = last {
        p.push_str(&format!("&after={}&instance={}", r.revision, r.instance));
    }
    p
}

/// Fetches one report of `client`'s peer.
async fn fetch(spec: &Spec, client: &PeerClient, last: Option<&Report>) -> Result<Report, String> {
    let path = report_path(spec.stream, spec.pull_interval, last);
    let timeout = if spec.stream {
        spec.timeout + spec.pull_interval
    } else {
        spec.timeout
    };
    let answer = client
        .call(Method::GET, &path, &[], None, timeout)
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != StatusCode::OK {
        let text = String::from_utf8_lossy(&answer.body);
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| text.chars().take(200).collect());
        return Err(format!("status {}: {detail}", answer.status.as_u16()));
    }
    let got = wire::parse(&answer.body).map_err(|e| e.to_string())?;
    report::check(&spec.peer, &got)?;
    Ok(got)
}

/// Pulls one peer until stopped.
async fn pull(spec: Spec, client: Arc<PeerClient>, core: CoreHandle) {
    let peer = spec.peer.name.clone();
    let mut last: Option<Report> = None;
    let mut failures = 0u32;
    loop {
        let input = match fetch(&spec, &client, last.as_ref()).await {
            Ok(r) => {
                failures = 0;
                last = Some(r.clone());
                FleetInput::Report {
                    peer: peer.clone(),
                    report: Box::new(r),
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                debug!(peer = %peer, failures, "fleet pull failed: {error}");
                FleetInput::Failed {
                    peer: peer.clone(),
                    error,
                }
            }
        };
        if core.inputs.send(Input::Fleet(input)).await.is_err() {
            return;
        }
        let wait = match (failures, spec.stream) {
            (0, true) => Duration::ZERO,
            (0, false) => spec.pull_interval,
            (n, _) => jitter(backoff(spec.pull_interval, n)),
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = Duration::from_secs(1);
        let got: Vec<u64> = (1..=6).map(|n| backoff(s, n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        // A pull interval above the cap is the cap.
        assert_eq!(backoff(Duration::from_secs(30), 3), Duration::from_secs(30));
        assert_eq!(backoff(Duration::from_millis(100), 100), MAX_BACKOFF);
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(4));
            assert!(
                j >= Duration::from_secs(2) && j <= Duration::from_secs(4),
                "{j:?}"
            );
        }
    }

    #[test]
    fn long_poll_path_names_the_last_report() {
        assert_eq!(
            report_path(false, Duration::from_secs(1), None),
            "/v1/fleet/report"
        );
        assert_eq!(
            report_path(true, Duration::from_secs(1), None),
            "/v1/fleet/report?wait=1000ms"
        );
    }
}
