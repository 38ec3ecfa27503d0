//! Domain types shared by every layer: the validated configuration.
//!
//! Everything here is produced once by [`crate::config`] from the YAML file and
//! is never re-checked downstream: a `Pop` always has a valid name, prefixes are
//! prefixes (not host addresses), durations are in range. Types are plain data,
//! cheap to clone behind an `Arc<Config>`, and ordered (`BTreeMap`) wherever the
//! order can reach output.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// A validated name: 1–63 chars of `[A-Za-z0-9_.-]`, tagged with what it
/// names. [`PopName`], [`CheckName`] and [`PeerName`] are distinct types, so
/// a check name can never be passed where a PoP name is expected; the tag is
/// a zero-sized marker from [`kind`] and costs nothing at run time.
///
/// ```compile_fail
/// use anypop::model::{CheckName, PopName};
/// let check = CheckName::parse("http").unwrap();
/// let pop: PopName = check; // a check name is not a PoP name
/// ```
pub struct Name<K>(Arc<str>, PhantomData<fn() -> K>);

/// The kinds of things a [`Name`] can name (markers, never constructed).
pub mod kind {
    /// A Point of Presence.
    pub enum Pop {}
    /// A health check of a PoP.
    pub enum Check {}
    /// A BGP peer.
    pub enum Peer {}
    /// An anypop node of a fleet.
    pub enum Node {}
}

/// The name of a PoP.
pub type PopName = Name<kind::Pop>;
/// The name of a check (unique within its PoP).
pub type CheckName = Name<kind::Check>;
/// The name of a BGP peer.
pub type PeerName = Name<kind::Peer>;
/// The name of an anypop node in a fleet (its `node.name`).
pub type NodeName = Name<kind::Node>;

impl<K> Name<K> {
    /// Validates `s` as a name; the error says what was expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 63 {
            return Err(format!(
                "{s:?} is not a valid name: expected 1 to 63 characters"
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "{s:?} is not a valid name: character {c:?} is not allowed (use letters, digits, '-', '_', '.')"
            ));
        }
        Ok(Name(Arc::from(s), PhantomData))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// The traits are implemented by hand: derives would require them of the
// marker `K`, which has no values.
impl<K> Clone for Name<K> {
    fn clone(&self) -> Self {
        Name(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for Name<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for Name<K> {}

impl<K> PartialOrd for Name<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Name<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K> std::hash::Hash for Name<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<K> fmt::Display for Name<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<K> fmt::Debug for Name<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl<K> std::borrow::Borrow<str> for Name<K> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: Node,
    pub bgp: BgpConfig,
    /// PoPs by name. The node's own PoP (`node.pop`) is the one whose
    /// prefixes this node announces over BGP; every PoP takes part in DNS
    /// steering.
    pub pops: BTreeMap<PopName, Pop>,
    pub dns: DnsConfig,
    pub api: ApiConfig,
    /// The other nodes of this node's fleet; `None`: this node decides
    /// alone.
    pub fleet: Option<FleetConfig>,
}

impl Config {
    /// The PoP this node announces, if it belongs to one.
    pub fn local_pop(&self) -> Option<&Pop> {
        self.node.pop.as_ref().and_then(|p| self.pops.get(p))
    }

    /// Who decides `pop`'s inside verdict and admin state.
    pub fn role(&self, pop: &PopName) -> Role {
        let Some(fleet) = &self.fleet else {
            return Role::Local;
        };
        match fleet.owners.get(pop) {
            None => Role::Local,
            Some(owners) if owners.contains(&fleet.me) => Role::Own,
            Some(_) => Role::Peer,
        }
    }

    /// Whether this node runs `check` of `pop`: every check without a
    /// fleet and for PoPs no fleet node owns; the `inside` and `both`
    /// checks of its own PoP; the `outside` and `both` checks of PoPs
    /// other nodes own.
    pub fn runs_here(&self, pop: &PopName, check: &Check) -> bool {
        match self.role(pop) {
            Role::Local => true,
            Role::Own => check.vantage != Vantage::Outside,
            Role::Peer => check.vantage != Vantage::Inside,
        }
    }
}

/// How this node relates to a PoP (see [`Config::role`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No fleet, or no fleet node owns the PoP: this node decides it from
    /// all of its checks, as a node without a fleet does.
    Local,
    /// This node owns the PoP: its inside verdict and admin state.
    Own,
    /// Another fleet node owns it: this node is a vantage point.
    Peer,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// The PoP this node belongs to (announces over BGP). `None`: DNS only.
    pub pop: Option<PopName>,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    /// Directory for persistent admin state (drains, disables).
    pub state_dir: Option<PathBuf>,
    /// Start with no admin overrides when the state file is corrupt (the
    /// file is moved aside), instead of refusing to start.
    pub start_on_corrupt_state: bool,
}

// ---------------------------------------------------------------- BGP

#[derive(Debug, Clone)]
pub struct BgpConfig {
    /// Passive listener for configured neighbors; `None`: no listener.
    pub listen: Option<SocketAddr>,
    pub peers: Vec<Peer>,
    /// What a clean shutdown (SIGTERM) does to our routes.
    pub shutdown: ShutdownMode,
    /// RFC 4724 restart time we advertise; `None` disables graceful restart.
    pub graceful_restart: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Withdraw every route, then send Cease.
    Withdraw,
    /// Send Cease without withdrawing and let the routers keep the routes
    /// stale for the graceful-restart time.
    GracefulRestart,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub name: PeerName,
    pub address: IpAddr,
    pub port: u16,
    pub remote_asn: u32,
    /// Local ASN for this session (defaults to `node.asn`).
    pub local_asn: u32,
    /// Source address to bind when connecting.
    pub local_address: Option<IpAddr>,
    /// Only accept the session (never connect).
    pub passive: bool,
    pub hold_time: Duration,
    /// The shortest hold time we accept from the peer; zero: any, even 0
    /// (no keepalives).
    pub min_hold_time: Duration,
    pub connect_retry: Duration,
    pub md5_password_file: Option<PathBuf>,
    pub ttl_security: bool,
    pub ipv4_unicast: bool,
    pub ipv6_unicast: bool,
    /// Next hops per family; `None`: the session's local address.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    /// BFD to this peer (RFC 5880/5881 single hop); `None`: off.
    pub bfd: Option<BfdParams>,
}

/// BFD timers of a peer: we send every `min_tx` once the session is Up,
/// accept packets every `min_rx`, and the peer declares us down after
/// `multiplier` missed packets (and we it, by its own interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdParams {
    pub min_tx: Duration,
    pub min_rx: Duration,
    pub multiplier: u8,
}

impl BfdParams {
    /// FRR's defaults: 300 ms, 300 ms, 3 (detection in 900 ms).
    pub const DEFAULT: BfdParams = BfdParams {
        min_tx: Duration::from_millis(300),
        min_rx: Duration::from_millis(300),
        multiplier: 3,
    };
}

impl Peer {
    pub fn is_ibgp(&self) -> bool {
        self.remote_asn == self.local_asn
    }
}

// ---------------------------------------------------------------- PoPs

#[derive(Debug, Clone)]
pub struct Pop {
    pub name: PopName,
    /// Anycast prefixes this PoP announces when healthy.
    pub prefixes: Vec<IpNet>,
    /// Unicast service addresses, used as steered DNS answers.
    pub addresses: Vec<IpAddr>,
    /// Coordinates (latitude, longitude) for nearest-PoP steering.
    pub location: Option<(f64, f64)>,
    pub checks: Vec<Check>,
    pub combine: Combine,
    pub announce: AnnouncePolicy,
    /// Graceful drain: how long to wait after removing the PoP from DNS
    /// before touching BGP (`None`: the longest TTL of its steered records).
    pub drain_dns_wait: Option<Duration>,
    /// Graceful drain: how long prefixes stay in graceful shutdown /
    /// degraded before the final action.
    pub drain_settle: Duration,
}

/// How a PoP's check verdicts combine into the PoP's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    All,
    Any,
    AtLeast(u32),
}

/// BGP attributes of a PoP's prefixes, and what happens to them when the PoP
/// fails or is drained.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnouncePolicy {
    /// Attributes while the PoP is up.
    pub normal: RouteAttrs,
    /// Changes applied on top of `normal` while degraded: prepends add up,
    /// `med`/`local_pref` replace, communities are added
    /// (see `core::decide::attrs_for`).
    pub degraded: RouteAttrs,
    /// What a PoP that is down does with its prefixes.
    pub on_down: FailAction,
    /// What a drained PoP's prefixes end as once the drain completes.
    pub on_drain: FailAction,
}

/// The fate of a prefix whose PoP is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    Withdraw,
    /// Keep announcing with the `degraded` attributes.
    Degrade,
    /// Keep announcing with RFC 8326 GRACEFUL_SHUTDOWN (65535:0).
    GracefulShutdown,
}

/// Path attributes we control for an announced prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RouteAttrs {
    /// How many extra times our ASN is prepended to AS_PATH.
    pub prepend: u8,
    pub med: Option<u32>,
    /// LOCAL_PREF, sent on iBGP sessions only.
    pub local_pref: Option<u32>,
    /// Standard communities as (asn, value).
    pub communities: Vec<(u16, u16)>,
    /// Large communities (global admin, local 1, local 2).
    pub large_communities: Vec<(u32, u32, u32)>,
}

/// RFC 8326 GRACEFUL_SHUTDOWN well-known community.
pub const GRACEFUL_SHUTDOWN: (u16, u16) = (65535, 0);

// ---------------------------------------------------------------- checks

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: CheckName,
    pub probe: Probe,
    /// Time between probes while the verdict is stable.
    pub interval: Duration,
    /// Time between probes while a check is between states (one result
    /// disagrees with the current verdict).
    pub fast_interval: Duration,
    pub timeout: Duration,
    /// Consecutive successes to go up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
    /// Each wait is shortened by a random amount up to this.
    pub jitter: Duration,
    /// Which fleet nodes run the check (ignored without a fleet).
    pub vantage: Vantage,
}

/// Where a check runs in a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vantage {
    /// Only on the PoP's owner node(s): part of its inside verdict.
    Inside,
    /// Only on the other nodes: their outside-in verdict of the PoP.
    Outside,
    /// On the owner (inside verdict) and on the others (outside-in).
    Both,
}

impl Vantage {
    pub fn as_str(self) -> &'static str {
        match self {
            Vantage::Inside => "inside",
            Vantage::Outside => "outside",
            Vantage::Both => "both",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Tcp {
        target: HostPort,
    },
    Http {
        tls: bool,
        target: HostPort,
        path: String,
        /// Host header (defaults to the URL's host).
        host_header: Option<String>,
        expect_status: Vec<u16>,
        body_contains: Option<String>,
        /// Accept any TLS certificate.
        tls_insecure: bool,
    },
    Dns {
        server: SocketAddr,
        qname: String,
        qtype: DnsType,
        /// Expected response code (NOERROR by default).
        expect_rcode: DnsRcode,
        /// If set, one answer record must have this address / text.
        expect_answer: Option<String>,
    },
    Exec {
        command: Vec<String>,
        /// The command's environment (nothing else of the daemon's).
        env: ExecEnv,
    },
    File {
        path: PathBuf,
        /// The check succeeds when the file is present (`true`) or absent.
        healthy_if_present: bool,
    },
    /// A process is alive (its exit is noticed through a pidfd).
    Process {
        source: PidSource,
    },
    /// A systemd unit is active (followed over D-Bus).
    Systemd {
        unit: UnitName,
    },
    /// A link is up (followed through rtnetlink).
    Interface {
        name: IfName,
    },
    /// An address is configured, on `interface` if given (followed
    /// through rtnetlink).
    Address {
        addr: IpAddr,
        interface: Option<IfName>,
    },
}

impl Probe {
    /// True for the kinds that react to an event (a process exit, a unit
    /// or link change) rather than only to their interval. Their `fall`
    /// defaults to [`DEFAULT_EVENT_FALL`].
    pub fn is_event_driven(&self) -> bool {
        matches!(
            self,
            Probe::Process { .. }
                | Probe::Systemd { .. }
                | Probe::Interface { .. }
                | Probe::Address { .. }
        )
    }
}

/// The environment of an `exec` check's command: it starts empty (the
/// daemon's environment is not inherited), gets `PATH`, the daemon's
/// variables named in `pass`, then `set` (which may override them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecEnv {
    /// Names passed through from the daemon's environment when it has them.
    pub pass: Vec<String>,
    /// Explicit variables, in name order. The values may be credentials:
    /// they are never shown.
    pub set: Vec<(String, String)>,
}

/// Where a `process` check finds its pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidSource {
    /// The first line of this file.
    PidFile(PathBuf),
    /// The `MainPID` of this systemd service.
    Unit(UnitName),
}

/// A systemd unit name with its suffix (`nginx.service`), as systemd
/// accepts it: checked by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitName(pub String);

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A network interface name the kernel accepts (1 to 15 bytes, no `/`,
/// `:` or whitespace): checked by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfName(pub String);

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Probe {
    /// Whether other nodes can run this probe against the PoP: it tests
    /// the network path to a service (tcp, http, dns), not the host it runs
    /// on (exec, file).
    pub fn outside_capable(&self) -> bool {
        match self {
            Probe::Tcp { .. } | Probe::Http { .. } | Probe::Dns { .. } => true,
            Probe::Exec { .. }
            | Probe::File { .. }
            | Probe::Process { .. }
            | Probe::Systemd { .. }
            | Probe::Interface { .. }
            | Probe::Address { .. } => false,
        }
    }

    /// The probe kind as written in the config (`tcp`, `https`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Tcp { .. } => "tcp",
            Probe::Http { tls: false, .. } => "http",
            Probe::Http { tls: true, .. } => "https",
            Probe::Dns { .. } => "dns",
            Probe::Exec { .. } => "exec",
            Probe::File { .. } => "file",
            Probe::Process { .. } => "process",
            Probe::Systemd { .. } => "systemd",
            Probe::Interface { .. } => "interface",
            Probe::Address { .. } => "address",
        }
    }
}

/// A host (name or address) and port, as written by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// DNS record types the config understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DnsType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Srv,
    Caa,
    Ns,
    Soa,
}

/// The DNS library's record type for a config record type.
impl From<DnsType> for hickory_proto::rr::RecordType {
    fn from(t: DnsType) -> Self {
        use hickory_proto::rr::RecordType;
        match t {
            DnsType::A => RecordType::A,
            DnsType::Aaaa => RecordType::AAAA,
            DnsType::Cname => RecordType::CNAME,
            DnsType::Txt => RecordType::TXT,
            DnsType::Mx => RecordType::MX,
            DnsType::Srv => RecordType::SRV,
            DnsType::Caa => RecordType::CAA,
            DnsType::Ns => RecordType::NS,
            DnsType::Soa => RecordType::SOA,
        }
    }
}

impl DnsType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "A" => DnsType::A,
            "AAAA" => DnsType::Aaaa,
            "CNAME" => DnsType::Cname,
            "TXT" => DnsType::Txt,
            "MX" => DnsType::Mx,
            "SRV" => DnsType::Srv,
            "CAA" => DnsType::Caa,
            "NS" => DnsType::Ns,
            "SOA" => DnsType::Soa,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRcode {
    NoError,
    NxDomain,
    ServFail,
    Refused,
}

// ---------------------------------------------------------------- DNS

#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listeners; empty: no DNS server.
    pub listen: Vec<SocketAddr>,
    pub identity: DnsIdentity,
    pub zones: Vec<Zone>,
    /// MaxMind database for `geo` country/continent rules and `nearest`.
    pub geoip: Option<GeoIp>,
    /// Response rate limiting of UDP answers; `None`: off.
    pub rate_limit: Option<RateLimit>,
    /// UDP worker threads (sockets) per listener, 1 to [`MAX_UDP_WORKERS`];
    /// `None`: one per core.
    pub udp_workers: Option<usize>,
}

/// Most UDP workers per DNS listener.
pub const MAX_UDP_WORKERS: usize = 256;

/// A MaxMind-format database, opened once per config load and shared.
#[derive(Debug, Clone)]
pub struct GeoIp {
    pub database: PathBuf,
    pub db: Arc<crate::geoip::GeoDb>,
}

/// Response rate limiting (RRL) per client /24 (IPv4) or /56 (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Responses per second a client block may get.
    pub responses_per_second: u32,
    /// Every Nth limited response is sent truncated (TC) instead of being
    /// dropped, so real clients retry over TCP; 0: drop all.
    pub slip: u32,
    /// How far a block's debt can reach (a flood stays limited up to this
    /// long after it stops).
    pub window: Duration,
}

#[derive(Debug, Clone)]
pub struct DnsIdentity {
    /// Answer NSID (RFC 5001) with this text.
    pub nsid: Option<String>,
    /// Answer `id.server` / `hostname.bind` CHAOS TXT with this text.
    pub chaos: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Zone {
    /// Zone apex, lower case, fully qualified (`example.net.`).
    pub origin: String,
    pub soa: Soa,
    /// Name servers (fully qualified).
    pub ns: Vec<String>,
    /// Default TTL of static records.
    pub ttl: u32,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    /// Negative-caching TTL.
    pub minimum: u32,
}

#[derive(Debug, Clone)]
pub struct Record {
    /// Owner name, lower case, fully qualified.
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

#[derive(Debug, Clone)]
pub enum RecordData {
    /// Static record set of one type; values are in zone-file text form
    /// (already checked to parse for their type).
    Static { rtype: DnsType, values: Vec<String> },
    /// A/AAAA answers chosen per query from the PoPs' addresses.
    Steered(Steering),
}

#[derive(Debug, Clone)]
pub struct Steering {
    pub policy: SteeringPolicy,
    /// TTL while a PoP of this record is draining or changed recently.
    pub short_ttl: u32,
    /// How long after a change the short TTL is used.
    pub settle: Duration,
    /// Answers when no PoP is healthy; empty: all the record's PoPs.
    pub fallback: Vec<IpAddr>,
    /// Never steer away from the last N healthy PoPs (fail-open floor).
    pub min_healthy_pops: u32,
}

#[derive(Debug, Clone)]
pub enum SteeringPolicy {
    /// The first healthy PoP in order.
    Failover { pops: Vec<PopName> },
    /// One PoP per client subnet, hashed, in proportion to the weights.
    Weighted { weights: BTreeMap<PopName, u32> },
    /// Client subnet → preferred PoPs (longest match), then the client's
    /// country, then its continent (from the MaxMind database), then
    /// `default`.
    Geo {
        map: Vec<(IpNet, Vec<PopName>)>,
        /// ISO 3166 country code (upper case) → preferred PoPs.
        countries: Vec<(String, Vec<PopName>)>,
        /// Continent code (`EU`, `NA`, ...) → preferred PoPs.
        continents: Vec<(String, Vec<PopName>)>,
        default: Vec<PopName>,
    },
    /// The healthy PoP nearest to the client's coordinates (MaxMind
    /// database, great-circle distance to each PoP's `location`); the
    /// first healthy PoP of `default` (else of `pops`) for clients without
    /// coordinates.
    Nearest {
        pops: Vec<PopName>,
        default: Vec<PopName>,
    },
    /// Every healthy PoP, at most `max` addresses.
    AllHealthy { pops: Vec<PopName>, max: u32 },
}

impl SteeringPolicy {
    /// The policy's name as written in the config (`failover`, `weighted`,
    /// `geo`, `all_healthy`, `nearest`).
    pub fn name(&self) -> &'static str {
        match self {
            SteeringPolicy::Failover { .. } => "failover",
            SteeringPolicy::Weighted { .. } => "weighted",
            SteeringPolicy::Geo { .. } => "geo",
            SteeringPolicy::AllHealthy { .. } => "all_healthy",
            SteeringPolicy::Nearest { .. } => "nearest",
        }
    }

    /// Every PoP the policy can answer with, in config order, deduplicated.
    pub fn pops(&self) -> Vec<&PopName> {
        let mut out: Vec<&PopName> = Vec::new();
        let all: Box<dyn Iterator<Item = &PopName>> = match self {
            SteeringPolicy::Failover { pops } | SteeringPolicy::AllHealthy { pops, .. } => {
                Box::new(pops.iter())
            }
            SteeringPolicy::Weighted { weights } => Box::new(weights.keys()),
            SteeringPolicy::Geo {
                map,
                countries,
                continents,
                default,
            } => Box::new(
                map.iter()
                    .flat_map(|(_, p)| p.iter())
                    .chain(countries.iter().flat_map(|(_, p)| p.iter()))
                    .chain(continents.iter().flat_map(|(_, p)| p.iter()))
                    .chain(default.iter()),
            ),
            SteeringPolicy::Nearest { pops, default } => {
                Box::new(pops.iter().chain(default.iter()))
            }
        };
        for p in all {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }
}

// ---------------------------------------------------------------- API

#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `None`: no API listener.
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token for mutating calls.
    pub token_file: Option<PathBuf>,
    /// Require the token for read endpoints too.
    pub protect_reads: bool,
    /// Names accepted in the `Host` header besides the listen address
    /// (lowercase, no port); `"*"` accepts any.
    pub allowed_hosts: Vec<String>,
    /// A client must send a request's headers (and a POST's body) within
    /// this time, or the connection is closed.
    pub header_read_timeout: Duration,
    /// Open API connections at most; more are closed at once.
    pub max_connections: usize,
}

// ---------------------------------------------------------------- fleet

/// This node's fleet: the other nodes, who owns which PoP, the timings of
/// pulling their reports and the rules of the merge.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// This node's name (`node.name`).
    pub me: NodeName,
    /// The other nodes, by name.
    pub peers: BTreeMap<NodeName, FleetPeer>,
    /// The owner nodes of every PoP some fleet node owns (`pops[].owners`,
    /// or the nodes whose `pop` it is). PoPs absent here are decided by
    /// every node alone.
    pub owners: BTreeMap<PopName, Vec<NodeName>>,
    pub pull_interval: Duration,
    pub stale_after: Duration,
    pub timeout: Duration,
    /// Long-poll peers instead of plain polling.
    pub stream: bool,
    /// Fresh vantage points that must see a PoP unreachable (and outnumber
    /// those that reach it) before DNS steers away from it. At least 2.
    pub unreachable_quorum: u32,
    /// Forward admin calls for another node's PoP to its owner.
    pub forward_admin: bool,
    /// How long a graceful drain waits for the peers to confirm its DNS step.
    pub drain_ack_timeout: Duration,
    /// `None`: the fail-static rule is off.
    pub fail_static: Option<FailStatic>,
}

impl FleetConfig {
    /// The PoPs `node` owns.
    pub fn owned_by<'a>(&'a self, node: &'a NodeName) -> impl Iterator<Item = &'a PopName> + 'a {
        self.owners
            .iter()
            .filter(move |(_, o)| o.contains(node))
            .map(|(p, _)| p)
    }

    /// Every node of the fleet (this one and its peers), in name order.
    pub fn nodes(&self) -> Vec<NodeName> {
        let mut v: Vec<NodeName> = self.peers.keys().cloned().collect();
        v.push(self.me.clone());
        v.sort();
        v
    }
}

/// Another node of the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetPeer {
    pub name: NodeName,
    /// The PoP it owns (`None`: a vantage point and DNS server only).
    pub pop: Option<PopName>,
    pub url: PeerUrl,
    /// Its API token, sent on every request.
    pub token_file: Option<PathBuf>,
    /// CA certificates for its https certificate, read when the config was
    /// loaded (`None`: system bundle).
    pub ca_file: Option<CaFile>,
}

/// A PEM file of CA certificates as it was read when the config was
/// loaded (at start, and again at every reload): its path and the
/// certificates in it that can be trust anchors. Two are equal when both
/// the path and the certificates are, so a file whose content changed
/// makes a different config.
#[derive(Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    /// At least one certificate (DER).
    pub certs: Arc<[rustls::pki_types::CertificateDer<'static>]>,
}

impl fmt::Debug for CaFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaFile")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish()
    }
}

/// The base URL of a peer's API, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerUrl {
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing `/` (empty for none).
    pub base_path: String,
}

impl PeerUrl {
    /// The URL of `path` (which starts with `/`) on this API.
    pub fn join(&self, path: &str) -> String {
        format!("{self}{path}")
    }
}

impl fmt::Display for PeerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.base_path)
    }
}

/// The fail-static rule: hold health-driven withdrawals while the same
/// failure shows on at least `fraction` of the PoPs and on `min_pops`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailStatic {
    pub fraction: f64,
    pub min_pops: u32,
    /// How long a health-driven withdrawal of the own PoP waits for the
    /// fleet view to show whether the failure is shared.
    pub window: Duration,
}

/// Default interval between pulls of a peer's report.
pub const DEFAULT_PULL_INTERVAL: Duration = Duration::from_secs(1);
/// Default age after which a peer's report counts as unknown.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);
/// Default bound of one request to a peer (beyond a long-poll's wait).
pub const DEFAULT_FLEET_TIMEOUT: Duration = Duration::from_secs(2);
/// Default quorum of vantage points for outside-in unreachability.
pub const DEFAULT_UNREACHABLE_QUORUM: u32 = 2;
/// Default wait for peers to confirm a drain's DNS step.
pub const DEFAULT_DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default fail-static rule.
pub const DEFAULT_FAIL_STATIC: FailStatic = FailStatic {
    fraction: 0.5,
    min_pops: 2,
    window: Duration::from_secs(2),
};
/// Default [`ApiConfig::header_read_timeout`].
pub const DEFAULT_API_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ApiConfig::max_connections`].
pub const DEFAULT_API_MAX_CONNECTIONS: usize = 256;
/// Largest accepted [`ApiConfig::max_connections`].
pub const MAX_API_CONNECTIONS: usize = 65_536;

// ---------------------------------------------------------------- defaults

/// Default probe interval while a check's verdict is stable.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Default probe interval while a check is between states.
pub const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(200);
/// Default probe timeout (must stay below the interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Default consecutive successes to go up.
pub const DEFAULT_RISE: u32 = 3;
/// Default consecutive failures to go down.
pub const DEFAULT_FALL: u32 = 2;
/// `fall` of the event-driven check kinds (process, systemd, interface,
/// address): they read what the kernel or systemd states, not a network
/// answer that can be lost, so one failed probe is the event itself.
pub const DEFAULT_EVENT_FALL: u32 = 1;
/// Default time a draining PoP's prefixes stay in graceful shutdown.
pub const DEFAULT_DRAIN_SETTLE: Duration = Duration::from_secs(30);
/// Default maximum random shortening of each wait.
pub const DEFAULT_JITTER: Duration = Duration::from_millis(100);
