//! Hostile load against a real anypop with a BGP session to real FRR.
//!
//! Three namespaces: r1 (FRR, the frr-anycast router config), pop1 (anypop:
//! BGP to r1 and listening on port 179, DNS on 0.0.0.0:53, API on
//! 0.0.0.0:8080 with a token, one `file` check every 200 ms) and atk (100
//! addresses in 198.51.100.0/24, none of them a configured peer). For
//! [`LOAD`], all at once from atk:
//!
//! - 1,000 slow DNS TCP clients: half pipeline queries and never read, half
//!   send a query one byte at a time; closed ones reconnect;
//! - a UDP query flood (paced at [`FLOOD_QPS`], steered and NXDOMAIN names);
//! - 200 slow API clients: a request whose header never ends, one byte per
//!   tick; closed ones reconnect;
//! - connection storms on port 179: connect and close, connect and send
//!   garbage, connect and hold.
//!
//! During it a legitimate client in r1's namespace (another /24) must keep
//! getting the steered answer over UDP from real `dig`, `/healthz` with the
//! token must answer 200, FRR's session must stay Established (the same
//! session: no reset), and the check's last probe time in `/v1/checks` must
//! keep advancing. After it anypop's open file descriptors and RSS must come
//! back near their baseline ([`FD_SLACK`], [`RSS_SLACK_KIB`]). The figures
//! are printed (`cargo test --test hostile_load -- --nocapture`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anypop_integration::lab::anypop::PopNode;
use anypop_integration::lab::frr::Frr;
use anypop_integration::lab::{lab_available, rss_kib, topology_file, Lab, WAIT};
use anypop_integration::{dns, http, metric, wait_until};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How long the hostile load runs.
const LOAD: Duration = Duration::from_secs(25);
const DNS_TCP_CLIENTS: usize = 1000;
const API_CLIENTS: usize = 200;
/// UDP flood rate aimed at (queries per second, paced).
const FLOOD_QPS: u64 = 30_000;
/// Attacker source addresses: 198.51.100.10 .. 198.51.100.109.
const ATK_ADDRS: u8 = 100;
/// Open descriptors allowed above the baseline once the load is gone.
const FD_SLACK: usize = 16;
/// RSS allowed above the baseline once the load is gone (KiB). Generous:
/// the allocator keeps freed buffers for reuse (measured: +30 MiB after a
/// peak of +37 MiB), but the attackers open some 40,000 connections, so a
/// leak of 2 KiB per connection exceeds it.
const RSS_SLACK_KIB: u64 = 64 * 1024;
/// Each window of the load must show at least one new probe of the check
/// (it probes every 200 ms).
const PROBE_WINDOW: Duration = Duration::from_secs(5);

const POP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const POP1_ATK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const TOKEN: &str = "hostile-load-test-token";
const ANSWER: &str = "203.0.113.10";

fn config() -> String {
    format!(
        r#"node:
  name: pop1
  pop: pop1
  router_id: {POP1}
  asn: 65001
  state_dir: /var/lib/anypop
bgp:
  listen: 0.0.0.0:179
  peers:
    - name: r1-v4
      address: 192.0.2.1
      remote_asn: 65000
      hold_time: 9s
      connect_retry: 1s
      families: [ipv4]
pops:
  - name: pop1
    prefixes: [203.0.113.0/24]
    addresses: [{ANSWER}]
    checks:
      - name: service
        type: file
        path: /run/anypop/pop1.down
        healthy_when: absent
        interval: 200ms
        rise: 1
        fall: 1
dns:
  listen: ["0.0.0.0:53"]
  zones:
    - origin: anycast.test.
      ns: [ns1.anycast.test.]
      soa: {{rname: hostmaster.anycast.test., serial: 1}}
      ttl: 300
      records:
        - {{name: ns1, type: A, values: [192.0.2.53]}}
        - name: www
          ttl: 30
          steer: {{policy: failover, pops: [pop1]}}
api:
  listen: 0.0.0.0:8080
  token_file: /run/anypop/token
"#
    )
}

/// Raises this process's open-file limit (the clients need ~1,300
/// descriptors; anypop, our child, inherits the limit).
fn raise_nofile(want: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        if r.rlim_cur < want {
            if r.rlim_max < want {
                r.rlim_max = want;
            }
            r.rlim_cur = want;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                panic!(
                    "cannot raise RLIMIT_NOFILE to {want}: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
    }
    r.rlim_cur
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn atk_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10 + (i % ATK_ADDRS as usize) as u8)
}

/// When the attackers stop: when told (also when the test unwinds: the
/// [`StopOnDrop`] guard) and at the latest at a hard deadline, so no load
/// loop outlives a hung test.
struct Stop {
    flag: AtomicBool,
    hard_deadline: Instant,
}

impl Stop {
    fn now(&self) -> bool {
        self.flag.load(Relaxed) || Instant::now() >= self.hard_deadline
    }
}

/// Tells the attackers to stop when dropped.
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.flag.store(true, Relaxed);
    }
}

/// What the attacker did (client side).
#[derive(Default)]
struct Counters {
    dns_tcp_connects: AtomicU64,
    dns_tcp_closed: AtomicU64,
    api_connects: AtomicU64,
    api_closed: AtomicU64,
    bgp_connects: AtomicU64,
    bgp_failed: AtomicU64,
    udp_sent: AtomicU64,
    udp_answers: AtomicU64,
    connect_failed: AtomicU64,
}

fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, c: &Counters) -> Option<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).ok()?;
    s.bind(&SockAddr::from(SocketAddrV4::new(src, 0))).ok()?;
    match s.connect_timeout(&SockAddr::from(dst), Duration::from_millis(500)) {
        Ok(()) => {
            let t: TcpStream = s.into();
            t.set_nonblocking(true).ok()?;
            Some(t)
        }
        Err(_) => {
            c.connect_failed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// True while the peer has not closed or reset the connection (reads and
/// drops whatever it sent).
fn still_open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// Writes what the socket takes now: the bytes taken, or `None` when the
/// connection is gone.
fn write_some(s: &mut TcpStream, bytes: &[u8]) -> Option<usize> {
    match s.write(bytes) {
        Ok(n) => Some(n),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Some(0),
        Err(_) => None,
    }
}

/// How a slow client behaves.
#[derive(Clone, Copy)]
enum Slow {
    /// DNS over TCP: pipeline queries, never read.
    DnsPipeline,
    /// DNS over TCP: one query, one byte per tick.
    DnsTrickle,
    /// HTTP: a request whose header never ends, one byte per tick.
    HttpTrickle,
}

struct Client {
    kind: Slow,
    src: Ipv4Addr,
    conn: Option<TcpStream>,
    /// Bytes sent on the current connection: the position in the stream
    /// of queries (pipeline: partial writes resume where they stopped) or
    /// in the trickled message.
    sent: usize,
}

/// Runs `clients` slow clients against `dst` until `stop`, one tick every
/// 200 ms; a closed connection is reconnected on a later tick (at most 64
/// connects per tick, so a tick stays short).
fn slow_clients(mut clients: Vec<Client>, dst: SocketAddrV4, stop: Arc<Stop>, c: Arc<Counters>) {
    let pipeline = dns::tcp_query_a(7, "www.anycast.test").repeat(20);
    let trickle = dns::tcp_query_a(8, "www.anycast.test");
    let http_head = b"GET /v1/state HTTP/1.1\r\nHost: 198.51.100.1\r\nX-Slow: ".to_vec();
    while !stop.now() {
        let tick = Instant::now();
        let mut connects = 0;
        for cl in clients.iter_mut() {
            let (connects_ctr, closed_ctr) = match cl.kind {
                Slow::HttpTrickle => (&c.api_connects, &c.api_closed),
                _ => (&c.dns_tcp_connects, &c.dns_tcp_closed),
            };
            let Some(s) = cl.conn.as_mut() else {
                if connects < 64 {
                    connects += 1;
                    cl.conn = connect_from(cl.src, dst, &c);
                    cl.sent = 0;
                    if cl.conn.is_some() {
                        connects_ctr.fetch_add(1, Relaxed);
                    }
                }
                continue;
            };
            let wrote = match cl.kind {
                Slow::DnsPipeline => write_some(s, &pipeline[cl.sent % pipeline.len()..]),
                Slow::DnsTrickle => {
                    let b = trickle[cl.sent % trickle.len()];
                    still_open(s).then(|| write_some(s, &[b])).flatten()
                }
                Slow::HttpTrickle => {
                    let b = http_head.get(cl.sent).copied().unwrap_or(b'a');
                    still_open(s).then(|| write_some(s, &[b])).flatten()
                }
            };
            if let Some(n) = wrote {
                cl.sent += n;
            } else {
                cl.conn = None;
                closed_ctr.fetch_add(1, Relaxed);
            }
        }
        let left = Duration::from_millis(200).saturating_sub(tick.elapsed());
        std::thread::sleep(left);
    }
}

/// Connection storms on port 179: connect and close, connect and send
/// garbage, connect and hold (up to 50 held, oldest dropped), paced at
/// about 200 connects per second per thread.
fn bgp_storm(seed: usize, stop: Arc<Stop>, c: Arc<Counters>) {
    let dst = SocketAddrV4::new(POP1_ATK, 179);
    let mut held: std::collections::VecDeque<TcpStream> = Default::default();
    let mut i = seed;
    while !stop.now() {
        i += 1;
        match connect_from(atk_addr(i), dst, &c) {
            Some(mut s) => {
                c.bgp_connects.fetch_add(1, Relaxed);
                match i % 3 {
                    0 => drop(s),
                    1 => {
                        let _ = s.write(&[0xff; 16]);
                        let _ = s.write(&[0, 29, 1, 4, 0xfc, 0, 0, 9, 1, 2, 3, 4, 0]);
                    }
                    _ => {
                        held.push_back(s);
                        if held.len() > 50 {
                            held.pop_front();
                        }
                    }
                }
            }
            None => {
                c.bgp_failed.fetch_add(1, Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The UDP flood: 16 sockets on attacker addresses, paced at
/// [`FLOOD_QPS`], nine steered queries for one NXDOMAIN; answers drained
/// and counted (rate limiting drops or truncates most of them).
fn udp_flood(stop: Arc<Stop>, c: Arc<Counters>) {
    let dst = SocketAddr::from((POP1_ATK, 53));
    let socks: Vec<UdpSocket> = (0..16)
        .filter_map(|i| {
            let s = UdpSocket::bind((atk_addr(i * 7), 0)).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    assert!(!socks.is_empty(), "no UDP flood socket");
    let queries: Vec<Vec<u8>> = (0..10u16)
        .map(|i| {
            if i == 9 {
                dns::query_a(i, "nx-flood.anycast.test")
            } else {
                dns::query_a(i, "www.anycast.test")
            }
        })
        .collect();
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut buf = [0u8; 1500];
    while !stop.now() {
        let due = (start.elapsed().as_secs_f64() * FLOOD_QPS as f64) as u64;
        while sent < due {
            let s = &socks[sent as usize % socks.len()];
            if s.send_to(&queries[sent as usize % queries.len()], dst)
                .is_ok()
            {
                c.udp_sent.fetch_add(1, Relaxed);
            }
            sent += 1;
        }
        for s in &socks {
            while s.recv_from(&mut buf).is_ok() {
                c.udp_answers.fetch_add(1, Relaxed);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What the legitimate client in r1's namespace saw.
#[derive(Default, Debug)]
struct Legit {
    dig_ok: u32,
    dig_failed: Vec<String>,
    healthz_ok: u32,
    healthz_failed: Vec<String>,
    healthz_max: Duration,
    /// (when, the check's last probe time) from /v1/checks.
    probes: Vec<(Instant, f64)>,
}

fn last_probe_at(body: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("checks")?.get(0)?.get("last")?.get("at")?.as_f64()
}

/// Queries pop1 every 500 ms until `until`: `dig` (3 tries of 1 s) for the
/// steered name, `/healthz` and `/v1/checks` with the token.
fn legit_client(until: Instant) -> Legit {
    let api = format!("{POP1}:8080");
    let mut l = Legit::default();
    while Instant::now() < until {
        let t = Instant::now();
        let out = dig_steered(3);
        if dns::short_lines(&out) == [ANSWER] {
            l.dig_ok += 1;
        } else {
            l.dig_failed.push(out);
        }
        let h = Instant::now();
        match http(&api, "GET", "/healthz", Some(TOKEN)) {
            Ok((200, _)) => {
                l.healthz_ok += 1;
                l.healthz_max = l.healthz_max.max(h.elapsed());
            }
            other => l.healthz_failed.push(format!("{other:?}")),
        }
        if let Ok((200, body)) = http(&api, "GET", "/v1/checks", Some(TOKEN)) {
            if let Some(at) = last_probe_at(&body) {
                l.probes.push((Instant::now(), at));
            }
        }
        std::thread::sleep(Duration::from_millis(500).saturating_sub(t.elapsed()));
    }
    l
}

/// A named thread; it inherits the calling thread's network namespace (so
/// call it inside [`Lab::in_ns`] for a client in a lab node).
fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
}

#[test]
fn hostile_load_keeps_dns_bgp_api_and_checks_and_resources_return() {
    if !lab_available(
        "hostile_load_keeps_dns_bgp_api_and_checks_and_resources_return",
        &["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh", "dig"],
    ) {
        return;
    }
    let nofile = raise_nofile(16384);
    let lab = Lab::new(&["r1", "pop1", "atk"]);
    lab.link("r1", "eth1", "pop1", "eth1");
    lab.addr("r1", "eth1", &["192.0.2.1/30"]);
    lab.addr("pop1", "eth1", &["192.0.2.2/30"]);
    lab.link("pop1", "eth2", "atk", "eth1");
    lab.addr("pop1", "eth2", &["198.51.100.1/24"]);
    let atk: Vec<String> = (0..ATK_ADDRS as usize)
        .map(|i| format!("{}/24", atk_addr(i)))
        .collect();
    lab.addr(
        "atk",
        "eth1",
        &atk.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let r1 = Frr::start(&lab, "r1", &topology_file("frr-anycast/frr/r1/frr.conf"));
    // The token file, where the localised config looks for it (PopNode's
    // directory for pop1), before anypop starts.
    let run = lab.subdir("anypop-pop1").join("run");
    std::fs::create_dir_all(&run).expect("mkdir run");
    std::fs::write(run.join("token"), format!("{TOKEN}\n")).expect("write token");
    let mut pop1 = PopNode::start(&lab, "pop1", &config());
    assert_eq!(pop1.run_dir(), run, "token file written elsewhere");
    let peer = POP1.to_string();
    assert!(
        r1.wait_established(&peer, WAIT),
        "FRR never established with anypop"
    );
    let pid = pop1.proc.pid();
    let api = format!("{POP1}:8080");
    // Warm up every path once, then take the baseline.
    let ready = lab
        .in_ns("r1", move || {
            wait_until(WAIT, || {
                dns::short_lines(&dig_steered(1)) == [ANSWER]
                    && matches!(http(&api, "GET", "/healthz", Some(TOKEN)), Ok((200, _)))
                    && http(&api, "GET", "/v1/checks", Some(TOKEN))
                        .ok()
                        .and_then(|(_, b)| last_probe_at(&b))
                        .is_some()
            })
        })
        .unwrap();
    assert!(ready, "anypop never answered DNS and the API from r1");
    std::thread::sleep(Duration::from_secs(2));
    let session = r1.session_identity(&peer).expect("session identity");
    let base_fds = open_fds(pid);
    let base_rss = rss_kib(pid as i32).expect("anypop RSS");

    // ---------------------------------------------------------- the load
    let stop = Arc::new(Stop {
        flag: AtomicBool::new(false),
        hard_deadline: Instant::now() + LOAD + Duration::from_secs(60),
    });
    let stop_guard = StopOnDrop(stop.clone());
    let c = Arc::new(Counters::default());
    let load = {
        let (stop, c) = (stop.clone(), c.clone());
        lab.in_ns("atk", move || {
            let mut threads = Vec::new();
            let dns_dst = SocketAddrV4::new(POP1_ATK, 53);
            for t in 0..4 {
                let clients = (0..DNS_TCP_CLIENTS / 4)
                    .map(|i| {
                        let n = t * (DNS_TCP_CLIENTS / 4) + i;
                        Client {
                            kind: if n % 2 == 0 {
                                Slow::DnsPipeline
                            } else {
                                Slow::DnsTrickle
                            },
                            src: atk_addr(n),
                            conn: None,
                            sent: 0,
                        }
                    })
                    .collect();
                let (stop, c) = (stop.clone(), c.clone());
                threads.push(spawn_named("dns-tcp", move || {
                    slow_clients(clients, dns_dst, stop, c)
                }));
            }
            let clients = (0..API_CLIENTS)
                .map(|n| Client {
                    kind: Slow::HttpTrickle,
                    src: atk_addr(n),
                    conn: None,
                    sent: 0,
                })
                .collect();
            let api_dst = SocketAddrV4::new(POP1_ATK, 8080);
            let (s, cc) = (stop.clone(), c.clone());
            threads.push(spawn_named("api", move || {
                slow_clients(clients, api_dst, s, cc)
            }));
            for seed in 0..2 {
                let (s, cc) = (stop.clone(), c.clone());
                threads.push(spawn_named("bgp-storm", move || {
                    bgp_storm(seed * 50, s, cc)
                }));
            }
            let (s, cc) = (stop.clone(), c.clone());
            threads.push(spawn_named("udp-flood", move || udp_flood(s, cc)));
            threads
        })
        .unwrap()
    };
    let start = Instant::now();
    let until = start + LOAD;
    let legit = lab
        .in_ns("r1", move || {
            spawn_named("legit", move || legit_client(until))
        })
        .unwrap();
    let (mut established, mut not_established) = (0u32, Vec::new());
    let (mut peak_fds, mut peak_rss) = (base_fds, base_rss);
    while Instant::now() < until {
        match r1.peer_state(&peer).as_deref() {
            Some("Established") => established += 1,
            other => {
                not_established.push(format!("{:.1}s: {other:?}", start.elapsed().as_secs_f64()))
            }
        }
        peak_fds = peak_fds.max(open_fds(pid));
        peak_rss = peak_rss.max(rss_kib(pid as i32).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(1000));
    }
    let legit = legit.join().expect("legitimate client thread");
    drop(stop_guard);
    for t in load {
        t.join().expect("load thread");
    }
    let load_secs = start.elapsed().as_secs_f64();
    let after_session = r1.session_identity(&peer);
    let metrics = lab
        .in_ns("r1", || {
            http(&format!("{POP1}:8080"), "GET", "/metrics", Some(TOKEN))
                .map(|(_, b)| b)
                .unwrap_or_default()
        })
        .unwrap();

    // ---------------------------------------------------------- recovery
    let recovered = Instant::now();
    let fds_back = wait_until(Duration::from_secs(60), || {
        open_fds(pid) <= base_fds + FD_SLACK
    });
    let fds_after = open_fds(pid);
    let rss_back = wait_until(Duration::from_secs(60), || {
        rss_kib(pid as i32).is_some_and(|r| r <= base_rss + RSS_SLACK_KIB)
    });
    let rss_after = rss_kib(pid as i32).unwrap_or(0);
    let recovery = recovered.elapsed();

    // ---------------------------------------------------------- figures
    let n = |a: &AtomicU64| a.load(Relaxed);
    let m = |s: &str| metric(&metrics, s).unwrap_or(-1.0);
    let probes_seen = {
        let mut v: Vec<f64> = legit.probes.iter().map(|p| p.1).collect();
        v.dedup();
        v.len()
    };
    eprintln!(
        "hostile load: {load_secs:.1} s, RLIMIT_NOFILE {nofile}\n\
         attacker: DNS TCP {DNS_TCP_CLIENTS} clients, {} connections, {} closed by the server; \
         API {API_CLIENTS} clients, {} connections, {} closed; port 179 {} connections ({} failed); \
         UDP {} queries sent ({:.0}/s), {} answers back; {} connects timed out\n\
         anypop: dns udp rate-limited {}, slipped {}; tcp closed write_timeout {}, idle {}, evicted {}, client_limit {}\n\
         legitimate client: dig {} ok / {} failed; /healthz {} ok / {} failed, slowest {:?}; \
         {} distinct check probe times in {} samples\n\
         FRR session: Established at {established} of {} samples, identity {session:?} -> {after_session:?}\n\
         anypop fds: baseline {base_fds}, peak {peak_fds}, after {fds_after}; \
         RSS: baseline {base_rss} KiB, peak {peak_rss} KiB, after {rss_after} KiB \
         (back within {recovery:.1?})",
        n(&c.dns_tcp_connects),
        n(&c.dns_tcp_closed),
        n(&c.api_connects),
        n(&c.api_closed),
        n(&c.bgp_connects),
        n(&c.bgp_failed),
        n(&c.udp_sent),
        n(&c.udp_sent) as f64 / load_secs,
        n(&c.udp_answers),
        n(&c.connect_failed),
        m("anypop_dns_rate_limited_total{action=\"drop\"}"),
        m("anypop_dns_rate_limited_total{action=\"slip\"}"),
        m("anypop_dns_tcp_closed_total{reason=\"write_timeout\"}"),
        m("anypop_dns_tcp_closed_total{reason=\"idle\"}"),
        m("anypop_dns_tcp_closed_total{reason=\"evicted\"}"),
        m("anypop_dns_tcp_closed_total{reason=\"client_limit\"}"),
        legit.dig_ok,
        legit.dig_failed.len(),
        legit.healthz_ok,
        legit.healthz_failed.len(),
        legit.healthz_max,
        probes_seen,
        legit.probes.len(),
        established as usize + not_established.len(),
    );

    // ---------------------------------------------------------- verdict
    assert!(pop1.alive(), "anypop died under load");
    // The load really happened.
    assert!(
        n(&c.dns_tcp_connects) >= DNS_TCP_CLIENTS as u64,
        "not every slow DNS client got in"
    );
    assert!(
        n(&c.api_connects) >= API_CLIENTS as u64,
        "not every slow API client got in"
    );
    assert!(n(&c.bgp_connects) > 0, "no connection storm on port 179");
    assert!(n(&c.udp_sent) > 0, "no UDP flood");
    // During it.
    assert!(
        legit.dig_failed.is_empty() && legit.dig_ok > 0,
        "steered UDP answers lost for the legitimate client: {:?}",
        legit.dig_failed
    );
    assert!(
        legit.healthz_failed.is_empty() && legit.healthz_ok > 0,
        "/healthz failed under load: {:?}",
        legit.healthz_failed
    );
    assert!(
        not_established.is_empty(),
        "FRR session left Established: {not_established:?}"
    );
    assert_eq!(after_session, Some(session), "the BGP session was reset");
    // Health checks kept probing: every window of the load saw a new probe.
    let first = legit
        .probes
        .first()
        .map(|p| p.0)
        .expect("no /v1/checks sample");
    let mut window_start = first;
    let mut last_at = legit.probes[0].1;
    for (t, at) in &legit.probes {
        if *at > last_at {
            last_at = *at;
            window_start = *t;
        }
        assert!(
            t.duration_since(window_start) <= PROBE_WINDOW,
            "no new probe for {PROBE_WINDOW:?} under load: {:?}",
            legit.probes
        );
    }
    // After it.
    assert!(
        fds_back,
        "anypop's descriptors did not come back: baseline {base_fds}, now {fds_after} (slack {FD_SLACK})"
    );
    assert!(
        rss_back,
        "anypop's RSS did not come back: baseline {base_rss} KiB, now {rss_after} KiB (slack {RSS_SLACK_KIB} KiB)"
    );
}

/// Real `dig` from the calling thread's namespace: the steered name over
/// UDP, `tries` tries of 1 s each; its stdout (or the error).
fn dig_steered(tries: u32) -> String {
    std::process::Command::new("dig")
        .args([&format!("@{POP1}"), "+norecurse", "+time=1", "+short"])
        .arg(format!("+tries={tries}"))
        .args(["www.anycast.test", "A"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("dig: {e}"))
}
