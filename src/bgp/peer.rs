//! The sans-IO protocol side of one BGP peer: everything the peer's socket
//! task must decide, as a state machine over connection *identities*.
//!
//! [`Peer`] wraps the session [`Fsm`] (one connection) and adds what sits
//! between it and the sockets:
//!
//! - connection collisions ([`super::collision`]): a second connection is
//!   adopted, held until its OPEN, or rejected before the FSM sees it;
//! - the per-family filtering of what we announce ([`announce_families`]:
//!   a negotiated family without a next hop is not announced);
//! - the Adj-RIB-Out: the initial sync when the session comes up, the diff
//!   on every change of the desired routes, ROUTE-REFRESH, all encoded into
//!   UPDATE bytes here;
//! - the End-of-RIB hold ([`super::eor`]);
//! - the stop and shutdown choreography ([`super::shutdown`]): withdrawals,
//!   the NOTIFICATION, then reading until the peer closes (half-closed at
//!   once only when no NOTIFICATION was sent), bounded by a deadline;
//! - BFD ([`Input::Bfd`]): a failure of the peer's BFD session drops the
//!   session, which stays down while BFD holds it down.
//!
//! The socket task feeds [`Input`]s (a dial succeeded, a message arrived on
//! connection 3, the desired routes changed, time passed, stop) with the
//! current time and carries out the [`Output`]s in order (dial, write these
//! bytes on connection 3, half-close it, close it, record this). Connection
//! ids are the task's; the driver never holds a socket, reads a clock or
//! spawns anything, so every decision is unit-tested with scripted inputs,
//! and a property test and a fuzz target (`fuzz/`) check that random inputs
//! keep its [`invariants`] (test and fuzz builds only): it never refers to
//! a connection it was not given or has closed, never reaches Established
//! without an OPEN exchange.
//!
//! Contract for the task: feed [`Input::Routes`] before [`Input::Start`];
//! feed `Input::Tick` at [`Peer::next_deadline`]; when a write on a
//! connection fails, drop it and feed [`Input::Closed`]; end when
//! [`Output::Done`] comes (after a stop or shutdown, once every connection
//! is closed). Inputs after `Done` are ignored.
//!
//! Must not do I/O, know about sockets or tasks, or decide *which* routes
//! are announced (that is the core's `Snapshot::announcements`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::time::Instant;

use super::codec::update::{encode_end_of_rib, EncodeCtx};
use super::codec::{err, Family, LocalOpen, Notification, Received};
use super::collision::{self, OnAccept, OnHeldOpen, Origin};
use super::eor::EorHold;
use super::fsm::{Action, Event, Fsm, FsmConfig, Negotiated, State};
use super::rib_out::{encode_plan, AdjRibOut, Plan};
use super::shutdown;
use crate::core::Announcement;
use crate::model::ShutdownMode;

/// Identifies one TCP connection of this peer. Assigned by the socket
/// task, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Static parameters of one peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub fsm: FsmConfig,
    /// Next hops to announce; `None`: the connection's local address for
    /// its own family (see [`next_hops`]).
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
}

/// The routes every peer should have from us, as the core published them.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Snapshot version, for logs.
    pub version: u64,
    /// Desired announcements (`Snapshot::announcements`; a shared `Arc`
    /// means unchanged).
    pub announcements: Arc<BTreeMap<IpNet, Announcement>>,
    /// Whether the health of the node's own PoP is known
    /// ([`super::eor::local_health_known`]); End-of-RIB waits for it.
    pub local_health_known: bool,
}

/// What the socket task feeds the driver.
#[derive(Debug, Clone)]
pub enum Input {
    /// Begin: dial (unless passive) and take connections.
    Start,
    /// Our connection attempt succeeded; `local` is its local address.
    Dialed { conn: ConnId, local: IpAddr },
    /// Our connection attempt failed.
    DialFailed,
    /// The listener accepted a connection from the peer's address.
    Accepted { conn: ConnId, local: IpAddr },
    /// A message decoded on `conn`.
    Message(ConnId, Received),
    /// What arrived on `conn` is malformed; this NOTIFICATION answers it.
    /// Nothing more is read from `conn`.
    Malformed(ConnId, Notification),
    /// `conn` was closed by the peer or failed (read or write error).
    Closed(ConnId),
    /// The desired routes (or the local PoP's health) changed.
    Routes(Routes),
    /// Time passed: expired timers fire.
    Tick,
    /// The peer's BFD session changed: `failures` counts its Up → Down
    /// failures so far, `holds_down` tells whether it holds the BGP session
    /// down now. A new failure drops the session even if BFD is already Up
    /// again (the router has dropped its side).
    Bfd { failures: u64, holds_down: bool },
    /// Stop this peer (removed or changed by a reload) with this Cease;
    /// wait for the peer to close until `deadline` at most.
    Stop {
        notification: Notification,
        deadline: Instant,
    },
    /// The process stops: per `mode`, withdraw everything or keep the
    /// routes for graceful restart; `message` is the RFC 8203 shutdown
    /// communication; wait for the peer to close until `deadline` at most.
    Shutdown {
        mode: ShutdownMode,
        message: String,
        deadline: Instant,
    },
    /// After a stop or shutdown: everything it sent is written (handed to
    /// the kernel). Wait for the peer to close until `linger_until` at most
    /// instead of the stop's deadline, so the time writing 100,000
    /// withdrawals took does not shorten the router's time to act on them.
    Written { linger_until: Instant },
}

/// A message to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(LocalOpen),
    Keepalive,
    Notification(Notification),
    /// `count` encoded UPDATE messages (End-of-RIB markers included).
    Updates {
        bytes: Vec<u8>,
        count: usize,
    },
}

/// What the socket task carries out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Start a connection attempt, abandoning one in progress.
    Dial,
    /// Abandon the connection attempt in progress; `timed_out`: because
    /// the connect-retry timer ran out first (the attempt counts as a
    /// timed-out connect), else because the peer stopped.
    AbortDial { timed_out: bool },
    /// Write on `conn` (after everything written before).
    Send(ConnId, Message),
    /// We are done sending on `conn`: shut down our side (FIN after the
    /// queued bytes) and keep reading until the peer closes it. A stop
    /// that sent a NOTIFICATION keeps reading without this.
    HalfClose(ConnId),
    /// Close `conn` and forget it.
    Close(ConnId),
    /// Something to record (status, metrics) or log.
    Report(Report),
    /// Stopped: every connection is closed, nothing more will be sent.
    Done,
}

/// Observable facts for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A TCP connection is in use for the session.
    Connected(Origin),
    /// The session is up. `announced`: the families we announce;
    /// `without_next_hop`: negotiated but not announced for lack of a next
    /// hop.
    Established {
        negotiated: Negotiated,
        announced: Vec<Family>,
        without_next_hop: Vec<Family>,
    },
    /// The session (or the attempt to set one up) ended.
    Down {
        reason: String,
        was_established: bool,
    },
    /// Changes of the desired routes are being sent.
    Changes {
        version: u64,
        announced: usize,
        withdrawn: usize,
    },
    /// End-of-RIB sent for every negotiated family; `prefixes` advertised.
    EndOfRib { prefixes: usize },
    /// The peer asked for a family again (ROUTE-REFRESH).
    RouteRefresh(Family),
    /// The peer sent an UPDATE (counted, not stored).
    UpdateReceived { announced: u32, withdrawn: u32 },
    /// RFC 7606 treat-as-withdraw: an attribute of a received UPDATE was
    /// malformed; the session stays up.
    TreatAsWithdraw(String),
    /// A connection collision was resolved (RFC 4271 §6.8).
    Collision(&'static str),
    /// The process stops in `mode`: `withdrawn` routes withdrawn first,
    /// then this NOTIFICATION (`None`: closed without one).
    Shutdown {
        mode: ShutdownMode,
        withdrawn: usize,
        notification: Option<Notification>,
    },
    /// Our own UPDATE could not be encoded (a bug, never peer input).
    EncodeError(String),
}

/// The connection the FSM runs on, or the one held aside.
#[derive(Debug, Clone, Copy)]
struct Link {
    id: ConnId,
    origin: Origin,
    local: IpAddr,
}

/// What an established session needs.
#[derive(Debug)]
struct Up {
    ctx: EncodeCtx,
    /// Families negotiated (End-of-RIB goes out for each).
    negotiated: Vec<Family>,
    /// Families announced (negotiated, with a next hop).
    announced: Vec<Family>,
    graceful_notification: bool,
    eor: EorHold,
}

/// The protocol side of one peer. See the module header.
#[derive(Debug)]
pub struct Peer {
    cfg: PeerConfig,
    fsm: Fsm,
    /// The connection the FSM runs on.
    conn: Option<Link>,
    /// An accepted connection held until its OPEN arrives (collision).
    held: Option<Link>,
    /// A connection attempt is in progress.
    dialing: bool,
    /// Half-closed connections read until the peer closes them.
    lingering: Vec<ConnId>,
    /// Stop or shutdown: linger until then at most, then `Done`.
    stop_deadline: Option<Instant>,
    done: bool,
    rib: AdjRibOut,
    up: Option<Up>,
    routes: Option<Routes>,
    /// The announcements the Adj-RIB-Out was last synced to.
    synced: Option<Arc<BTreeMap<IpNet, Announcement>>>,
    /// BFD failures already acted on.
    bfd_failures: u64,
}

impl Peer {
    pub fn new(cfg: PeerConfig) -> Self {
        Peer {
            fsm: Fsm::new(cfg.fsm.clone()),
            cfg,
            conn: None,
            held: None,
            dialing: false,
            lingering: Vec::new(),
            stop_deadline: None,
            done: false,
            rib: AdjRibOut::default(),
            up: None,
            routes: None,
            synced: None,
            bfd_failures: 0,
        }
    }

    /// The FSM state.
    pub fn state(&self) -> State {
        self.fsm.state()
    }

    /// The negotiated session, if any.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.fsm.negotiated()
    }

    /// Prefixes in the Adj-RIB-Out.
    pub fn prefixes_advertised(&self) -> usize {
        self.rib.len()
    }

    /// Whether `Output::Done` was given.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The earliest time `Input::Tick` is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        let eor = self.up.as_ref().and_then(|u| u.eor.deadline());
        let linger = self.stop_deadline.filter(|_| !self.lingering.is_empty());
        [self.fsm.next_deadline(), eor, linger]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feeds one input at time `now`; returns what to carry out, in order.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        match input {
            Input::Start => self.feed(Event::Start, now, &mut out),
            Input::Dialed { conn, local } => {
                self.dialing = false;
                if collision::use_dialed(self.fsm.is_running(), self.conn.is_some()) {
                    self.adopt(conn, Origin::Outgoing, local, now, &mut out);
                } else {
                    out.push(Output::Close(conn));
                }
            }
            Input::DialFailed => {
                self.dialing = false;
                self.feed(Event::TcpFailed, now, &mut out);
            }
            Input::Accepted { conn, local } => self.accepted(conn, local, now, &mut out),
            Input::Message(id, m) => self.message(id, m, now, &mut out),
            Input::Malformed(id, n) => {
                if self.is_conn(id) {
                    self.feed(Event::DecodeError(n), now, &mut out);
                } else {
                    self.forget(id, &mut out);
                }
            }
            Input::Closed(id) => {
                if self.is_conn(id) {
                    self.feed(Event::TcpClosed, now, &mut out);
                } else {
                    self.forget(id, &mut out);
                }
            }
            Input::Routes(r) => {
                self.routes = Some(r);
                if self.stop_deadline.is_none() {
                    self.sync(&mut out);
                    self.maybe_end_of_rib(now, &mut out);
                }
            }
            Input::Tick => {
                self.feed(Event::Tick, now, &mut out);
                self.maybe_end_of_rib(now, &mut out);
                if self.stop_deadline.is_some_and(|d| now >= d) {
                    for id in std::mem::take(&mut self.lingering) {
                        out.push(Output::Close(id));
                    }
                }
            }
            Input::Bfd {
                failures,
                holds_down,
            } => {
                let failed = failures > self.bfd_failures;
                self.bfd_failures = self.bfd_failures.max(failures);
                if (failed || holds_down) && !self.fsm.bfd_down() {
                    self.feed(Event::BfdDown, now, &mut out);
                }
                if !holds_down && self.fsm.bfd_down() {
                    self.feed(Event::BfdUp, now, &mut out);
                }
            }
            Input::Stop {
                notification,
                deadline,
            } => {
                self.begin_stop(deadline, &mut out);
                let n = shutdown::for_stop(notification, self.graceful_notification());
                self.feed(Event::Stop(Some(n)), now, &mut out);
            }
            Input::Written { linger_until } => {
                if self.stop_deadline.is_some() {
                    self.stop_deadline = Some(linger_until);
                }
            }
            Input::Shutdown {
                mode,
                message,
                deadline,
            } => {
                self.begin_stop(deadline, &mut out);
                let established = self.fsm.state() == State::Established;
                let plan = shutdown::on_shutdown(
                    mode,
                    established,
                    self.graceful_notification(),
                    &message,
                );
                let mut withdrawn = 0;
                if plan.withdraw_all {
                    let w = self.rib.withdraw_all();
                    withdrawn = w.withdrawn();
                    self.send_plan(&w, &mut out);
                }
                if established {
                    out.push(Output::Report(Report::Shutdown {
                        mode,
                        withdrawn,
                        notification: plan.notification.clone(),
                    }));
                }
                self.feed(Event::Stop(plan.notification), now, &mut out);
            }
        }
        self.check_done(&mut out);
        out
    }

    fn is_conn(&self, id: ConnId) -> bool {
        self.conn.is_some_and(|c| c.id == id)
    }

    fn graceful_notification(&self) -> bool {
        self.up.as_ref().is_some_and(|u| u.graceful_notification)
    }

    /// A connection that is not the FSM's ended or misbehaved: the held
    /// one is dropped, a lingering one is done; anything else is a stale
    /// event for a connection already closed.
    fn forget(&mut self, id: ConnId, out: &mut Vec<Output>) {
        if self.held.is_some_and(|h| h.id == id) {
            self.held = None;
            out.push(Output::Close(id));
        } else if let Some(i) = self.lingering.iter().position(|&l| l == id) {
            self.lingering.remove(i);
            out.push(Output::Close(id));
        }
    }

    fn begin_stop(&mut self, deadline: Instant, out: &mut Vec<Output>) {
        self.stop_deadline = Some(deadline);
        if let Some(h) = self.held.take() {
            out.push(Output::Close(h.id));
        }
    }

    fn check_done(&mut self, out: &mut Vec<Output>) {
        if self.stop_deadline.is_some()
            && !self.done
            && self.conn.is_none()
            && self.held.is_none()
            && self.lingering.is_empty()
            && !self.dialing
        {
            self.done = true;
            out.push(Output::Done);
        }
    }

    fn adopt(
        &mut self,
        id: ConnId,
        origin: Origin,
        local: IpAddr,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        if self.dialing {
            self.dialing = false;
            out.push(Output::AbortDial { timed_out: false });
        }
        self.conn = Some(Link { id, origin, local });
        out.push(Output::Report(Report::Connected(origin)));
        self.feed(Event::TcpConnected, now, out);
    }

    /// Cease / connection collision resolution on `id`, then close it.
    fn reject(id: ConnId, out: &mut Vec<Output>) {
        out.push(Output::Report(Report::Collision(
            "rejecting a colliding connection",
        )));
        out.push(Output::Send(
            id,
            Message::Notification(Notification::new(err::CEASE, err::CEASE_COLLISION, [])),
        ));
        out.push(Output::Close(id));
    }

    fn accepted(&mut self, id: ConnId, local: IpAddr, now: Instant, out: &mut Vec<Output>) {
        let decision = collision::on_accept(
            self.fsm.state(),
            self.fsm.is_running() && self.stop_deadline.is_none(),
            self.conn.map(|c| c.origin),
            self.fsm.negotiated().map(|n| n.peer_id),
            self.cfg.fsm.router_id,
        );
        match decision {
            OnAccept::Adopt => self.adopt(id, Origin::Incoming, local, now, out),
            OnAccept::Reject => Self::reject(id, out),
            OnAccept::Hold => {
                out.push(Output::Report(Report::Collision(
                    "holding the peer's connection until its OPEN",
                )));
                let link = Link {
                    id,
                    origin: Origin::Incoming,
                    local,
                };
                if let Some(old) = self.held.replace(link) {
                    Self::reject(old.id, out);
                }
            }
            OnAccept::Replace => self.switch_to(
                Link {
                    id,
                    origin: Origin::Incoming,
                    local,
                },
                None,
                now,
                out,
            ),
        }
    }

    /// Drops the current connection with a collision Cease and runs the
    /// session on `link` (whose OPEN, if already read, is `open`).
    fn switch_to(
        &mut self,
        link: Link,
        open: Option<Received>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Report(Report::Collision(
            "switching to the peer's connection",
        )));
        self.feed(
            Event::DecodeError(Notification::new(err::CEASE, err::CEASE_COLLISION, [])),
            now,
            out,
        );
        if let Some(old) = self.conn.take() {
            // The FSM had no session to close (e.g. Idle): close it here.
            out.push(Output::Close(old.id));
        }
        self.conn = Some(link);
        self.feed(Event::TcpConnected, now, out);
        if let Some(m) = open {
            self.feed(Event::Message(m), now, out);
        }
    }

    fn message(&mut self, id: ConnId, m: Received, now: Instant, out: &mut Vec<Output>) {
        if self.is_conn(id) {
            if let Received::Update(u) = &m {
                if let Some(why) = &u.malformed {
                    out.push(Output::Report(Report::TreatAsWithdraw(why.clone())));
                }
            }
            self.feed(Event::Message(m), now, out);
            return;
        }
        if let Some(held) = self.held.filter(|h| h.id == id) {
            self.held = None;
            match m {
                Received::Open(o) => {
                    let decision = collision::on_held_open(
                        self.fsm.state(),
                        self.conn.is_some(),
                        self.cfg.fsm.router_id,
                        o.bgp_id,
                    );
                    match decision {
                        OnHeldOpen::KeepCurrent => Self::reject(held.id, out),
                        OnHeldOpen::SwitchToHeld => {
                            self.switch_to(held, Some(Received::Open(o)), now, out)
                        }
                    }
                }
                // Anything but an OPEN first: not a BGP speaker we can use.
                _ => out.push(Output::Close(held.id)),
            }
        }
        // Lingering connections are read and drained; stale ids ignored.
    }

    /// Runs `ev` through the FSM and carries out its actions.
    fn feed(&mut self, ev: Event, now: Instant, out: &mut Vec<Output>) {
        for a in self.fsm.handle(ev, now) {
            match a {
                Action::Connect => {
                    self.dialing = true;
                    out.push(Output::Dial);
                }
                Action::SendOpen(o) => self.send(Message::Open(o), out),
                Action::SendKeepalive => self.send(Message::Keepalive, out),
                Action::SendNotification(n) => self.send(Message::Notification(n), out),
                Action::Close => {
                    if self.dialing {
                        self.dialing = false;
                        out.push(Output::AbortDial {
                            // The connect-retry timer abandons a hanging
                            // attempt and dials again (the FSM stays in
                            // Connect); a stop leaves it Idle.
                            timed_out: self.fsm.state() == State::Connect,
                        });
                    }
                    if let Some(c) = self.conn.take() {
                        if self.stop_deadline.is_some() {
                            // After a NOTIFICATION no FIN until the peer
                            // closes: a router may act on our FIN before
                            // it has processed the withdrawals and the
                            // NOTIFICATION queued ahead of it (FRR does,
                            // and then keeps every route not yet
                            // withdrawn stale for its restart time).
                            if !notified(out, c.id) {
                                out.push(Output::HalfClose(c.id));
                            }
                            self.lingering.push(c.id);
                        } else {
                            out.push(Output::Close(c.id));
                        }
                    }
                }
                Action::Established(n) => self.established(n, now, out),
                Action::Down(reason) => {
                    out.push(Output::Report(Report::Down {
                        reason,
                        was_established: self.up.is_some(),
                    }));
                    self.up = None;
                    self.rib.clear();
                    self.synced = None;
                }
                Action::RouteRefresh(f) => {
                    out.push(Output::Report(Report::RouteRefresh(f)));
                    let plan = self.rib.full(Some(f));
                    self.send_plan(&plan, out);
                }
                Action::UpdateReceived {
                    announced,
                    withdrawn,
                } => out.push(Output::Report(Report::UpdateReceived {
                    announced,
                    withdrawn,
                })),
            }
        }
        if self.fsm.state() == State::Established {
            if let Some(h) = self.held.take() {
                // An established session wins every collision.
                Self::reject(h.id, out);
            }
        }
    }

    fn send(&self, m: Message, out: &mut Vec<Output>) {
        if let Some(c) = &self.conn {
            out.push(Output::Send(c.id, m));
        }
    }

    fn established(&mut self, n: Negotiated, now: Instant, out: &mut Vec<Output>) {
        let Some(conn) = self.conn else { return };
        let (next_hop_v4, next_hop_v6) =
            next_hops(self.cfg.next_hop_v4, self.cfg.next_hop_v6, conn.local);
        let ctx = EncodeCtx {
            local_asn: self.cfg.fsm.local_asn,
            ibgp: self.cfg.fsm.local_asn == self.cfg.fsm.remote_asn,
            asn4: n.asn4,
            next_hop_v4,
            next_hop_v6,
            v4_in_mp: conn.local.is_ipv6(),
        };
        let (announced, without_next_hop) = announce_families(&n.families, &ctx);
        let restart_time = self
            .cfg
            .fsm
            .graceful_restart
            .map(|s| Duration::from_secs(s.into()));
        self.up = Some(Up {
            ctx,
            negotiated: n.families.clone(),
            announced: announced.clone(),
            graceful_notification: n.graceful_notification,
            eor: EorHold::start(now, restart_time),
        });
        out.push(Output::Report(Report::Established {
            negotiated: n,
            announced,
            without_next_hop,
        }));
        self.rib.clear();
        self.synced = None;
        self.sync(out);
        self.maybe_end_of_rib(now, out);
    }

    /// Brings the Adj-RIB-Out to the desired routes.
    fn sync(&mut self, out: &mut Vec<Output>) {
        let (Some(up), Some(routes)) = (&self.up, &self.routes) else {
            return;
        };
        if self
            .synced
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &routes.announcements))
        {
            return;
        }
        let plan = self.rib.sync(
            routes.announcements.iter().map(|(p, a)| (p, &a.attrs)),
            &up.announced,
            up.ctx.ibgp,
        );
        self.synced = Some(routes.announcements.clone());
        if plan.is_empty() {
            return;
        }
        out.push(Output::Report(Report::Changes {
            version: routes.version,
            announced: plan.announced(),
            withdrawn: plan.withdrawn(),
        }));
        self.send_plan(&plan, out);
    }

    fn send_plan(&self, plan: &Plan, out: &mut Vec<Output>) {
        let Some(up) = &self.up else { return };
        if plan.is_empty() {
            return;
        }
        let mut bytes = Vec::new();
        match encode_plan(plan, &up.ctx, &mut bytes) {
            Ok(count) => self.send(Message::Updates { bytes, count }, out),
            Err(e) => out.push(Output::Report(Report::EncodeError(e.to_string()))),
        }
    }

    /// Sends End-of-RIB once it is due (see [`super::eor`]).
    fn maybe_end_of_rib(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.fsm.state() != State::Established {
            return;
        }
        let known = self.routes.as_ref().is_some_and(|r| r.local_health_known);
        let Some(up) = self.up.as_mut() else { return };
        if !up.eor.due(now, known) {
            return;
        }
        up.eor = EorHold::none();
        let mut bytes = Vec::new();
        let mut count = 0;
        for f in &up.negotiated {
            if encode_end_of_rib(*f, &mut bytes).is_ok() {
                count += 1;
            }
        }
        self.send(Message::Updates { bytes, count }, out);
        out.push(Output::Report(Report::EndOfRib {
            prefixes: self.rib.len(),
        }));
    }
}

/// Whether `out` sends a NOTIFICATION on `id`.
fn notified(out: &[Output], id: ConnId) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Send(c, Message::Notification(_)) if *c == id))
}

/// Next hops for a session whose local address is `local`: the explicit
/// ones, else `local` for its own family. IPv6 over an IPv4 session (and
/// IPv4 over IPv6) needs an explicit next hop: we do not invent
/// IPv4-mapped ones.
pub fn next_hops(
    explicit_v4: Option<Ipv4Addr>,
    explicit_v6: Option<Ipv6Addr>,
    local: IpAddr,
) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let v4 = explicit_v4.or(match local {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let v6 = explicit_v6.or(match local {
        IpAddr::V6(a) if !a.is_unspecified() => Some(a),
        _ => None,
    });
    (v4, v6)
}

/// Splits the negotiated families into those we announce and those we
/// cannot for lack of a next hop (negotiated, but never announced; the
/// operator is told).
pub fn announce_families(negotiated: &[Family], ctx: &EncodeCtx) -> (Vec<Family>, Vec<Family>) {
    negotiated.iter().partition(|&&f| ctx.can_announce(f))
}

#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod invariants;

#[cfg(test)]
mod tests;
