//! When to send End-of-RIB (RFC 4724 §2) after a session comes up.
//!
//! A router that kept our routes as stale over a restart replaces them by
//! what we send, and drops the rest when End-of-RIB arrives. Right after a
//! restart the core may not know yet whether the node's own PoP is healthy
//! (its checks have not run enough): sending End-of-RIB then would withdraw
//! a healthy PoP's routes for nothing. So End-of-RIB follows the initial
//! sync at once if the local PoP's health is known, and is otherwise held
//! until it is known or the hold ends: the restart time we advertise (the
//! router keeps stale routes that long anyway), at most [`EOR_HOLD_MAX`];
//! [`EOR_HOLD_WITHOUT_GR`] when graceful restart is off (nothing is stale,
//! nothing to wait for).
//!
//! Pure: time is passed in.

use std::time::Duration;

use tokio::time::Instant;

use crate::core::Snapshot;

/// Longest End-of-RIB is held while the local PoP's health is unknown when
/// no graceful-restart time is configured.
pub const EOR_HOLD_WITHOUT_GR: Duration = Duration::ZERO;
/// Upper bound of the End-of-RIB hold, whatever the restart time.
pub const EOR_HOLD_MAX: Duration = Duration::from_secs(300);

/// End-of-RIB owed on an established session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EorHold {
    /// Send by then at the latest; `None`: nothing owed.
    deadline: Option<Instant>,
}

impl EorHold {
    /// A session came up at `now`: End-of-RIB is owed.
    pub fn start(now: Instant, graceful_restart: Option<Duration>) -> Self {
        let hold = match graceful_restart {
            Some(t) => t.min(EOR_HOLD_MAX),
            None => EOR_HOLD_WITHOUT_GR,
        };
        EorHold {
            deadline: Some(now + hold),
        }
    }

    /// Nothing owed (no session, or End-of-RIB sent).
    pub fn none() -> Self {
        EorHold::default()
    }

    /// Whether End-of-RIB is still owed.
    pub fn owed(&self) -> bool {
        self.deadline.is_some()
    }

    /// When the hold ends, while End-of-RIB is owed (a timer to arm).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether to send End-of-RIB now (the initial sync being done): owed,
    /// and the local PoP's health is known or the hold is over.
    pub fn due(&self, now: Instant, local_health_known: bool) -> bool {
        self.deadline
            .is_some_and(|d| local_health_known || now >= d)
    }
}

/// Whether the health of the node's own PoP is known in `s` (or there is
/// no own PoP to wait for).
pub fn local_health_known(s: &Snapshot) -> bool {
    s.config
        .node
        .pop
        .as_ref()
        .and_then(|p| s.pops.get(p))
        .is_none_or(|p| p.healthy.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_at_once_when_health_is_known() {
        let t = Instant::now();
        let h = EorHold::start(t, Some(Duration::from_secs(120)));
        assert!(h.owed());
        assert!(h.due(t, true));
        assert!(!h.due(t, false));
    }

    #[test]
    fn held_until_the_restart_time_at_most_the_cap() {
        let t = Instant::now();
        let h = EorHold::start(t, Some(Duration::from_secs(120)));
        assert_eq!(h.deadline(), Some(t + Duration::from_secs(120)));
        assert!(!h.due(t + Duration::from_secs(119), false));
        assert!(h.due(t + Duration::from_secs(120), false));
        let h = EorHold::start(t, Some(Duration::from_secs(4095)));
        assert_eq!(h.deadline(), Some(t + EOR_HOLD_MAX));
    }

    #[test]
    fn no_hold_without_graceful_restart() {
        let t = Instant::now();
        let h = EorHold::start(t, None);
        assert!(h.due(t, false));
    }

    #[test]
    fn local_health_is_known_once_the_own_pop_has_a_verdict() {
        use crate::core::PopState;
        use crate::model::Name;
        use std::collections::BTreeMap;
        use std::net::Ipv4Addr;
        use std::sync::Arc;
        use std::time::SystemTime;
        let snap = |pop: Option<&str>, healthy: Option<bool>| {
            let node = crate::testutil::node("n1", pop, Ipv4Addr::new(192, 0, 2, 2), 65001);
            let mut pops = BTreeMap::new();
            pops.insert(
                Name::parse("pop1").unwrap(),
                crate::testutil::pop_status(PopState::Up, healthy),
            );
            Snapshot {
                version: 1,
                published: SystemTime::now(),
                config: Arc::new(crate::testutil::config(node, [])),
                pops,
                announcements: Arc::new(BTreeMap::new()),
                fleet: None,
            }
        };
        assert!(!local_health_known(&snap(Some("pop1"), None)));
        assert!(local_health_known(&snap(Some("pop1"), Some(false))));
        assert!(local_health_known(&snap(Some("pop1"), Some(true))));
        // A node without an own PoP has nothing to wait for.
        assert!(local_health_known(&snap(None, None)));
    }

    #[test]
    fn nothing_owed_is_never_due() {
        let t = Instant::now();
        assert!(!EorHold::none().owed());
        assert!(!EorHold::none().due(t + EOR_HOLD_MAX, true));
        assert_eq!(EorHold::none().deadline(), None);
    }
}
