//! systemd service notifications (the `sd_notify` protocol): `READY=1`,
//! `STATUS=...`, `RELOADING=1`, `STOPPING=1` and `WATCHDOG=1`, each a
//! datagram to the Unix socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`). Without `NOTIFY_SOCKET` (not started
//! by systemd as `Type=notify`) every call does nothing.
//!
//! This module owns the protocol only. When to notify is decided by the
//! daemon (ready once listening, reloading, stopping, status lines) and by
//! the core, which pings the watchdog from its own loop so that a wedged
//! controller stops pinging and gets restarted. A failed send is logged
//! once and never stops anypop.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;

use crate::bgp::{SessionState, StatusMap};
use crate::core::{PopState, Snapshot};

/// Where notifications go, parsed from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

/// The `NOTIFY_SOCKET` value as a target (`None`: not set or unusable).
pub fn parse_socket(value: Option<&str>) -> Option<Target> {
    let v = value?.trim();
    if let Some(name) = v.strip_prefix('@') {
        return (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()));
    }
    v.starts_with('/')
        .then(|| Target::Path(std::path::PathBuf::from(v)))
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, if the
/// watchdog is on and meant for this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(p) = pid {
        if p.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends notifications to systemd (or nowhere).
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let target = parse_socket(std::env::var("NOTIFY_SOCKET").ok().as_deref());
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let socket = target.and_then(|t| match open(&t) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("NOTIFY_SOCKET {t:?} unusable, systemd will not hear from anypop: {e}");
                None
            }
        });
        Notifier {
            watchdog: watchdog.filter(|_| socket.is_some()),
            socket,
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing (tests, or not under systemd).
    pub fn disabled() -> Notifier {
        Notifier {
            socket: None,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// True when notifications go somewhere.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog ping interval, if systemd asked for pings.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (`KEY=value` lines).
    pub fn notify(&self, msg: &str) {
        let Some((sock, addr)) = &self.socket else {
            return;
        };
        if let Err(e) = sock.send_to_addr(msg.as_bytes(), addr) {
            if !self.warned.swap(true, Ordering::Relaxed) {
                warn!("cannot notify systemd (further failures not logged): {e}");
            }
        }
    }

    /// Startup is complete: listeners bound, first state published.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// A one-line status for `systemctl status`.
    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    /// A reload starts (finish with [`Notifier::ready`]).
    pub fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// Shutdown starts.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }

    /// The watchdog keep-alive.
    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

fn open(t: &Target) -> io::Result<(UnixDatagram, SocketAddr)> {
    let addr = match t {
        Target::Path(p) => SocketAddr::from_pathname(p)?,
        Target::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// CLOCK_MONOTONIC in microseconds (what systemd compares reloads with).
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The one-line summary shown by `systemctl status`: PoPs by state,
/// prefixes announced, BGP sessions established.
pub fn status_line(snap: &Snapshot, peers: &StatusMap) -> String {
    summary(
        snap.pops.values().map(|p| p.state),
        snap.announcements.len(),
        peers.values().map(|p| p.state),
    )
}

fn summary(
    pops: impl Iterator<Item = PopState>,
    announced: usize,
    peers: impl Iterator<Item = SessionState>,
) -> String {
    let mut counts = [0usize; 4];
    for p in pops {
        counts[match p {
            PopState::Up => 0,
            PopState::Down => 1,
            PopState::Draining => 2,
            PopState::Disabled => 3,
        }] += 1;
    }
    let mut by_state: Vec<String> = ["up", "down", "draining", "disabled"]
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    if by_state.is_empty() {
        by_state.push("none".into());
    }
    let (mut total, mut established) = (0, 0);
    for p in peers {
        total += 1;
        established += usize::from(p == SessionState::Established);
    }
    let bgp = if total == 0 {
        "no BGP peers".to_string()
    } else {
        format!("BGP {established}/{total} established")
    };
    format!(
        "PoPs: {}; {announced} prefixes announced; {bgp}",
        by_state.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_targets() {
        assert_eq!(
            parse_socket(Some("/run/systemd/notify")),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            parse_socket(Some("@/org/systemd/x")),
            Some(Target::Abstract(b"/org/systemd/x".to_vec()))
        );
        assert_eq!(parse_socket(None), None);
        assert_eq!(parse_socket(Some("")), None);
        assert_eq!(parse_socket(Some("@")), None);
        assert_eq!(parse_socket(Some("relative/path")), None);
    }

    #[test]
    fn watchdog_only_for_this_process() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(watchdog_interval(Some("30000000"), None, 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("7"), 7), half);
        assert_eq!(watchdog_interval(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn summaries() {
        use PopState::*;
        use SessionState as S;
        assert_eq!(
            summary(
                [Up, Down, Up, Draining].into_iter(),
                2,
                [S::Established, S::Active].into_iter()
            ),
            "PoPs: 2 up, 1 down, 1 draining; 2 prefixes announced; BGP 1/2 established"
        );
        assert_eq!(
            summary([].into_iter(), 0, [].into_iter()),
            "PoPs: none; 0 prefixes announced; no BGP peers"
        );
        assert_eq!(
            summary([Disabled].into_iter(), 0, [S::Established].into_iter()),
            "PoPs: 1 disabled; 0 prefixes announced; BGP 1/1 established"
        );
    }

    #[test]
    fn messages_reach_a_socket_and_stay_one_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: Some(open(&Target::Path(path)).expect("open")),
            watchdog: None,
            warned: AtomicBool::new(false),
        };
        let mut buf = [0u8; 512];
        let mut recv = || {
            let len = server.recv(&mut buf).expect("recv");
            String::from_utf8_lossy(&buf[..len]).into_owned()
        };
        n.ready("PoPs: 1 up\nsecond line");
        assert_eq!(recv(), "READY=1\nSTATUS=PoPs: 1 up second line");
        n.reloading();
        let r = recv();
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{r}");
        let usec: u64 = r
            .lines()
            .nth(1)
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .expect("usec");
        assert!(usec > 0);
        n.watchdog();
        assert_eq!(recv(), "WATCHDOG=1");
        n.stopping();
        assert_eq!(recv(), "STOPPING=1\nSTATUS=stopping");
        // Nothing listens any more: sending fails quietly.
        drop(server);
        n.status("x");
        n.status("y");
        assert!(n.warned.load(Ordering::Relaxed));
        assert!(!Notifier::disabled().enabled());
        Notifier::disabled().ready("nothing happens");
    }
}
