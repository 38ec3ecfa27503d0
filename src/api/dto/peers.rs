//! `/v1/peers` (and the `peers` of `/v1/state`): BGP sessions and their BFD
//! sessions as the API shows them. Built from the BGP speaker's status; the
//! keys are in alphabetical order on the wire, as they always were.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

fn opt_secs(t: Option<SystemTime>) -> Option<f64> {
    t.map(crate::unix_time::secs)
}

/// One BGP peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Peer {
    #[schema(value_type = String)]
    pub address: std::net::IpAddr,
    /// The BFD session to the peer (`null`: no `bfd` configured).
    #[schema(required)]
    pub bfd: Option<Bfd>,
    pub end_of_rib_sent: bool,
    /// Unix time the session reached Established (`null` when down).
    #[schema(required)]
    pub established_since: Option<f64>,
    /// Families negotiated with the peer (`ipv4`, `ipv6`).
    pub families: Vec<String>,
    /// Times an established session went down.
    pub flaps: u64,
    /// Why the session last went down, or the last connect error.
    #[schema(required)]
    pub last_error: Option<String>,
    /// Unix time of `last_error`.
    #[schema(required)]
    pub last_error_at: Option<f64>,
    pub local_asn: u32,
    /// Prefixes in the Adj-RIB-Out.
    pub prefixes_advertised: u64,
    pub prefixes_received: u64,
    pub remote_asn: u32,
    /// FSM state: `idle`, `connect`, `active`, `open_sent`,
    /// `open_confirm`, `established`.
    pub state: String,
    pub updates_received: u64,
    pub updates_sent: u64,
    /// Seconds since the session reached Established (`null` when down).
    #[schema(required)]
    pub uptime_secs: Option<u64>,
    pub withdrawals_received: u64,
}

/// A BFD session (RFC 5880) to a BGP peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bfd {
    #[schema(required)]
    pub detection_time_ms: Option<u64>,
    pub discarded: u64,
    /// A socket problem (bind, send), if any.
    #[schema(required)]
    pub error: Option<String>,
    /// Up → Down transitions caused by the path.
    pub failures: u64,
    pub flaps: u32,
    /// Unix time until which flap damping holds the session down.
    #[schema(required)]
    pub held_until: Option<f64>,
    /// BFD holds the BGP session down.
    pub holds_bgp_down: bool,
    /// Our diagnostic, in words.
    pub local_diag: String,
    pub local_discriminator: u32,
    pub remote_control_plane_independent: bool,
    pub remote_diag: String,
    pub remote_discriminator: u32,
    /// `admin_down`, `down`, `init` or `up`.
    pub remote_state: String,
    /// Unix time of the last state change.
    #[schema(required)]
    pub since: Option<f64>,
    pub state: String,
    pub ttl_dropped: u64,
    #[schema(required)]
    pub tx_interval_ms: Option<u64>,
}

fn bfd_state(s: crate::bfd::State) -> String {
    match s {
        crate::bfd::State::AdminDown => "admin_down",
        crate::bfd::State::Down => "down",
        crate::bfd::State::Init => "init",
        crate::bfd::State::Up => "up",
    }
    .to_string()
}

impl From<&crate::bfd::SessionStatus> for Bfd {
    fn from(b: &crate::bfd::SessionStatus) -> Bfd {
        Bfd {
            detection_time_ms: b.detection_time_ms,
            discarded: b.discarded,
            error: b.error.clone(),
            failures: b.failures,
            flaps: b.flaps,
            held_until: opt_secs(b.held_until),
            holds_bgp_down: b.holds_bgp_down,
            local_diag: b.local_diag.to_string(),
            local_discriminator: b.local_discriminator,
            remote_control_plane_independent: b.remote_control_plane_independent,
            remote_diag: b.remote_diag.to_string(),
            remote_discriminator: b.remote_discriminator,
            remote_state: bfd_state(b.remote_state),
            since: opt_secs(b.since),
            state: bfd_state(b.state),
            ttl_dropped: b.ttl_dropped,
            tx_interval_ms: b.tx_interval_ms,
        }
    }
}

impl Peer {
    /// The peer as of `now` (for `uptime_secs`).
    pub fn new(p: &crate::bgp::PeerStatus, now: SystemTime) -> Peer {
        Peer {
            address: p.address,
            bfd: p.bfd.as_ref().map(Bfd::from),
            end_of_rib_sent: p.end_of_rib_sent,
            established_since: opt_secs(p.established_since),
            families: p
                .families
                .iter()
                .map(|f| match f {
                    crate::bgp::Family::Ipv4 => "ipv4".to_string(),
                    crate::bgp::Family::Ipv6 => "ipv6".to_string(),
                })
                .collect(),
            flaps: p.flaps,
            last_error: p.last_error.clone(),
            last_error_at: opt_secs(p.last_error_at),
            local_asn: p.local_asn,
            prefixes_advertised: p.prefixes_advertised as u64,
            prefixes_received: p.prefixes_received,
            remote_asn: p.remote_asn,
            state: p.state.to_string(),
            updates_received: p.updates_received,
            updates_sent: p.updates_sent,
            uptime_secs: p
                .established_since
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            withdrawals_received: p.withdrawals_received,
        }
    }
}

/// The peers of a BGP speaker's status map, by name.
pub fn peers(status: &crate::bgp::StatusMap, now: SystemTime) -> BTreeMap<String, Peer> {
    status
        .iter()
        .map(|(name, p)| (name.to_string(), Peer::new(p, now)))
        .collect()
}

/// `/v1/peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Peers {
    /// By peer name (empty without BGP).
    pub peers: BTreeMap<String, Peer>,
}
