//! DNS counters for `/metrics`: plain atomics, bumped without locks on the
//! query path. The per-PoP counters are registered (under a mutex) only when
//! answer tables are rebuilt; queries hold their own `Arc` to the atomic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_proto::op::ResponseCode;

use crate::model::PopName;

/// Response codes counted by name, in this order.
pub const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "OTHER",
];
/// Reasons a TCP connection is closed by the server, in this order.
pub const TCP_CLOSE_REASONS: [&str; 4] = ["idle", "write_timeout", "evicted", "client_limit"];
/// Steering policies counted by name, in this order.
pub const POLICIES: [&str; 5] = ["failover", "weighted", "geo", "all_healthy", "nearest"];

/// One exported sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub name: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

#[derive(Debug, Default)]
pub struct DnsStats {
    pub queries_udp: AtomicU64,
    pub queries_tcp: AtomicU64,
    /// Responses by rcode, indexed like [`RCODES`].
    pub rcodes: [AtomicU64; 7],
    /// Steered answers by policy, indexed like [`POLICIES`].
    pub policies: [AtomicU64; 5],
    /// Steered answers given while failing open.
    pub fail_open_answers: AtomicU64,
    /// Times a record (per address family) entered fail-open.
    pub fail_open_events: AtomicU64,
    /// Responses served from pre-encoded answers.
    pub fast_path: AtomicU64,
    /// UDP responses truncated (TC bit).
    pub truncated: AtomicU64,
    /// Packets dropped without an answer (not a query, unparsable header).
    pub dropped: AtomicU64,
    /// UDP responses not sent because of response rate limiting.
    pub rate_limited: AtomicU64,
    /// Rate-limited UDP responses sent as empty truncated answers (slip).
    pub rate_limit_slips: AtomicU64,
    /// Open TCP connections (a gauge: connection tasks running).
    pub tcp_connections: AtomicU64,
    /// TCP connections closed by the server, indexed like [`TCP_CLOSE_REASONS`].
    pub tcp_closed: [AtomicU64; 4],
    pops: Mutex<BTreeMap<PopName, Arc<AtomicU64>>>,
    /// Datagrams received per UDP worker: (listener, worker) → count.
    udp_workers: Mutex<BTreeMap<(SocketAddr, usize), Arc<AtomicU64>>>,
}

impl DnsStats {
    pub fn new() -> Arc<DnsStats> {
        Arc::new(DnsStats::default())
    }

    /// The answer counter of a PoP (created on first use).
    pub fn pop_counter(&self, pop: &PopName) -> Arc<AtomicU64> {
        let mut m = match self.pops.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(pop.clone()).or_default().clone()
    }

    pub(crate) fn count_rcode(&self, rc: ResponseCode) {
        let i = match rc {
            ResponseCode::NoError => 0,
            ResponseCode::FormErr => 1,
            ResponseCode::ServFail => 2,
            ResponseCode::NXDomain => 3,
            ResponseCode::NotImp => 4,
            ResponseCode::Refused => 5,
            _ => 6,
        };
        self.rcodes[i].fetch_add(1, Relaxed);
    }

    /// The datagram counter of UDP worker `worker` of `listener` (created
    /// on first use).
    pub fn udp_worker_counter(&self, listener: SocketAddr, worker: usize) -> Arc<AtomicU64> {
        let mut m = self
            .udp_workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.entry((listener, worker)).or_default().clone()
    }

    /// Datagrams received so far by each UDP worker: (listener, worker, count).
    pub fn udp_worker_counts(&self) -> Vec<(SocketAddr, usize, u64)> {
        let m = self
            .udp_workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        m.iter()
            .map(|((l, w), c)| (*l, *w, c.load(Relaxed)))
            .collect()
    }

    /// Counts a response by the rcode in its header (low 4 bits).
    pub(crate) fn count_rcode_byte(&self, rcode: u8) {
        self.count_rcode(ResponseCode::from_low(rcode & 0x0f));
    }

    pub(crate) fn count_policy(&self, policy: &str) {
        if let Some(i) = POLICIES.iter().position(|p| *p == policy) {
            self.policies[i].fetch_add(1, Relaxed);
        }
    }

    /// Every counter as (name, labels, value), for the metrics exporter.
    pub fn samples(&self) -> Vec<Sample> {
        let s = |name: &'static str, labels: Vec<(&'static str, String)>, v: &AtomicU64| Sample {
            name,
            labels,
            value: v.load(Relaxed),
        };
        let mut out = vec![
            s(
                "anypop_dns_queries_total",
                vec![("transport", "udp".into())],
                &self.queries_udp,
            ),
            s(
                "anypop_dns_queries_total",
                vec![("transport", "tcp".into())],
                &self.queries_tcp,
            ),
        ];
        for (i, rc) in RCODES.iter().enumerate() {
            out.push(s(
                "anypop_dns_responses_total",
                vec![("rcode", rc.to_string())],
                &self.rcodes[i],
            ));
        }
        for (i, p) in POLICIES.iter().enumerate() {
            out.push(s(
                "anypop_dns_steered_answers_total",
                vec![("policy", p.to_string())],
                &self.policies[i],
            ));
        }
        out.push(s(
            "anypop_dns_fail_open_answers_total",
            vec![],
            &self.fail_open_answers,
        ));
        out.push(s(
            "anypop_dns_fail_open_events_total",
            vec![],
            &self.fail_open_events,
        ));
        out.push(s(
            "anypop_dns_fast_path_answers_total",
            vec![],
            &self.fast_path,
        ));
        out.push(s("anypop_dns_truncated_total", vec![], &self.truncated));
        out.push(s("anypop_dns_dropped_total", vec![], &self.dropped));
        out.push(s(
            "anypop_dns_rate_limited_total",
            vec![("action", "drop".into())],
            &self.rate_limited,
        ));
        out.push(s(
            "anypop_dns_rate_limited_total",
            vec![("action", "slip".into())],
            &self.rate_limit_slips,
        ));
        out.push(s(
            "anypop_dns_tcp_connections",
            vec![],
            &self.tcp_connections,
        ));
        for (i, r) in TCP_CLOSE_REASONS.iter().enumerate() {
            out.push(s(
                "anypop_dns_tcp_closed_total",
                vec![("reason", r.to_string())],
                &self.tcp_closed[i],
            ));
        }
        for (listener, worker, n) in self.udp_worker_counts() {
            out.push(Sample {
                name: "anypop_dns_udp_worker_queries_total",
                labels: vec![
                    ("listener", listener.to_string()),
                    ("worker", worker.to_string()),
                ],
                value: n,
            });
        }
        let pops = match self.pops.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for (pop, v) in &pops {
            out.push(s(
                "anypop_dns_pop_answers_total",
                vec![("pop", pop.to_string())],
                v,
            ));
        }
        out
    }
}
