//! The BFD socket task: owns every session's [`Fsm`], the receive sockets
//! (UDP 3784, one per address family, opened when the first session of the
//! family is added) and one send socket per session, and publishes each
//! session's [`SessionStatus`] on a watch channel.
//!
//! A received datagram is dropped unless it arrived with TTL / hop limit
//! 255 (RFC 5881 §5) and passes [`Control::decode`]; it then goes to the
//! session named by Your Discriminator, or, when that is zero, to the
//! session of its source address, and only if the source address is that
//! session's peer. Everything else is a thin loop around [`Fsm::handle`];
//! the task must not make protocol decisions itself.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::fsm::{Action, Event, Fsm, Params};
use super::packet::{Control, Diag, State, PORT};
use super::socket::{self, GTSM_TTL};

/// How long a removed session keeps sending AdminDown before it is dropped.
pub const REMOVE_AFTER: Duration = Duration::from_secs(1);
/// Retry interval for sockets that could not be opened.
pub const SOCKET_RETRY: Duration = Duration::from_secs(5);
/// A session not Up for this long logs a warning (once until it is Up).
pub const NOT_UP_WARNING: Duration = Duration::from_secs(30);

/// Identifies a session: single hop, one per peer address.
pub type SessionKey = IpAddr;

/// What the API and the BGP session see of one BFD session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionStatus {
    pub state: State,
    pub remote_state: State,
    pub local_diag: Diag,
    pub remote_diag: Diag,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    /// BFD holds the BGP session to this peer down: the BFD session failed
    /// and has not been Up since.
    pub holds_bgp_down: bool,
    /// Up → Down transitions caused by the path, since the session was made.
    pub failures: u64,
    /// Failures counted by the flap damping.
    pub flaps: u32,
    /// Held Down by the flap damping until then.
    pub held_until: Option<SystemTime>,
    /// Last state change (wall clock).
    pub since: Option<SystemTime>,
    /// Periodic transmit interval (before jitter) and detection time, ms.
    pub tx_interval_ms: Option<u64>,
    pub detection_time_ms: Option<u64>,
    /// The peer's Control Plane Independent bit.
    pub remote_control_plane_independent: bool,
    /// Packets dropped by the session checks, and for a TTL below 255.
    pub discarded: u64,
    pub ttl_dropped: u64,
    /// A socket problem (bind, send), if any.
    pub error: Option<String>,
}

enum Cmd {
    Add {
        peer: IpAddr,
        local: Option<IpAddr>,
        params: Params,
        status: watch::Sender<SessionStatus>,
    },
    Remove(IpAddr),
    Shutdown {
        admin_down: bool,
        done: oneshot::Sender<()>,
    },
}

/// Handle on the running BFD task.
#[derive(Debug)]
pub struct BfdHandle {
    cmd: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
}

/// Starts the BFD task (no sockets until a session is added). Must be
/// called inside a tokio runtime.
pub fn spawn() -> BfdHandle {
    let (cmd, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(Service::default().run(rx));
    BfdHandle { cmd, task }
}

impl BfdHandle {
    /// Starts (or updates the parameters of) the session to `peer`, sending
    /// from `local` if given. The watch follows the session's status.
    pub fn add(
        &self,
        peer: IpAddr,
        local: Option<IpAddr>,
        params: Params,
    ) -> watch::Receiver<SessionStatus> {
        let now = Instant::now();
        let initial = status_of(&Fsm::new(params, 1, 0, now), now, None, 0, None);
        let (status, rx) = watch::channel(initial);
        let _ = self.cmd.send(Cmd::Add {
            peer,
            local,
            params,
            status,
        });
        rx
    }

    /// Takes the session to `peer` AdminDown, then removes it.
    pub fn remove(&self, peer: IpAddr) {
        let _ = self.cmd.send(Cmd::Remove(peer));
    }

    /// Stops the task. With `admin_down` every session first sends one
    /// AdminDown packet (the peer then knows it was no failure); without it
    /// the sessions just fall silent and the peers detect it (what graceful
    /// restart needs: see the BGP docs).
    pub async fn shutdown(self, admin_down: bool) {
        let (done, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Shutdown { admin_down, done }).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
        self.task.abort();
    }
}

struct Session {
    fsm: Fsm,
    local: Option<IpAddr>,
    tx: Option<UdpSocket>,
    tx_retry_at: Option<Instant>,
    status: watch::Sender<SessionStatus>,
    since: Option<SystemTime>,
    ttl_dropped: u64,
    error: Option<String>,
    remove_at: Option<Instant>,
    /// Since when the session is not Up (for the warning), and whether it
    /// was given.
    not_up_since: Option<Instant>,
    warned: bool,
}

#[derive(Default)]
struct Service {
    sessions: BTreeMap<IpAddr, Session>,
    /// Receive sockets for IPv4 and IPv6.
    rx: [Option<Arc<UdpSocket>>; 2],
    rx_error: [Option<String>; 2],
    rx_retry_at: Option<Instant>,
}

fn family(ip: IpAddr) -> usize {
    usize::from(ip.is_ipv6())
}

/// An IPv4-mapped IPv6 source is the IPv4 peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn status_of(
    fsm: &Fsm,
    now: Instant,
    since: Option<SystemTime>,
    ttl_dropped: u64,
    error: Option<String>,
) -> SessionStatus {
    let s = fsm.status(now);
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
    SessionStatus {
        state: s.state,
        remote_state: s.remote_state,
        local_diag: s.local_diag,
        remote_diag: s.remote_diag,
        local_discriminator: s.local_discr,
        remote_discriminator: s.remote_discr,
        holds_bgp_down: s.blocks_client,
        failures: s.failures,
        flaps: s.flaps,
        held_until: s.held_for.map(|d| SystemTime::now() + d),
        since,
        tx_interval_ms: ms(s.tx_interval),
        detection_time_ms: ms(s.detection_time),
        remote_control_plane_independent: s.remote_cpi,
        discarded: s.discarded,
        ttl_dropped,
        error,
    }
}

async fn recv_on(sock: Option<Arc<UdpSocket>>, buf: &mut [u8]) -> io::Result<socket::Datagram> {
    match sock {
        Some(s) => socket::recv(&s, buf).await,
        None => std::future::pending().await,
    }
}

impl Service {
    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf4 = vec![0u8; 1500];
        let mut buf6 = vec![0u8; 1500];
        loop {
            let deadline = self.next_deadline();
            let (rx4, rx6) = (self.rx[0].clone(), self.rx[1].clone());
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(Cmd::Shutdown { admin_down, done }) => {
                        if admin_down {
                            let now = Instant::now();
                            let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
                            for p in peers {
                                self.feed(p, Event::AdminDown, now);
                            }
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(c) => self.command(c, Instant::now()),
                },
                r = recv_on(rx4, &mut buf4) => self.datagram(r, &buf4, 0),
                r = recv_on(rx6, &mut buf6) => self.datagram(r, &buf6, 1),
                _ = sleep_until(deadline) => self.tick(Instant::now()),
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.sessions
            .values()
            .flat_map(|s| [s.fsm.next_deadline(), s.tx_retry_at, s.remove_at])
            .chain([self.rx_retry_at])
            .flatten()
            .min()
    }

    fn command(&mut self, cmd: Cmd, now: Instant) {
        match cmd {
            Cmd::Add {
                peer,
                local,
                params,
                status,
            } => self.add(peer, local, params, status, now),
            Cmd::Remove(peer) => {
                if let Some(s) = self.sessions.get_mut(&peer) {
                    s.remove_at = Some(now + REMOVE_AFTER);
                    info!(%peer, "BFD session removed: AdminDown");
                }
                self.feed(peer, Event::AdminDown, now);
            }
            Cmd::Shutdown { .. } => {}
        }
    }

    fn add(
        &mut self,
        peer: IpAddr,
        local: Option<IpAddr>,
        params: Params,
        status: watch::Sender<SessionStatus>,
        now: Instant,
    ) {
        self.open_rx(family(peer));
        if let Some(s) = self.sessions.get_mut(&peer) {
            s.status = status;
            if s.remove_at.take().is_some() {
                self.feed(peer, Event::AdminUp, now);
            }
            self.feed(peer, Event::SetParams(params), now);
            if let Some(s) = self.sessions.get_mut(&peer) {
                if s.local != local {
                    s.local = local;
                    s.tx = None;
                    s.tx_retry_at = Some(now);
                }
            }
            self.publish(peer, now);
            return;
        }
        let discr = loop {
            let d: u32 = rand::random();
            if d != 0 && self.sessions.values().all(|s| s.fsm.local_discr() != d) {
                break d;
            }
        };
        info!(%peer, discriminator = discr, min_tx = ?params.min_tx, min_rx = ?params.min_rx,
              multiplier = params.multiplier, "BFD session added");
        self.sessions.insert(
            peer,
            Session {
                fsm: Fsm::new(params, discr, rand::random(), now),
                local,
                tx: None,
                tx_retry_at: Some(now),
                status,
                since: Some(SystemTime::now()),
                ttl_dropped: 0,
                error: None,
                remove_at: None,
                not_up_since: Some(now),
                warned: false,
            },
        );
        self.open_tx(peer, now);
        self.publish(peer, now);
    }

    fn open_rx(&mut self, fam: usize) {
        if self.rx[fam].is_some() {
            return;
        }
        match socket::open_rx(fam == 1) {
            Ok(s) => {
                self.rx[fam] = Some(Arc::new(s));
                if self.rx_error[fam].take().is_some() {
                    info!(ipv6 = fam == 1, "BFD receive socket open");
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.rx_error[fam].as_ref() != Some(&e) {
                    warn!(ipv6 = fam == 1, error = %e, "BFD receive socket cannot be opened; retrying");
                }
                self.rx_error[fam] = Some(e);
                self.rx_retry_at = Some(Instant::now() + SOCKET_RETRY);
            }
        }
    }

    fn open_tx(&mut self, peer: IpAddr, now: Instant) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        s.tx_retry_at = None;
        match socket::open_tx(peer, s.local, rand::random()) {
            Ok(sock) => {
                debug!(%peer, local = ?sock.local_addr().ok(), "BFD send socket open");
                s.tx = Some(sock);
                s.error = None;
            }
            Err(e) => {
                let e = e.to_string();
                if s.error.as_ref() != Some(&e) {
                    warn!(%peer, error = %e, "BFD send socket cannot be opened; retrying");
                }
                s.error = Some(e);
                s.tx_retry_at = Some(now + SOCKET_RETRY);
            }
        }
    }

    fn datagram(&mut self, r: io::Result<socket::Datagram>, buf: &[u8], fam: usize) {
        let d = match r {
            Ok(d) => d,
            Err(e) => {
                debug!(error = %e, "BFD receive error");
                return;
            }
        };
        let from = canonical(d.from.ip());
        let now = Instant::now();
        if d.ttl != Some(GTSM_TTL) {
            if let Some(s) = self.sessions.get_mut(&from) {
                s.ttl_dropped += 1;
            }
            debug!(%from, ttl = ?d.ttl, "BFD packet dropped: TTL/hop limit is not 255");
            return;
        }
        let c = match Control::decode(&buf[..d.len.min(buf.len())]) {
            Ok(c) => c,
            Err(e) => {
                debug!(%from, error = %e, "BFD packet dropped");
                return;
            }
        };
        let target = if c.your_discr != 0 {
            self.sessions
                .iter()
                .find(|(_, s)| s.fsm.local_discr() == c.your_discr)
                .map(|(p, _)| *p)
        } else {
            self.sessions.contains_key(&from).then_some(from)
        };
        match target {
            Some(peer) if peer == from && family(peer) == fam => {
                self.feed(peer, Event::Received(c), now)
            }
            _ => debug!(%from, your = c.your_discr, "BFD packet for no session dropped"),
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.rx_retry_at.is_some_and(|t| t <= now) {
            self.rx_retry_at = None;
            let fams: Vec<usize> = self.sessions.keys().map(|p| family(*p)).collect();
            for f in fams {
                self.open_rx(f);
            }
        }
        let peers: Vec<IpAddr> = self.sessions.keys().copied().collect();
        for peer in peers {
            let Some(s) = self.sessions.get(&peer) else {
                continue;
            };
            if s.remove_at.is_some_and(|t| t <= now) {
                self.sessions.remove(&peer);
                continue;
            }
            if s.tx_retry_at.is_some_and(|t| t <= now) {
                self.open_tx(peer, now);
            }
            if let Some(s) = self.sessions.get_mut(&peer) {
                let late = s
                    .not_up_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= NOT_UP_WARNING);
                if late && !s.warned && s.remove_at.is_none() {
                    s.warned = true;
                    warn!(%peer, state = %s.fsm.state(), after = ?NOT_UP_WARNING,
                          "BFD session is not up: is BFD enabled for this neighbor on the router (FRR: `neighbor ADDR bfd`)? The BGP session runs without it until BFD has been up once");
                }
            }
            if self
                .sessions
                .get(&peer)
                .and_then(|s| s.fsm.next_deadline())
                .is_some_and(|t| t <= now)
            {
                self.feed(peer, Event::Tick, now);
            }
        }
    }

    /// Runs one event through a session and carries out its actions.
    fn feed(&mut self, peer: IpAddr, ev: Event, now: Instant) {
        let Some(s) = self.sessions.get_mut(&peer) else {
            return;
        };
        let actions = s.fsm.handle(ev, now);
        for a in actions {
            match a {
                Action::Send(c) => s.send(peer, &c),
                Action::StateChanged { from, to, diag } => {
                    s.since = Some(SystemTime::now());
                    if to == State::Up {
                        s.not_up_since = None;
                        s.warned = false;
                    } else if from == State::Up {
                        s.not_up_since = Some(now);
                    }
                    let st = s.fsm.status(now);
                    if to == State::Up {
                        info!(%peer, %from, detection_time = ?st.detection_time, "BFD session up");
                    } else if from == State::Up {
                        warn!(%peer, %to, %diag, remote_diag = %st.remote_diag,
                              holds_bgp_down = st.blocks_client, held_for = ?st.held_for,
                              "BFD session down");
                    } else {
                        debug!(%peer, %from, %to, %diag, "BFD state change");
                    }
                }
            }
        }
        self.publish(peer, now);
    }

    fn publish(&mut self, peer: IpAddr, now: Instant) {
        let rx_error = self.rx_error[family(peer)].clone();
        let Some(s) = self.sessions.get(&peer) else {
            return;
        };
        let status = status_of(
            &s.fsm,
            now,
            s.since,
            s.ttl_dropped,
            s.error.clone().or(rx_error),
        );
        s.status.send_if_modified(|old| {
            // `held_until` is recomputed from the clock each time: compare
            // it only for presence, or every packet would notify.
            let mut a = old.clone();
            a.held_until = status.held_until;
            let same = a == status && old.held_until.is_some() == status.held_until.is_some();
            if !same {
                *old = status;
            }
            !same
        });
    }
}

impl Session {
    fn send(&mut self, peer: IpAddr, c: &Control) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send_to(&c.encode(), SocketAddr::new(peer, PORT)) {
            Ok(_) => {
                if self.error.take().is_some() {
                    info!(%peer, "BFD packets are sent again");
                }
            }
            Err(e) => {
                let e = format!("send to {peer}: {e}");
                if self.error.as_ref() != Some(&e) {
                    warn!(%peer, error = %e, "BFD packet not sent");
                }
                self.error = Some(e);
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
