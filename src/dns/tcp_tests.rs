//! Hostile TCP clients against the real listener on loopback: clients that
//! pipeline queries and never read are closed, an evicted connection whose
//! write is blocked ends, and the server's sockets and their queued bytes
//! stay bounded. What the server holds is read from the kernel
//! (`/proc/net/tcp`: the server's sockets and their send/receive queues)
//! and from the connection gauge.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::server::{TcpLimits, TCP_SEND_BUFFER};
use super::tests::{addrs, query, start_server, tcp_ask, tcp_from, TestServer};

/// One TCP socket of the kernel's table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelSocket {
    local_port: u16,
    /// The peer's address as the kernel prints it ([`kernel_addr`]).
    remote: String,
    /// Bytes sent and not yet acknowledged (what waits for the peer).
    tx_queue: u64,
    /// Bytes received and not yet read by the owner.
    rx_queue: u64,
}

/// The server side of connections to `port`: IPv4 sockets whose local port
/// is `port` and that are not the listener, once each (the kernel's table
/// can list a socket twice when it changes while being read).
fn server_sockets(port: u16) -> Vec<KernelSocket> {
    let text = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let hex_port = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, queues) = (f.get(1)?, f.get(2)?, f.get(3)?, f.get(4)?);
            let (tx, rx) = queues.split_once(':')?;
            let s = KernelSocket {
                local_port: hex_port(local)?,
                remote: remote.to_string(),
                tx_queue: u64::from_str_radix(tx, 16).ok()?,
                rx_queue: u64::from_str_radix(rx, 16).ok()?,
            };
            // 0A: LISTEN.
            (s.local_port == port && *state != "0A").then_some(s)
        })
        .fold(Vec::new(), |mut out: Vec<KernelSocket>, s| {
            if !out.iter().any(|o| o.remote == s.remote) {
                out.push(s);
            }
            out
        })
}

/// An IPv4 socket address as `/proc/net/tcp` prints it: the address's
/// bytes as one native-endian hex number, then the port in hex.
fn kernel_addr(a: SocketAddr) -> String {
    match a.ip() {
        std::net::IpAddr::V4(v4) => {
            format!("{:08X}:{:04X}", u32::from_ne_bytes(v4.octets()), a.port())
        }
        v6 => panic!("IPv4 only: {v6}"),
    }
}

/// A client that writes pipelined queries for a large answer (until the
/// server closes, or 100,000 of them), never reads, and keeps the
/// connection open until the task is aborted.
fn pipeline_never_read(mut conn: TcpStream) -> JoinHandle<()> {
    tokio::spawn(async move {
        let q = query("big.example.net.", RecordType::TXT, None);
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&(q.len() as u16).to_be_bytes());
            batch.extend_from_slice(&q);
        }
        for _ in 0..1000 {
            if conn.write_all(&batch).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await;
        drop(conn);
    })
}

/// Polls `f` every 100 ms until it returns true or `limit` passes.
async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_clients_that_pipeline_and_never_read_are_closed_with_bounded_queues() {
    let limits = TcpLimits::default();
    let TestServer { server, stats, .. } = start_server(|_| {}, limits).await;
    let tcp = server.tcp_addrs()[0];
    let clients = 8;
    let mut writers = Vec::new();
    let mut hostile_addrs = Vec::new();
    for i in 0..clients {
        let conn = tcp_from(&format!("127.0.3.{}", i + 1), tcp).await.unwrap();
        hostile_addrs.push(kernel_addr(conn.local_addr().unwrap()));
        writers.push(pipeline_never_read(conn));
    }
    let hostile = |s: &KernelSocket| hostile_addrs.contains(&s.remote);

    // Watch the server's side until every hostile connection is gone
    // (generous bound: the write timeout is 5 s).
    let (mut max_tx, mut max_sockets, mut peak_open) = (0u64, 0usize, 0u64);
    let all_closed = wait_until(Duration::from_secs(60), || {
        let socks: Vec<KernelSocket> = server_sockets(tcp.port())
            .into_iter()
            .filter(hostile)
            .collect();
        max_tx = max_tx.max(socks.iter().map(|s| s.tx_queue).max().unwrap_or(0));
        max_sockets = max_sockets.max(socks.len());
        peak_open = peak_open.max(stats.tcp_connections.load(Relaxed));
        socks.is_empty() && stats.tcp_connections.load(Relaxed) == 0
    })
    .await;
    let left: Vec<KernelSocket> = server_sockets(tcp.port())
        .into_iter()
        .filter(hostile)
        .collect();
    for w in &writers {
        w.abort();
    }
    eprintln!(
        "pipelining clients: {clients}; server sockets at most {max_sockets}, \
         largest send queue {max_tx} bytes, open connections at most {peak_open}; left {left:?}"
    );
    assert!(
        all_closed,
        "connections still open after 60 s: {left:?} (gauge {})",
        stats.tcp_connections.load(Relaxed)
    );
    // Each closed by the write timeout, with at most its send buffer queued
    // (the kernel doubles the size asked for; one answer may overshoot it).
    assert_eq!(stats.tcp_closed[1].load(Relaxed), clients as u64);
    assert!(max_tx > 0, "the answers never backed up");
    let bound = 2 * TCP_SEND_BUFFER as u64 + 65_537;
    assert!(
        max_tx <= bound,
        "{max_tx} bytes queued for one client (bound {bound})"
    );
    assert!(max_sockets <= clients);

    // The listener still answers, also a client that pipelines and reads.
    let mut conn = tcp_from("127.0.3.100", tcp).await.unwrap();
    let q = query("www.example.net.", RecordType::A, None);
    let m = tokio::time::timeout(Duration::from_secs(5), tcp_ask(&mut conn, &q))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    let mut batch = Vec::new();
    for _ in 0..50 {
        batch.extend_from_slice(&(q.len() as u16).to_be_bytes());
        batch.extend_from_slice(&q);
    }
    conn.write_all(&batch).await.unwrap();
    for _ in 0..50 {
        let len = tokio::time::timeout(Duration::from_secs(5), conn.read_u16())
            .await
            .unwrap()
            .unwrap();
        let mut b = vec![0u8; len as usize];
        conn.read_exact(&mut b).await.unwrap();
        let m = hickory_proto::op::Message::from_vec(&b).unwrap();
        assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    }
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_evicted_connection_blocked_in_write_ends() {
    // Only eviction can end a stuck connection here: no timeouts to speak of.
    let limits = TcpLimits {
        max_connections: 2,
        idle_timeout: Duration::from_secs(3600),
        write_timeout: Duration::from_secs(3600),
        ..TcpLimits::default()
    };
    let TestServer { server, stats, .. } = start_server(|_| {}, limits).await;
    let tcp = server.tcp_addrs()[0];
    let mut writers = Vec::new();
    let mut hostile_addrs = Vec::new();
    for i in 0..2 {
        let conn = tcp_from(&format!("127.0.4.{}", i + 1), tcp).await.unwrap();
        hostile_addrs.push(kernel_addr(conn.local_addr().unwrap()));
        writers.push(pipeline_never_read(conn));
    }
    // Both blocked in a write: answers queued to the client, queries
    // waiting unread, and neither moving for three polls in a row.
    let mut last: Vec<KernelSocket> = Vec::new();
    let mut streak = 0;
    let stuck = wait_until(Duration::from_secs(30), || {
        let mut socks: Vec<KernelSocket> = server_sockets(tcp.port())
            .into_iter()
            .filter(|s| hostile_addrs.contains(&s.remote))
            .collect();
        socks.sort_by(|a, b| a.remote.cmp(&b.remote));
        let still = socks.len() == 2
            && socks.iter().all(|s| s.tx_queue > 0 && s.rx_queue > 0)
            && socks == last;
        streak = if still { streak + 1 } else { 0 };
        last = socks;
        streak >= 3
    })
    .await;
    assert!(stuck, "{:?}", server_sockets(tcp.port()));

    // A newcomer gets in; one of the stuck connections is evicted and its
    // task ends (its socket is gone from the kernel).
    let mut newcomer = tcp_from("127.0.4.3", tcp).await.unwrap();
    let q = query("www.example.net.", RecordType::A, None);
    let m = tokio::time::timeout(Duration::from_secs(10), tcp_ask(&mut newcomer, &q))
        .await
        .expect("the newcomer is answered")
        .unwrap();
    assert_eq!(addrs(&m), vec!["192.0.2.1"]);
    let remaining = || {
        server_sockets(tcp.port())
            .iter()
            .filter(|s| hostile_addrs.contains(&s.remote))
            .count()
    };
    let evicted_gone = wait_until(Duration::from_secs(30), || {
        remaining() == 1 && stats.tcp_connections.load(Relaxed) == 2
    })
    .await;
    let (left, open) = (remaining(), stats.tcp_connections.load(Relaxed));
    for w in &writers {
        w.abort();
    }
    assert!(
        evicted_gone,
        "stuck connections still open: {left} of 2, connection tasks {open}"
    );
    assert_eq!(stats.tcp_closed[2].load(Relaxed), 1);
    server.shutdown();
}
