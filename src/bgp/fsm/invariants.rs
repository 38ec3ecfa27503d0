//! The FSM's invariants (listed in the header of [`super`]), checked after
//! every event: by the property test of [`super`] and by the `bgp_fsm` fuzz
//! target (`fuzz/`). Compiled for tests and fuzzing only.
//!
//! It must not drive the FSM beyond the one event it is given: what to
//! feed is the caller's business.

use std::time::Duration;

use tokio::time::Instant;

use super::{Action, Event, Fsm, State};
use crate::bgp::codec::Received;

/// Feeds events to an FSM and checks every invariant after each one. It
/// remembers, from the actions the FSM emitted, what happened on the
/// current connection.
#[derive(Debug, Default)]
pub struct Checker {
    open_sent: bool,
    open_received: bool,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Feeds `ev` at `now` and checks the invariants; returns the actions,
    /// or the violation in words.
    pub fn handle(&mut self, f: &mut Fsm, ev: Event, now: Instant) -> Result<Vec<Action>, String> {
        let before = f.state();
        let acts = f.handle(ev.clone(), now);
        match self.check(f, before, &ev, &acts, now) {
            Ok(()) => Ok(acts),
            Err(e) => Err(format!("{e} after {ev:?} in {before}: {acts:?}")),
        }
    }

    fn check(
        &mut self,
        f: &Fsm,
        before: State,
        ev: &Event,
        acts: &[Action],
        now: Instant,
    ) -> Result<(), String> {
        let after = f.state();
        let passive = f.config().passive;
        for (i, a) in acts.iter().enumerate() {
            match a {
                Action::SendOpen(_) => self.open_sent = true,
                Action::Close => *self = Checker::default(),
                Action::SendNotification(_) => {
                    if !acts[i + 1..].contains(&Action::Close) {
                        return Err(format!("NOTIFICATION without Close: {acts:?}"));
                    }
                    if after != State::Idle {
                        return Err(format!("NOTIFICATION sent but state {after}"));
                    }
                }
                Action::Connect if passive => return Err("a passive FSM dialed".into()),
                Action::Established(_) if before == State::Established => {
                    return Err("Established reported twice".into())
                }
                _ => {}
            }
        }
        if before == State::OpenSent && after == State::OpenConfirm {
            self.open_received = true;
        }
        if after == State::Established && before != State::Established {
            let via_keepalive = matches!(ev, Event::Message(Received::Keepalive));
            if !(self.open_sent && self.open_received && via_keepalive) {
                return Err(format!(
                    "Established without an OPEN exchange (sent {}, received {}, by {ev:?})",
                    self.open_sent, self.open_received
                ));
            }
            if !acts.iter().any(|a| matches!(a, Action::Established(_))) {
                return Err("entered Established without reporting it".into());
            }
        }
        let timers = f.timers();
        match (after, f.negotiated()) {
            (State::OpenConfirm | State::Established, Some(n)) => {
                if n.hold_time > 0 {
                    if n.hold_time < 3 || n.hold_time > f.config().hold_time {
                        return Err(format!("negotiated hold time {}", n.hold_time));
                    }
                    if timers.hold.is_none() || timers.keepalive.is_none() {
                        return Err(format!("hold time {} but timers {timers:?}", n.hold_time));
                    }
                    if n.keepalive >= Duration::from_secs(n.hold_time.into()) {
                        return Err(format!(
                            "keepalive {:?} >= hold {}",
                            n.keepalive, n.hold_time
                        ));
                    }
                } else if timers.hold.is_some() || timers.keepalive.is_some() {
                    return Err(format!("hold time 0 but timers {timers:?}"));
                }
            }
            (State::OpenConfirm | State::Established, None) => {
                return Err(format!("{after} without a negotiated session"))
            }
            (_, Some(_)) => return Err(format!("{after} with a negotiated session")),
            (_, None) => {
                if after != State::OpenSent && (timers.hold.is_some() || timers.keepalive.is_some())
                {
                    return Err(format!("{after} with session timers {timers:?}"));
                }
            }
        }
        if let Some(d) = f.next_deadline() {
            if d <= now {
                return Err(format!("timer left expired in {after}: {timers:?}"));
            }
        }
        if !f.is_running() && after == State::Idle && f.next_deadline().is_some() {
            return Err("stopped FSM has an armed timer".into());
        }
        Ok(())
    }
}
