//! Health checks: probes (tcp, http, dns, exec, file) and the scheduler
//! that runs every configured check and reports raw results to the core.
//!
//! A probe is one attempt against a target. It always ends with a
//! [`ProbeOutcome`]: `ok` plus a short human detail (`connect refused`,
//! `status 503 (expected 200)`, `timeout after 500ms`). Probes never panic on
//! what the network or a command gives them, and every probe is bounded by
//! its check's timeout ([`Target::run`]); a probe that hangs is a failure.
//!
//! The [`scheduler`] owns the timing (interval, fast re-probe while a
//! change is pending, jitter, immediate re-probe of `file` checks on
//! inotify events) and sends each outcome to the core as it is
//! ([`ProbeReport`]). What to probe and whether a change is pending it
//! reads from the core's snapshot. Nothing here decides a verdict: the
//! rise/fall hysteresis ([`crate::core::hysteresis`]) and combining checks
//! into a PoP's health (`all`, `any`, `at_least`) are the core's. This
//! module depends on the core, never the reverse.
//!
//! [`ProbeReport`]: crate::core::ProbeReport

pub mod dns;
pub mod exec;
pub mod file;
pub mod http;
pub mod link;
pub mod netlink;
pub mod process;
pub mod scheduler;
pub mod systemd;
pub mod tcp;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

pub use crate::core::ProbeOutcome;
pub use scheduler::{run_check, supervise, CheckId, Checks, Timing};

use crate::model::{HostPort, PidSource, Probe};

/// The result of one probe attempt before it is timed: `Ok(detail)` for a
/// success, `Err(detail)` for a failure. Details are short and human.
pub type Probed = Result<String, String>;

/// A probe ready to run: the configured [`Probe`] with everything that can
/// be prepared once (TLS client config, DNS query name) prepared. Cheap to
/// clone.
#[derive(Clone)]
pub enum Target {
    Tcp(Arc<HostPort>),
    Http(Arc<http::HttpTarget>),
    Dns(Arc<dns::DnsTarget>),
    Exec(Arc<exec::ExecTarget>),
    File(Arc<file::FileTarget>),
    Process(Arc<process::ProcessTarget>),
    Systemd(Arc<systemd::UnitClient>),
    Interface(Arc<link::InterfaceTarget>),
    Address(Arc<link::AddressTarget>),
}

/// How often an event source that failed (netlink socket, D-Bus
/// subscription) is retried; the check keeps its interval meanwhile.
pub const EVENT_RETRY: Duration = Duration::from_secs(5);

impl Target {
    /// Prepares the probe of a check. Never fails: a problem that can only
    /// be seen now (no CA certificates, a query name hickory rejects) makes
    /// every probe of this target fail with that detail.
    pub fn new(probe: &Probe) -> Target {
        match probe {
            Probe::Tcp { target } => Target::Tcp(Arc::new(target.clone())),
            Probe::Http { .. } => Target::Http(Arc::new(http::HttpTarget::new(probe))),
            Probe::Dns {
                server,
                qname,
                qtype,
                expect_rcode,
                expect_answer,
            } => Target::Dns(Arc::new(dns::DnsTarget::new(
                *server,
                qname,
                *qtype,
                *expect_rcode,
                expect_answer.clone(),
            ))),
            Probe::Exec { command, env } => {
                Target::Exec(Arc::new(exec::ExecTarget::new(command, env)))
            }
            Probe::File {
                path,
                healthy_if_present,
            } => Target::File(Arc::new(file::FileTarget {
                path: path.clone(),
                healthy_if_present: *healthy_if_present,
            })),
            Probe::Process { source } => {
                let source = match source {
                    PidSource::PidFile(p) => process::PidSource::File(p.clone()),
                    PidSource::Unit(u) => process::PidSource::Unit(systemd::UnitClient::new(&u.0)),
                };
                Target::Process(Arc::new(process::ProcessTarget::new(source)))
            }
            Probe::Systemd { unit } => Target::Systemd(Arc::new(systemd::UnitClient::new(&unit.0))),
            Probe::Interface { name } => Target::Interface(Arc::new(link::InterfaceTarget {
                name: name.0.clone(),
            })),
            Probe::Address { addr, interface } => Target::Address(Arc::new(link::AddressTarget {
                addr: *addr,
                interface: interface.as_ref().map(|i| i.0.clone()),
            })),
        }
    }

    /// The event source of an event-driven check: a future that calls
    /// `wake.notify_one()` whenever the check should probe at once (a
    /// process exited, a unit or link changed) and runs until dropped.
    /// `None` for the kinds that only probe on their interval (and for
    /// `file`, whose inotify watch is shared by all file checks).
    pub fn watch(&self, wake: Arc<Notify>) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        match self {
            Target::Process(t) => {
                let t = t.clone();
                Some(Box::pin(async move { t.watch(wake, EVENT_RETRY).await }))
            }
            Target::Systemd(t) => {
                let t = t.clone();
                Some(Box::pin(async move { t.watch(wake, EVENT_RETRY).await }))
            }
            Target::Interface(t) => Some(Box::pin(link::watch(t.interest(), wake, EVENT_RETRY))),
            Target::Address(t) => Some(Box::pin(link::watch(t.interest(), wake, EVENT_RETRY))),
            Target::Tcp(_)
            | Target::Http(_)
            | Target::Dns(_)
            | Target::Exec(_)
            | Target::File(_) => None,
        }
    }

    /// One probe attempt, bounded by `timeout`.
    pub async fn run(&self, timeout: Duration) -> ProbeOutcome {
        let this = self.clone();
        timed(timeout, async move {
            match &this {
                Target::Tcp(t) => tcp::probe(t).await,
                Target::Http(t) => t.probe().await,
                Target::Dns(t) => t.probe().await,
                Target::Exec(t) => t.probe().await,
                Target::File(t) => t.probe().await,
                Target::Process(t) => t.probe().await,
                Target::Systemd(t) => t.probe().await,
                Target::Interface(t) => t.probe().await,
                Target::Address(t) => t.probe().await,
            }
        })
        .await
    }
}

/// Runs `probe` for at most `timeout` and measures it. A probe that does
/// not finish in time is dropped (which kills what it started) and counts as
/// a failure with the detail `timeout after <timeout>`.
pub async fn timed<F>(timeout: Duration, probe: F) -> ProbeOutcome
where
    F: Future<Output = Probed>,
{
    let started = Instant::now();
    let result = match tokio::time::timeout(timeout, probe).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {}", fmt_duration(timeout))),
    };
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    ProbeOutcome {
        ok,
        detail,
        took: started.elapsed(),
        at: SystemTime::now(),
    }
}

/// `1s`, `1.5s`, `500ms`, `250us`: compact, for details and logs.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        format!("{}us", d.as_micros())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A spawned task that is aborted when this handle is dropped, so a probe
/// never outlives the check that started it.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(fmt_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(fmt_duration(Duration::from_secs(2)), "2s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_micros(250)), "250us");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_times_out() {
        let out = timed(Duration::from_millis(500), std::future::pending::<Probed>()).await;
        assert!(!out.ok);
        assert_eq!(out.detail, "timeout after 500ms");
        assert_eq!(out.took, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_finished_probe_keeps_its_detail() {
        let out = timed(Duration::from_secs(1), async { Err("nope".to_string()) }).await;
        assert!(!out.ok);
        assert_eq!(out.detail, "nope");
        let out = timed(Duration::from_secs(1), async { Ok("fine".to_string()) }).await;
        assert!(out.ok);
        assert_eq!(out.detail, "fine");
    }
}
