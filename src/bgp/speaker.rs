//! The public face of the BGP speaker: [`spawn`] starts one task per
//! configured peer plus the passive listener, [`BgpHandle`] exposes their
//! status and performs the SIGTERM shutdown.
//!
//! The manager task owns the peer tasks; it never touches routes. Its
//! configuration is `snapshot.config`: when the core publishes a reloaded
//! config the manager reconciles the peers against it. The
//! listener accepts only configured neighbors and hands each connection to
//! its peer task.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn, Instrument};

use super::codec::{err, Notification};
use super::lograte::{RejectDecision, RejectLog, RejectSummary};
use super::session::{self, PeerCmd, PeerStatus, SessionParams};
use super::sockopt;
use crate::bfd::BfdHandle;
use crate::core::Snapshot;
use crate::model::{BfdParams, BgpConfig, Config, Node, Peer, PeerName, ShutdownMode};

/// How long a stopping session waits for the peer to close the connection
/// once its withdrawals and Cease are written (the router acts on them).
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping session may take to write its withdrawals and Cease
/// (100,000 withdrawals are ~800 KB) before it gives up on a peer that does
/// not read; [`SHUTDOWN_TIMEOUT`] follows.
pub const SHUTDOWN_FLUSH_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a stop or shutdown of a peer takes.
const STOP_BOUND: Duration = SHUTDOWN_FLUSH_TIMEOUT.saturating_add(SHUTDOWN_TIMEOUT);
/// Shutdown communication sent with the Cease (RFC 8203).
pub const SHUTDOWN_MESSAGE: &str = "anypop shutting down";

/// Status of every peer by name.
pub type StatusMap = BTreeMap<PeerName, PeerStatus>;

enum Ctl {
    Shutdown(oneshot::Sender<()>),
}

/// Handle on the running speaker.
#[derive(Debug)]
pub struct BgpHandle {
    status: watch::Receiver<StatusMap>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ctl::Shutdown(_) => "Shutdown",
        })
    }
}

/// Starts the speaker on the config of the current snapshot: one task per
/// peer and the listener (if configured). Must be called inside a tokio
/// runtime.
pub fn spawn(snapshots: watch::Receiver<Arc<Snapshot>>) -> BgpHandle {
    let (status_tx, status) = watch::channel(StatusMap::new());
    let (ctl, ctl_rx) = mpsc::unbounded_channel();
    let (listen_peers, _) = watch::channel(Arc::new(BTreeMap::new()));
    let config = snapshots.borrow().config.clone();
    let mut m = Manager {
        node: config.node.clone(),
        bgp: config.bgp.clone(),
        snapshots,
        status_tx,
        peers: BTreeMap::new(),
        listener: None,
        listen_peers,
        bfd: None,
        bfd_sessions: BTreeMap::new(),
    };
    let task = tokio::spawn(async move {
        m.apply_all();
        m.run(ctl_rx, config).await;
    });
    BgpHandle { status, ctl, task }
}

impl BgpHandle {
    /// Live status of every peer (state, uptime, counters).
    pub fn status(&self) -> watch::Receiver<StatusMap> {
        self.status.clone()
    }

    /// SIGTERM: per `bgp.shutdown`, withdraw everything then Cease
    /// (administrative shutdown with a shutdown communication), or Cease
    /// without withdrawing so the routers keep our routes (graceful
    /// restart). Returns when every peer is done or after
    /// [`SHUTDOWN_FLUSH_TIMEOUT`] + [`SHUTDOWN_TIMEOUT`].
    pub async fn shutdown(self) {
        let (tx, rx) = oneshot::channel();
        if self.ctl.send(Ctl::Shutdown(tx)).is_ok() {
            let _ = tokio::time::timeout(STOP_BOUND + Duration::from_secs(1), rx).await;
        }
        self.task.abort();
    }
}

struct PeerTask {
    params: SessionParams,
    tx: mpsc::Sender<PeerCmd>,
    join: JoinHandle<()>,
}

/// What the listener needs to know about a peer.
#[derive(Clone)]
struct ListenPeer {
    tx: mpsc::Sender<PeerCmd>,
    md5: Option<Vec<u8>>,
    /// GTSM (`ttl_security`).
    gtsm: bool,
}

struct Manager {
    node: Node,
    bgp: BgpConfig,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    status_tx: watch::Sender<StatusMap>,
    peers: BTreeMap<PeerName, PeerTask>,
    listener: Option<(SocketAddr, JoinHandle<()>)>,
    listen_peers: watch::Sender<Arc<BTreeMap<IpAddr, ListenPeer>>>,
    /// BFD for the peers that have `bfd` configured (started with the first).
    bfd: Option<BfdHandle>,
    /// BFD sessions by peer address, with what they were made from.
    bfd_sessions: BTreeMap<IpAddr, BfdSession>,
}

struct BfdSession {
    local: Option<IpAddr>,
    params: BfdParams,
    status: watch::Receiver<crate::bfd::SessionStatus>,
}

fn params(node: &Node, bgp: &BgpConfig, peer: &Peer) -> SessionParams {
    SessionParams {
        name: peer.name.clone(),
        peer: peer.clone(),
        router_id: node.router_id,
        graceful_restart: bgp.graceful_restart,
        // Read on every start and reload: a rotated key (same file, new
        // content) makes a changed peer.
        md5: peer
            .md5_password_file
            .as_ref()
            .map(|f| sockopt::Md5Key::read(f).map_err(|e| e.to_string())),
    }
}

/// Whether two peer configurations would run the same session (the MD5
/// key by content: its `Debug` form hides it).
fn same(a: &SessionParams, b: &SessionParams) -> bool {
    a.md5 == b.md5 && format!("{a:?}") == format!("{b:?}")
}

impl Manager {
    /// The status of the BFD session to `peer`, made or updated to its
    /// current settings; `None` without `bfd`.
    fn bfd_for(&mut self, peer: &Peer) -> Option<watch::Receiver<crate::bfd::SessionStatus>> {
        let params = peer.bfd?;
        if let Some(s) = self.bfd_sessions.get(&peer.address) {
            if s.local == peer.local_address && s.params == params {
                return Some(s.status.clone());
            }
        }
        let status = self.bfd.get_or_insert_with(crate::bfd::spawn).add(
            peer.address,
            peer.local_address,
            params,
        );
        self.bfd_sessions.insert(
            peer.address,
            BfdSession {
                local: peer.local_address,
                params,
                status: status.clone(),
            },
        );
        Some(status)
    }

    /// Ends the BFD sessions no configured peer uses any more (they send
    /// AdminDown first).
    fn prune_bfd(&mut self) {
        let used: Vec<IpAddr> = self
            .peers
            .values()
            .filter(|t| t.params.peer.bfd.is_some())
            .map(|t| t.params.peer.address)
            .collect();
        let gone: Vec<IpAddr> = self
            .bfd_sessions
            .keys()
            .filter(|a| !used.contains(a))
            .copied()
            .collect();
        for a in gone {
            self.bfd_sessions.remove(&a);
            if let Some(b) = &self.bfd {
                b.remove(a);
            }
        }
    }

    fn start_peer(&mut self, params: SessionParams) {
        let bfd = self.bfd_for(&params.peer);
        let (tx, rx) = mpsc::channel(16);
        let span = tracing::info_span!("bgp", peer = %params.name, addr = %params.peer.address);
        let join = tokio::spawn(
            session::run(
                params.clone(),
                self.snapshots.clone(),
                rx,
                self.status_tx.clone(),
                bfd,
            )
            .instrument(span),
        );
        self.peers
            .insert(params.name.clone(), PeerTask { params, tx, join });
    }

    async fn stop_peer(&mut self, name: &PeerName, n: Notification) {
        if let Some(mut p) = self.peers.remove(name) {
            let (done, _wait) = oneshot::channel();
            if p.tx.send(PeerCmd::Stop(n, done)).await.is_ok() {
                // Wait for the task itself so its last status update lands
                // before the entry is removed.
                if tokio::time::timeout(STOP_BOUND, &mut p.join).await.is_err() {
                    p.join.abort();
                }
            } else {
                p.join.abort();
            }
        }
        self.status_tx.send_modify(|m| {
            m.remove(name);
        });
    }

    fn apply_all(&mut self) {
        let peers = self.bgp.peers.clone();
        for peer in &peers {
            if peer.passive && self.bgp.listen.is_none() {
                warn!(peer = %peer.name, "passive peer but no bgp.listen address: it can never connect");
            }
            self.start_peer(params(&self.node, &self.bgp, peer));
        }
        self.refresh_listener();
    }

    /// Applies a reloaded configuration: removed peers get Cease/peer
    /// de-configured, changed peers are restarted (Cease/other configuration
    /// change), new peers start. Unchanged peers keep their sessions.
    async fn reconfigure(&mut self, node: Node, bgp: BgpConfig) {
        let wanted: BTreeMap<PeerName, SessionParams> = bgp
            .peers
            .iter()
            .map(|p| (p.name.clone(), params(&node, &bgp, p)))
            .collect();
        let names: Vec<PeerName> = self.peers.keys().cloned().collect();
        for name in names {
            match wanted.get(&name) {
                None => {
                    info!(peer = %name, "peer removed from configuration");
                    self.stop_peer(
                        &name,
                        Notification::new(err::CEASE, err::CEASE_PEER_DECONFIGURED, []),
                    )
                    .await;
                }
                Some(w) => {
                    let changed = self.peers.get(&name).is_some_and(|t| !same(&t.params, w));
                    if changed {
                        info!(peer = %name, "peer configuration changed; restarting session");
                        self.stop_peer(
                            &name,
                            Notification::new(err::CEASE, err::CEASE_OTHER_CONFIG_CHANGE, []),
                        )
                        .await;
                    }
                }
            }
        }
        self.node = node;
        self.bgp = bgp;
        for (name, p) in wanted {
            if !self.peers.contains_key(&name) {
                self.start_peer(p);
            }
        }
        self.prune_bfd();
        self.refresh_listener();
    }

    /// (Re)starts the listener if its address changed and publishes the
    /// accepted peers.
    fn refresh_listener(&mut self) {
        let map: BTreeMap<IpAddr, ListenPeer> = self
            .peers
            .values()
            .map(|t| {
                let md5 = match &t.params.md5 {
                    Some(Ok(k)) => Some(k.bytes().to_vec()),
                    _ => None,
                };
                (
                    t.params.peer.address.to_canonical(),
                    ListenPeer {
                        tx: t.tx.clone(),
                        md5,
                        gtsm: t.params.peer.ttl_security,
                    },
                )
            })
            .collect();
        self.listen_peers.send_replace(Arc::new(map));
        let want = self.bgp.listen;
        if self.listener.as_ref().map(|l| l.0) == want {
            return;
        }
        if let Some((addr, h)) = self.listener.take() {
            info!(%addr, "stopping BGP listener");
            h.abort();
        }
        if let Some(addr) = want {
            let rx = self.listen_peers.subscribe();
            self.listener = Some((addr, tokio::spawn(listen(addr, rx))));
        }
    }

    /// Runs until shutdown, following every config the core publishes
    /// (`config` is the one the peers were started with).
    async fn run(&mut self, mut ctl: mpsc::UnboundedReceiver<Ctl>, mut config: Arc<Config>) {
        let mut snaps = self.snapshots.clone();
        let mut following = true;
        loop {
            if following {
                let latest = snaps.borrow_and_update().config.clone();
                if !Arc::ptr_eq(&latest, &config) {
                    config = latest;
                    self.reconfigure(config.node.clone(), config.bgp.clone())
                        .await;
                }
            }
            tokio::select! {
                c = ctl.recv() => match c {
                    Some(Ctl::Shutdown(done)) => {
                        self.shutdown().await;
                        let _ = done.send(());
                        return;
                    }
                    // Handle dropped without shutdown: stop quietly.
                    None => break,
                },
                r = snaps.changed(), if following => following = r.is_ok(),
            }
        }
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some((_, h)) = self.listener.take() {
            h.abort();
        }
        let mode = self.bgp.shutdown;
        info!(?mode, peers = self.peers.len(), "BGP shutdown");
        let mut waits = Vec::new();
        for (name, p) in std::mem::take(&mut self.peers) {
            let (done, wait) = oneshot::channel();
            let cmd = PeerCmd::Shutdown {
                mode,
                message: SHUTDOWN_MESSAGE.to_string(),
                done,
            };
            if p.tx.send(cmd).await.is_ok() {
                waits.push((name, wait, p.join));
            }
        }
        let all = async {
            for (name, wait, _) in &mut waits {
                if wait.await.is_err() {
                    debug!(peer = %name, "peer task ended before confirming shutdown");
                }
            }
        };
        if tokio::time::timeout(STOP_BOUND, all).await.is_err() {
            warn!("BGP shutdown timed out; closing remaining sessions");
        }
        for (_, _, join) in waits {
            join.abort();
        }
        if mode == ShutdownMode::GracefulRestart {
            debug!("routes left in place for graceful restart");
        }
        if let Some(b) = self.bfd.take() {
            // After the BGP sessions are closed. Withdraw: AdminDown tells
            // the routers at once. Graceful restart: fall silent, so a
            // router that would act on BFD sees the Cease first.
            b.shutdown(mode == ShutdownMode::Withdraw).await;
        }
    }
}

/// Accepts connections from configured neighbors only.
async fn listen(addr: SocketAddr, mut peers: watch::Receiver<Arc<BTreeMap<IpAddr, ListenPeer>>>) {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    };
    // The keys on the listening socket, by (mapped) address.
    let mut md5_installed: BTreeMap<IpAddr, Vec<u8>> = BTreeMap::new();
    let listener = match sock
        .and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(addr)?;
            Ok(s)
        })
        .and_then(|s| {
            let p = peers.borrow_and_update();
            sync_md5(&s, addr, &p, &mut md5_installed);
            apply_gtsm(&s, addr, &p);
            drop(p);
            s.listen(1024)
        }) {
        Ok(l) => l,
        Err(e) => {
            error!(%addr, error = %e, "cannot listen for BGP; passive peers will not connect");
            return;
        }
    };
    info!(%addr, "BGP listener up");
    let mut rejects = RejectLog::default();
    loop {
        let flush_at = rejects.next_flush();
        tokio::select! {
            _ = sleep_until_opt(flush_at) => {
                if let Some(s) = rejects.flush(std::time::Instant::now()) {
                    log_reject_summary(s);
                }
            }
            r = peers.changed() => {
                if r.is_err() {
                    return;
                }
                let p = peers.borrow_and_update();
                sync_md5(&listener, addr, &p, &mut md5_installed);
                apply_gtsm(&listener, addr, &p);
            }
            r = listener.accept() => match r {
                Ok((stream, remote)) => {
                    let ip = remote.ip().to_canonical();
                    let target = peers.borrow().get(&ip).map(|p| p.tx.clone());
                    match target {
                        Some(tx) => {
                            debug!(%remote, "accepted BGP connection");
                            if tx.try_send(PeerCmd::Incoming(stream)).is_err() {
                                debug!(%remote, "peer task busy; dropping connection");
                            }
                        }
                        None => {
                            let (summary, decision) = rejects.on_reject(ip, std::time::Instant::now());
                            if let Some(s) = summary {
                                log_reject_summary(s);
                            }
                            if decision == RejectDecision::Log {
                                info!(%remote, "rejected BGP connection from an unconfigured address (further ones from it are counted, summary once a minute)");
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

fn log_reject_summary(s: RejectSummary) {
    info!(
        suppressed = s.suppressed,
        sources = s.sources,
        "rejected {} more BGP connection(s) from unconfigured addresses in the last minute",
        s.suppressed
    );
}

async fn sleep_until_opt(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// What GTSM the listener gets: (SYN-ACKs with TTL 255, SYNs below 255
/// dropped). The first as soon as one peer uses GTSM; the second only when
/// all do (it applies to every source), else their connections are checked
/// once accepted.
fn listener_gtsm(peers: &BTreeMap<IpAddr, ListenPeer>) -> (bool, bool) {
    let any = peers.values().any(|p| p.gtsm);
    (any, any && peers.values().all(|p| p.gtsm))
}

fn apply_gtsm(
    sock: &impl std::os::fd::AsRawFd,
    addr: SocketAddr,
    peers: &BTreeMap<IpAddr, ListenPeer>,
) {
    let (send, require) = listener_gtsm(peers);
    if let Err(e) = sockopt::set_listener_gtsm(sock, addr.is_ipv6(), send, require) {
        warn!(%addr, error = %e, "cannot set GTSM on the BGP listener");
    }
}

/// Makes the listener's MD5 keys those of `peers`: new and changed keys
/// installed, keys of removed peers (or of peers that dropped MD5) deleted,
/// so a removed peer's old key never blocks that address. `installed` is
/// what the socket holds.
fn sync_md5(
    sock: &impl std::os::fd::AsRawFd,
    addr: SocketAddr,
    peers: &BTreeMap<IpAddr, ListenPeer>,
    installed: &mut BTreeMap<IpAddr, Vec<u8>>,
) {
    let wanted: BTreeMap<IpAddr, &Vec<u8>> = peers
        .iter()
        .filter_map(|(ip, p)| {
            let key = p.md5.as_ref()?;
            // On an IPv6 socket, IPv4 peers arrive as IPv4-mapped addresses.
            match (addr, ip) {
                (SocketAddr::V6(_), IpAddr::V4(v4)) => Some((IpAddr::V6(v4.to_ipv6_mapped()), key)),
                (SocketAddr::V4(_), IpAddr::V6(_)) => None,
                _ => Some((*ip, key)),
            }
        })
        .collect();
    installed.retain(|ip, _| {
        if wanted.contains_key(ip) {
            return true;
        }
        match sockopt::set_md5(sock, *ip, &[]) {
            Ok(()) => {
                info!(peer = %ip, "MD5 key removed from the BGP listener");
                false
            }
            Err(e) => {
                warn!(peer = %ip, error = %e, "cannot remove MD5 key from the listener");
                true
            }
        }
    });
    for (ip, key) in wanted {
        if installed.get(&ip) == Some(key) {
            continue;
        }
        match sockopt::set_md5(sock, ip, key) {
            Ok(()) => {
                installed.insert(ip, key.clone());
            }
            Err(e) => warn!(peer = %ip, error = %e, "cannot install MD5 key on the listener"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::{
        decode, encode_keepalive, encode_open, take_frame, Family, LocalOpen, Received,
    };
    use super::super::fsm::State;
    use super::*;
    use crate::core::{AnnounceMode, Announcement, PopState, PopStatus};
    use crate::model::{Config, Name, RouteAttrs};
    use bytes::BytesMut;
    use ipnet::IpNet;
    use std::net::Ipv4Addr;
    use std::time::SystemTime;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn listener_gtsm_requires_255_only_when_every_peer_uses_it() {
        let (tx, _rx) = mpsc::channel(1);
        let peer = |gtsm| ListenPeer {
            tx: tx.clone(),
            md5: None,
            gtsm,
        };
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        let mut peers = BTreeMap::new();
        assert_eq!(listener_gtsm(&peers), (false, false));
        peers.insert(ip(1), peer(true));
        assert_eq!(listener_gtsm(&peers), (true, true));
        peers.insert(ip(2), peer(false));
        assert_eq!(listener_gtsm(&peers), (true, false), "mixed");
        peers.remove(&ip(1));
        assert_eq!(listener_gtsm(&peers), (false, false));
    }

    fn node() -> Node {
        crate::testutil::node("n1", Some("pop1"), Ipv4Addr::new(192, 0, 2, 2), 65001)
    }

    fn bgp(port: u16, gr: Option<Duration>, shutdown: ShutdownMode) -> BgpConfig {
        BgpConfig {
            listen: None,
            peers: vec![Peer {
                name: Name::parse("r1").unwrap(),
                address: "127.0.0.1".parse().unwrap(),
                port,
                remote_asn: 65000,
                local_asn: 65001,
                local_address: None,
                passive: false,
                hold_time: Duration::from_secs(9),
                min_hold_time: Duration::from_secs(3),
                connect_retry: Duration::from_secs(1),
                md5_password_file: None,
                ttl_security: false,
                ipv4_unicast: true,
                ipv6_unicast: true,
                next_hop_v4: None,
                next_hop_v6: Some("2001:db8::2".parse().unwrap()),
                bfd: None,
            }],
            shutdown,
            graceful_restart: gr,
        }
    }

    fn snapshot(
        version: u64,
        healthy: Option<bool>,
        prefixes: &[&str],
        bgp: &BgpConfig,
    ) -> Arc<Snapshot> {
        let config = Arc::new(Config {
            bgp: bgp.clone(),
            ..crate::testutil::config(node(), [])
        });
        let pop = Name::parse("pop1").unwrap();
        let mut pops = BTreeMap::new();
        pops.insert(
            pop.clone(),
            PopStatus {
                state: PopState::Up,
                healthy,
                serves_dns: true,
                reason: String::new(),
                since: SystemTime::now(),
                changed_at: tokio::time::Instant::now(),
                checks: BTreeMap::new(),
                admin: None,
                admin_unsaved: None,
                fail_static: None,
            },
        );
        let attrs = RouteAttrs {
            prepend: 2,
            med: Some(10),
            local_pref: Some(50),
            communities: vec![(65001, 7)],
            large_communities: vec![(65001, 1, 2)],
        };
        Arc::new(Snapshot {
            version,
            published: SystemTime::now(),
            config,
            pops,
            announcements: Arc::new(
                prefixes
                    .iter()
                    .map(|p| {
                        (
                            p.parse::<IpNet>().unwrap(),
                            Announcement {
                                pop: pop.clone(),
                                mode: AnnounceMode::Normal,
                                attrs: attrs.clone(),
                            },
                        )
                    })
                    .collect(),
            ),
            fleet: None,
        })
    }

    /// A scripted router on the other end of the TCP connection.
    struct FakeRouter {
        s: TcpStream,
        buf: BytesMut,
    }

    impl FakeRouter {
        async fn next(&mut self) -> Received {
            loop {
                if let Some(f) = take_frame(&mut self.buf).unwrap() {
                    return decode(&f).unwrap();
                }
                let n =
                    tokio::time::timeout(Duration::from_secs(10), self.s.read_buf(&mut self.buf))
                        .await
                        .expect("speaker sent nothing for 10 s")
                        .unwrap();
                assert!(n > 0, "speaker closed the connection");
            }
        }

        /// Next message that is not a KEEPALIVE.
        async fn next_non_keepalive(&mut self) -> Received {
            loop {
                match self.next().await {
                    Received::Keepalive => continue,
                    m => return m,
                }
            }
        }

        async fn handshake(l: &TcpListener) -> FakeRouter {
            let (s, _) = l.accept().await.unwrap();
            let mut r = FakeRouter {
                s,
                buf: BytesMut::new(),
            };
            let Received::Open(o) = r.next().await else {
                panic!("expected OPEN")
            };
            assert_eq!(o.asn(), 65001);
            assert_eq!(o.families, vec![Family::Ipv4, Family::Ipv6]);
            let open = encode_open(&LocalOpen {
                asn: 65000,
                hold_time: 9,
                bgp_id: Ipv4Addr::new(192, 0, 2, 1),
                families: vec![Family::Ipv4, Family::Ipv6],
                graceful_restart: Some(120),
                restarted: false,
            })
            .unwrap();
            r.s.write_all(&open).await.unwrap();
            r.s.write_all(&encode_keepalive()).await.unwrap();
            assert_eq!(r.next().await, Received::Keepalive);
            r
        }

        /// Reads UPDATEs until End-of-RIB for both families; returns the
        /// announced count.
        async fn until_eor(&mut self) -> u32 {
            let mut announced = 0;
            let mut eor = Vec::new();
            while eor.len() < 2 {
                let Received::Update(u) = self.next_non_keepalive().await else {
                    panic!("expected UPDATE")
                };
                announced += u.announced;
                if let Some(f) = u.end_of_rib {
                    eor.push(f);
                }
            }
            announced
        }
    }

    #[tokio::test]
    async fn announce_withdraw_and_withdrawing_shutdown_over_tcp() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = bgp(l.local_addr().unwrap().port(), None, ShutdownMode::Withdraw);
        let (snap_tx, snap_rx) = watch::channel(snapshot(
            1,
            Some(true),
            &["203.0.113.0/24", "198.51.100.0/24", "2001:db8:1::/48"],
            &cfg,
        ));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        assert_eq!(r.until_eor().await, 3);
        let mut st = h.status();
        tokio::time::timeout(
            Duration::from_secs(5),
            st.wait_for(|m| {
                m.get("r1")
                    .is_some_and(|s| s.state == State::Established && s.prefixes_advertised == 3)
            }),
        )
        .await
        .unwrap()
        .unwrap();

        // The PoP loses one prefix: one withdraw, nothing else.
        snap_tx.send_replace(snapshot(
            2,
            Some(true),
            &["203.0.113.0/24", "2001:db8:1::/48"],
            &cfg,
        ));
        let Received::Update(u) = r.next_non_keepalive().await else {
            panic!()
        };
        assert_eq!((u.announced, u.withdrawn), (0, 1));

        // The router asks for a refresh: the IPv4 Adj-RIB-Out again.
        r.s.write_all(&super::super::codec::encode_route_refresh(Family::Ipv4).unwrap())
            .await
            .unwrap();
        let Received::Update(u) = r.next_non_keepalive().await else {
            panic!()
        };
        assert_eq!((u.announced, u.withdrawn), (1, 0));

        // SIGTERM with shutdown: withdraw, then Cease/administrative shutdown.
        let shut = tokio::spawn(h.shutdown());
        let mut withdrawn = 0;
        let n = loop {
            match r.next_non_keepalive().await {
                Received::Update(u) => withdrawn += u.withdrawn,
                Received::Notification(n) => break n,
                m => panic!("unexpected {m:?}"),
            }
        };
        assert_eq!(withdrawn, 2);
        assert_eq!((n.code, n.subcode), (6, 2));
        assert_eq!(n.shutdown_message().as_deref(), Some(SHUTDOWN_MESSAGE));
        shut.await.unwrap();
    }

    #[tokio::test]
    async fn graceful_restart_holds_end_of_rib_until_health_is_known_and_keeps_routes_on_shutdown()
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = bgp(
            l.local_addr().unwrap().port(),
            Some(Duration::from_secs(120)),
            ShutdownMode::GracefulRestart,
        );
        let (snap_tx, snap_rx) = watch::channel(snapshot(1, None, &[], &cfg));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        // Health unknown: no End-of-RIB (the router keeps our stale routes).
        let early = tokio::time::timeout(Duration::from_millis(500), r.next_non_keepalive()).await;
        assert!(early.is_err(), "nothing may be sent yet, got {early:?}");
        // Health known: routes, then End-of-RIB.
        snap_tx.send_replace(snapshot(2, Some(true), &["203.0.113.0/24"], &cfg));
        assert_eq!(r.until_eor().await, 1);
        // Graceful shutdown: the peer set the N bit, so Cease without withdrawing.
        let shut = tokio::spawn(h.shutdown());
        match r.next_non_keepalive().await {
            Received::Notification(n) => assert_eq!((n.code, n.subcode), (6, 2)),
            m => panic!("expected Cease, got {m:?}"),
        }
        shut.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_from_peer_gets_notification_and_session_retries() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = bgp(l.local_addr().unwrap().port(), None, ShutdownMode::Withdraw);
        let (_snap_tx, snap_rx) =
            watch::channel(snapshot(1, Some(true), &["203.0.113.0/24"], &cfg));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        r.until_eor().await;
        // A bad marker.
        let mut bad = encode_keepalive();
        bad[0] = 0;
        r.s.write_all(&bad).await.unwrap();
        let n = loop {
            match r.next().await {
                Received::Notification(n) => break n,
                _ => continue,
            }
        };
        assert_eq!((n.code, n.subcode), (1, 1));
        // The speaker reconnects (after backoff) and resyncs.
        let mut r = FakeRouter::handshake(&l).await;
        assert_eq!(r.until_eor().await, 1);
        let st = h.status().borrow().get("r1").cloned().unwrap();
        assert_eq!(st.flaps, 1);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn connect_error_is_timestamped_and_cleared_once_tcp_connects() {
        // A port nobody listens on (yet).
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = bgp(port, None, ShutdownMode::Withdraw);
        let (_snap_tx, snap_rx) =
            watch::channel(snapshot(1, Some(true), &["203.0.113.0/24"], &cfg));
        let before = SystemTime::now();
        let h = spawn(snap_rx);
        let mut st = h.status();
        let failed = tokio::time::timeout(
            Duration::from_secs(10),
            st.wait_for(|m| m.get("r1").is_some_and(|s| s.last_error.is_some())),
        )
        .await
        .unwrap()
        .unwrap()
        .get("r1")
        .cloned()
        .unwrap();
        assert!(
            failed
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("connect: ")),
            "{failed:?}"
        );
        assert!(
            failed.last_error_at.is_some_and(|t| t >= before),
            "{failed:?}"
        );
        // The router comes up: once TCP connects the connect error is gone,
        // before and after the session is established.
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let (s, _) = tokio::time::timeout(Duration::from_secs(40), l.accept())
            .await
            .unwrap()
            .unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            st.wait_for(|m| {
                m.get("r1").is_some_and(|s| {
                    s.state == State::OpenSent
                        && s.last_error.is_none()
                        && s.last_error_at.is_none()
                })
            }),
        )
        .await
        .unwrap()
        .unwrap();
        drop(s);
        h.shutdown().await;
    }

    #[tokio::test]
    async fn reloaded_config_in_the_snapshot_removes_and_adds_peers() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = bgp(l.local_addr().unwrap().port(), None, ShutdownMode::Withdraw);
        let (snap_tx, snap_rx) = watch::channel(snapshot(1, Some(true), &["203.0.113.0/24"], &cfg));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        r.until_eor().await;
        // A reload with the same peer settings: the session is untouched
        // (a restart would send Cease/other configuration change first).
        snap_tx.send_replace(snapshot(2, Some(true), &["203.0.113.0/24"], &cfg));
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Peer removed: Cease/peer de-configured, status entry gone.
        let mut empty = cfg.clone();
        empty.peers.clear();
        snap_tx.send_replace(snapshot(3, Some(true), &["203.0.113.0/24"], &empty));
        let n = loop {
            match r.next().await {
                Received::Notification(n) => break n,
                _ => continue,
            }
        };
        assert_eq!((n.code, n.subcode), (6, 3));
        let mut st = h.status();
        tokio::time::timeout(Duration::from_secs(5), st.wait_for(|m| m.is_empty()))
            .await
            .unwrap()
            .unwrap();
        // Added back: a new session comes up.
        snap_tx.send_replace(snapshot(4, Some(true), &["203.0.113.0/24"], &cfg));
        let mut r = FakeRouter::handshake(&l).await;
        assert_eq!(r.until_eor().await, 1);
        h.shutdown().await;
    }

    /// The first NOTIFICATION `r` receives, within 10 s.
    async fn notification(r: &mut FakeRouter) -> Notification {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Received::Notification(n) = r.next().await {
                    return n;
                }
            }
        })
        .await
        .expect("a NOTIFICATION within 10 s")
    }

    #[tokio::test]
    async fn md5_key_rotated_in_its_file_restarts_the_session_on_reload() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("r1.md5");
        std::fs::write(&key, "old-key\n").unwrap();
        sockopt::set_md5(&l, lo, b"old-key").unwrap();
        let mut cfg = bgp(l.local_addr().unwrap().port(), None, ShutdownMode::Withdraw);
        cfg.peers[0].md5_password_file = Some(key.clone());
        let (snap_tx, snap_rx) = watch::channel(snapshot(1, Some(true), &["203.0.113.0/24"], &cfg));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        r.until_eor().await;
        // Both sides rotate the key; the config itself (the path) is the same.
        std::fs::write(&key, "new-key\n").unwrap();
        sockopt::set_md5(&l, lo, b"new-key").unwrap();
        snap_tx.send_replace(snapshot(2, Some(true), &["203.0.113.0/24"], &cfg));
        // The old session ends with Cease/other configuration change and a
        // new one comes up: the router only accepts it signed with the new key.
        let n = notification(&mut r).await;
        assert_eq!((n.code, n.subcode), (6, 6));
        let mut r = tokio::time::timeout(Duration::from_secs(10), FakeRouter::handshake(&l))
            .await
            .expect("a session signed with the new key");
        assert_eq!(r.until_eor().await, 1);
        h.shutdown().await;
    }

    /// Connects to `port` on 127.0.0.1 without MD5: `Some(true)` connected,
    /// `Some(false)` no answer within 500 ms (an MD5 key for 127.0.0.1 on
    /// the listener drops unsigned SYNs), `None` refused (nothing listens).
    async fn unsigned_connect(port: u16) -> Option<bool> {
        let c = TcpStream::connect(("127.0.0.1", port));
        match tokio::time::timeout(Duration::from_millis(500), c).await {
            Ok(Ok(_)) => Some(true),
            Ok(Err(_)) => None,
            Err(_) => Some(false),
        }
    }

    #[tokio::test]
    async fn listener_deletes_the_md5_key_of_a_removed_peer() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("r1.md5");
        std::fs::write(&key, "s3cret\n").unwrap();
        let mut cfg = bgp(179, None, ShutdownMode::Withdraw);
        cfg.listen = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        cfg.peers[0].passive = true;
        cfg.peers[0].md5_password_file = Some(key);
        let (snap_tx, snap_rx) = watch::channel(snapshot(1, Some(true), &[], &cfg));
        let h = spawn(snap_rx);
        // Listening with the peer's key: unsigned SYNs from it go unanswered.
        let mut keyed = false;
        for _ in 0..40 {
            match unsigned_connect(port).await {
                Some(false) => {
                    keyed = true;
                    break;
                }
                Some(true) => panic!("unsigned connection accepted despite the MD5 key"),
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        assert!(keyed, "listener never came up with the key");
        // The peer is removed: its key goes, the address connects again
        // (and is turned away as unconfigured, after the handshake).
        let mut without = cfg.clone();
        without.peers.clear();
        snap_tx.send_replace(snapshot(2, Some(true), &[], &without));
        let mut open = false;
        for _ in 0..20 {
            if unsigned_connect(port).await == Some(true) {
                open = true;
                break;
            }
        }
        assert!(open, "the removed peer's MD5 key is still on the listener");
        h.shutdown().await;
    }

    #[tokio::test]
    async fn end_of_rib_hold_is_bounded_by_the_restart_time() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = bgp(
            l.local_addr().unwrap().port(),
            Some(Duration::from_secs(1)),
            ShutdownMode::Withdraw,
        );
        // Health never becomes known.
        let (_snap_tx, snap_rx) = watch::channel(snapshot(1, None, &[], &cfg));
        let h = spawn(snap_rx);
        let mut r = FakeRouter::handshake(&l).await;
        let t = std::time::Instant::now();
        assert_eq!(r.until_eor().await, 0);
        assert!(
            t.elapsed() >= Duration::from_millis(800),
            "End-of-RIB came after {:?}",
            t.elapsed()
        );
        h.shutdown().await;
    }
}
