//! The socket task of one peer: dials (or accepts), frames and decodes what
//! the peer sends, runs the [`Fsm`], keeps the peer's [`AdjRibOut`] equal
//! to the latest snapshot and publishes the peer's [`PeerStatus`].
//!
//! It is a thin loop: every protocol decision is the FSM's, every routing
//! decision the core's; this task only moves bytes, reads the clock and
//! handles connection collisions (RFC 4271 §6.8) between the connection it
//! dialed and one the listener hands it.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::update::{encode_end_of_rib, EncodeCtx};
use super::codec::{
    decode, encode_keepalive, encode_notification, encode_open, err, take_frame, Family,
    Notification, Received,
};
use super::fsm::{keep_local_initiated, Action, Event, Fsm, FsmConfig, Negotiated, State};
use super::lograte::ConnectFailLog;
use super::rib_out::{encode_plan, AdjRibOut, Plan};
use super::sockopt;
use crate::core::Snapshot;
use crate::model::{Peer, PeerName, ShutdownMode};

/// Longest we hold back End-of-RIB while the local PoP's health is unknown
/// when no graceful-restart time is configured (then nothing is stale and
/// there is no reason to wait).
pub const EOR_HOLD_WITHOUT_GR: Duration = Duration::ZERO;
/// Upper bound of the End-of-RIB hold, whatever the restart time.
pub const EOR_HOLD_MAX: Duration = Duration::from_secs(300);

/// What the API and metrics see of one peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub remote_asn: u32,
    pub local_asn: u32,
    pub state: State,
    /// Wall-clock time the session reached Established (`None` when down).
    #[serde(serialize_with = "opt_unix_secs")]
    pub established_since: Option<SystemTime>,
    /// Families negotiated with the peer.
    pub families: Vec<Family>,
    /// Prefixes currently in the Adj-RIB-Out.
    pub prefixes_advertised: usize,
    /// UPDATE messages sent (including End-of-RIB), since process start.
    pub updates_sent: u64,
    pub updates_received: u64,
    /// NLRI announced / withdrawn by the peer (counted, not stored).
    pub prefixes_received: u64,
    pub withdrawals_received: u64,
    /// Times an established session went down.
    pub flaps: u64,
    pub end_of_rib_sent: bool,
    /// Why the session last went down, or the last connect error. Cleared
    /// when the session is established; a connect error also when a TCP
    /// connection is made.
    pub last_error: Option<String>,
    /// When `last_error` was recorded.
    #[serde(serialize_with = "opt_unix_secs")]
    pub last_error_at: Option<SystemTime>,
}

fn opt_unix_secs<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()) {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0),
        None => s.serialize_none(),
    }
}

impl PeerStatus {
    /// Records `e` as the last error, timestamped now.
    pub(crate) fn set_error(&mut self, e: String) {
        self.last_error = Some(e);
        self.last_error_at = Some(SystemTime::now());
    }

    /// Clears the last error.
    pub(crate) fn clear_error(&mut self) {
        self.last_error = None;
        self.last_error_at = None;
    }

    pub(crate) fn new(peer: &Peer) -> Self {
        PeerStatus {
            address: peer.address,
            remote_asn: peer.remote_asn,
            local_asn: peer.local_asn,
            state: State::Idle,
            established_since: None,
            families: Vec::new(),
            prefixes_advertised: 0,
            updates_sent: 0,
            updates_received: 0,
            prefixes_received: 0,
            withdrawals_received: 0,
            flaps: 0,
            end_of_rib_sent: false,
            last_error: None,
            last_error_at: None,
        }
    }
}

/// Commands from the speaker to a peer task.
#[derive(Debug)]
pub(crate) enum PeerCmd {
    /// A connection the listener accepted from this peer's address.
    Incoming(TcpStream),
    /// Process shutdown (SIGTERM).
    Shutdown {
        mode: ShutdownMode,
        message: String,
        done: oneshot::Sender<()>,
    },
    /// The peer was removed or changed: send this Cease and end the task.
    Stop(Notification, oneshot::Sender<()>),
}

/// Everything a peer task needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    pub name: PeerName,
    pub peer: Peer,
    pub router_id: Ipv4Addr,
    pub graceful_restart: Option<Duration>,
}

enum ReadEvent {
    Msg(Received),
    Error(Notification),
    Closed(Option<io::Error>),
}

struct Conn {
    writer: OwnedWriteHalf,
    rx: mpsc::Receiver<ReadEvent>,
    reader: JoinHandle<()>,
    local: IpAddr,
    outgoing: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads, frames and decodes; stops after the first error or EOF.
async fn reader(mut rd: tokio::net::tcp::OwnedReadHalf, tx: mpsc::Sender<ReadEvent>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        loop {
            match take_frame(&mut buf) {
                Ok(Some(frame)) => {
                    let ev = match decode(&frame) {
                        Ok(m) => ReadEvent::Msg(m),
                        Err(n) => ReadEvent::Error(n),
                    };
                    let stop = matches!(ev, ReadEvent::Error(_));
                    if tx.send(ev).await.is_err() || stop {
                        return;
                    }
                }
                Ok(None) => break,
                Err(n) => {
                    let _ = tx.send(ReadEvent::Error(n)).await;
                    return;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(ReadEvent::Closed(None)).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send(ReadEvent::Closed(Some(e))).await;
                return;
            }
        }
    }
}

fn adopt(stream: TcpStream, outgoing: bool) -> io::Result<Conn> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?.ip().to_canonical();
    let (rd, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel(1024);
    let reader = tokio::spawn(reader(rd, tx));
    Ok(Conn {
        writer,
        rx,
        reader,
        local,
        outgoing,
    })
}

/// Dials the peer with the configured source address, MD5 and GTSM.
async fn connect(peer: Peer, md5: Option<Vec<u8>>, timeout: Duration) -> io::Result<TcpStream> {
    let remote = SocketAddr::new(peer.address, peer.port);
    let sock = match peer.address {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(local) = peer.local_address {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    if let Some(key) = &md5 {
        sockopt::set_md5(&sock, peer.address, key)?;
    }
    if peer.ttl_security {
        sockopt::set_gtsm(&sock, peer.address.is_ipv6())?;
    }
    match tokio::time::timeout(timeout, sock.connect(remote)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

async fn recv_conn(conn: &mut Option<Conn>) -> ReadEvent {
    match conn {
        Some(c) => c.rx.recv().await.unwrap_or(ReadEvent::Closed(None)),
        None => std::future::pending().await,
    }
}

async fn join_connect(c: &mut Option<JoinHandle<io::Result<TcpStream>>>) -> io::Result<TcpStream> {
    match c {
        Some(h) => match h.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e.to_string())),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// True while the node's own PoP exists but its health is not known yet.
fn local_health_unknown(s: &Snapshot) -> bool {
    s.config
        .node
        .pop
        .as_ref()
        .and_then(|p| s.pops.get(p))
        .is_some_and(|p| p.healthy.is_none())
}

enum Flow {
    Continue,
    Exit,
}

struct Session {
    p: SessionParams,
    fsm: Fsm,
    rib: AdjRibOut,
    conn: Option<Conn>,
    /// An accepted connection waiting for its OPEN to resolve a collision.
    pending: Option<Conn>,
    connecting: Option<JoinHandle<io::Result<TcpStream>>>,
    ctx: Option<EncodeCtx>,
    /// Families we announce on this session (negotiated, with a next hop).
    families: Vec<Family>,
    /// End-of-RIB still owed; send by this deadline at the latest.
    eor_deadline: Option<Instant>,
    md5: Option<Vec<u8>>,
    /// Rate limit of connect-failure log lines.
    connect_log: ConnectFailLog,
    status: PeerStatus,
    status_tx: watch::Sender<BTreeMap<PeerName, PeerStatus>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cmds: mpsc::Receiver<PeerCmd>,
    /// Scratch buffer for encoded UPDATEs.
    out: Vec<u8>,
    /// The announcements the Adj-RIB-Out was last synced to: a snapshot
    /// that changed only PoP status shares them and needs no diff.
    synced: Option<Arc<BTreeMap<ipnet::IpNet, crate::core::Announcement>>>,
}

/// Runs one peer until it is stopped or the process shuts down.
pub(crate) async fn run(
    p: SessionParams,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cmds: mpsc::Receiver<PeerCmd>,
    status_tx: watch::Sender<BTreeMap<PeerName, PeerStatus>>,
) {
    let md5 = match &p.peer.md5_password_file {
        Some(path) => match sockopt::read_md5_key(path) {
            Ok(k) => Some(k),
            Err(e) => {
                // Without the key the session cannot come up; say so and
                // keep the task alive (status shows the error) so a reload
                // can fix it.
                warn!(error = %e, "cannot read MD5 password file; peer stays down");
                let mut st = PeerStatus::new(&p.peer);
                st.set_error(format!("MD5 password file: {e}"));
                status_tx.send_modify(|m| {
                    m.insert(p.name.clone(), st);
                });
                wait_for_stop(cmds).await;
                return;
            }
        },
        None => None,
    };
    let mut families = Vec::new();
    if p.peer.ipv4_unicast {
        families.push(Family::Ipv4);
    }
    if p.peer.ipv6_unicast {
        families.push(Family::Ipv6);
    }
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(p.name.as_str().as_bytes());
        h.finish()
    };
    let fsm = Fsm::new(FsmConfig {
        local_asn: p.peer.local_asn,
        remote_asn: p.peer.remote_asn,
        router_id: p.router_id,
        hold_time: p.peer.hold_time.as_secs().min(u16::MAX as u64) as u16,
        connect_retry: p.peer.connect_retry,
        passive: p.peer.passive,
        families,
        graceful_restart: p.graceful_restart.map(|d| d.as_secs().min(4095) as u16),
        seed,
    });
    let status = PeerStatus::new(&p.peer);
    let mut s = Session {
        p,
        fsm,
        rib: AdjRibOut::default(),
        conn: None,
        pending: None,
        connecting: None,
        ctx: None,
        families: Vec::new(),
        eor_deadline: None,
        md5,
        connect_log: ConnectFailLog::default(),
        status,
        status_tx,
        snapshots,
        cmds,
        out: Vec::with_capacity(64 * 1024),
        synced: None,
    };
    s.publish();
    s.feed(Event::Start).await;
    s.run().await;
}

async fn wait_for_stop(mut cmds: mpsc::Receiver<PeerCmd>) {
    while let Some(c) = cmds.recv().await {
        match c {
            PeerCmd::Incoming(_) => {}
            PeerCmd::Shutdown { done, .. } | PeerCmd::Stop(_, done) => {
                let _ = done.send(());
                return;
            }
        }
    }
}

impl Session {
    fn publish(&mut self) {
        self.status.state = self.fsm.state();
        self.status.prefixes_advertised = self.rib.len();
        let (name, st) = (&self.p.name, &self.status);
        // Only wake readers when something they can see changed.
        self.status_tx.send_if_modified(|m| {
            if m.get(name) == Some(st) {
                false
            } else {
                m.insert(name.clone(), st.clone());
                true
            }
        });
    }

    async fn run(&mut self) {
        loop {
            let deadline = [self.fsm.next_deadline(), self.eor_deadline]
                .into_iter()
                .flatten()
                .min();
            let established = self.fsm.state() == State::Established;
            let flow = tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => {
                        // The speaker is gone: close quietly.
                        self.close().await;
                        Flow::Exit
                    }
                },
                r = join_connect(&mut self.connecting) => {
                    self.connecting = None;
                    self.connected(r).await;
                    Flow::Continue
                }
                ev = recv_conn(&mut self.conn) => {
                    let ev = match ev {
                        ReadEvent::Msg(m) => {
                            if let Received::Update(u) = &m {
                                if let Some(why) = &u.malformed {
                                    // RFC 7606 treat-as-withdraw: we store no
                                    // received routes, so nothing to undo.
                                    warn!(error = %why, "malformed UPDATE attribute, treated as withdraw (RFC 7606)");
                                }
                            }
                            Event::Message(m)
                        }
                        ReadEvent::Error(n) => {
                            warn!(notification = %n, "malformed message from peer");
                            Event::DecodeError(n)
                        }
                        ReadEvent::Closed(e) => {
                            if let Some(e) = e {
                                debug!(error = %e, "connection error");
                            }
                            Event::TcpClosed
                        }
                    };
                    self.feed(ev).await;
                    Flow::Continue
                }
                ev = recv_conn(&mut self.pending) => {
                    self.pending_event(ev).await;
                    Flow::Continue
                }
                r = self.snapshots.changed(), if established => {
                    if r.is_err() {
                        // The core is gone (process ending): stop quietly.
                        Flow::Exit
                    } else {
                        self.sync().await;
                        Flow::Continue
                    }
                }
                _ = sleep_opt(deadline) => {
                    self.feed(Event::Tick).await;
                    if let Some(ev) = self.check_eor().await {
                        self.feed(ev).await;
                    }
                    self.publish();
                    Flow::Continue
                }
            };
            if let Flow::Exit = flow {
                self.publish();
                return;
            }
        }
    }

    /// Feeds an event and carries out the resulting actions (which may
    /// produce further events, e.g. a failed write closes the session).
    async fn feed(&mut self, ev: Event) {
        let mut queue = std::collections::VecDeque::from([ev]);
        while let Some(ev) = queue.pop_front() {
            let actions = self.fsm.handle(ev, Instant::now());
            for a in actions {
                if let Some(next) = self.execute(a).await {
                    queue.push_back(next);
                }
            }
        }
        if self.fsm.state() == State::Established {
            if let Some(p) = self.pending.take() {
                // An established session wins every collision.
                self.reject(p).await;
            }
        }
        self.publish();
    }

    async fn execute(&mut self, a: Action) -> Option<Event> {
        match a {
            Action::Connect => {
                if let Some(h) = self.connecting.take() {
                    h.abort();
                }
                let timeout = self.p.peer.connect_retry.max(Duration::from_secs(1));
                self.connecting = Some(tokio::spawn(connect(
                    self.p.peer.clone(),
                    self.md5.clone(),
                    timeout,
                )));
                None
            }
            Action::SendOpen(o) => match encode_open(&o) {
                Ok(b) => self.write(b).await,
                Err(e) => {
                    warn!(error = %e, "cannot encode OPEN");
                    Some(Event::TcpClosed)
                }
            },
            Action::SendKeepalive => self.write(encode_keepalive()).await,
            Action::SendNotification(n) => {
                warn!(notification = %n, "sending NOTIFICATION");
                match encode_notification(&n) {
                    Ok(b) => self.write(b).await,
                    Err(_) => None,
                }
            }
            Action::Close => {
                if self.fsm.state() == State::Connect
                    && self.connecting.as_ref().is_some_and(|h| !h.is_finished())
                {
                    // The connect-retry timer fired before the attempt ended
                    // (both run for `connect_retry`) and the FSM abandons it:
                    // that attempt timed out. Record it, or a peer that
                    // never answers would never show a failure.
                    self.connect_failed(&io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connect timed out",
                    ));
                }
                self.close().await;
                None
            }
            Action::Established(n) => self.established(n).await,
            Action::Down(reason) => {
                if self.status.state == State::Established {
                    self.status.flaps += 1;
                    warn!(%reason, "session down");
                } else {
                    info!(%reason, "session attempt failed");
                }
                self.status.set_error(reason);
                self.status.established_since = None;
                self.status.families.clear();
                self.status.end_of_rib_sent = false;
                self.rib.clear();
                self.synced = None;
                self.ctx = None;
                self.families.clear();
                self.eor_deadline = None;
                None
            }
            Action::RouteRefresh(f) => {
                info!(family = %f, "route refresh requested; re-sending Adj-RIB-Out");
                let plan = self.rib.full(Some(f));
                self.send_plan(&plan).await
            }
            Action::UpdateReceived {
                announced,
                withdrawn,
            } => {
                self.status.updates_received += 1;
                self.status.prefixes_received += announced as u64;
                self.status.withdrawals_received += withdrawn as u64;
                None
            }
        }
    }

    async fn write(&mut self, bytes: Vec<u8>) -> Option<Event> {
        self.write_ref(&bytes).await
    }

    async fn close(&mut self) {
        if let Some(h) = self.connecting.take() {
            h.abort();
        }
        if let Some(mut c) = self.conn.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.writer.shutdown()).await;
        }
    }

    async fn connected(&mut self, r: io::Result<TcpStream>) {
        match r {
            Ok(stream) => match adopt(stream, true) {
                Ok(c) => {
                    if self.conn.is_some() {
                        // An accepted connection got there first.
                        return;
                    }
                    self.tcp_up();
                    debug!("connected");
                    self.conn = Some(c);
                    self.feed(Event::TcpConnected).await;
                }
                Err(e) => {
                    self.connect_failed(&e);
                    self.feed(Event::TcpFailed).await;
                }
            },
            Err(e) => {
                self.connect_failed(&e);
                self.feed(Event::TcpFailed).await;
            }
        }
    }

    /// A TCP connection to or from the peer is up: a connect error is no
    /// longer current, and the operator learns the peer answers again.
    fn tcp_up(&mut self) {
        if let Some(n) = self.connect_log.on_success() {
            info!(peer = %self.p.name, failures = n, "connected after {n} failed connect attempt(s)");
        }
        if self
            .status
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("connect: "))
        {
            self.status.clear_error();
        }
    }

    /// Records a failed connect and logs it, rate limited: the first
    /// failure, a change of the error, then at most one line a minute.
    fn connect_failed(&mut self, e: &io::Error) {
        let msg = e.to_string();
        self.status.set_error(format!("connect: {msg}"));
        let md5_hint = e.kind() == io::ErrorKind::TimedOut && self.md5.is_some();
        match self.connect_log.on_failure(&msg, Instant::now().into_std()) {
            Some(r) if md5_hint => warn!(
                peer = %self.p.name, error = %msg, failures = r.failures, suppressed = r.suppressed,
                "cannot connect to BGP peer: timed out with TCP MD5 configured: the MD5 password may not match the peer's (a mismatch is silent)"
            ),
            Some(r) => warn!(
                peer = %self.p.name, error = %msg, failures = r.failures, suppressed = r.suppressed,
                "cannot connect to BGP peer (retrying; repeated failures are logged at most once a minute)"
            ),
            None => debug!(error = %msg, "connect failed"),
        }
    }

    /// Sends Cease/connection collision resolution on `c` and drops it.
    async fn reject(&mut self, mut c: Conn) {
        debug!("rejecting colliding connection");
        let n = Notification::new(err::CEASE, err::CEASE_COLLISION, []);
        if let Ok(b) = encode_notification(&n) {
            let _ = tokio::time::timeout(Duration::from_secs(1), c.writer.write_all(&b)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), c.writer.shutdown()).await;
    }

    async fn incoming(&mut self, stream: TcpStream) {
        if self.p.peer.ttl_security {
            if let Err(e) = sockopt::set_gtsm(&stream, self.p.peer.address.is_ipv6()) {
                warn!(error = %e, "cannot set GTSM on accepted connection");
            }
        }
        let c = match adopt(stream, false) {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "accepted connection unusable");
                return;
            }
        };
        match self.fsm.state() {
            State::Idle | State::Connect | State::Active => {
                if let Some(h) = self.connecting.take() {
                    h.abort();
                }
                self.tcp_up();
                self.conn = Some(c);
                self.feed(Event::TcpConnected).await;
            }
            State::Established => self.reject(c).await,
            State::OpenConfirm => {
                let peer_id = self.fsm.negotiated().map(|n| n.peer_id);
                let current_outgoing = self.conn.as_ref().is_some_and(|c| c.outgoing);
                match peer_id {
                    Some(id) if current_outgoing && !keep_local_initiated(self.p.router_id, id) => {
                        self.switch_to(c, None).await
                    }
                    _ => self.reject(c).await,
                }
            }
            State::OpenSent => {
                if self.conn.as_ref().is_some_and(|c| c.outgoing) {
                    // Wait for this connection's OPEN to learn the peer's
                    // identifier, then keep one of the two.
                    if let Some(old) = self.pending.replace(c) {
                        self.reject(old).await;
                    }
                } else {
                    // The peer dialed again: it gave up on the old one.
                    self.switch_to(c, None).await;
                }
            }
        }
    }

    /// Drops the current connection with a collision Cease and continues
    /// on `c` (whose OPEN, if already read, is `open`).
    async fn switch_to(&mut self, c: Conn, open: Option<Received>) {
        debug!("connection collision: switching to the peer's connection");
        self.feed(Event::DecodeError(Notification::new(
            err::CEASE,
            err::CEASE_COLLISION,
            [],
        )))
        .await;
        self.conn = Some(c);
        self.feed(Event::TcpConnected).await;
        if let Some(m) = open {
            self.feed(Event::Message(m)).await;
        }
    }

    async fn pending_event(&mut self, ev: ReadEvent) {
        let Some(c) = self.pending.take() else { return };
        match ev {
            ReadEvent::Msg(Received::Open(o)) => {
                let ours_alive = self.conn.is_some()
                    && matches!(self.fsm.state(), State::OpenSent | State::OpenConfirm);
                if ours_alive && keep_local_initiated(self.p.router_id, o.bgp_id) {
                    self.reject(c).await;
                } else {
                    self.switch_to(c, Some(Received::Open(o))).await;
                }
            }
            _ => drop(c),
        }
    }

    async fn command(&mut self, c: PeerCmd) -> Flow {
        match c {
            PeerCmd::Incoming(stream) => {
                self.incoming(stream).await;
                Flow::Continue
            }
            PeerCmd::Stop(n, done) => {
                self.feed(Event::Stop(n)).await;
                self.close().await;
                let _ = done.send(());
                Flow::Exit
            }
            PeerCmd::Shutdown {
                mode,
                message,
                done,
            } => {
                self.shutdown(mode, &message).await;
                let _ = done.send(());
                Flow::Exit
            }
        }
    }

    async fn shutdown(&mut self, mode: ShutdownMode, message: &str) {
        let cease = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, message);
        if self.fsm.state() != State::Established {
            self.feed(Event::Stop(cease)).await;
            self.close().await;
            return;
        }
        match mode {
            ShutdownMode::Withdraw => {
                let plan = self.rib.withdraw_all();
                info!(
                    withdrawn = plan.withdrawn(),
                    "shutdown: withdrawing all routes"
                );
                self.send_plan(&plan).await;
                self.feed(Event::Stop(cease)).await;
            }
            ShutdownMode::GracefulRestart => {
                let notify = self
                    .fsm
                    .negotiated()
                    .is_some_and(|n| n.peer_graceful_notification);
                if notify {
                    // RFC 8538: with the N bit, a Cease (not Hard Reset)
                    // keeps our routes stale for the restart time.
                    info!("shutdown: keeping routes (graceful restart), sending Cease");
                    self.feed(Event::Stop(cease)).await;
                } else {
                    // Without the N bit a NOTIFICATION would flush our
                    // routes; a bare TCP close triggers graceful restart.
                    info!(
                        "shutdown: keeping routes (graceful restart), closing without NOTIFICATION"
                    );
                    self.close().await;
                }
            }
        }
        self.close().await;
    }

    async fn established(&mut self, n: Negotiated) -> Option<Event> {
        let local = self.conn.as_ref().map(|c| c.local)?;
        let (nh4, nh6) = next_hops(&self.p.peer, local);
        let ctx = EncodeCtx {
            local_asn: self.p.peer.local_asn,
            ibgp: self.p.peer.is_ibgp(),
            asn4: n.asn4,
            next_hop_v4: nh4,
            next_hop_v6: nh6,
            v4_in_mp: local.is_ipv6(),
        };
        self.families = n
            .families
            .iter()
            .copied()
            .filter(|&f| {
                let ok = ctx.can_announce(f);
                if !ok {
                    warn!(family = %f, local = %local,
                        "no next hop for {f} on this session (set next_hop_{} on the peer); not announcing it",
                        if f == Family::Ipv4 { "v4" } else { "v6" });
                }
                ok
            })
            .collect();
        info!(
            peer_id = %n.peer_id, hold = n.hold_time, families = ?n.families,
            graceful_restart = n.peer_graceful_restart, "session established"
        );
        self.ctx = Some(ctx);
        self.status.established_since = Some(SystemTime::now());
        self.status.families = n.families.clone();
        self.status.clear_error();
        self.status.end_of_rib_sent = false;
        self.rib.clear();
        self.synced = None;
        let hold = match self.p.graceful_restart {
            Some(t) => t.min(EOR_HOLD_MAX),
            None => EOR_HOLD_WITHOUT_GR,
        };
        self.eor_deadline = Some(Instant::now() + hold);
        if let Some(ev) = self.sync_now().await {
            return Some(ev);
        }
        self.check_eor().await
    }

    async fn sync(&mut self) {
        let ev = match self.sync_now().await {
            Some(ev) => Some(ev),
            None => self.check_eor().await,
        };
        match ev {
            Some(ev) => self.feed(ev).await,
            None => self.publish(),
        }
    }

    /// Brings the Adj-RIB-Out to the latest snapshot; returns an event if
    /// the write failed.
    async fn sync_now(&mut self) -> Option<Event> {
        let snap = self.snapshots.borrow_and_update().clone();
        if self
            .synced
            .as_ref()
            .is_some_and(|a| Arc::ptr_eq(a, &snap.announcements))
        {
            return None;
        }
        self.synced = Some(snap.announcements.clone());
        let ibgp = self.p.peer.is_ibgp();
        let plan = self.rib.sync(
            snap.announcements.iter().map(|(p, a)| (p, &a.attrs)),
            &self.families,
            ibgp,
        );
        if plan.is_empty() {
            return None;
        }
        debug!(
            announce = plan.announced(),
            withdraw = plan.withdrawn(),
            version = snap.version,
            "sending changes"
        );
        self.send_plan(&plan).await
    }

    async fn send_plan(&mut self, plan: &Plan) -> Option<Event> {
        let ctx = self.ctx.as_ref()?;
        self.out.clear();
        match encode_plan(plan, ctx, &mut self.out) {
            Ok(n) => self.status.updates_sent += n as u64,
            Err(e) => {
                warn!(error = %e, "cannot encode UPDATE; skipping");
                return None;
            }
        }
        let bytes = std::mem::take(&mut self.out);
        let ev = self.write_ref(&bytes).await;
        self.out = bytes;
        ev
    }

    async fn write_ref(&mut self, bytes: &[u8]) -> Option<Event> {
        let conn = self.conn.as_mut()?;
        // A peer that stops reading must not block us forever.
        let limit = self.p.peer.hold_time.max(Duration::from_secs(10));
        match tokio::time::timeout(limit, conn.writer.write_all(bytes)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                debug!(error = %e, "write failed");
                Some(Event::TcpClosed)
            }
            Err(_) => {
                warn!("peer did not read for {limit:?}; closing");
                Some(Event::TcpClosed)
            }
        }
    }

    /// Sends End-of-RIB once the initial sync is done and the local PoP's
    /// health is known (or the hold bound passed).
    async fn check_eor(&mut self) -> Option<Event> {
        let deadline = self.eor_deadline?;
        if self.fsm.state() != State::Established {
            return None;
        }
        let unknown = local_health_unknown(&self.snapshots.borrow());
        if unknown && Instant::now() < deadline {
            debug!("holding End-of-RIB: local PoP health not known yet");
            return None;
        }
        self.eor_deadline = None;
        let families = self.status.families.clone();
        let mut buf = Vec::new();
        for f in &families {
            if encode_end_of_rib(*f, &mut buf).is_ok() {
                self.status.updates_sent += 1;
            }
        }
        if let Some(ev) = self.write_ref(&buf).await {
            return Some(ev);
        }
        info!(
            prefixes = self.rib.len(),
            "initial sync complete, End-of-RIB sent"
        );
        self.status.end_of_rib_sent = true;
        None
    }
}

/// Next hops for the session: explicit ones, else the session's local
/// address for its own family. IPv6 over an IPv4 session (and IPv4 over
/// IPv6) needs an explicit next hop: we do not invent IPv4-mapped ones.
pub(crate) fn next_hops(
    peer: &Peer,
    local: IpAddr,
) -> (Option<Ipv4Addr>, Option<std::net::Ipv6Addr>) {
    let v4 = peer.next_hop_v4.or(match local {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    });
    let v6 = peer.next_hop_v6.or(match local {
        IpAddr::V6(a) if !a.is_unspecified() => Some(a),
        _ => None,
    });
    (v4, v6)
}
