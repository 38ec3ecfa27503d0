//! The socket task of one peer: the I/O shell around the sans-IO
//! [`Peer`] driver. It dials (with MD5 and GTSM), takes the connections the
//! listener hands it, frames and decodes what arrives, feeds all of it to
//! the driver with the current time, and carries out what the driver
//! returns: dial, write bytes, half-close, close. It also keeps the peer's
//! [`PeerStatus`] and logs.
//!
//! Every protocol decision (FSM, collisions, End-of-RIB, Adj-RIB-Out,
//! shutdown choreography) is the driver's, every routing decision the
//! core's; this task only moves bytes and timers. It must not decide
//! anything about the session itself.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::codec::{
    decode, encode_keepalive, encode_notification, encode_open, take_frame, Family, Notification,
    Received,
};
use super::eor::local_health_known;
use super::fsm::{FsmConfig, State};
use super::lograte::ConnectFailLog;
use super::peer::{self, ConnId, Input, Message, Output, PeerConfig, Report, Routes};
use super::sockopt::{self, Md5Key};
use super::speaker::{SHUTDOWN_FLUSH_TIMEOUT, SHUTDOWN_TIMEOUT};
use crate::core::Snapshot;
use crate::model::{Peer, PeerName, ShutdownMode};

/// How long a stopping session waits for the peer to close the connection
/// after our last message is written: within the speaker's
/// [`SHUTDOWN_TIMEOUT`], so the task closes its sockets itself before the
/// speaker gives up on it.
pub const STOP_LINGER: Duration = SHUTDOWN_TIMEOUT.saturating_sub(Duration::from_millis(500));

/// What the API and metrics see of one peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub remote_asn: u32,
    pub local_asn: u32,
    pub state: State,
    /// Wall-clock time the session reached Established (`None` when down).
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
    pub last_error_at: Option<SystemTime>,
    /// The BFD session to the peer, if `bfd` is configured.
    pub bfd: Option<crate::bfd::SessionStatus>,
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
            bfd: None,
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
    /// The content of `peer.md5_password_file`, read when the config was
    /// applied (start, reload), or why it could not be read.
    pub md5: Option<Result<Md5Key, String>>,
}

/// What a connection's reader reports.
enum ReadEvent {
    Msg(Received),
    Error(Notification),
    Closed(Option<io::Error>),
}

/// The writing side of one connection; its reader runs as its own task.
struct Conn {
    writer: OwnedWriteHalf,
    reader: JoinHandle<()>,
    /// Our side is shut down (FIN sent).
    half_closed: bool,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads, frames and decodes; stops after the first error or EOF.
async fn reader(
    id: ConnId,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    tx: mpsc::Sender<(ConnId, ReadEvent)>,
) {
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
                    if tx.send((id, ev)).await.is_err() || stop {
                        return;
                    }
                }
                Ok(None) => break,
                Err(n) => {
                    let _ = tx.send((id, ReadEvent::Error(n))).await;
                    return;
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                let _ = tx.send((id, ReadEvent::Closed(None))).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = tx.send((id, ReadEvent::Closed(Some(e)))).await;
                return;
            }
        }
    }
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

async fn join_dial(c: &mut Option<JoinHandle<io::Result<TcpStream>>>) -> io::Result<TcpStream> {
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

async fn bfd_changed(
    rx: &mut Option<watch::Receiver<crate::bfd::SessionStatus>>,
) -> Result<(), watch::error::RecvError> {
    match rx {
        Some(r) => r.changed().await,
        None => std::future::pending().await,
    }
}

fn routes_of(s: &Snapshot) -> Routes {
    Routes {
        version: s.version,
        announcements: s.announcements.clone(),
        local_health_known: local_health_known(s),
    }
}

struct Session {
    p: SessionParams,
    peer: peer::Peer,
    conns: BTreeMap<ConnId, Conn>,
    next_id: u64,
    events_tx: mpsc::Sender<(ConnId, ReadEvent)>,
    events: mpsc::Receiver<(ConnId, ReadEvent)>,
    dialing: Option<JoinHandle<io::Result<TcpStream>>>,
    md5: Option<Vec<u8>>,
    /// Rate limit of connect-failure log lines.
    connect_log: ConnectFailLog,
    status: PeerStatus,
    status_tx: watch::Sender<BTreeMap<PeerName, PeerStatus>>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cmds: mpsc::Receiver<PeerCmd>,
    /// Stopping: writes are bounded by this instead of the hold time.
    stop_deadline: Option<Instant>,
    /// Confirms a stop or shutdown once the driver is done.
    done: Option<oneshot::Sender<()>>,
    /// The peer's BFD session, if configured.
    bfd: Option<watch::Receiver<crate::bfd::SessionStatus>>,
}

/// Runs one peer until it is stopped or the process shuts down.
pub(crate) async fn run(
    p: SessionParams,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    cmds: mpsc::Receiver<PeerCmd>,
    status_tx: watch::Sender<BTreeMap<PeerName, PeerStatus>>,
    bfd: Option<watch::Receiver<crate::bfd::SessionStatus>>,
) {
    let md5 = match &p.md5 {
        Some(r) => match r {
            Ok(k) => Some(k.bytes().to_vec()),
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
    let peer = peer::Peer::new(PeerConfig {
        fsm: FsmConfig {
            local_asn: p.peer.local_asn,
            remote_asn: p.peer.remote_asn,
            router_id: p.router_id,
            hold_time: p.peer.hold_time.as_secs().min(u16::MAX as u64) as u16,
            min_hold_time: p.peer.min_hold_time.as_secs().min(u16::MAX as u64) as u16,
            connect_retry: p.peer.connect_retry,
            passive: p.peer.passive,
            families,
            graceful_restart: p.graceful_restart.map(|d| d.as_secs().min(4095) as u16),
            seed,
        },
        next_hop_v4: p.peer.next_hop_v4,
        next_hop_v6: p.peer.next_hop_v6,
    });
    let status = PeerStatus::new(&p.peer);
    let (events_tx, events) = mpsc::channel(1024);
    let mut s = Session {
        p,
        peer,
        conns: BTreeMap::new(),
        next_id: 0,
        events_tx,
        events,
        dialing: None,
        md5,
        connect_log: ConnectFailLog::default(),
        status,
        status_tx,
        snapshots,
        cmds,
        stop_deadline: None,
        done: None,
        bfd,
    };
    s.publish();
    let routes = routes_of(&s.snapshots.borrow_and_update());
    s.feed(Input::Routes(routes)).await;
    s.feed(Input::Start).await;
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
        self.status.state = self.peer.state();
        self.status.prefixes_advertised = self.peer.prefixes_advertised();
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
            let deadline = self.peer.next_deadline();
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => {
                        // The speaker is gone: close quietly.
                        self.close_all().await;
                        break;
                    }
                },
                r = join_dial(&mut self.dialing) => {
                    self.dialing = None;
                    self.dialed(r).await;
                }
                Some((id, ev)) = self.events.recv() => {
                    let input = match ev {
                        ReadEvent::Msg(m) => Input::Message(id, m),
                        ReadEvent::Error(n) => {
                            warn!(notification = %n, "malformed message from peer");
                            Input::Malformed(id, n)
                        }
                        ReadEvent::Closed(e) => {
                            if let Some(e) = e {
                                debug!(conn = %id, error = %e, "connection error");
                            }
                            Input::Closed(id)
                        }
                    };
                    self.feed(input).await;
                }
                r = self.snapshots.changed() => {
                    if r.is_err() {
                        // The core is gone (process ending): stop quietly.
                        break;
                    }
                    let routes = routes_of(&self.snapshots.borrow_and_update());
                    self.feed(Input::Routes(routes)).await;
                }
                r = bfd_changed(&mut self.bfd) => {
                    let input = match (r, &mut self.bfd) {
                        (Ok(()), Some(rx)) => {
                            let st = rx.borrow_and_update().clone();
                            let input = Input::Bfd {
                                failures: st.failures,
                                holds_down: st.holds_bgp_down,
                            };
                            self.status.bfd = Some(st);
                            input
                        }
                        _ => {
                            // The BFD task is gone (shutdown): it holds
                            // nothing down any more.
                            self.bfd = None;
                            self.status.bfd = None;
                            Input::Bfd { failures: 0, holds_down: false }
                        }
                    };
                    self.feed(input).await;
                }
                _ = sleep_opt(deadline) => self.feed(Input::Tick).await,
            }
            if self.peer.is_done() {
                if let Some(done) = self.done.take() {
                    let _ = done.send(());
                }
                break;
            }
        }
        self.publish();
    }

    async fn command(&mut self, c: PeerCmd) {
        match c {
            PeerCmd::Incoming(stream) => self.incoming(stream).await,
            PeerCmd::Stop(notification, done) => {
                let deadline = Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
                self.begin_stop(deadline, done);
                self.feed(Input::Stop {
                    notification,
                    deadline,
                })
                .await;
                self.written().await;
            }
            PeerCmd::Shutdown {
                mode,
                message,
                done,
            } => {
                let deadline = Instant::now() + SHUTDOWN_FLUSH_TIMEOUT;
                self.begin_stop(deadline, done);
                self.feed(Input::Shutdown {
                    mode,
                    message,
                    deadline,
                })
                .await;
                self.written().await;
            }
        }
    }

    /// The stop's last messages are written: from now on wait
    /// [`STOP_LINGER`] at most for the peer to close.
    async fn written(&mut self) {
        if !self.peer.is_done() {
            let linger_until = Instant::now() + STOP_LINGER;
            self.stop_deadline = Some(linger_until);
            self.feed(Input::Written { linger_until }).await;
        }
    }

    fn begin_stop(&mut self, deadline: Instant, done: oneshot::Sender<()>) {
        self.stop_deadline = Some(deadline);
        if let Some(earlier) = self.done.replace(done) {
            let _ = earlier.send(());
        }
    }

    /// Feeds an input and carries out the outputs (a failed write feeds
    /// the connection's closing back in).
    async fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            for o in self.peer.handle(input, Instant::now()) {
                if let Some(next) = self.execute(o).await {
                    queue.push_back(next);
                }
            }
        }
        self.publish();
    }

    async fn execute(&mut self, o: Output) -> Option<Input> {
        match o {
            Output::Dial => {
                if let Some(h) = self.dialing.take() {
                    h.abort();
                }
                let timeout = self.p.peer.connect_retry.max(Duration::from_secs(1));
                self.dialing = Some(tokio::spawn(connect(
                    self.p.peer.clone(),
                    self.md5.clone(),
                    timeout,
                )));
                None
            }
            Output::AbortDial { timed_out } => {
                if let Some(h) = self.dialing.take() {
                    if timed_out && !h.is_finished() {
                        // The connect-retry timer fired before the attempt
                        // ended (both run for `connect_retry`): that attempt
                        // timed out. Record it, or a peer that never answers
                        // would never show a failure.
                        self.connect_failed(&io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connect timed out",
                        ));
                    }
                    h.abort();
                }
                None
            }
            Output::Send(id, m) => self.send(id, m).await,
            Output::HalfClose(id) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.half_closed = true;
                    let _ = tokio::time::timeout(Duration::from_secs(1), c.writer.shutdown()).await;
                }
                None
            }
            Output::Close(id) => {
                self.close(id).await;
                None
            }
            Output::Report(r) => {
                self.report(r);
                None
            }
            Output::Done => None,
        }
    }

    async fn send(&mut self, id: ConnId, m: Message) -> Option<Input> {
        let bytes = match m {
            Message::Open(o) => match encode_open(&o) {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot encode OPEN");
                    self.conns.remove(&id);
                    return Some(Input::Closed(id));
                }
            },
            Message::Keepalive => encode_keepalive(),
            Message::Notification(n) => {
                warn!(notification = %n, "sending NOTIFICATION");
                encode_notification(&n).ok()?
            }
            Message::Updates { bytes, count } => {
                self.status.updates_sent += count as u64;
                bytes
            }
        };
        let conn = self.conns.get_mut(&id)?;
        // A peer that stops reading must not block us forever; a stopping
        // session gives up at its deadline.
        let limit = match self.stop_deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.p.peer.hold_time.max(Duration::from_secs(10)),
        };
        let failed = match tokio::time::timeout(limit, conn.writer.write_all(&bytes)).await {
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                debug!(conn = %id, error = %e, "write failed");
                true
            }
            Err(_) => {
                warn!("peer did not read for {limit:?}; closing");
                true
            }
        };
        if failed {
            self.conns.remove(&id);
            return Some(Input::Closed(id));
        }
        None
    }

    async fn close(&mut self, id: ConnId) {
        if let Some(mut c) = self.conns.remove(&id) {
            if !c.half_closed {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.writer.shutdown()).await;
            }
        }
    }

    async fn close_all(&mut self) {
        if let Some(h) = self.dialing.take() {
            h.abort();
        }
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id).await;
        }
    }

    /// Registers a connected stream: its reader starts, its id is returned
    /// with its local address.
    fn adopt(&mut self, stream: TcpStream) -> io::Result<(ConnId, IpAddr)> {
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?.ip().to_canonical();
        let (rd, writer) = stream.into_split();
        let id = ConnId(self.next_id);
        self.next_id += 1;
        let reader = tokio::spawn(reader(id, rd, self.events_tx.clone()));
        self.conns.insert(
            id,
            Conn {
                writer,
                reader,
                half_closed: false,
            },
        );
        Ok((id, local))
    }

    async fn dialed(&mut self, r: io::Result<TcpStream>) {
        match r.and_then(|stream| self.adopt(stream)) {
            Ok((conn, local)) => self.feed(Input::Dialed { conn, local }).await,
            Err(e) => {
                self.connect_failed(&e);
                self.feed(Input::DialFailed).await;
            }
        }
    }

    async fn incoming(&mut self, stream: TcpStream) {
        if self.p.peer.ttl_security {
            if let Err(e) = sockopt::set_gtsm(&stream, self.p.peer.address.is_ipv6()) {
                warn!(error = %e, "cannot set GTSM on accepted connection");
            }
        }
        match self.adopt(stream) {
            Ok((conn, local)) => self.feed(Input::Accepted { conn, local }).await,
            Err(e) => debug!(error = %e, "accepted connection unusable"),
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

    /// Records what the driver reports in the status, and logs it.
    fn report(&mut self, r: Report) {
        match r {
            Report::Connected(origin) => {
                debug!(?origin, "connected");
                self.tcp_up();
            }
            Report::Established {
                negotiated: n,
                announced: _,
                without_next_hop,
            } => {
                for f in without_next_hop {
                    warn!(family = %f,
                        "no next hop for {f} on this session (set next_hop_{} on the peer); not announcing it",
                        if f == Family::Ipv4 { "v4" } else { "v6" });
                }
                info!(
                    peer_id = %n.peer_id, hold = n.hold_time, families = ?n.families,
                    graceful_restart = n.peer_graceful_restart,
                    graceful_notification = n.graceful_notification, "session established"
                );
                self.status.established_since = Some(SystemTime::now());
                self.status.families = n.families;
                self.status.clear_error();
                self.status.end_of_rib_sent = false;
            }
            Report::Down {
                reason,
                was_established,
            } => {
                if was_established {
                    self.status.flaps += 1;
                    warn!(%reason, "session down");
                } else {
                    info!(%reason, "session attempt failed");
                }
                self.status.set_error(reason);
                self.status.established_since = None;
                self.status.families.clear();
                self.status.end_of_rib_sent = false;
            }
            Report::Changes {
                version,
                announced,
                withdrawn,
            } => debug!(
                announce = announced,
                withdraw = withdrawn,
                version,
                "sending changes"
            ),
            Report::EndOfRib { prefixes } => {
                info!(prefixes, "initial sync complete, End-of-RIB sent");
                self.status.end_of_rib_sent = true;
            }
            Report::RouteRefresh(f) => {
                info!(family = %f, "route refresh requested; re-sending Adj-RIB-Out")
            }
            Report::UpdateReceived {
                announced,
                withdrawn,
            } => {
                self.status.updates_received += 1;
                self.status.prefixes_received += announced as u64;
                self.status.withdrawals_received += withdrawn as u64;
            }
            Report::TreatAsWithdraw(why) => {
                // RFC 7606 treat-as-withdraw: we store no received routes,
                // so nothing to undo.
                warn!(error = %why, "malformed UPDATE attribute, treated as withdraw (RFC 7606)")
            }
            Report::Collision(what) => debug!("connection collision: {what}"),
            Report::Shutdown {
                mode,
                withdrawn,
                notification,
            } => match (mode, notification) {
                (ShutdownMode::Withdraw, n) => info!(
                    withdrawn,
                    notification = ?n.map(|n| n.to_string()),
                    "shutdown: withdrawing all routes"
                ),
                (ShutdownMode::GracefulRestart, Some(n)) => {
                    info!(notification = %n, "shutdown: keeping routes (graceful restart)")
                }
                (ShutdownMode::GracefulRestart, None) => info!(
                    "shutdown: keeping routes (graceful restart), closing without NOTIFICATION"
                ),
            },
            Report::EncodeError(e) => warn!(error = %e, "cannot encode UPDATE; skipping"),
        }
    }
}
