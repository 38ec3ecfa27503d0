//! Sans-IO RFC 5880 session state machine for one single-hop peer in
//! asynchronous mode (no Demand mode of our own, no Echo, no
//! authentication).
//!
//! The FSM consumes [`Event`]s (a decoded Control packet, the clock, an
//! operator's AdminDown/AdminUp, new timer parameters) and returns
//! [`Action`]s (send this packet, the state changed). Timers are deadlines:
//! the caller asks [`Fsm::next_deadline`] and feeds [`Event::Tick`] with the
//! current time. No I/O, no clock reads; the transmit jitter (§6.8.7) comes
//! from a seeded generator, so every transition is unit- and property-tested.
//!
//! What it implements: the state table of §6.8.6 (Down/Init/Up/AdminDown),
//! the reception checks that need the session (your discriminator), slow
//! start (§6.8.3: at least 1 s while not Up), Poll/Final sequences for
//! timer changes with the old values kept until the Final arrives, the
//! detection time `remote detect mult × max(our Required Min RX, remote
//! Desired Min TX)`, holding the session down after repeated failures
//! ([`super::damp`]), and the "blocks its client" verdict that the BGP
//! session obeys. It must not know about sockets or BGP.

use std::time::Duration;

use tokio::time::Instant;

use super::damp::Damper;
use super::packet::{Control, Diag, State};

/// Slowest rate while the session is not Up (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// Timer parameters of a session, as configured.
pub use crate::model::BfdParams as Params;

/// Inputs to the FSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Control packet that passed [`Control::decode`] and came from this
    /// session's peer with TTL/hop limit 255.
    Received(Control),
    /// Time passed; expired deadlines fire.
    Tick,
    /// Operator: take the session administratively down (§6.8.16).
    AdminDown,
    /// Operator: leave AdminDown.
    AdminUp,
    /// New timer parameters (a Poll Sequence if Up).
    SetParams(Params),
}

/// Outputs of the FSM, executed in order by the socket task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Control),
    StateChanged { from: State, to: State, diag: Diag },
}

/// Why a received packet was dropped by the session (§6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// Your Discriminator is not ours.
    WrongDiscriminator,
    /// Your Discriminator is zero in a packet whose state is Init or Up.
    ZeroYourDiscriminator,
    /// We are AdminDown.
    AdminDown,
}

/// The session state machine.
#[derive(Debug)]
pub struct Fsm {
    params: Params,
    local_discr: u32,
    state: State,
    local_diag: Diag,
    remote_state: State,
    remote_diag: Diag,
    remote_discr: u32,
    /// bfd.RemoteMinRxInterval in µs (initially 1).
    remote_min_rx: u32,
    /// Last received Desired Min TX, µs.
    remote_min_tx: u32,
    remote_mult: u8,
    remote_demand: bool,
    remote_cpi: bool,
    /// Values we advertise (µs).
    adv_tx: u32,
    adv_rx: u32,
    /// Values in effect while a Poll Sequence runs (µs).
    eff_tx: u32,
    eff_rx: u32,
    polling: bool,
    next_tx: Option<Instant>,
    detect_at: Option<Instant>,
    damp: Damper,
    /// A failure took the session out of Up and it has not been Up since.
    blocking: bool,
    failures: u64,
    discarded: u64,
    rng: u64,
}

/// Microseconds of a duration, saturated to the 32-bit wire field.
pub fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn us(v: u32) -> Duration {
    Duration::from_micros(u64::from(v))
}

impl Fsm {
    /// A session in Down with `local_discr` (non-zero, unique per peer).
    /// Its first packet goes out at the first [`Event::Tick`].
    pub fn new(params: Params, local_discr: u32, seed: u64, now: Instant) -> Fsm {
        let slow = micros(params.min_tx.max(SLOW_TX));
        let rx = micros(params.min_rx);
        Fsm {
            params,
            local_discr: local_discr.max(1),
            state: State::Down,
            local_diag: Diag::None,
            remote_state: State::Down,
            remote_diag: Diag::None,
            remote_discr: 0,
            remote_min_rx: 1,
            remote_min_tx: 0,
            remote_mult: 0,
            remote_demand: false,
            remote_cpi: false,
            adv_tx: slow,
            adv_rx: rx,
            eff_tx: slow,
            eff_rx: rx,
            polling: false,
            next_tx: Some(now),
            detect_at: None,
            damp: Damper::default(),
            blocking: false,
            failures: 0,
            discarded: 0,
            rng: seed | 1,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> Params {
        self.params
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// True while the client (the BGP session) must stay down: a failure
    /// took the session out of Up and it has not been Up again. Cleared by
    /// Up, by the peer's AdminDown (it stopped BFD on purpose, RFC 5882
    /// §3.2) and by our own AdminDown.
    pub fn blocks_client(&self) -> bool {
        self.blocking
    }

    /// Failures (Up → Down because of the path) since the session was made.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// A snapshot for status reporting.
    pub fn status(&self, now: Instant) -> Status {
        Status {
            state: self.state,
            remote_state: self.remote_state,
            local_diag: self.local_diag,
            remote_diag: self.remote_diag,
            local_discr: self.local_discr,
            remote_discr: self.remote_discr,
            blocks_client: self.blocking,
            failures: self.failures,
            flaps: self.damp.flaps(),
            held_for: self
                .damp
                .hold_until()
                .map(|t| t.saturating_duration_since(now))
                .filter(|d| !d.is_zero()),
            tx_interval: self.tx_interval(),
            detection_time: self.detection_time(),
            remote_cpi: self.remote_cpi,
            discarded: self.discarded,
        }
    }

    /// The earliest armed timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.next_tx, self.detect_at].into_iter().flatten().min()
    }

    /// The interval between periodic packets before jitter, or `None` when
    /// we must not send periodically (the peer asked for nothing, or its
    /// Demand mode is active).
    pub fn tx_interval(&self) -> Option<Duration> {
        let demand_active =
            self.remote_demand && self.state == State::Up && self.remote_state == State::Up;
        if self.remote_min_rx == 0 || demand_active {
            return None;
        }
        Some(us(self.eff_tx.max(self.remote_min_rx)))
    }

    /// The detection time, once a packet from the peer arrived.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote_mult > 0).then(|| {
            us(self.eff_rx.max(self.remote_min_tx)).saturating_mul(u32::from(self.remote_mult))
        })
    }

    /// Feeds one event at time `now`; returns the actions to perform.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Received(c) => {
                if let Err(d) = self.receive(c, now, &mut out) {
                    self.discarded += 1;
                    tracing::trace!(?d, "BFD packet discarded");
                }
            }
            Event::Tick => self.tick(now, &mut out),
            Event::AdminDown => {
                if self.state != State::AdminDown {
                    if self.state == State::Up {
                        self.damp.on_down_admin();
                    }
                    self.blocking = false;
                    self.detect_at = None;
                    self.change(State::AdminDown, Diag::AdministrativelyDown, now, &mut out);
                }
            }
            Event::AdminUp => {
                if self.state == State::AdminDown {
                    self.change(State::Down, Diag::None, now, &mut out);
                }
            }
            Event::SetParams(p) => self.set_params(p, now, &mut out),
        }
        out
    }

    fn receive(&mut self, c: Control, now: Instant, out: &mut Vec<Action>) -> Result<(), Discard> {
        if c.your_discr != 0 && c.your_discr != self.local_discr {
            return Err(Discard::WrongDiscriminator);
        }
        if c.your_discr == 0 && !matches!(c.state, State::Down | State::AdminDown) {
            return Err(Discard::ZeroYourDiscriminator);
        }
        self.remote_discr = c.my_discr;
        self.remote_state = c.state;
        self.remote_diag = c.diag;
        self.remote_demand = c.demand;
        self.remote_cpi = c.cpi;
        self.remote_min_rx = c.required_min_rx_us;
        self.remote_min_tx = c.desired_min_tx_us;
        self.remote_mult = c.detect_mult;
        if c.final_ && self.polling {
            self.polling = false;
            self.eff_tx = self.adv_tx;
            self.eff_rx = self.adv_rx;
        }
        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        if c.state == State::AdminDown {
            if self.state != State::Down {
                if self.state == State::Up {
                    self.damp.on_down_admin();
                }
                self.change(State::Down, Diag::NeighborSignaledSessionDown, now, out);
            }
            // The peer stopped BFD on purpose: the path is not known to be
            // broken, so the client is not held down.
            self.blocking = false;
        } else {
            match (self.state, c.state) {
                (State::Down, State::Down) if !self.damp.held(now) => {
                    self.change(State::Init, Diag::None, now, out)
                }
                (State::Down, State::Init) if !self.damp.held(now) => {
                    self.change(State::Up, Diag::None, now, out)
                }
                (State::Init, State::Init | State::Up) => {
                    self.change(State::Up, Diag::None, now, out)
                }
                (State::Up, State::Down) => self.fail(Diag::NeighborSignaledSessionDown, now, out),
                _ => {}
            }
        }
        if c.poll {
            // §6.8.7: answer a Poll at once, with Final and without Poll.
            out.push(Action::Send(self.packet(false, true)));
        }
        self.detect_at = self.detection_time().map(|d| now + d);
        self.reschedule_tx(now);
        Ok(())
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.detect_at.is_some_and(|t| t <= now) {
            self.detect_at = None;
            match self.state {
                State::Up => self.fail(Diag::ControlDetectionTimeExpired, now, out),
                State::Init => {
                    self.change(State::Down, Diag::ControlDetectionTimeExpired, now, out)
                }
                State::Down | State::AdminDown => {}
            }
            // §6.8.1 / §6.8.18: nothing heard for a Detection Time: forget
            // the peer's session.
            self.remote_discr = 0;
            self.remote_state = State::Down;
            self.remote_min_rx = 1;
            self.remote_demand = false;
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            self.next_tx = None;
            if self.tx_interval().is_some() {
                out.push(Action::Send(self.packet(self.polling, false)));
            }
            self.schedule_tx(now);
        }
    }

    /// Up → Down because of the path.
    fn fail(&mut self, diag: Diag, now: Instant, out: &mut Vec<Action>) {
        self.failures += 1;
        self.blocking = true;
        self.damp.on_failure(now);
        self.change(State::Down, diag, now, out);
    }

    fn change(&mut self, to: State, diag: Diag, now: Instant, out: &mut Vec<Action>) {
        let from = self.state;
        self.state = to;
        self.local_diag = diag;
        if to == State::Up {
            self.blocking = false;
            self.damp.on_up(now);
            // Leave slow start: a faster Desired Min TX applies at once,
            // the Poll tells the peer (§6.8.3).
            let fast = micros(self.params.min_tx);
            if fast != self.adv_tx {
                self.adv_tx = fast;
                self.eff_tx = self.eff_tx.min(fast);
                self.polling = true;
            }
        } else {
            self.polling = false;
            self.adv_tx = micros(self.params.min_tx.max(SLOW_TX));
            self.eff_tx = self.adv_tx;
            self.eff_rx = self.adv_rx;
        }
        out.push(Action::StateChanged { from, to, diag });
        // Tell the peer now rather than at the next periodic packet.
        out.push(Action::Send(self.packet(self.polling, false)));
        self.schedule_tx(now);
    }

    fn set_params(&mut self, p: Params, now: Instant, out: &mut Vec<Action>) {
        self.params = p;
        let rx = micros(p.min_rx);
        let tx = if self.state == State::Up {
            micros(p.min_tx)
        } else {
            micros(p.min_tx.max(SLOW_TX))
        };
        if tx == self.adv_tx && rx == self.adv_rx {
            return;
        }
        if self.state == State::Up {
            // §6.8.3: a slower TX and a faster RX wait for the Final.
            self.eff_tx = if tx > self.eff_tx { self.eff_tx } else { tx };
            self.eff_rx = if rx < self.eff_rx { self.eff_rx } else { rx };
            self.adv_tx = tx;
            self.adv_rx = rx;
            self.polling = true;
            out.push(Action::Send(self.packet(true, false)));
            self.schedule_tx(now);
        } else {
            self.adv_tx = tx;
            self.adv_rx = rx;
            self.eff_tx = tx;
            self.eff_rx = rx;
            self.reschedule_tx(now);
        }
        self.detect_at = self
            .detect_at
            .and_then(|_| self.detection_time().map(|d| now + d));
    }

    fn packet(&self, poll: bool, final_: bool) -> Control {
        Control {
            diag: self.local_diag,
            state: self.state,
            poll,
            final_,
            // Our BFD shares fate with our control plane (same process).
            cpi: false,
            demand: false,
            detect_mult: self.params.multiplier.max(1),
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx_us: self.adv_tx,
            required_min_rx_us: self.adv_rx,
            required_min_echo_rx_us: 0,
        }
    }

    /// The next periodic packet, one jittered interval from `now` (§6.8.7:
    /// 75–100% of the interval, 75–90% with a detect multiplier of 1).
    fn schedule_tx(&mut self, now: Instant) {
        let Some(base) = self.tx_interval() else {
            // Nothing periodic; look again after a slow interval in case
            // the peer's wishes change without a packet (they cannot, but
            // a deadline keeps the task from sleeping forever).
            self.next_tx = Some(now + SLOW_TX);
            return;
        };
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let span = if self.params.multiplier == 1 {
            150
        } else {
            250
        };
        let cut = (self.rng % (span + 1)) as f64 / 1000.0;
        let cut = if self.params.multiplier == 1 {
            cut + 0.10
        } else {
            cut
        };
        let d = base.mul_f64(1.0 - cut).max(Duration::from_micros(1));
        self.next_tx = Some(now + d);
    }

    /// After the interval changed: bring the next packet forward if it is
    /// now due earlier than planned.
    fn reschedule_tx(&mut self, now: Instant) {
        match (self.tx_interval(), self.next_tx) {
            (Some(i), Some(t)) if t > now + i => self.schedule_tx(now),
            (Some(_), None) => self.schedule_tx(now),
            _ => {}
        }
    }
}

/// A session's state at one instant, for status reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diag,
    pub remote_diag: Diag,
    pub local_discr: u32,
    pub remote_discr: u32,
    /// The BGP session to this peer is held down by BFD.
    pub blocks_client: bool,
    /// Failures since the session was made.
    pub failures: u64,
    /// Failures counted by the damping.
    pub flaps: u32,
    /// Remaining hold-down.
    pub held_for: Option<Duration>,
    /// Periodic transmit interval before jitter.
    pub tx_interval: Option<Duration>,
    pub detection_time: Option<Duration>,
    /// The peer's Control Plane Independent bit.
    pub remote_cpi: bool,
    /// Received packets dropped by the session checks.
    pub discarded: u64,
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;
