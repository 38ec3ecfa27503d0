//! Sans-IO RFC 4271 §8 session state machine for one peer and one TCP
//! connection.
//!
//! The FSM consumes [`Event`]s (operator start/stop, TCP outcomes, decoded
//! messages, the clock) and returns [`Action`]s to carry out (connect, send,
//! close, report). Timers are deadlines: the caller asks
//! [`Fsm::next_deadline`] and feeds `Event::Tick` with the current time. No
//! I/O, no clock reads, no randomness except a seeded jitter generator, so
//! every transition is unit-tested with scripted inputs, and a property test
//! and a fuzz target (`fuzz/`) feed it random event sequences and check its
//! invariants ([`invariants`], test and fuzz builds only):
//!
//! - never Established without an OPEN sent and a valid OPEN and a
//!   KEEPALIVE received on the current connection;
//! - whenever a session is negotiated (OpenConfirm, Established) with a
//!   non-zero hold time, the hold and keepalive timers are armed, and the
//!   keepalive interval is shorter than the hold time; with hold time 0
//!   neither is;
//! - every NOTIFICATION sent is followed by closing the connection, and the
//!   FSM is then Idle;
//! - no timer is left expired after an event, and a stopped FSM has none.
//!
//! It must not know about routes or about more than one connection:
//! `Action::Established` hands the negotiated session to the caller (the
//! peer driver, [`super::peer`]), which owns the Adj-RIB-Out and resolves
//! connection collisions before feeding a connection here.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::time::Instant;

use super::codec::{err, Family, LocalOpen, Notification, PeerOpen, Received};

/// RFC 4271 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Idle => "idle",
            State::Connect => "connect",
            State::Active => "active",
            State::OpenSent => "open_sent",
            State::OpenConfirm => "open_confirm",
            State::Established => "established",
        })
    }
}

/// Hold time used between sending OPEN and receiving the peer's (RFC 4271
/// suggests 4 minutes).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);
/// Upper bound of the reconnect backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Lower bound of the reconnect backoff.
pub const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// Static parameters of the session.
#[derive(Debug, Clone)]
pub struct FsmConfig {
    pub local_asn: u32,
    pub remote_asn: u32,
    pub router_id: Ipv4Addr,
    /// Our proposed hold time in seconds (0 or >= 3).
    pub hold_time: u16,
    /// The shortest hold time we accept from the peer, in seconds; 0
    /// accepts 0 (no keepalives) too.
    pub min_hold_time: u16,
    /// Base connect-retry time; the backoff grows from it.
    pub connect_retry: Duration,
    /// Never connect; wait for the peer.
    pub passive: bool,
    /// Families we offer.
    pub families: Vec<Family>,
    /// Graceful restart time to advertise.
    pub graceful_restart: Option<u16>,
    /// Seed of the jitter generator.
    pub seed: u64,
}

/// What was agreed in the OPEN exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub peer_id: Ipv4Addr,
    pub peer_asn: u32,
    pub hold_time: u16,
    pub keepalive: Duration,
    pub asn4: bool,
    /// Families both sides offered.
    pub families: Vec<Family>,
    pub route_refresh: bool,
    /// The peer supports graceful restart (as helper).
    pub peer_graceful_restart: bool,
    /// Both sides set the RFC 8538 N bit (we do whenever we advertise
    /// graceful restart): a NOTIFICATION other than Hard Reset keeps the
    /// routes stale.
    pub graceful_notification: bool,
}

/// Inputs to the FSM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Operator/automatic start.
    Start,
    /// Operator stop: send this NOTIFICATION (if a session exists; `None`:
    /// close without one) and stay idle until the next `Start`.
    Stop(Option<Notification>),
    /// A TCP connection (outgoing or accepted) is ready. Fed only in Idle,
    /// Connect and Active: a second connection while one is in use is the
    /// caller's collision business ([`super::collision`]), and is ignored
    /// here.
    TcpConnected,
    /// An outgoing connection attempt failed.
    TcpFailed,
    /// The connection closed (EOF or error).
    TcpClosed,
    Message(Received),
    /// The peer sent something we reject (header/length/structure errors).
    DecodeError(Notification),
    /// Time passed; expired deadlines fire.
    Tick,
    /// BFD to the peer failed: drop the session (Cease / BFD Down, as Hard
    /// Reset with the N bit) and stay down — no dialing, connections
    /// refused — until [`Event::BfdUp`].
    BfdDown,
    /// BFD no longer holds the session down: start at once if running.
    BfdUp,
}

/// Outputs of the FSM, executed in order by the socket task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    SendOpen(LocalOpen),
    SendKeepalive,
    SendNotification(Notification),
    /// Close the TCP connection (after flushing what was sent).
    Close,
    /// The session is up: send the Adj-RIB-Out.
    Established(Negotiated),
    /// The session went down (from Established or earlier) for this reason.
    Down(String),
    /// The peer asked for our routes again.
    RouteRefresh(Family),
    /// A received UPDATE, counted.
    UpdateReceived {
        announced: u32,
        withdrawn: u32,
    },
}

/// The FSM's armed timers (deadlines), for observation and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub connect_retry: Option<Instant>,
    pub hold: Option<Instant>,
    pub keepalive: Option<Instant>,
}

/// The session state machine.
#[derive(Debug)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    /// Automatic restart is allowed (cleared by `Stop`).
    running: bool,
    connect_retry_at: Option<Instant>,
    hold_at: Option<Instant>,
    keepalive_at: Option<Instant>,
    negotiated: Option<Negotiated>,
    /// Consecutive failed attempts, for the backoff.
    failures: u32,
    /// Whether the Restart State bit is still to be set (first OPEN after
    /// process start).
    restarted: bool,
    /// BFD holds the session down.
    bfd_down: bool,
    rng: u64,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        let rng = cfg.seed | 1;
        Fsm {
            cfg,
            state: State::Idle,
            running: false,
            connect_retry_at: None,
            hold_at: None,
            keepalive_at: None,
            negotiated: None,
            failures: 0,
            restarted: true,
            bfd_down: false,
            rng,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Whether automatic (re)start is on: `Start` was fed and no `Stop`
    /// since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Whether BFD holds the session down.
    pub fn bfd_down(&self) -> bool {
        self.bfd_down
    }

    /// The Cease for a BFD failure (RFC 9384 subcode 10), inside an RFC
    /// 8538 Hard Reset when both sides set the N bit: the router's
    /// graceful-restart helper must not keep the routes of a host BFD found
    /// dead.
    fn bfd_cease(&self) -> Notification {
        let bfd = Notification::new(err::CEASE, err::CEASE_BFD_DOWN, []);
        if self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.graceful_notification)
        {
            Notification::hard_reset(&bfd)
        } else {
            bfd
        }
    }

    /// The armed timers.
    pub fn timers(&self) -> Timers {
        Timers {
            connect_retry: self.connect_retry_at,
            hold: self.hold_at,
            keepalive: self.keepalive_at,
        }
    }

    /// The earliest armed timer, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.connect_retry_at, self.hold_at, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The delay before attempt number `failures + 1`: exponential from the
    /// connect-retry time, capped, minus up to 25% jitter.
    fn backoff(&mut self) -> Duration {
        let base = backoff_delay(self.cfg.connect_retry, self.failures, MAX_BACKOFF);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 4000.0;
        // Never zero, even for a zero connect-retry time: a timer due at
        // once would spin.
        base.mul_f64(1.0 - frac).max(MIN_BACKOFF)
    }

    fn local_open(&mut self) -> LocalOpen {
        LocalOpen {
            asn: self.cfg.local_asn,
            hold_time: self.cfg.hold_time,
            bgp_id: self.cfg.router_id,
            families: self.cfg.families.clone(),
            graceful_restart: self.cfg.graceful_restart,
            restarted: self.restarted,
        }
    }

    fn clear_timers(&mut self) {
        self.connect_retry_at = None;
        self.hold_at = None;
        self.keepalive_at = None;
    }

    /// Drop the connection after an error; retry after the backoff (the
    /// "Idle with automatic restart" of RFC 4271 §8.1.1, with damping).
    fn fail(&mut self, now: Instant, reason: String, out: &mut Vec<Action>) {
        out.push(Action::Close);
        self.clear_timers();
        self.negotiated = None;
        self.failures = self.failures.saturating_add(1);
        self.state = State::Idle;
        if self.running {
            let d = self.backoff();
            self.connect_retry_at = Some(now + d);
        }
        out.push(Action::Down(reason));
    }

    fn notify_and_fail(&mut self, now: Instant, n: Notification, out: &mut Vec<Action>) {
        let reason = format!("sent NOTIFICATION {n}");
        out.push(Action::SendNotification(n));
        self.fail(now, reason, out);
    }

    /// Feeds one event at time `now`; returns the actions to perform.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Start => {
                self.running = true;
                if self.state == State::Idle && !self.bfd_down {
                    self.start(now, &mut out);
                }
            }
            Event::BfdDown => {
                self.bfd_down = true;
                match self.state {
                    State::OpenSent | State::OpenConfirm | State::Established => {
                        out.push(Action::SendNotification(self.bfd_cease()));
                        out.push(Action::Close);
                        out.push(Action::Down("BFD down".into()));
                    }
                    State::Connect | State::Active => out.push(Action::Close),
                    State::Idle => {}
                }
                self.clear_timers();
                self.negotiated = None;
                self.state = State::Idle;
            }
            Event::BfdUp => {
                let was = std::mem::replace(&mut self.bfd_down, false);
                if was && self.running && self.state == State::Idle {
                    self.failures = 0;
                    self.start(now, &mut out);
                }
            }
            Event::TcpConnected if self.bfd_down => {
                // Held down by BFD: refuse, and say why.
                out.push(Action::SendNotification(Notification::new(
                    err::CEASE,
                    err::CEASE_BFD_DOWN,
                    [],
                )));
                out.push(Action::Close);
            }
            Event::Stop(n) => {
                self.running = false;
                match self.state {
                    State::OpenSent | State::OpenConfirm | State::Established => {
                        let reason = match n {
                            Some(n) => {
                                let reason = format!("stopped: {n}");
                                out.push(Action::SendNotification(n));
                                reason
                            }
                            None => "stopped: closed without NOTIFICATION".to_string(),
                        };
                        out.push(Action::Close);
                        out.push(Action::Down(reason));
                    }
                    State::Connect | State::Active => out.push(Action::Close),
                    State::Idle => {}
                }
                self.clear_timers();
                self.negotiated = None;
                self.state = State::Idle;
            }
            Event::TcpConnected => match self.state {
                State::Connect | State::Active => {
                    self.connect_retry_at = None;
                    let open = self.local_open();
                    out.push(Action::SendOpen(open));
                    self.hold_at = Some(now + LARGE_HOLD_TIME);
                    self.state = State::OpenSent;
                }
                State::Idle if self.running => {
                    // An incoming connection while waiting to retry: take it.
                    self.connect_retry_at = None;
                    let open = self.local_open();
                    out.push(Action::SendOpen(open));
                    self.hold_at = Some(now + LARGE_HOLD_TIME);
                    self.state = State::OpenSent;
                }
                // Stopped: refuse the connection (there is no session to
                // notify).
                State::Idle => out.push(Action::Close),
                // A second connection while one is in use: the caller
                // resolves collisions and never feeds it; ignore it.
                State::OpenSent | State::OpenConfirm | State::Established => {}
            },
            Event::TcpFailed => {
                if self.state == State::Connect {
                    // Wait for the connect-retry timer in Active.
                    self.failures = self.failures.saturating_add(1);
                    self.state = State::Active;
                }
            }
            Event::TcpClosed => match self.state {
                State::OpenSent | State::OpenConfirm | State::Established => {
                    self.fail(now, "connection closed by peer".into(), &mut out)
                }
                State::Connect => {
                    self.failures = self.failures.saturating_add(1);
                    self.state = State::Active;
                }
                State::Active | State::Idle => {}
            },
            Event::DecodeError(n) => match self.state {
                State::OpenSent | State::OpenConfirm | State::Established => {
                    self.notify_and_fail(now, n, &mut out)
                }
                _ => out.push(Action::Close),
            },
            Event::Message(m) => self.message(m, now, &mut out),
            Event::Tick => self.tick(now, &mut out),
        }
        out
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.clear_timers();
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            self.connect_retry_at = Some(now + self.cfg.connect_retry.max(Duration::from_secs(1)));
            out.push(Action::Connect);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.hold_at.is_some_and(|t| t <= now) {
            self.hold_at = None;
            if matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            ) {
                self.notify_and_fail(now, Notification::new(err::HOLD_TIMER, 0, []), out);
                return;
            }
        }
        if self.keepalive_at.is_some_and(|t| t <= now) {
            if let Some(n) = &self.negotiated {
                let ka = n.keepalive;
                if matches!(self.state, State::OpenConfirm | State::Established) {
                    out.push(Action::SendKeepalive);
                    self.keepalive_at = Some(now + ka);
                } else {
                    self.keepalive_at = None;
                }
            } else {
                self.keepalive_at = None;
            }
        }
        if self.connect_retry_at.is_some_and(|t| t <= now) {
            self.connect_retry_at = None;
            match self.state {
                State::Idle if self.running => self.start(now, out),
                State::Connect | State::Active if !self.cfg.passive => {
                    // Abandon a hanging attempt and dial again, backing off.
                    if self.state == State::Connect {
                        out.push(Action::Close);
                    }
                    self.state = State::Connect;
                    let d = self.backoff();
                    self.connect_retry_at = Some(now + d.max(Duration::from_secs(1)));
                    out.push(Action::Connect);
                }
                _ => {}
            }
        }
    }

    fn message(&mut self, m: Received, now: Instant, out: &mut Vec<Action>) {
        if let Received::Notification(n) = &m {
            if matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            ) {
                let reason = format!("received NOTIFICATION {n}");
                self.fail(now, reason, out);
            } else {
                out.push(Action::Close);
            }
            return;
        }
        match (self.state, m) {
            (State::OpenSent, Received::Open(o)) => match self.check_open(&o) {
                Err(n) => self.notify_and_fail(now, n, out),
                Ok(neg) => {
                    out.push(Action::SendKeepalive);
                    self.hold_at = (neg.hold_time > 0)
                        .then(|| now + Duration::from_secs(neg.hold_time as u64));
                    self.keepalive_at = (neg.hold_time > 0).then(|| now + neg.keepalive);
                    self.negotiated = Some(neg);
                    self.state = State::OpenConfirm;
                }
            },
            (State::OpenConfirm, Received::Keepalive) => {
                self.restart_hold(now);
                self.state = State::Established;
                self.failures = 0;
                self.restarted = false;
                if let Some(n) = &self.negotiated {
                    out.push(Action::Established(n.clone()));
                }
            }
            (State::Established, Received::Keepalive) => self.restart_hold(now),
            (State::Established, Received::Update(u)) => {
                self.restart_hold(now);
                out.push(Action::UpdateReceived {
                    announced: u.announced,
                    withdrawn: u.withdrawn,
                });
            }
            (State::Established, Received::RouteRefresh { afi, safi, subtype }) => {
                self.restart_hold(now);
                let negotiated = self
                    .negotiated
                    .as_ref()
                    .map(|n| n.families.clone())
                    .unwrap_or_default();
                match Family::from_afi_safi(afi, safi) {
                    // Subtypes 1/2 are BoRR/EoRR (RFC 7313) markers: ignore.
                    Some(f) if subtype == 0 && negotiated.contains(&f) => {
                        out.push(Action::RouteRefresh(f))
                    }
                    // RFC 2918: ignore refresh requests for families not negotiated.
                    _ => {}
                }
            }
            (State::OpenSent, _) => self.notify_and_fail(
                now,
                Notification::new(err::FSM, err::FSM_UNEXPECTED_IN_OPENSENT, []),
                out,
            ),
            (State::OpenConfirm, _) => self.notify_and_fail(
                now,
                Notification::new(err::FSM, err::FSM_UNEXPECTED_IN_OPENCONFIRM, []),
                out,
            ),
            (State::Established, _) => self.notify_and_fail(
                now,
                Notification::new(err::FSM, err::FSM_UNEXPECTED_IN_ESTABLISHED, []),
                out,
            ),
            // Messages without a session (Idle/Connect/Active): drop the
            // connection.
            (_, _) => out.push(Action::Close),
        }
    }

    fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = &self.negotiated {
            if n.hold_time > 0 {
                self.hold_at = Some(now + Duration::from_secs(n.hold_time as u64));
            }
        }
    }

    /// RFC 4271 §6.2 OPEN checks and capability negotiation.
    fn check_open(&self, o: &PeerOpen) -> Result<Negotiated, Notification> {
        if o.version != 4 {
            return Err(Notification::new(
                err::OPEN,
                err::UNSUPPORTED_VERSION,
                4u16.to_be_bytes(),
            ));
        }
        if o.asn() != self.cfg.remote_asn {
            return Err(Notification::new(
                err::OPEN,
                err::BAD_PEER_AS,
                o.my_as.to_be_bytes(),
            ));
        }
        if o.hold_time == 1 || o.hold_time == 2 || o.hold_time < self.cfg.min_hold_time {
            return Err(Notification::new(
                err::OPEN,
                err::UNACCEPTABLE_HOLD_TIME,
                o.hold_time.to_be_bytes(),
            ));
        }
        let ibgp = self.cfg.local_asn == self.cfg.remote_asn;
        if o.bgp_id.is_unspecified() || (ibgp && o.bgp_id == self.cfg.router_id) {
            return Err(Notification::new(
                err::OPEN,
                err::BAD_BGP_ID,
                o.bgp_id.octets(),
            ));
        }
        let hold_time = o.hold_time.min(self.cfg.hold_time);
        let families = self
            .cfg
            .families
            .iter()
            .copied()
            .filter(|f| o.families.contains(f))
            .collect();
        Ok(Negotiated {
            peer_id: o.bgp_id,
            peer_asn: o.asn(),
            hold_time,
            keepalive: Duration::from_secs((hold_time / 3) as u64).max(Duration::from_secs(1)),
            asn4: o.asn4.is_some(),
            families,
            route_refresh: o.route_refresh,
            peer_graceful_restart: o.graceful_restart.is_some(),
            graceful_notification: self.cfg.graceful_restart.is_some()
                && o.graceful_restart.as_ref().is_some_and(|g| g.notification),
        })
    }
}

/// Capped exponential backoff: `base * 2^failures`, at most `cap` (and at
/// least `base`).
pub fn backoff_delay(base: Duration, failures: u32, cap: Duration) -> Duration {
    let factor = 1u32 << failures.min(16);
    base.saturating_mul(factor).min(cap.max(base))
}

#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod invariants;

#[cfg(test)]
mod tests {
    use super::super::codec::{PeerGracefulRestart, UpdateSummary};
    use super::*;
    use proptest::prelude::*;

    const RID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn cfg(passive: bool) -> FsmConfig {
        FsmConfig {
            local_asn: 65001,
            remote_asn: 65000,
            router_id: RID,
            hold_time: 9,
            min_hold_time: 0,
            connect_retry: Duration::from_secs(2),
            passive,
            families: vec![Family::Ipv4, Family::Ipv6],
            graceful_restart: Some(120),
            seed: 7,
        }
    }

    fn peer_open(hold: u16) -> PeerOpen {
        crate::testutil::peer_open(PEER_ID, hold, &[Family::Ipv4], true)
    }

    fn msg(r: Received) -> Event {
        Event::Message(r)
    }

    fn has_notification(acts: &[Action], code: u8, sub: u8) -> bool {
        acts.iter()
            .any(|a| matches!(a, Action::SendNotification(n) if n.code == code && n.subcode == sub))
    }

    /// A fresh FSM with `c`, started and connected at `t`: in OpenSent
    /// (active side).
    fn open_sent(c: FsmConfig, t: Instant) -> Fsm {
        let mut f = Fsm::new(c);
        f.handle(Event::Start, t);
        f.handle(Event::TcpConnected, t);
        f
    }

    /// Drives a fresh active FSM to Established; returns it and the clock.
    fn established() -> (Fsm, Instant) {
        let t = Instant::now();
        let mut f = Fsm::new(cfg(false));
        assert_eq!(f.handle(Event::Start, t), vec![Action::Connect]);
        assert_eq!(f.state(), State::Connect);
        let a = f.handle(Event::TcpConnected, t);
        assert!(
            matches!(&a[..], [Action::SendOpen(o)] if o.restarted && o.graceful_restart == Some(120))
        );
        assert_eq!(f.state(), State::OpenSent);
        let a = f.handle(msg(Received::Open(peer_open(30))), t);
        assert_eq!(a, vec![Action::SendKeepalive]);
        assert_eq!(f.state(), State::OpenConfirm);
        let a = f.handle(msg(Received::Keepalive), t);
        let Some(Action::Established(n)) = a.first() else {
            panic!("{a:?}")
        };
        assert_eq!(n.hold_time, 9, "hold time is the minimum of both");
        assert_eq!(n.keepalive, Duration::from_secs(3));
        assert_eq!(n.families, vec![Family::Ipv4]);
        assert!(n.asn4 && n.route_refresh && n.peer_graceful_restart && n.graceful_notification);
        assert_eq!(f.state(), State::Established);
        (f, t)
    }

    #[test]
    fn idle_to_established_active_side() {
        established();
    }

    #[test]
    fn passive_waits_in_active_then_accepts() {
        let t = Instant::now();
        let mut f = Fsm::new(cfg(true));
        assert_eq!(f.handle(Event::Start, t), vec![]);
        assert_eq!(f.state(), State::Active);
        assert_eq!(f.next_deadline(), None, "passive never dials");
        let a = f.handle(Event::TcpConnected, t);
        assert!(matches!(&a[..], [Action::SendOpen(_)]));
        assert_eq!(f.state(), State::OpenSent);
    }

    #[test]
    fn connect_failure_goes_active_then_retries_with_backoff() {
        let t = Instant::now();
        let mut f = Fsm::new(cfg(false));
        f.handle(Event::Start, t);
        let first = f.next_deadline().unwrap();
        assert_eq!(first, t + Duration::from_secs(2));
        f.handle(Event::TcpFailed, t);
        assert_eq!(f.state(), State::Active);
        // Nothing before the deadline.
        assert_eq!(f.handle(Event::Tick, t + Duration::from_secs(1)), vec![]);
        let a = f.handle(Event::Tick, first);
        assert_eq!(a, vec![Action::Connect]);
        assert_eq!(f.state(), State::Connect);
        let second = f.next_deadline().unwrap() - first;
        // One failure: 2s * 2 = 4s, minus at most 25% jitter.
        assert!(
            second >= Duration::from_secs(3) && second <= Duration::from_secs(4),
            "{second:?}"
        );
        // A hanging connect is abandoned at the deadline and redialed.
        let a = f.handle(Event::Tick, first + second);
        assert_eq!(a, vec![Action::Close, Action::Connect]);
    }

    #[test]
    fn connection_closed_in_connect_goes_active() {
        let t = Instant::now();
        let mut f = Fsm::new(cfg(false));
        f.handle(Event::Start, t);
        f.handle(Event::TcpClosed, t);
        assert_eq!(f.state(), State::Active);
    }

    #[test]
    fn backoff_is_exponential_and_capped() {
        let b = Duration::from_secs(1);
        assert_eq!(backoff_delay(b, 0, MAX_BACKOFF), b);
        assert_eq!(backoff_delay(b, 3, MAX_BACKOFF), Duration::from_secs(8));
        assert_eq!(backoff_delay(b, 30, MAX_BACKOFF), MAX_BACKOFF);
        assert_eq!(
            backoff_delay(Duration::from_secs(120), 2, MAX_BACKOFF),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn open_errors_get_the_right_notification() {
        type Mutation = Box<dyn Fn(&mut PeerOpen)>;
        let cases: Vec<(Mutation, u8)> = vec![
            (Box::new(|o| o.version = 3), err::UNSUPPORTED_VERSION),
            (Box::new(|o| o.asn4 = Some(65999)), err::BAD_PEER_AS),
            (Box::new(|o| o.hold_time = 1), err::UNACCEPTABLE_HOLD_TIME),
            (Box::new(|o| o.hold_time = 2), err::UNACCEPTABLE_HOLD_TIME),
            (
                Box::new(|o| o.bgp_id = Ipv4Addr::UNSPECIFIED),
                err::BAD_BGP_ID,
            ),
        ];
        for (mutate, sub) in cases {
            let t = Instant::now();
            let mut f = open_sent(cfg(false), t);
            let mut o = peer_open(90);
            mutate(&mut o);
            let a = f.handle(msg(Received::Open(o)), t);
            assert!(has_notification(&a, err::OPEN, sub), "{a:?}");
            assert!(a.contains(&Action::Close));
            assert_eq!(f.state(), State::Idle);
            // Automatic restart after the backoff.
            let d = f.next_deadline().unwrap();
            assert_eq!(f.handle(Event::Tick, d), vec![Action::Connect]);
        }
    }

    #[test]
    fn hold_time_below_the_minimum_is_unacceptable() {
        // min_hold_time 9: 0 (no keepalives) and 3..8 are refused with 2/6
        // and the offered hold time as data; 9 and more are accepted.
        let mut c = cfg(false);
        c.min_hold_time = 9;
        for (hold, ok) in [(0u16, false), (3, false), (8, false), (9, true), (90, true)] {
            let t = Instant::now();
            let mut f = open_sent(c.clone(), t);
            let a = f.handle(msg(Received::Open(peer_open(hold))), t);
            if ok {
                assert_eq!(f.state(), State::OpenConfirm, "hold {hold}: {a:?}");
            } else {
                assert!(
                    a.contains(&Action::SendNotification(Notification::new(
                        err::OPEN,
                        err::UNACCEPTABLE_HOLD_TIME,
                        hold.to_be_bytes()
                    ))),
                    "hold {hold}: {a:?}"
                );
                assert_eq!(f.state(), State::Idle);
            }
        }
    }

    #[test]
    fn hold_time_zero_disables_timers() {
        let t = Instant::now();
        let mut f = open_sent(cfg(false), t);
        f.handle(msg(Received::Open(peer_open(0))), t);
        f.handle(msg(Received::Keepalive), t);
        assert_eq!(f.state(), State::Established);
        assert_eq!(f.next_deadline(), None);
    }

    #[test]
    fn ibgp_same_router_id_is_bad_bgp_id() {
        let t = Instant::now();
        let mut c = cfg(false);
        c.remote_asn = 65001;
        let mut f = open_sent(c, t);
        let mut o = peer_open(9);
        o.asn4 = Some(65001);
        o.bgp_id = RID;
        let a = f.handle(msg(Received::Open(o)), t);
        assert!(has_notification(&a, err::OPEN, err::BAD_BGP_ID));
    }

    #[test]
    fn unexpected_messages_per_state() {
        let t = Instant::now();
        // OpenSent: a KEEPALIVE before OPEN.
        let mut f = open_sent(cfg(false), t);
        let a = f.handle(msg(Received::Keepalive), t);
        assert!(has_notification(
            &a,
            err::FSM,
            err::FSM_UNEXPECTED_IN_OPENSENT
        ));
        assert_eq!(f.state(), State::Idle);
        // OpenConfirm: an UPDATE.
        let mut f = open_sent(cfg(false), t);
        f.handle(msg(Received::Open(peer_open(9))), t);
        let a = f.handle(msg(Received::Update(UpdateSummary::default())), t);
        assert!(has_notification(
            &a,
            err::FSM,
            err::FSM_UNEXPECTED_IN_OPENCONFIRM
        ));
        // Established: a second OPEN.
        let (mut f, t) = established();
        let a = f.handle(msg(Received::Open(peer_open(9))), t);
        assert!(has_notification(
            &a,
            err::FSM,
            err::FSM_UNEXPECTED_IN_ESTABLISHED
        ));
        assert!(a.iter().any(|x| matches!(x, Action::Down(_))));
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn keepalives_and_hold_timer() {
        let (mut f, t) = established();
        // Keepalive timer fires every hold/3.
        let a = f.handle(Event::Tick, t + Duration::from_secs(3));
        assert_eq!(a, vec![Action::SendKeepalive]);
        // A received KEEPALIVE pushes the hold timer out.
        f.handle(msg(Received::Keepalive), t + Duration::from_secs(5));
        let a = f.handle(Event::Tick, t + Duration::from_secs(10));
        assert!(!has_notification(&a, err::HOLD_TIMER, 0));
        assert_eq!(f.state(), State::Established);
        // Silence for the hold time: NOTIFICATION 4/0 and down.
        let a = f.handle(Event::Tick, t + Duration::from_secs(14));
        assert!(has_notification(&a, err::HOLD_TIMER, 0), "{a:?}");
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn hold_timer_in_opensent_and_openconfirm() {
        let t = Instant::now();
        let mut f = open_sent(cfg(false), t);
        let a = f.handle(Event::Tick, t + LARGE_HOLD_TIME);
        assert!(has_notification(&a, err::HOLD_TIMER, 0));
        assert_eq!(f.state(), State::Idle);

        let mut f = open_sent(cfg(false), t);
        f.handle(msg(Received::Open(peer_open(9))), t);
        assert_eq!(
            f.handle(Event::Tick, t + Duration::from_secs(3)),
            vec![Action::SendKeepalive]
        );
        let a = f.handle(Event::Tick, t + Duration::from_secs(9));
        assert!(has_notification(&a, err::HOLD_TIMER, 0));
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn notification_and_close_in_every_connected_state() {
        let t = Instant::now();
        for steps in 0..3 {
            for closing in [
                Event::TcpClosed,
                msg(Received::Notification(Notification::new(6, 2, []))),
            ] {
                let mut f = open_sent(cfg(false), t);
                if steps >= 1 {
                    f.handle(msg(Received::Open(peer_open(9))), t);
                }
                if steps >= 2 {
                    f.handle(msg(Received::Keepalive), t);
                }
                let a = f.handle(closing, t);
                assert!(a.contains(&Action::Close));
                assert!(a.iter().any(|x| matches!(x, Action::Down(_))));
                assert!(
                    !a.iter().any(|x| matches!(x, Action::SendNotification(_))),
                    "never answer a NOTIFICATION"
                );
                assert_eq!(f.state(), State::Idle);
                assert!(f.next_deadline().is_some(), "automatic restart is armed");
            }
        }
    }

    #[test]
    fn decode_error_sends_notification() {
        let (mut f, t) = established();
        let a = f.handle(Event::DecodeError(Notification::new(1, 1, [])), t);
        assert!(has_notification(&a, 1, 1));
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn stop_sends_cease_and_stays_idle() {
        let (mut f, t) = established();
        let cease = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, "bye");
        let a = f.handle(Event::Stop(Some(cease.clone())), t);
        assert_eq!(a[0], Action::SendNotification(cease));
        assert_eq!(a[1], Action::Close);
        assert_eq!(f.state(), State::Idle);
        assert_eq!(f.next_deadline(), None, "no automatic restart after stop");
        assert!(!f.is_running());
        // Start again works.
        assert_eq!(f.handle(Event::Start, t), vec![Action::Connect]);
    }

    #[test]
    fn stop_without_notification_just_closes() {
        let (mut f, t) = established();
        let a = f.handle(Event::Stop(None), t);
        assert!(matches!(&a[..], [Action::Close, Action::Down(_)]), "{a:?}");
        assert_eq!((f.state(), f.next_deadline()), (State::Idle, None));
    }

    #[test]
    fn updates_and_route_refresh_in_established() {
        let (mut f, t) = established();
        let a = f.handle(
            msg(Received::Update(UpdateSummary {
                announced: 5,
                withdrawn: 2,
                ..Default::default()
            })),
            t,
        );
        assert_eq!(
            a,
            vec![Action::UpdateReceived {
                announced: 5,
                withdrawn: 2
            }]
        );
        let a = f.handle(
            msg(Received::RouteRefresh {
                afi: 1,
                safi: 1,
                subtype: 0,
            }),
            t,
        );
        assert_eq!(a, vec![Action::RouteRefresh(Family::Ipv4)]);
        // IPv6 was not negotiated with this peer: ignored.
        assert_eq!(
            f.handle(
                msg(Received::RouteRefresh {
                    afi: 2,
                    safi: 1,
                    subtype: 0
                }),
                t
            ),
            vec![]
        );
    }

    #[test]
    fn restart_bit_only_on_first_session() {
        let (mut f, t) = established();
        f.handle(Event::TcpClosed, t);
        let d = f.next_deadline().unwrap();
        f.handle(Event::Tick, d);
        let a = f.handle(Event::TcpConnected, d);
        assert!(matches!(&a[..], [Action::SendOpen(o)] if !o.restarted));
    }

    #[test]
    fn incoming_connection_while_idle_waiting() {
        let (mut f, t) = established();
        f.handle(Event::TcpClosed, t);
        assert_eq!(f.state(), State::Idle);
        let a = f.handle(Event::TcpConnected, t);
        assert!(matches!(&a[..], [Action::SendOpen(_)]));
        assert_eq!(f.state(), State::OpenSent);
    }

    #[test]
    fn stop_from_connect_and_active() {
        let t = Instant::now();
        let cease = Notification::new(err::CEASE, err::CEASE_PEER_DECONFIGURED, []);
        // Connect: the pending dial is abandoned, no NOTIFICATION (no session).
        let mut f = Fsm::new(cfg(false));
        f.handle(Event::Start, t);
        assert_eq!(
            f.handle(Event::Stop(Some(cease.clone())), t),
            vec![Action::Close]
        );
        assert_eq!((f.state(), f.next_deadline()), (State::Idle, None));
        // Active (passive peer waiting).
        let mut f = Fsm::new(cfg(true));
        f.handle(Event::Start, t);
        assert_eq!(f.handle(Event::Stop(Some(cease)), t), vec![Action::Close]);
        assert_eq!(f.state(), State::Idle);
        // Stopped: an incoming connection is refused.
        assert_eq!(f.handle(Event::TcpConnected, t), vec![Action::Close]);
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn bfd_down_drops_the_session_with_a_hard_reset_and_holds_it_down() {
        let (mut f, t) = established();
        let a = f.handle(Event::BfdDown, t);
        // Both sides set the N bit: Cease / BFD down inside a Hard Reset.
        let bfd = Notification::new(err::CEASE, err::CEASE_BFD_DOWN, []);
        assert_eq!(
            a,
            vec![
                Action::SendNotification(Notification::hard_reset(&bfd)),
                Action::Close,
                Action::Down("BFD down".into()),
            ]
        );
        assert_eq!((f.state(), f.next_deadline()), (State::Idle, None));
        assert!(f.bfd_down() && f.is_running());
        // No dialing, no accepting, however long.
        assert_eq!(f.handle(Event::Tick, t + MAX_BACKOFF * 10), vec![]);
        assert_eq!(f.handle(Event::Start, t), vec![]);
        let a = f.handle(Event::TcpConnected, t);
        assert_eq!(a, vec![Action::SendNotification(bfd), Action::Close]);
        assert_eq!(f.state(), State::Idle);
        // BFD back: dial at once.
        assert_eq!(f.handle(Event::BfdUp, t), vec![Action::Connect]);
        assert_eq!(f.state(), State::Connect);
        assert_eq!(f.handle(Event::BfdUp, t), vec![], "BfdUp twice is harmless");
    }

    #[test]
    fn bfd_down_without_n_bit_and_without_a_session() {
        let t = Instant::now();
        let mut f = open_sent(cfg(false), t);
        let mut o = peer_open(9);
        o.graceful_restart = None;
        f.handle(msg(Received::Open(o)), t);
        let a = f.handle(Event::BfdDown, t);
        assert_eq!(
            a[0],
            Action::SendNotification(Notification::new(err::CEASE, err::CEASE_BFD_DOWN, []))
        );
        // Connect: the dial is abandoned; a stopped FSM stays stopped on BfdUp.
        let mut f = Fsm::new(cfg(false));
        f.handle(Event::Start, t);
        assert_eq!(f.handle(Event::BfdDown, t), vec![Action::Close]);
        assert_eq!(f.next_deadline(), None);
        f.handle(Event::Stop(None), t);
        assert_eq!(f.handle(Event::BfdUp, t), vec![]);
        assert_eq!(f.state(), State::Idle);
    }

    #[test]
    fn second_connection_while_connected_is_ignored() {
        let t = Instant::now();
        let mut f = open_sent(cfg(false), t);
        assert_eq!(f.handle(Event::TcpConnected, t), vec![]);
        assert_eq!(f.state(), State::OpenSent, "the first connection is kept");
        let (mut f, t) = established();
        assert_eq!(f.handle(Event::TcpConnected, t), vec![]);
        assert_eq!(f.state(), State::Established);
    }

    #[test]
    fn messages_without_a_session_close_the_connection() {
        let t = Instant::now();
        let mut f = Fsm::new(cfg(true));
        f.handle(Event::Start, t);
        assert_eq!(f.handle(msg(Received::Keepalive), t), vec![Action::Close]);
        assert_eq!(
            f.handle(Event::DecodeError(Notification::new(1, 1, [])), t),
            vec![Action::Close]
        );
        assert_eq!(f.state(), State::Active);
    }

    /// Inputs of the property test: events plus the passing of time.
    #[derive(Debug, Clone)]
    enum Step {
        Event(Event),
        /// A connection, a valid OPEN with this hold time and a KEEPALIVE:
        /// random order alone rarely gets a session up.
        Handshake(u16),
        /// Time passes by this much, then `Event::Tick`.
        Wait(Duration),
    }

    fn arb_notification() -> impl Strategy<Value = Notification> {
        (
            1u8..=7,
            0u8..=10,
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(c, s, d)| Notification::new(c, s, d))
    }

    fn arb_open() -> impl Strategy<Value = PeerOpen> {
        let ids = prop_oneof![
            Just(PEER_ID),
            Just(RID),
            Just(Ipv4Addr::UNSPECIFIED),
            Just(Ipv4Addr::new(203, 0, 113, 9)),
        ];
        let families = proptest::sample::subsequence(vec![Family::Ipv4, Family::Ipv6], 0..=2);
        (
            prop_oneof![9 => Just(4u8), 1 => Just(3u8)],
            prop_oneof![8 => Just(65000u32), 1 => Just(65001), 1 => Just(64999)],
            prop_oneof![
                Just(0u16),
                Just(1),
                Just(2),
                Just(3),
                Just(9),
                Just(90),
                Just(u16::MAX)
            ],
            ids,
            families,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(version, asn, hold_time, bgp_id, families, gr, n_bit)| PeerOpen {
                    version,
                    my_as: u16::try_from(asn).unwrap_or(23456),
                    asn4: Some(asn),
                    hold_time,
                    bgp_id,
                    mp_sent: true,
                    families,
                    route_refresh: true,
                    graceful_restart: gr.then_some(PeerGracefulRestart {
                        restart_time: 120,
                        restarted: false,
                        notification: n_bit,
                        families: vec![],
                    }),
                },
            )
    }

    fn arb_step() -> impl Strategy<Value = Step> {
        let msg = prop_oneof![
            4 => arb_open().prop_map(Received::Open),
            4 => Just(Received::Keepalive),
            2 => (0u32..3, 0u32..3).prop_map(|(a, w)| Received::Update(UpdateSummary {
                announced: a,
                withdrawn: w,
                ..Default::default()
            })),
            1 => arb_notification().prop_map(Received::Notification),
            1 => (1u16..=3, 1u8..=2, 0u8..=2)
                .prop_map(|(afi, safi, subtype)| Received::RouteRefresh { afi, safi, subtype }),
        ];
        prop_oneof![
            2 => Just(Step::Event(Event::Start)),
            1 => proptest::option::of(arb_notification()).prop_map(|n| Step::Event(Event::Stop(n))),
            4 => Just(Step::Event(Event::TcpConnected)),
            1 => Just(Step::Event(Event::TcpFailed)),
            2 => Just(Step::Event(Event::TcpClosed)),
            12 => msg.prop_map(|m| Step::Event(Event::Message(m))),
            1 => arb_notification().prop_map(|n| Step::Event(Event::DecodeError(n))),
            1 => Just(Step::Event(Event::BfdDown)),
            1 => Just(Step::Event(Event::BfdUp)),
            3 => prop_oneof![Just(0u16), Just(3), Just(9), Just(90)].prop_map(Step::Handshake),
            6 => prop_oneof![
                (0u64..4_000).prop_map(Duration::from_millis),
                (0u64..300).prop_map(Duration::from_secs),
            ]
            .prop_map(Step::Wait),
        ]
    }

    fn arb_config() -> impl Strategy<Value = FsmConfig> {
        (
            any::<bool>(),
            prop_oneof![Just(0u16), Just(3), Just(9), Just(90), Just(u16::MAX)],
            prop_oneof![
                Just(Duration::ZERO),
                Just(Duration::from_millis(100)),
                Just(Duration::from_secs(1)),
                Just(Duration::from_secs(120)),
            ],
            proptest::option::of(Just(120u16)),
            any::<u64>(),
            any::<bool>(),
        )
            .prop_map(|(passive, hold_time, connect_retry, gr, seed, ibgp)| {
                let mut c = cfg(passive);
                c.hold_time = hold_time;
                c.connect_retry = connect_retry;
                c.graceful_restart = gr;
                c.seed = seed;
                if ibgp {
                    c.local_asn = c.remote_asn;
                }
                c
            })
    }

    /// Runs one random sequence; returns how many steps ended Established.
    fn run_sequence(c: FsmConfig, steps: Vec<Step>) -> Result<u32, TestCaseError> {
        let mut f = Fsm::new(c);
        let mut now = Instant::now();
        let mut checker = invariants::Checker::new();
        let mut established_steps = 0u32;
        for step in steps {
            let events = match step {
                Step::Event(ev) => vec![ev],
                Step::Handshake(hold) => vec![
                    Event::TcpConnected,
                    msg(Received::Open(peer_open(hold))),
                    msg(Received::Keepalive),
                ],
                Step::Wait(d) => {
                    now += d;
                    vec![Event::Tick]
                }
            };
            for ev in events {
                checker
                    .handle(&mut f, ev, now)
                    .map_err(TestCaseError::fail)?;
                established_steps += u32::from(f.state() == State::Established);
            }
        }
        Ok(established_steps)
    }

    /// Random event sequences never panic the FSM and keep its invariants
    /// (see the module header); a good share of them get a session up, so
    /// the invariants of Established are exercised too.
    #[test]
    fn random_event_sequences_keep_the_invariants() {
        const CASES: u32 = 500;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: CASES,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let reached = std::cell::Cell::new(0u32);
        let strategy = (arb_config(), proptest::collection::vec(arb_step(), 1..120));
        let result = runner.run(&strategy, |(c, steps)| {
            if run_sequence(c, steps)? > 0 {
                reached.set(reached.get() + 1);
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
        assert!(
            reached.get() >= CASES / 5,
            "only {} of {CASES} sequences reached Established",
            reached.get()
        );
    }
}
