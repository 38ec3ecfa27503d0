//! Response bodies of the read endpoints, the admin actions and the event
//! stream: the wire format of the API. The core's types carry no serde
//! attributes; these types say how each field looks on the wire (Unix
//! seconds with millisecond precision for wall-clock times, milliseconds
//! for probe durations, snake_case names) and are what `anypop ctl`
//! decodes. Built from a [`Snapshot`] by the `from_*` constructors; they
//! never reach back into the core.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::{self, Snapshot};
use crate::model::RecordData;

fn secs(t: SystemTime) -> f64 {
    crate::unix_time::secs(t)
}

/// Operational state of a PoP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PopState {
    Up,
    Down,
    Draining,
    Disabled,
}

impl PopState {
    pub fn as_str(self) -> &'static str {
        match self {
            PopState::Up => "up",
            PopState::Down => "down",
            PopState::Draining => "draining",
            PopState::Disabled => "disabled",
        }
    }
}

impl From<core::PopState> for PopState {
    fn from(s: core::PopState) -> PopState {
        match s {
            core::PopState::Up => PopState::Up,
            core::PopState::Down => PopState::Down,
            core::PopState::Draining => PopState::Draining,
            core::PopState::Disabled => PopState::Disabled,
        }
    }
}

/// A check's verdict after rise/fall hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Unknown,
    Up,
    Down,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unknown => "unknown",
            Verdict::Up => "up",
            Verdict::Down => "down",
        }
    }
}

impl From<crate::core::hysteresis::Verdict> for Verdict {
    fn from(v: crate::core::hysteresis::Verdict) -> Verdict {
        use crate::core::hysteresis::Verdict as V;
        match v {
            V::Unknown => Verdict::Unknown,
            V::Up => Verdict::Up,
            V::Down => Verdict::Down,
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProbeOutcome {
    pub ok: bool,
    /// What happened, in words (`connect refused`, `status 503`).
    pub detail: String,
    /// How long the probe took, in milliseconds.
    pub took: f64,
    /// Unix time of the result.
    pub at: f64,
}

impl From<&core::ProbeOutcome> for ProbeOutcome {
    fn from(p: &core::ProbeOutcome) -> ProbeOutcome {
        ProbeOutcome {
            ok: p.ok,
            detail: p.detail.clone(),
            took: p.took.as_secs_f64() * 1000.0,
            at: secs(p.at),
        }
    }
}

/// One check of a PoP: hysteresis state and last result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckStatus {
    pub verdict: Verdict,
    /// Consecutive successes so far.
    pub successes: u32,
    /// Consecutive failures so far.
    pub failures: u32,
    pub rise: u32,
    pub fall: u32,
    /// The last probe result (`null` before the first).
    #[schema(required)]
    pub last: Option<ProbeOutcome>,
}

impl From<&core::CheckStatus> for CheckStatus {
    fn from(c: &core::CheckStatus) -> CheckStatus {
        CheckStatus {
            verdict: c.state.verdict.into(),
            successes: c.state.successes,
            failures: c.state.failures,
            rise: c.rise,
            fall: c.fall,
            last: c.last.as_ref().map(ProbeOutcome::from),
        }
    }
}

/// Kind of operator override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminKind {
    Drain,
    Disable,
}

/// Step of an override: the drain choreography or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Drain step 1: out of DNS, still announced normally.
    DnsRemoved,
    /// Drain step 2: announced with the drain attributes.
    Shutdown,
    /// Drain complete: the `on_drain` action holds.
    Drained,
    /// Undrain ramp: announced normally, DNS still avoids the PoP.
    Restoring,
    /// Disabled: no DNS, prefixes withdrawn.
    Disabled,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DnsRemoved => "dns_removed",
            Step::Shutdown => "shutdown",
            Step::Drained => "drained",
            Step::Restoring => "restoring",
            Step::Disabled => "disabled",
        }
    }
}

impl From<core::admin::Phase> for Step {
    fn from(p: core::admin::Phase) -> Step {
        use core::admin::Phase;
        match p {
            Phase::DnsRemoved => Step::DnsRemoved,
            Phase::Shutdown => Step::Shutdown,
            Phase::Drained => Step::Drained,
            Phase::Restoring => Step::Restoring,
            Phase::Disabled => Step::Disabled,
        }
    }
}

/// An operator override (drain or disable) in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdminStatus {
    pub kind: AdminKind,
    pub reason: String,
    pub who: String,
    pub step: Step,
    /// Unix time of the next step or of the auto-undrain, whichever comes
    /// first.
    #[schema(required)]
    pub next_at: Option<f64>,
    /// Unix time of the auto-undrain (the drain's duration), if any.
    #[schema(required)]
    pub until: Option<f64>,
    /// Present only while a graceful drain holds at the end of its DNS
    /// step (in a fleet: the last-PoP guard found no other PoP of one of
    /// its prefixes in service): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

impl From<&core::AdminStatus> for AdminStatus {
    fn from(a: &core::AdminStatus) -> AdminStatus {
        AdminStatus {
            kind: match a.kind {
                core::AdminKind::Drain => AdminKind::Drain,
                core::AdminKind::Disable => AdminKind::Disable,
            },
            reason: a.reason.clone(),
            who: a.who.clone(),
            step: a.step.into(),
            next_at: a.next_at.map(secs),
            until: a.until.map(secs),
            held: a.held.clone(),
        }
    }
}

/// How a prefix is announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnounceMode {
    Normal,
    Degraded,
    GracefulShutdown,
}

impl AnnounceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AnnounceMode::Normal => "normal",
            AnnounceMode::Degraded => "degraded",
            AnnounceMode::GracefulShutdown => "graceful_shutdown",
        }
    }
}

/// BGP path attributes of an announced prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteAttrs {
    /// Extra prepends of our ASN.
    pub prepend: u8,
    #[schema(required)]
    pub med: Option<u32>,
    #[schema(required)]
    pub local_pref: Option<u32>,
    /// Standard communities as `[asn, value]`.
    pub communities: Vec<(u16, u16)>,
    /// Large communities as `[global, local1, local2]`.
    pub large_communities: Vec<(u32, u32, u32)>,
}

impl From<&crate::model::RouteAttrs> for RouteAttrs {
    fn from(a: &crate::model::RouteAttrs) -> RouteAttrs {
        RouteAttrs {
            prepend: a.prepend,
            med: a.med,
            local_pref: a.local_pref,
            communities: a.communities.clone(),
            large_communities: a.large_communities.clone(),
        }
    }
}

/// A route BGP advertises: the prefix's PoP, mode and attributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Announcement {
    pub pop: String,
    pub mode: AnnounceMode,
    pub attrs: RouteAttrs,
}

impl From<&core::Announcement> for Announcement {
    fn from(a: &core::Announcement) -> Announcement {
        Announcement {
            pop: a.pop.to_string(),
            mode: match a.mode {
                core::AnnounceMode::Normal => AnnounceMode::Normal,
                core::AnnounceMode::Degraded => AnnounceMode::Degraded,
                core::AnnounceMode::GracefulShutdown => AnnounceMode::GracefulShutdown,
            },
            attrs: (&a.attrs).into(),
        }
    }
}

/// One prefix of a PoP and how this node announces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Prefix {
    #[schema(value_type = String)]
    pub prefix: IpNet,
    /// True if this node announces it now (the PoP is this node's PoP and
    /// the prefix is not withdrawn).
    pub announced: bool,
    /// The announcing PoP (announced prefixes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AnnounceMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attrs: Option<RouteAttrs>,
}

/// One PoP: state, health, admin override, checks, prefixes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pop {
    pub name: String,
    /// True if this node announces the PoP's prefixes (it is `node.pop`).
    pub local: bool,
    /// `pops[].location`, for maps; `null` when the config gives none.
    #[schema(required)]
    pub location: Option<Location>,
    pub state: PopState,
    /// Health alone (checks combined), ignoring admin state; `null` until
    /// enough probes have run to decide.
    #[schema(required)]
    pub healthy: Option<bool>,
    /// Whether DNS may send clients to this PoP.
    pub serves_dns: bool,
    /// Why the PoP is in its state, in words.
    pub reason: String,
    /// Unix time of the last state change.
    pub since: f64,
    pub checks: BTreeMap<String, CheckStatus>,
    /// The override in force (`null`: none).
    #[schema(required)]
    pub admin: Option<AdminStatus>,
    /// Present only while the admin state in force for this PoP could not
    /// be saved to the state file: the error (saving is retried every 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_unsaved: Option<String>,
    /// Present only while the fleet's fail-static rule holds the PoP: why
    /// (a failure shared by most PoPs is not acted on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_static: Option<String>,
    pub prefixes: Vec<Prefix>,
}

/// Where a PoP is, in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Pop {
    /// The PoP `name` with status `status`, as of `snap`.
    pub fn from_snapshot(snap: &Snapshot, name: &str, status: &core::PopStatus) -> Pop {
        let pop = snap.config.pops.get(name);
        let location = pop
            .and_then(|p| p.location)
            .map(|(lat, lon)| Location { lat, lon });
        let prefixes = pop
            .map(|p| {
                p.prefixes
                    .iter()
                    .map(|pfx| {
                        let a = snap
                            .announcements
                            .get(pfx)
                            .filter(|a| a.pop.as_str() == name)
                            .map(Announcement::from);
                        Prefix {
                            prefix: *pfx,
                            announced: a.is_some(),
                            pop: a.as_ref().map(|a| a.pop.clone()),
                            mode: a.as_ref().map(|a| a.mode),
                            attrs: a.map(|a| a.attrs),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let local = snap
            .config
            .node
            .pop
            .as_ref()
            .is_some_and(|p| p.as_str() == name);
        Pop {
            name: name.to_string(),
            local,
            location,
            state: status.state.into(),
            healthy: status.healthy,
            serves_dns: status.serves_dns,
            reason: status.reason.clone(),
            since: secs(status.since),
            checks: status
                .checks
                .iter()
                .map(|(n, c)| (n.to_string(), c.into()))
                .collect(),
            admin: status.admin.as_ref().map(AdminStatus::from),
            admin_unsaved: status.admin_unsaved.clone(),
            fail_static: status.fail_static.clone(),
            prefixes,
        }
    }
}

/// Every PoP, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Pops {
    pub version: u64,
    pub pops: BTreeMap<String, Pop>,
}

impl Pops {
    pub fn from_snapshot(snap: &Snapshot) -> Pops {
        Pops {
            version: snap.version,
            pops: pops(snap),
        }
    }
}

fn pops(snap: &Snapshot) -> BTreeMap<String, Pop> {
    snap.pops
        .iter()
        .map(|(n, s)| (n.to_string(), Pop::from_snapshot(snap, n.as_str(), s)))
        .collect()
}

/// One check with the PoP it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    pub pop: String,
    pub check: String,
    #[serde(flatten)]
    pub status: CheckStatus,
}

impl Check {
    /// The check `check` of `pop` with status `status`.
    pub fn new(pop: &str, check: &str, status: CheckStatus) -> Check {
        Check {
            pop: pop.to_string(),
            check: check.to_string(),
            status,
        }
    }
}

/// Every check of every PoP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Checks {
    pub version: u64,
    pub checks: Vec<Check>,
}

impl Checks {
    pub fn from_snapshot(snap: &Snapshot) -> Checks {
        let checks = snap
            .pops
            .iter()
            .flat_map(|(p, s)| {
                s.checks
                    .iter()
                    .map(move |(c, st)| Check::new(p.as_str(), c.as_str(), st.into()))
            })
            .collect();
        Checks {
            version: snap.version,
            checks,
        }
    }
}

/// This node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Node {
    pub name: String,
    /// The PoP this node announces (`null`: DNS only).
    #[schema(required)]
    pub pop: Option<String>,
    pub asn: u32,
    #[schema(value_type = String)]
    pub router_id: std::net::Ipv4Addr,
}

/// A record of a zone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Record {
    pub name: String,
    pub ttl: u32,
    /// Record type for static records, `steered` for steered A/AAAA.
    #[serde(rename = "type")]
    pub rtype: String,
    /// Steering policy name (steered records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// PoPs the policy can answer with (steered records only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pops: Vec<String>,
}

/// A zone the DNS server is authoritative for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    pub origin: String,
    pub serial: u32,
    pub records: Vec<Record>,
}

/// The DNS server: listeners and zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dns {
    #[schema(value_type = Vec<String>)]
    pub listen: Vec<std::net::SocketAddr>,
    pub zones: Vec<Zone>,
}

impl Dns {
    pub fn from_snapshot(snap: &Snapshot) -> Dns {
        let dns = &snap.config.dns;
        let record = |r: &crate::model::Record| match &r.data {
            RecordData::Static { rtype, .. } => Record {
                name: r.name.clone(),
                ttl: r.ttl,
                rtype: hickory_proto::rr::RecordType::from(*rtype).to_string(),
                policy: None,
                pops: Vec::new(),
            },
            RecordData::Steered(s) => Record {
                name: r.name.clone(),
                ttl: r.ttl,
                rtype: "steered".into(),
                policy: Some(s.policy.name().to_string()),
                pops: s.policy.pops().into_iter().map(|p| p.to_string()).collect(),
            },
        };
        Dns {
            listen: dns.listen.clone(),
            zones: dns
                .zones
                .iter()
                .map(|z| Zone {
                    origin: z.origin.clone(),
                    serial: z.soa.serial,
                    records: z.records.iter().map(record).collect(),
                })
                .collect(),
        }
    }
}

/// Everything: node, PoPs, announcements, BGP peers, DNS zones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct State {
    pub version: u64,
    /// Unix time the snapshot was published.
    pub published: f64,
    pub node: Node,
    pub pops: BTreeMap<String, Pop>,
    /// The routes BGP advertises, by prefix.
    #[schema(value_type = BTreeMap<String, Announcement>)]
    pub announcements: BTreeMap<IpNet, Announcement>,
    /// BGP peers by name (empty when no BGP speaker runs).
    pub peers: BTreeMap<String, super::Peer>,
    pub dns: Dns,
}

impl State {
    pub fn from_snapshot(snap: &Snapshot, peers: BTreeMap<String, super::Peer>) -> State {
        let node = &snap.config.node;
        State {
            version: snap.version,
            published: secs(snap.published),
            node: Node {
                name: node.name.clone(),
                pop: node.pop.as_ref().map(|p| p.to_string()),
                asn: node.asn,
                router_id: node.router_id,
            },
            pops: pops(snap),
            announcements: snap
                .announcements
                .iter()
                .map(|(p, a)| (*p, a.into()))
                .collect(),
            peers,
            dns: Dns::from_snapshot(snap),
        }
    }
}

/// Answer of a successful admin action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdminResult {
    /// Snapshot version that includes the change.
    pub version: u64,
    pub pop: String,
    pub state: PopState,
    pub serves_dns: bool,
    /// The override now in force (`null`: none). Its keys are in
    /// alphabetical order on the wire.
    #[serde(serialize_with = "keys_sorted")]
    #[schema(required)]
    pub admin: Option<AdminStatus>,
}

/// Serializes through a JSON value, whose object keys are sorted: the
/// admin result has always listed the override's keys alphabetically.
fn keys_sorted<S: serde::Serializer>(a: &Option<AdminStatus>, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(a)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// Answer of a successful reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadResult {
    /// Snapshot version that carries the new config.
    pub version: u64,
    /// Always true.
    pub reloaded: bool,
}

/// `/healthz`: the process is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `/readyz`: ready, or what is not up yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    pub ready: bool,
    /// The parts that are not ready (config, api, dns, bgp, ...).
    pub waiting: Vec<String>,
}

/// What an event is about (the SSE `event:` name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    PopState,
    Check,
    DrainStep,
    Admin,
    Reload,
    Persist,
    Fleet,
    Safety,
}

impl From<core::EventKind> for EventKind {
    fn from(k: core::EventKind) -> EventKind {
        match k {
            core::EventKind::PopState => EventKind::PopState,
            core::EventKind::Check => EventKind::Check,
            core::EventKind::DrainStep => EventKind::DrainStep,
            core::EventKind::Admin => EventKind::Admin,
            core::EventKind::Reload => EventKind::Reload,
            core::EventKind::Persist => EventKind::Persist,
            core::EventKind::Fleet => EventKind::Fleet,
            core::EventKind::Safety => EventKind::Safety,
        }
    }
}

/// One state change, as sent in the `data:` of an SSE message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increases by one per event (the SSE `id:`).
    pub seq: u64,
    /// Unix time the change was applied.
    pub at: f64,
    pub kind: EventKind,
    #[schema(required)]
    pub pop: Option<String>,
    #[schema(required)]
    pub check: Option<String>,
    pub message: String,
}

impl From<&core::Event> for Event {
    fn from(e: &core::Event) -> Event {
        Event {
            seq: e.seq,
            at: secs(e.at),
            kind: e.kind.into(),
            pop: e.pop.as_ref().map(|p| p.to_string()),
            check: e.check.as_ref().map(|c| c.to_string()),
            message: e.message.clone(),
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The body field or query parameter at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every problem, when there are several (config reload).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// The `data:` of an SSE `event: lagged` message: the client was too slow
/// and missed this many events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Lagged {
    pub missed: u64,
}
