//! What the fuzz targets share: the config they answer from, snapshots of
//! it, BGP values built from fuzzer bytes, and the wire path (framing and
//! decoding) that turns raw bytes into what the protocol layers consume.
//!
//! The invariants themselves are anypop's own (`bgp::fsm::invariants`,
//! `bgp::peer::invariants`, compiled under `cfg(fuzzing)`), shared with its
//! property tests; this crate only feeds them.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use anypop::bgp::codec::{
    encode_notification, take_frame, Family, Notification, PeerGracefulRestart, PeerOpen, Received,
    UpdateSummary,
};
use anypop::core::{PopState, Snapshot};
use anypop::model::{Config, Name};
use arbitrary::Arbitrary;
use bytes::BytesMut;

/// The config of the `dns` and `admin_state` targets (PoPs ams, fra, lon;
/// every record type and steering policy without GeoIP).
pub const CONFIG_YAML: &str = include_str!("../anypop.yaml");

/// [`CONFIG_YAML`], validated (once).
pub fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| match anypop::config::parse(CONFIG_YAML) {
            Ok(c) => Arc::new(c),
            Err(e) => panic!("fuzz/anypop.yaml is invalid:\n{e}"),
        })
        .clone()
}

/// A snapshot of `config` with each PoP of `states` in that state (others
/// unknown), changed an hour before `now`.
pub fn snapshot(
    config: Arc<Config>,
    states: &[(&str, PopState)],
    now: tokio::time::Instant,
) -> Snapshot {
    let pops = states
        .iter()
        .filter_map(|(n, s)| {
            let mut st = anypop::testutil::pop_status(*s, Some(*s != PopState::Down));
            st.changed_at = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
            Some((Name::parse(n).ok()?, st))
        })
        .collect();
    Snapshot {
        version: 1,
        published: SystemTime::UNIX_EPOCH,
        config,
        pops,
        announcements: Arc::new(BTreeMap::new()),
        fleet: None,
    }
}

/// Our router id in the BGP targets, and the peer's usual one.
pub const RID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const PEER_ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Our ASN and the peer's configured one.
pub const LOCAL_ASN: u32 = 65001;
pub const PEER_ASN: u32 = 65000;

/// A NOTIFICATION from fuzzer bytes.
#[derive(Debug, Arbitrary)]
pub struct ArbNotification {
    code: u8,
    subcode: u8,
    data: Vec<u8>,
}

impl ArbNotification {
    pub fn get(&self) -> Notification {
        Notification::new(self.code, self.subcode, self.data.clone())
    }
}

/// A peer's OPEN, mostly close to acceptable so sessions come up, with
/// every field free to be wrong.
#[derive(Debug, Arbitrary)]
pub struct ArbOpen {
    bad_version: Option<u8>,
    /// `None`: the configured peer ASN.
    asn: Option<u32>,
    two_octet_only: bool,
    hold_time: u16,
    /// 0: the usual peer id, 1: ours, 2: 0.0.0.0, else this value.
    bgp_id: u32,
    v4: bool,
    v6: bool,
    mp_sent: bool,
    route_refresh: bool,
    graceful_restart: Option<(u16, bool, bool, bool)>,
}

impl ArbOpen {
    pub fn get(&self) -> PeerOpen {
        let asn = self.asn.unwrap_or(PEER_ASN);
        let families: Vec<Family> = [(self.v4, Family::Ipv4), (self.v6, Family::Ipv6)]
            .into_iter()
            .filter_map(|(on, f)| on.then_some(f))
            .collect();
        PeerOpen {
            version: self.bad_version.unwrap_or(4),
            my_as: u16::try_from(asn).unwrap_or(23456),
            asn4: (!self.two_octet_only).then_some(asn),
            hold_time: self.hold_time,
            bgp_id: match self.bgp_id {
                0 => PEER_ID,
                1 => RID,
                2 => Ipv4Addr::UNSPECIFIED,
                x => Ipv4Addr::from(x),
            },
            mp_sent: self.mp_sent,
            route_refresh: self.route_refresh,
            graceful_restart: self.graceful_restart.map(|(time, restarted, n, fwd)| {
                PeerGracefulRestart {
                    restart_time: time,
                    restarted,
                    notification: n,
                    families: families.iter().map(|f| (*f, fwd)).collect(),
                }
            }),
            families,
        }
    }
}

/// A message as the protocol layers receive it.
#[derive(Debug, Arbitrary)]
pub enum ArbMessage {
    Open(ArbOpen),
    Keepalive,
    Update {
        announced: u8,
        withdrawn: u8,
        malformed: bool,
    },
    Notification(ArbNotification),
    RouteRefresh {
        afi: u16,
        safi: u8,
        subtype: u8,
    },
}

impl ArbMessage {
    pub fn get(&self) -> Received {
        match self {
            ArbMessage::Open(o) => Received::Open(o.get()),
            ArbMessage::Keepalive => Received::Keepalive,
            ArbMessage::Update {
                announced,
                withdrawn,
                malformed,
            } => Received::Update(UpdateSummary {
                announced: (*announced).into(),
                withdrawn: (*withdrawn).into(),
                end_of_rib: None,
                malformed: malformed.then(|| "fuzzed".to_string()),
            }),
            ArbMessage::Notification(n) => Received::Notification(n.get()),
            ArbMessage::RouteRefresh { afi, safi, subtype } => Received::RouteRefresh {
                afi: *afi,
                safi: *safi,
                subtype: *subtype,
            },
        }
    }
}

/// Frames and decodes `bytes` as a TCP stream from a peer, as the session
/// task does: every message decoded, until the first error (whose
/// NOTIFICATION ends the list, as it ends the connection). Every
/// NOTIFICATION we would send must encode and decode back unchanged.
pub fn wire(bytes: &[u8]) -> Vec<Result<Received, Notification>> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        let r = match take_frame(&mut buf) {
            Ok(None) => break,
            Ok(Some(frame)) => {
                assert!(
                    (19..=4096).contains(&frame.len()),
                    "frame of {} bytes",
                    frame.len()
                );
                anypop::bgp::codec::decode(&frame)
            }
            Err(n) => Err(n),
        };
        let stop = r.is_err();
        if let Err(n) = &r {
            check_notification_round_trip(n);
        }
        out.push(r);
        if stop {
            break;
        }
    }
    out
}

/// A NOTIFICATION we send encodes, and decodes back to itself.
pub fn check_notification_round_trip(n: &Notification) {
    let bytes = match encode_notification(n) {
        Ok(b) => b,
        Err(e) => panic!("our NOTIFICATION {n} does not encode: {e:?}"),
    };
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = match take_frame(&mut buf) {
        Ok(Some(f)) => f,
        other => panic!("our NOTIFICATION {n} does not frame: {other:?}"),
    };
    match anypop::bgp::codec::decode(&frame) {
        Ok(Received::Notification(back)) => assert_eq!(&back, n, "NOTIFICATION round trip"),
        other => panic!("our NOTIFICATION {n} decodes as {other:?}"),
    }
}

/// Milliseconds of time passing, from a fuzzer byte pair: mostly short,
/// sometimes minutes (hold timers, backoff, drain deadlines).
pub fn wait(ms: u16, long: bool) -> Duration {
    if long {
        Duration::from_secs(u64::from(ms % 600))
    } else {
        Duration::from_millis(u64::from(ms % 5000))
    }
}

/// An OPEN the targets' FSM accepts: the peer's ASN and id, hold time 9,
/// both families, route refresh, graceful restart with the N bit.
pub fn valid_open() -> PeerOpen {
    anypop::testutil::peer_open(PEER_ID, 9, &[Family::Ipv4, Family::Ipv6], true)
}
