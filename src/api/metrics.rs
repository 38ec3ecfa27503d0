//! Prometheus metrics: what `/metrics` shows, in the text exposition format
//! (version 0.0.4), written by hand so every line is under our control.
//!
//! Three kinds of numbers meet here:
//! - counters and histograms recorded into [`Metrics`] as things happen
//!   (check results and latencies, API requests, core events);
//! - gauges read from the current [`Snapshot`] at scrape time (PoP state,
//!   prefixes announced), so they can never drift from the truth;
//! - families written by pluggable [`MetricsSource`]s at scrape time, for
//!   subsystems that keep their own atomic counters (DNS queries by
//!   rcode/policy/PoP, fail-open answers, BGP session state, flaps, updates).
//!
//! The recorded counters sit behind a `std::sync::Mutex`: they are touched a
//! few times per probe or API request, never on the DNS hot path.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::core::hysteresis::Verdict;
use crate::core::{PopState, Snapshot};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Writes families into an exposition. Subsystems implement this to add
/// their own numbers at scrape time.
pub type MetricsSource = Arc<dyn Fn(&mut Exposition) + Send + Sync>;

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A text exposition under construction. Each family is announced once
/// with [`Exposition::family`], followed directly by all its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
    families: BTreeSet<String>,
    current: Option<String>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family (`# HELP` and `# TYPE` lines). Returns false, and
    /// writes nothing, if the family was already written: a source must not
    /// split a family.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> bool {
        if !self.families.insert(name.to_string()) {
            self.current = None;
            return false;
        }
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self.current = Some(name.to_string());
        true
    }

    /// Writes one sample of the current family (`name` may carry a
    /// `_bucket`/`_sum`/`_count` suffix for histograms). Samples for a family
    /// that was not started (or was refused) are dropped.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(cur) = &self.current else { return };
        if !name.starts_with(cur.as_str()) {
            return;
        }
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// Writes all samples of one histogram series of the current family.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets.iter()) {
            cumulative += n;
            let le = format_value(*le);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.sample(&bucket, &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
    }

    /// Writes a state set of the current family: one sample per state in
    /// `states`, labelled `labels` plus `state`, 1 for `current` and 0 for
    /// the others.
    fn state_set<S: PartialEq + std::fmt::Display>(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        states: &[S],
        current: &S,
    ) {
        for s in states {
            let state = s.to_string();
            let mut l = labels.to_vec();
            l.push(("state", &state));
            self.sample(name, &l, if s == current { 1.0 } else { 0.0 });
        }
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A latency histogram with [`LATENCY_BUCKETS`] (non-cumulative counts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| s <= *le) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += s;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

#[derive(Default)]
struct Recorded {
    /// (pop, check, result) → count.
    check_results: BTreeMap<(String, String, &'static str), u64>,
    /// (pop, check) → probe latency.
    check_latency: BTreeMap<(String, String), Histogram>,
    /// (method, route, status) → count. Methods and routes come from
    /// fixed sets (see [`super::method_label`]).
    api_requests: BTreeMap<(&'static str, String, u16), u64>,
    /// Connections closed at once because the connection cap was reached.
    api_connections_refused: u64,
    /// route → latency.
    api_latency: BTreeMap<String, Histogram>,
    /// event kind → count.
    events: BTreeMap<String, u64>,
    /// Config reloads by result (`ok`, `error`).
    reloads: BTreeMap<&'static str, u64>,
    /// Whether the last reload (or the start) loaded the config, and when
    /// the config last loaded (Unix time; `None`: at start).
    last_reload_ok: Option<(bool, Option<f64>)>,
    /// (pop, result) → admin calls forwarded to the PoP's owner.
    fleet_forwarded: BTreeMap<(String, String), u64>,
}

/// The metrics registry of one process. Cheap to share (`Arc<Metrics>`).
pub struct Metrics {
    recorded: Mutex<Recorded>,
    sources: RwLock<Vec<MetricsSource>>,
    /// Unix time the registry (the process) started.
    started: f64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            recorded: Mutex::default(),
            sources: RwLock::default(),
            started: crate::unix_time::secs(std::time::SystemTime::now()),
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Records one probe result (call once per probe, before hysteresis).
    pub fn record_check(&self, pop: &str, check: &str, ok: bool, took: Duration) {
        let Ok(mut r) = self.recorded.lock() else {
            return;
        };
        let result = if ok { "ok" } else { "fail" };
        *r.check_results
            .entry((pop.to_string(), check.to_string(), result))
            .or_default() += 1;
        r.check_latency
            .entry((pop.to_string(), check.to_string()))
            .or_default()
            .observe(took);
    }

    /// Records one API request (`route` is the route template, not the URI).
    pub fn record_api(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        let Ok(mut r) = self.recorded.lock() else {
            return;
        };
        *r.api_requests
            .entry((method, route.to_string(), status))
            .or_default() += 1;
        r.api_latency
            .entry(route.to_string())
            .or_default()
            .observe(took);
    }

    /// Records the outcome of a config reload (SIGHUP or `POST /v1/reload`).
    pub fn record_reload(&self, ok: bool) {
        let Ok(mut r) = self.recorded.lock() else {
            return;
        };
        *r.reloads
            .entry(if ok { "ok" } else { "error" })
            .or_default() += 1;
        let last_ok_at = match r.last_reload_ok {
            _ if ok => Some(crate::unix_time::secs(std::time::SystemTime::now())),
            Some((_, at)) => at,
            None => None,
        };
        r.last_reload_ok = Some((ok, last_ok_at));
    }

    /// Counts a connection closed because the API's connection cap was
    /// reached.
    pub fn record_api_connection_refused(&self) {
        if let Ok(mut r) = self.recorded.lock() {
            r.api_connections_refused += 1;
        }
    }

    /// Records one core event (state change) by kind.
    pub fn record_event(&self, kind: &str) {
        let Ok(mut r) = self.recorded.lock() else {
            return;
        };
        *r.events.entry(kind.to_string()).or_default() += 1;
    }

    /// Records one admin call for another node's PoP: `ok`, `refused` or
    /// `unreachable`.
    pub fn fleet_forwarded(&self, pop: &str, result: &str) {
        let Ok(mut r) = self.recorded.lock() else {
            return;
        };
        *r.fleet_forwarded
            .entry((pop.to_string(), result.to_string()))
            .or_default() += 1;
    }

    /// Adds a source of families written at every scrape.
    pub fn add_source(&self, source: MetricsSource) {
        if let Ok(mut s) = self.sources.write() {
            s.push(source);
        }
    }

    /// The whole exposition: recorded counters, snapshot gauges, sources.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut x = Exposition::new();
        x.family(
            "anypop_build_info",
            Kind::Gauge,
            "Always 1; the version in a label.",
        );
        x.sample(
            "anypop_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1.0,
        );
        x.family(
            "anypop_start_time_seconds",
            Kind::Gauge,
            "Unix time the process started.",
        );
        x.sample("anypop_start_time_seconds", &[], self.started);
        snapshot_families(&mut x, snap);
        fleet_families(&mut x, snap);
        if let Ok(r) = self.recorded.lock() {
            recorded_families(&mut x, &r);
            reload_families(&mut x, &r, self.started);
        }
        if let Ok(sources) = self.sources.read() {
            for s in sources.iter() {
                s(&mut x);
            }
        }
        x.finish()
    }
}

fn snapshot_families(x: &mut Exposition, snap: &Snapshot) {
    x.family(
        "anypop_snapshot_version",
        Kind::Gauge,
        "Version of the published state snapshot.",
    );
    x.sample("anypop_snapshot_version", &[], snap.version as f64);

    x.family(
        "anypop_pop_state",
        Kind::Gauge,
        "PoP operational state: 1 for the current state, 0 for the others.",
    );
    for (name, p) in &snap.pops {
        x.state_set(
            "anypop_pop_state",
            &[("pop", name.as_str())],
            &[
                PopState::Up,
                PopState::Down,
                PopState::Draining,
                PopState::Disabled,
            ],
            &p.state,
        );
    }
    x.family(
        "anypop_pop_healthy",
        Kind::Gauge,
        "PoP health from its checks alone: 1 healthy, 0 unhealthy, -1 not decided yet.",
    );
    for (name, p) in &snap.pops {
        let v = match p.healthy {
            Some(true) => 1.0,
            Some(false) => 0.0,
            None => -1.0,
        };
        x.sample("anypop_pop_healthy", &[("pop", name.as_str())], v);
    }
    x.family(
        "anypop_pop_serves_dns",
        Kind::Gauge,
        "1 if DNS may send clients to the PoP.",
    );
    for (name, p) in &snap.pops {
        let v = if p.serves_dns { 1.0 } else { 0.0 };
        x.sample("anypop_pop_serves_dns", &[("pop", name.as_str())], v);
    }
    x.family(
        "anypop_pop_admin_override",
        Kind::Gauge,
        "1 while an operator override (drain or disable) holds, by current step.",
    );
    for (name, p) in &snap.pops {
        if let Some(a) = &p.admin {
            x.sample(
                "anypop_pop_admin_override",
                &[("pop", name.as_str()), ("step", a.step.as_str())],
                1.0,
            );
        }
    }
    x.family(
        "anypop_check_up",
        Kind::Gauge,
        "Check verdict after rise/fall hysteresis: 1 up, 0 down, -1 unknown.",
    );
    for (pop, p) in &snap.pops {
        for (check, c) in &p.checks {
            let v = match c.state.verdict {
                Verdict::Up => 1.0,
                Verdict::Down => 0.0,
                Verdict::Unknown => -1.0,
            };
            x.sample(
                "anypop_check_up",
                &[("pop", pop.as_str()), ("check", check.as_str())],
                v,
            );
        }
    }
    x.family(
        "anypop_prefixes_announced",
        Kind::Gauge,
        "Prefixes this node wants announced, by PoP and mode.",
    );
    let mut by: BTreeMap<(&str, &'static str), u64> = BTreeMap::new();
    for a in snap.announcements.values() {
        *by.entry((a.pop.as_str(), a.mode.as_str())).or_default() += 1;
    }
    for ((pop, mode), n) in by {
        x.sample(
            "anypop_prefixes_announced",
            &[("pop", pop), ("mode", mode)],
            n as f64,
        );
    }
}

/// The fleet's families (only with `fleet:`): per peer and per PoP.
fn fleet_families(x: &mut Exposition, snap: &Snapshot) {
    let Some(f) = snap.fleet.as_deref() else {
        return;
    };
    let now = tokio::time::Instant::now();
    x.family(
        "anypop_fleet_peer_fresh",
        Kind::Gauge,
        "1 while the peer's report is fresh (younger than fleet.stale_after).",
    );
    for (name, p) in &f.peers {
        let v = if p.fresh { 1.0 } else { 0.0 };
        x.sample("anypop_fleet_peer_fresh", &[("peer", name.as_str())], v);
    }
    x.family(
        "anypop_fleet_peer_report_age_seconds",
        Kind::Gauge,
        "Age of the last report received from the peer.",
    );
    for (name, p) in &f.peers {
        if let Some(r) = p.received {
            let age = now.saturating_duration_since(r).as_secs_f64();
            x.sample(
                "anypop_fleet_peer_report_age_seconds",
                &[("peer", name.as_str())],
                age,
            );
        }
    }
    x.family(
        "anypop_fleet_peer_pulls_total",
        Kind::Counter,
        "Reports received from the peer.",
    );
    for (name, p) in &f.peers {
        x.sample(
            "anypop_fleet_peer_pulls_total",
            &[("peer", name.as_str())],
            p.pulls as f64,
        );
    }
    x.family(
        "anypop_fleet_peer_pull_errors_total",
        Kind::Counter,
        "Failed pulls of the peer's report.",
    );
    for (name, p) in &f.peers {
        x.sample(
            "anypop_fleet_peer_pull_errors_total",
            &[("peer", name.as_str())],
            p.pull_errors as f64,
        );
    }
    x.family(
        "anypop_fleet_pop_verdict",
        Kind::Gauge,
        "The PoP's fleet verdict: 1 for the current one, 0 for the others.",
    );
    for (name, v) in &f.view.pops {
        let current = fleet_verdict(v);
        for verdict in ["up", "down", "draining", "disabled", "unknown"] {
            x.sample(
                "anypop_fleet_pop_verdict",
                &[("pop", name.as_str()), ("verdict", verdict)],
                if verdict == current { 1.0 } else { 0.0 },
            );
        }
    }
    for (metric, help, reachable) in [
        (
            "anypop_fleet_pop_vantage_unreachable",
            "Fresh vantage points that see the PoP unreachable.",
            false,
        ),
        (
            "anypop_fleet_pop_vantage_reachable",
            "Fresh vantage points that see the PoP reachable.",
            true,
        ),
    ] {
        x.family(metric, Kind::Gauge, help);
        for (name, v) in &f.view.pops {
            let n = if reachable {
                v.reachable
            } else {
                v.unreachable
            };
            x.sample(metric, &[("pop", name.as_str())], f64::from(n));
        }
    }
    x.family(
        "anypop_fleet_pop_fail_static",
        Kind::Gauge,
        "1 while the fail-static rule holds the PoP.",
    );
    for (name, v) in &f.view.pops {
        let held = if v.fail_static.is_some() { 1.0 } else { 0.0 };
        x.sample(
            "anypop_fleet_pop_fail_static",
            &[("pop", name.as_str())],
            held,
        );
    }
}

/// A PoP's fleet verdict as a word (`/v1/fleet` `verdict`).
pub fn fleet_verdict(v: &crate::core::fleet::PopView) -> &'static str {
    match (v.state, v.health) {
        (PopState::Up, _) => "up",
        (PopState::Draining, _) => "draining",
        (PopState::Disabled, _) => "disabled",
        (PopState::Down, None) => "unknown",
        (PopState::Down, Some(_)) => "down",
    }
}

fn recorded_families(x: &mut Exposition, r: &Recorded) {
    x.family(
        "anypop_check_results_total",
        Kind::Counter,
        "Probe results by PoP, check and result.",
    );
    for ((pop, check, result), n) in &r.check_results {
        x.sample(
            "anypop_check_results_total",
            &[("pop", pop), ("check", check), ("result", result)],
            *n as f64,
        );
    }
    x.family(
        "anypop_check_duration_seconds",
        Kind::Histogram,
        "Probe latency by PoP and check.",
    );
    for ((pop, check), h) in &r.check_latency {
        x.histogram(
            "anypop_check_duration_seconds",
            &[("pop", pop), ("check", check)],
            h,
        );
    }
    x.family(
        "anypop_events_total",
        Kind::Counter,
        "State-change events by kind.",
    );
    for (kind, n) in &r.events {
        x.sample("anypop_events_total", &[("kind", kind)], *n as f64);
    }
    if !r.fleet_forwarded.is_empty() {
        x.family(
            "anypop_fleet_admin_forwarded_total",
            Kind::Counter,
            "Admin calls for a PoP another fleet node owns, by result (ok, refused, unreachable).",
        );
        for ((pop, result), n) in &r.fleet_forwarded {
            x.sample(
                "anypop_fleet_admin_forwarded_total",
                &[("pop", pop), ("result", result)],
                *n as f64,
            );
        }
    }
    x.family(
        "anypop_api_requests_total",
        Kind::Counter,
        "API requests by method, route and status.",
    );
    for ((method, route, status), n) in &r.api_requests {
        let status = status.to_string();
        x.sample(
            "anypop_api_requests_total",
            &[("method", method), ("route", route), ("status", &status)],
            *n as f64,
        );
    }
    x.family(
        "anypop_api_connections_refused_total",
        Kind::Counter,
        "API connections closed at once because api.max_connections were open.",
    );
    x.sample(
        "anypop_api_connections_refused_total",
        &[],
        r.api_connections_refused as f64,
    );
    x.family(
        "anypop_api_request_duration_seconds",
        Kind::Histogram,
        "API request latency by route (SSE: time to first byte).",
    );
    for (route, h) in &r.api_latency {
        x.histogram(
            "anypop_api_request_duration_seconds",
            &[("route", route)],
            h,
        );
    }
}

/// The config reload families. A process that is running loaded its config
/// at start, so before any reload the last load counts as a success.
fn reload_families(x: &mut Exposition, r: &Recorded, started: f64) {
    let (ok, ok_at) = r.last_reload_ok.unwrap_or((true, None));
    x.family(
        "anypop_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last config reload (or the start) loaded the file, 0 if it was rejected.",
    );
    x.sample(
        "anypop_config_last_reload_successful",
        &[],
        if ok { 1.0 } else { 0.0 },
    );
    x.family(
        "anypop_config_last_reload_success_timestamp_seconds",
        Kind::Gauge,
        "Unix time the config in force was loaded.",
    );
    x.sample(
        "anypop_config_last_reload_success_timestamp_seconds",
        &[],
        ok_at.unwrap_or(started),
    );
    x.family(
        "anypop_config_reloads_total",
        Kind::Counter,
        "Config reloads (SIGHUP, POST /v1/reload) by result (ok, error).",
    );
    for result in ["ok", "error"] {
        let n = r.reloads.get(result).copied().unwrap_or(0);
        x.sample(
            "anypop_config_reloads_total",
            &[("result", result)],
            n as f64,
        );
    }
}

/// Help text of the DNS server's counter families.
fn dns_help(name: &str) -> &'static str {
    match name {
        "anypop_dns_queries_total" => "DNS queries received, by transport.",
        "anypop_dns_responses_total" => "DNS responses sent, by rcode.",
        "anypop_dns_steered_answers_total" => "Steered DNS answers, by steering policy.",
        "anypop_dns_fail_open_answers_total" => {
            "Steered answers given while failing open (too few healthy PoPs)."
        }
        "anypop_dns_fail_open_events_total" => "Times a steered record entered fail-open.",
        "anypop_dns_fast_path_answers_total" => "Responses served from pre-encoded answers.",
        "anypop_dns_truncated_total" => "UDP responses truncated (TC bit).",
        "anypop_dns_dropped_total" => "Packets dropped without an answer.",
        "anypop_dns_rate_limited_total" => {
            "UDP responses withheld by response rate limiting: dropped, or sent truncated (slip)."
        }
        "anypop_dns_pop_answers_total" => "Steered answers that sent clients to a PoP, by PoP.",
        "anypop_dns_tcp_connections" => "Open DNS TCP connections.",
        "anypop_dns_udp_worker_queries_total" => {
            "UDP datagrams received, by listener and worker (SO_REUSEPORT spreads them by source)."
        }
        "anypop_dns_tcp_closed_total" => {
            "DNS TCP connections closed by the server, by reason (idle, write_timeout, evicted, client_limit)."
        }
        _ => "DNS counter.",
    }
}

/// A metrics source exporting the DNS server's atomic counters (families
/// named `*_total`) and gauges (the others).
pub fn dns_source(stats: Arc<crate::dns::DnsStats>) -> MetricsSource {
    Arc::new(move |x: &mut Exposition| {
        // Group by family, keeping first-seen order, so no family is split.
        let mut families: Vec<(&'static str, Vec<crate::dns::Sample>)> = Vec::new();
        for s in stats.samples() {
            match families.iter_mut().find(|(n, _)| *n == s.name) {
                Some((_, v)) => v.push(s),
                None => families.push((s.name, vec![s])),
            }
        }
        for (name, samples) in families {
            let kind = if name.ends_with("_total") {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            if !x.family(name, kind, dns_help(name)) {
                continue;
            }
            for s in samples {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                x.sample(name, &labels, s.value as f64);
            }
        }
    })
}

/// A metrics source exporting BGP session state and counters per peer.
pub fn bgp_source(status: tokio::sync::watch::Receiver<crate::bgp::StatusMap>) -> MetricsSource {
    use crate::bgp::SessionState as S;
    Arc::new(move |x: &mut Exposition| {
        let peers = status.borrow().clone();
        x.family(
            "anypop_bgp_session_state",
            Kind::Gauge,
            "BGP session FSM state: 1 for the current state, 0 for the others.",
        );
        for (name, p) in &peers {
            x.state_set(
                "anypop_bgp_session_state",
                &[("peer", name.as_str())],
                &[
                    S::Idle,
                    S::Connect,
                    S::Active,
                    S::OpenSent,
                    S::OpenConfirm,
                    S::Established,
                ],
                &p.state,
            );
        }
        x.family(
            "anypop_bgp_session_up",
            Kind::Gauge,
            "1 while the BGP session is Established.",
        );
        for (name, p) in &peers {
            let v = if p.state == S::Established { 1.0 } else { 0.0 };
            x.sample("anypop_bgp_session_up", &[("peer", name.as_str())], v);
        }
        type Field = fn(&crate::bgp::PeerStatus) -> f64;
        let families: [(&str, Kind, &str, Field); 6] = [
            (
                "anypop_bgp_session_flaps_total",
                Kind::Counter,
                "Times an established BGP session went down.",
                |p| p.flaps as f64,
            ),
            (
                "anypop_bgp_updates_sent_total",
                Kind::Counter,
                "BGP UPDATE messages sent (including End-of-RIB).",
                |p| p.updates_sent as f64,
            ),
            (
                "anypop_bgp_updates_received_total",
                Kind::Counter,
                "BGP UPDATE messages received.",
                |p| p.updates_received as f64,
            ),
            (
                "anypop_bgp_prefixes_received_total",
                Kind::Counter,
                "NLRI announced by the peer (counted, not stored).",
                |p| p.prefixes_received as f64,
            ),
            (
                "anypop_bgp_withdrawals_received_total",
                Kind::Counter,
                "NLRI withdrawn by the peer.",
                |p| p.withdrawals_received as f64,
            ),
            (
                "anypop_bgp_prefixes_advertised",
                Kind::Gauge,
                "Prefixes in the peer's Adj-RIB-Out.",
                |p| p.prefixes_advertised as f64,
            ),
        ];
        for (fam, kind, help, f) in families {
            x.family(fam, kind, help);
            for (name, p) in &peers {
                x.sample(fam, &[("peer", name.as_str())], f(p));
            }
        }
        // BFD, for the peers that have it.
        type BfdField = fn(&crate::bfd::SessionStatus) -> f64;
        let bfd: [(&str, Kind, &str, BfdField); 3] = [
            (
                "anypop_bfd_session_up",
                Kind::Gauge,
                "1 while the peer's BFD session is Up.",
                |b| f64::from(u8::from(b.state == crate::bfd::State::Up)),
            ),
            (
                "anypop_bfd_failures_total",
                Kind::Counter,
                "Times the peer's BFD session went from Up to Down because of the path.",
                |b| b.failures as f64,
            ),
            (
                "anypop_bfd_holds_bgp_down",
                Kind::Gauge,
                "1 while BFD holds the BGP session to the peer down.",
                |b| f64::from(u8::from(b.holds_bgp_down)),
            ),
        ];
        for (fam, kind, help, f) in bfd {
            x.family(fam, kind, help);
            for (name, p) in &peers {
                if let Some(b) = &p.bfd {
                    x.sample(fam, &[("peer", name.as_str())], f(b));
                }
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod parse {
    //! A strict parser of the text exposition format, for tests: it rejects
    //! anything Prometheus would reject and some things it merely tolerates
    //! (samples before their TYPE, split families, non-cumulative buckets).

    use std::collections::{BTreeMap, BTreeSet};

    #[derive(Debug, Clone, PartialEq)]
    pub struct Sample {
        pub name: String,
        pub labels: BTreeMap<String, String>,
        pub value: f64,
    }

    #[derive(Debug, Default)]
    pub struct Parsed {
        /// family → type
        pub types: BTreeMap<String, String>,
        pub samples: Vec<Sample>,
    }

    impl Parsed {
        /// Value of the sample with `name` and exactly these labels.
        pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
            let want: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            self.samples
                .iter()
                .find(|s| s.name == name && s.labels == want)
                .map(|s| s.value)
        }
    }

    fn valid_name(s: &str, label: bool) -> bool {
        let mut chars = s.chars();
        let first_ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':');
        chars.next().is_some_and(first_ok)
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':'))
    }

    fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
        if types.contains_key(name) {
            return Some(name);
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if types.get(base).is_some_and(|t| t == "histogram") {
                    return Some(base);
                }
            }
        }
        None
    }

    pub fn parse(text: &str) -> Result<Parsed, String> {
        let mut p = Parsed::default();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut current: Option<String> = None;
        let mut seen_series: BTreeSet<String> = BTreeSet::new();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("exposition must end with a newline".into());
        }
        for (i, line) in text.lines().enumerate() {
            let ln = i + 1;
            if let Some(rest) = line.strip_prefix("# ") {
                let mut parts = rest.splitn(3, ' ');
                let kw = parts.next().unwrap_or("");
                let name = parts
                    .next()
                    .ok_or(format!("line {ln}: comment without name"))?;
                if !valid_name(name, false) {
                    return Err(format!("line {ln}: bad metric name {name:?}"));
                }
                match kw {
                    "HELP" if done.contains(name) => {
                        return Err(format!("line {ln}: family {name} split"));
                    }
                    "TYPE" => {
                        let t = parts
                            .next()
                            .ok_or(format!("line {ln}: TYPE without type"))?;
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                            return Err(format!("line {ln}: bad type {t:?}"));
                        }
                        if p.types.insert(name.to_string(), t.to_string()).is_some() {
                            return Err(format!("line {ln}: second TYPE for {name}"));
                        }
                        if let Some(c) = current.take() {
                            done.insert(c);
                        }
                        current = Some(name.to_string());
                    }
                    _ => {}
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let (name, rest) = match line.find(['{', ' ']) {
                Some(i) => line.split_at(i),
                None => return Err(format!("line {ln}: no value")),
            };
            if !valid_name(name, false) {
                return Err(format!("line {ln}: bad metric name {name:?}"));
            }
            let fam = family_of(name, &p.types)
                .ok_or(format!("line {ln}: sample {name} before its TYPE"))?;
            if current.as_deref() != Some(fam) {
                return Err(format!(
                    "line {ln}: sample of {fam} outside its family block"
                ));
            }
            let mut labels = BTreeMap::new();
            let mut rest = rest;
            if let Some(r) = rest.strip_prefix('{') {
                let mut chars = r.char_indices().peekable();
                let mut end = None;
                loop {
                    // label name
                    let start = match chars.peek() {
                        Some((_, '}')) => {
                            end = chars.next().map(|(i, _)| i);
                            break;
                        }
                        Some((i, _)) => *i,
                        None => break,
                    };
                    let eq = r[start..]
                        .find('=')
                        .ok_or(format!("line {ln}: label without ="))?;
                    let lname = &r[start..start + eq];
                    if !valid_name(lname, true) {
                        return Err(format!("line {ln}: bad label name {lname:?}"));
                    }
                    while chars.peek().is_some_and(|(i, _)| *i < start + eq + 1) {
                        chars.next();
                    }
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err(format!("line {ln}: label value not quoted"));
                    }
                    let mut val = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => val.push('\n'),
                                Some((_, '\\')) => val.push('\\'),
                                Some((_, '"')) => val.push('"'),
                                _ => return Err(format!("line {ln}: bad escape")),
                            },
                            Some((_, '"')) => break,
                            Some((_, c)) => val.push(c),
                            None => return Err(format!("line {ln}: unterminated label value")),
                        }
                    }
                    if labels.insert(lname.to_string(), val).is_some() {
                        return Err(format!("line {ln}: duplicate label {lname}"));
                    }
                    match chars.next() {
                        Some((_, ',')) => continue,
                        Some((i, '}')) => {
                            end = Some(i);
                            break;
                        }
                        _ => return Err(format!("line {ln}: expected , or }}")),
                    }
                }
                let end = end.ok_or(format!("line {ln}: unterminated labels"))?;
                rest = &r[end + 1..];
            }
            let value = rest
                .strip_prefix(' ')
                .ok_or(format!("line {ln}: expected space before value"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse()
                    .map_err(|_| format!("line {ln}: bad value {v:?}"))?,
            };
            let series = format!("{name}{labels:?}");
            if !seen_series.insert(series.clone()) {
                return Err(format!("line {ln}: duplicate series {series}"));
            }
            if p.types.get(fam).is_some_and(|t| t == "counter") && value < 0.0 {
                return Err(format!("line {ln}: negative counter"));
            }
            p.samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        check_histograms(&p)?;
        Ok(p)
    }

    fn check_histograms(p: &Parsed) -> Result<(), String> {
        for (fam, t) in &p.types {
            if t != "histogram" {
                continue;
            }
            let bucket = format!("{fam}_bucket");
            let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
            for s in p.samples.iter().filter(|s| s.name == bucket) {
                let mut l = s.labels.clone();
                let le = l.remove("le").ok_or(format!("{bucket} without le"))?;
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| format!("{bucket}: bad le {le:?}"))?
                };
                series.entry(l).or_default().push((le, s.value));
            }
            for (labels, buckets) in series {
                let mut prev = (f64::NEG_INFINITY, 0.0);
                for (le, v) in &buckets {
                    if *le <= prev.0 || *v < prev.1 {
                        return Err(format!("{fam}{labels:?}: buckets not increasing"));
                    }
                    prev = (*le, *v);
                }
                if prev.0 != f64::INFINITY {
                    return Err(format!("{fam}{labels:?}: no +Inf bucket"));
                }
                let count = p
                    .samples
                    .iter()
                    .find(|s| s.name == format!("{fam}_count") && s.labels == labels)
                    .ok_or(format!("{fam}{labels:?}: no _count"))?;
                if count.value != prev.1 {
                    return Err(format!("{fam}{labels:?}: +Inf bucket != _count"));
                }
            }
        }
        Ok(())
    }

    #[test]
    fn parser_rejects_what_it_should() {
        assert!(parse("x 1\n").is_err(), "no TYPE");
        assert!(parse("# TYPE x counter\nx -1\n").is_err());
        assert!(parse("# TYPE x counter\nx{a=\"1\" 1\n").is_err());
        assert!(parse("# TYPE x counter\nx{a=1} 1\n").is_err());
        assert!(parse("# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n").is_err());
        assert!(
            parse("# TYPE x gauge\nx 1\nx 2\n").is_err(),
            "duplicate series"
        );
        assert!(parse(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n"
        )
        .is_err());
        let ok = parse("# HELP x a \\\\ b\n# TYPE x gauge\nx{a=\"q\\\"\\n\",b=\"\"} 1.5\n")
            .expect("valid");
        assert_eq!(ok.get("x", &[("a", "q\"\n"), ("b", "")]), Some(1.5));
    }
}

#[cfg(test)]
mod tests {
    use super::parse::parse;
    use super::*;

    #[test]
    fn reloads_keep_the_last_result_and_the_last_good_load() {
        let m = Metrics::new();
        let render = |m: &Metrics| {
            let mut x = Exposition::new();
            reload_families(&mut x, &m.recorded.lock().expect("lock"), 1000.0);
            let text = x.finish();
            parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
        };
        let p = render(&m);
        assert_eq!(
            p.get("anypop_config_last_reload_successful", &[]),
            Some(1.0)
        );
        let ts = "anypop_config_last_reload_success_timestamp_seconds";
        assert_eq!(p.get(ts, &[]), Some(1000.0), "the start counts");
        assert_eq!(
            p.get("anypop_config_reloads_total", &[("result", "error")]),
            Some(0.0)
        );
        m.record_reload(false);
        let p = render(&m);
        assert_eq!(
            p.get("anypop_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert_eq!(p.get(ts, &[]), Some(1000.0), "still the start's config");
        m.record_reload(true);
        m.record_reload(false);
        let p = render(&m);
        assert_eq!(
            p.get("anypop_config_last_reload_successful", &[]),
            Some(0.0)
        );
        assert!(p.get(ts, &[]).is_some_and(|t| t > 1.7e9), "the good reload");
        assert_eq!(
            p.get("anypop_config_reloads_total", &[("result", "ok")]),
            Some(1.0)
        );
        assert_eq!(
            p.get("anypop_config_reloads_total", &[("result", "error")]),
            Some(2.0)
        );
    }

    #[test]
    fn recorded_counters_render_and_parse() {
        let m = Metrics::new();
        m.record_check("ams", "http", true, Duration::from_millis(3));
        m.record_check("ams", "http", false, Duration::from_millis(700));
        m.record_check("ams", "http", true, Duration::from_secs(30));
        m.record_api("GET", "/v1/state", 200, Duration::from_micros(200));
        m.record_event("pop_state");
        m.add_source(Arc::new(|x: &mut Exposition| {
            x.family("anypop_dns_queries_total", Kind::Counter, "DNS queries.");
            x.sample(
                "anypop_dns_queries_total",
                &[
                    ("rcode", "NOERROR"),
                    ("policy", "fail\"over"),
                    ("pop", "ams"),
                ],
                7.0,
            );
            // A second attempt at the same family is refused, not split.
            assert!(!x.family("anypop_dns_queries_total", Kind::Counter, "again"));
            x.sample("anypop_dns_queries_total", &[], 1.0);
        }));
        let mut x = Exposition::new();
        recorded_families(&mut x, &m.recorded.lock().expect("lock"));
        if let Ok(sources) = m.sources.read() {
            for s in sources.iter() {
                s(&mut x);
            }
        }
        let text = x.finish();
        let p = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let l = [("pop", "ams"), ("check", "http"), ("result", "ok")];
        assert_eq!(p.get("anypop_check_results_total", &l), Some(2.0));
        let l = [("pop", "ams"), ("check", "http"), ("le", "0.005")];
        assert_eq!(p.get("anypop_check_duration_seconds_bucket", &l), Some(1.0));
        let l = [("pop", "ams"), ("check", "http"), ("le", "1")];
        assert_eq!(p.get("anypop_check_duration_seconds_bucket", &l), Some(2.0));
        let l = [("pop", "ams"), ("check", "http"), ("le", "+Inf")];
        assert_eq!(p.get("anypop_check_duration_seconds_bucket", &l), Some(3.0));
        let l = [
            ("rcode", "NOERROR"),
            ("policy", "fail\"over"),
            ("pop", "ams"),
        ];
        assert_eq!(p.get("anypop_dns_queries_total", &l), Some(7.0));
        assert_eq!(p.get("anypop_dns_queries_total", &[]), None);
        assert_eq!(
            p.get("anypop_events_total", &[("kind", "pop_state")]),
            Some(1.0)
        );
    }
}
