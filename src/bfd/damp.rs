//! Flap damping of one BFD session: a session that fails repeatedly is held
//! in Down for an exponentially growing time before it may come Up again
//! (RFC 5880 §6.8.18 "Holding Down Sessions").
//!
//! Rules: the first failure is not held (a single cut link comes back as soon
//! as it is repaired); the second failure holds the session down for
//! [`INITIAL_HOLD`], every further failure doubles it up to [`MAX_HOLD`]. The
//! count starts again once the session has stayed Up for [`STABLE`]. Pure:
//! time is passed in, nothing is read.

use std::time::Duration;

use tokio::time::Instant;

/// Hold after the second failure in a row.
pub const INITIAL_HOLD: Duration = Duration::from_secs(2);
/// Longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(120);
/// Up this long without a failure forgets earlier failures.
pub const STABLE: Duration = Duration::from_secs(120);

/// Failure history of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Damper {
    /// Failures since the session was last stable.
    flaps: u32,
    up_since: Option<Instant>,
    hold_until: Option<Instant>,
}

impl Damper {
    /// The session came Up.
    pub fn on_up(&mut self, now: Instant) {
        self.up_since = Some(now);
        self.hold_until = None;
    }

    /// The session failed (left Up because of the path, not an operator).
    /// Returns the end of the hold-down, if any.
    pub fn on_failure(&mut self, now: Instant) -> Option<Instant> {
        if self
            .up_since
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= STABLE)
        {
            self.flaps = 0;
        }
        self.flaps = self.flaps.saturating_add(1);
        let hold = hold_for(self.flaps);
        self.hold_until = (!hold.is_zero()).then(|| now + hold);
        self.hold_until
    }

    /// The session left Up for a reason that is not a failure (an operator
    /// on either side): the history is kept, no hold starts.
    pub fn on_down_admin(&mut self) {
        self.up_since = None;
    }

    /// True while the session must stay Down.
    pub fn held(&self, now: Instant) -> bool {
        self.hold_until.is_some_and(|t| now < t)
    }

    pub fn hold_until(&self) -> Option<Instant> {
        self.hold_until
    }

    /// Failures counted towards the current hold.
    pub fn flaps(&self) -> u32 {
        self.flaps
    }
}

/// The hold after the `n`th failure in a row (1-based).
pub fn hold_for(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let exp = (n - 2).min(16);
    INITIAL_HOLD.saturating_mul(1 << exp).min(MAX_HOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_capped() {
        let s = Duration::from_secs;
        let holds: Vec<_> = (1..=9).map(hold_for).collect();
        assert_eq!(
            holds,
            vec![s(0), s(2), s(4), s(8), s(16), s(32), s(64), s(120), s(120)]
        );
        assert_eq!(hold_for(u32::MAX), MAX_HOLD);
    }

    #[test]
    fn first_failure_is_free_then_holds_grow_and_stability_resets() {
        let t = Instant::now();
        let mut d = Damper::default();
        d.on_up(t);
        assert_eq!(d.on_failure(t + Duration::from_secs(1)), None);
        assert!(!d.held(t + Duration::from_secs(1)));
        d.on_up(t + Duration::from_secs(2));
        let until = d.on_failure(t + Duration::from_secs(3)).unwrap();
        assert_eq!(until, t + Duration::from_secs(5));
        assert!(d.held(t + Duration::from_secs(4)));
        assert!(!d.held(until));
        d.on_up(until);
        assert_eq!(
            d.on_failure(until + Duration::from_secs(1)),
            Some(until + Duration::from_secs(5))
        );
        assert_eq!(d.flaps(), 3);
        // Stable for STABLE: the next failure is a first one again.
        let up = until + Duration::from_secs(10);
        d.on_up(up);
        assert_eq!(d.on_failure(up + STABLE), None);
        assert_eq!(d.flaps(), 1);
    }

    #[test]
    fn admin_down_keeps_history_without_hold() {
        let t = Instant::now();
        let mut d = Damper::default();
        d.on_up(t);
        d.on_failure(t);
        d.on_up(t);
        d.on_down_admin();
        assert!(!d.held(t));
        assert_eq!(d.flaps(), 1);
        // A failure without an Up in between counts on.
        assert!(d.on_failure(t).is_some());
    }
}
