//! Rate limits for BGP log lines an operator must see but that a broken or
//! hostile network could repeat without end: connect failures of an active
//! peer, and connections from addresses that are not configured peers.
//!
//! Pure state machines with the time passed in, so they are tested without
//! clocks or sockets; the callers (session, listener) do the logging.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most one repeated line per this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Distinct sources logged individually per interval; later ones are only
/// counted (bounds memory and log volume under a scan from many addresses).
pub const MAX_SOURCES_PER_INTERVAL: usize = 16;

/// What to log about a connect failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailReport {
    /// Failures since the last success, this one included.
    pub failures: u64,
    /// Failures not logged since the last logged line.
    pub suppressed: u64,
    /// True for the first failure after a success (or ever).
    pub first: bool,
    /// True when the error text differs from the last logged one.
    pub changed: bool,
}

/// Connect failures of one peer: the first failure, every change of the
/// error, and otherwise at most one line per [`LOG_INTERVAL`] are logged.
#[derive(Debug, Default)]
pub struct ConnectFailLog {
    failures: u64,
    suppressed: u64,
    last_logged: Option<(Instant, String)>,
}

impl ConnectFailLog {
    /// Records a failure with error text `err`; `Some` when it should be
    /// logged.
    pub fn on_failure(&mut self, err: &str, now: Instant) -> Option<ConnectFailReport> {
        self.failures += 1;
        let (first, changed, due) = match &self.last_logged {
            None => (true, true, true),
            Some((at, last)) => (
                false,
                last != err,
                now.saturating_duration_since(*at) >= LOG_INTERVAL,
            ),
        };
        if first || changed || due {
            let report = ConnectFailReport {
                failures: self.failures,
                suppressed: self.suppressed,
                first,
                changed,
            };
            self.suppressed = 0;
            self.last_logged = Some((now, err.to_string()));
            Some(report)
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Records a successful connect; returns the number of failures before
    /// it when there were any (worth an "connected after N failures" line).
    pub fn on_success(&mut self) -> Option<u64> {
        let n = std::mem::take(&mut self.failures);
        self.suppressed = 0;
        self.last_logged = None;
        (n > 0).then_some(n)
    }
}

/// Decision for one rejected connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectDecision {
    /// Log this one (first from this source in the interval).
    Log,
    /// Count it only.
    Suppress,
}

/// Summary of suppressed rejections over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectSummary {
    /// Rejections that were not logged individually.
    pub suppressed: u64,
    /// Distinct sources seen in the interval (up to the tracking cap, plus
    /// one for "more").
    pub sources: usize,
}

/// Connections from unconfigured addresses: the first per source per
/// interval is logged (at most [`MAX_SOURCES_PER_INTERVAL`] sources), the
/// rest are counted and summarised once per interval.
#[derive(Debug, Default)]
pub struct RejectLog {
    window_start: Option<Instant>,
    seen: BTreeSet<IpAddr>,
    overflow: bool,
    suppressed: u64,
}

impl RejectLog {
    /// Records a rejected connection from `src`. A summary of the previous
    /// interval is returned first when that interval is over.
    pub fn on_reject(
        &mut self,
        src: IpAddr,
        now: Instant,
    ) -> (Option<RejectSummary>, RejectDecision) {
        let summary = self.flush(now);
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        if self.seen.contains(&src) {
            self.suppressed += 1;
            return (summary, RejectDecision::Suppress);
        }
        if self.seen.len() >= MAX_SOURCES_PER_INTERVAL {
            self.overflow = true;
            self.suppressed += 1;
            return (summary, RejectDecision::Suppress);
        }
        self.seen.insert(src);
        (summary, RejectDecision::Log)
    }

    /// Ends the interval if it is over: returns the summary when something
    /// was suppressed in it. Call periodically (see [`Self::next_flush`]).
    pub fn flush(&mut self, now: Instant) -> Option<RejectSummary> {
        let start = self.window_start?;
        if now.saturating_duration_since(start) < LOG_INTERVAL {
            return None;
        }
        let summary = RejectSummary {
            suppressed: self.suppressed,
            sources: self.seen.len() + usize::from(self.overflow),
        };
        *self = RejectLog::default();
        (summary.suppressed > 0).then_some(summary)
    }

    /// When [`Self::flush`] has something to end, if anything.
    pub fn next_flush(&self) -> Option<Instant> {
        self.window_start.map(|s| s + LOG_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn connect_failures_first_then_once_per_interval() {
        let t0 = Instant::now();
        let mut l = ConnectFailLog::default();
        let r = l
            .on_failure("refused", t0)
            .expect("first failure is logged");
        assert!(r.first);
        assert_eq!((r.failures, r.suppressed), (1, 0));
        // Retries every second with the same error: silent for a minute.
        for s in 1..60 {
            assert_eq!(l.on_failure("refused", at(t0, s)), None, "at {s}s");
        }
        let r = l.on_failure("refused", at(t0, 60)).expect("one per minute");
        assert!(!r.first && !r.changed);
        assert_eq!((r.failures, r.suppressed), (61, 59));
        assert_eq!(l.on_failure("refused", at(t0, 61)), None);
    }

    #[test]
    fn connect_failure_with_new_error_is_logged_at_once() {
        let t0 = Instant::now();
        let mut l = ConnectFailLog::default();
        assert!(l.on_failure("refused", t0).is_some());
        assert!(l.on_failure("refused", at(t0, 1)).is_none());
        let r = l.on_failure("timed out", at(t0, 2)).expect("error changed");
        assert!(r.changed && !r.first);
        assert_eq!((r.failures, r.suppressed), (3, 1));
    }

    #[test]
    fn connect_success_reports_failures_and_rearms_first() {
        let t0 = Instant::now();
        let mut l = ConnectFailLog::default();
        assert_eq!(l.on_success(), None);
        for s in 0..5 {
            l.on_failure("refused", at(t0, s));
        }
        assert_eq!(l.on_success(), Some(5));
        assert_eq!(l.on_success(), None);
        let r = l.on_failure("refused", at(t0, 6)).expect("first again");
        assert!(r.first);
        assert_eq!(r.failures, 1);
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn rejects_first_per_source_then_summary_per_interval() {
        let t0 = Instant::now();
        let mut l = RejectLog::default();
        assert_eq!(l.on_reject(ip(1), t0), (None, RejectDecision::Log));
        assert_eq!(l.on_reject(ip(2), t0), (None, RejectDecision::Log));
        // 2000 more connections from the same two sources: no lines.
        for i in 0..2000u64 {
            let (s, d) = l.on_reject(ip(1 + (i % 2) as u8), at(t0, i % 59));
            assert_eq!((s, d), (None, RejectDecision::Suppress));
        }
        assert_eq!(l.flush(at(t0, 59)), None, "interval not over yet");
        assert_eq!(l.next_flush(), Some(at(t0, 60)));
        assert_eq!(
            l.flush(at(t0, 60)),
            Some(RejectSummary {
                suppressed: 2000,
                sources: 2
            })
        );
        assert_eq!(l.next_flush(), None);
        // A new interval logs each source once again.
        assert_eq!(l.on_reject(ip(1), at(t0, 70)), (None, RejectDecision::Log));
    }

    #[test]
    fn reject_summary_is_returned_by_the_next_reject_after_the_interval() {
        let t0 = Instant::now();
        let mut l = RejectLog::default();
        l.on_reject(ip(1), t0);
        l.on_reject(ip(1), at(t0, 1));
        let (s, d) = l.on_reject(ip(1), at(t0, 61));
        assert_eq!(
            s,
            Some(RejectSummary {
                suppressed: 1,
                sources: 1
            })
        );
        assert_eq!(d, RejectDecision::Log);
        // Nothing suppressed in an interval: no summary line.
        assert_eq!(l.flush(at(t0, 200)), None);
    }

    #[test]
    fn reject_sources_logged_individually_are_capped() {
        let t0 = Instant::now();
        let mut l = RejectLog::default();
        let mut logged = 0;
        for n in 0..100u8 {
            if l.on_reject(ip(n), t0).1 == RejectDecision::Log {
                logged += 1;
            }
        }
        assert_eq!(logged, MAX_SOURCES_PER_INTERVAL);
        let s = l.flush(at(t0, 60)).expect("summary");
        assert_eq!(s.suppressed, 100 - MAX_SOURCES_PER_INTERVAL as u64);
        assert_eq!(s.sources, MAX_SOURCES_PER_INTERVAL + 1);
    }
}
