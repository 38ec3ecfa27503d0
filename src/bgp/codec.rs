//! Wire format glue: framing of the TCP byte stream into BGP messages, the
//! header checks of RFC 4271 §6.1, decoding of what a peer sends into the
//! small [`Received`] values the FSM understands, and encoding of the
//! non-UPDATE messages we send (through netgauze-bgp-pkt).
//!
//! Received UPDATEs are *counted, never stored*: [`scan_update`] walks the
//! message structure without allocating per route, so a full table from a
//! router costs no memory. RFC 7606 is applied: structural errors that make
//! the NLRI impossible to locate reset the session; attribute errors are
//! "treat-as-withdraw", which for a speaker that ignores received routes means
//! "count and carry on".
//!
//! This module must not know about sessions, timers or the Adj-RIB-Out.

use std::net::Ipv4Addr;

use bytes::{Buf, Bytes, BytesMut};
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartAddressFamily, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::notification::{
    BgpNotificationMessage, CeaseError, FiniteStateMachineError, HoldTimerExpiredError,
    MessageHeaderError, OpenMessageError, RouteRefreshError, UpdateMessageError,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use netgauze_parse_utils::WritablePdu;

/// Length of the fixed BGP header (marker, length, type).
pub const HEADER_LEN: usize = 19;
/// Largest BGP message without RFC 8654 extended messages.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// AS_TRANS (RFC 6793), put in 2-octet fields when our ASN does not fit.
pub const AS_TRANS: u16 = 23456;

/// Message type codes.
pub const MSG_OPEN: u8 = 1;
pub const MSG_UPDATE: u8 = 2;
pub const MSG_NOTIFICATION: u8 = 3;
pub const MSG_KEEPALIVE: u8 = 4;
pub const MSG_ROUTE_REFRESH: u8 = 5;

/// An address family we speak (unicast SAFI only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4 => 1,
            Family::Ipv6 => 2,
        }
    }

    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (1, 1) => Some(Family::Ipv4),
            (2, 1) => Some(Family::Ipv6),
            _ => None,
        }
    }

    pub fn address_type(self) -> AddressType {
        match self {
            Family::Ipv4 => AddressType::Ipv4Unicast,
            Family::Ipv6 => AddressType::Ipv6Unicast,
        }
    }

    fn from_address_type(t: AddressType) -> Option<Family> {
        match t {
            AddressType::Ipv4Unicast => Some(Family::Ipv4),
            AddressType::Ipv6Unicast => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::Ipv4 => "ipv4-unicast",
            Family::Ipv6 => "ipv6-unicast",
        })
    }
}

/// A NOTIFICATION: error code, subcode and data (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313).
pub mod err {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;

    // Message header error subcodes.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN message error subcodes.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    // UPDATE message error subcodes.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    // FSM error subcodes (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    // Cease subcodes (RFC 4486).
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CEASE_COLLISION: u8 = 7;
    pub const CEASE_HARD_RESET: u8 = 9;
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// Cease with an RFC 8203/9003 shutdown communication (length-prefixed
    /// UTF-8, at most 255 bytes, cut at a character boundary).
    pub fn cease_with_message(subcode: u8, message: &str) -> Self {
        let mut end = message.len().min(255);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = &message.as_bytes()[..end];
        let mut data = Vec::with_capacity(1 + text.len());
        data.push(text.len() as u8);
        data.extend_from_slice(text);
        Notification::new(err::CEASE, subcode, data)
    }

    /// The shutdown communication carried by a Cease/Administrative
    /// Shutdown or Reset, if any and if valid UTF-8.
    pub fn shutdown_message(&self) -> Option<String> {
        if self.code != err::CEASE
            || !matches!(
                self.subcode,
                err::CEASE_ADMIN_SHUTDOWN | err::CEASE_ADMIN_RESET
            )
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..len as usize)?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match (self.code, self.subcode) {
            (1, 1) => "message header error / connection not synchronized",
            (1, 2) => "message header error / bad message length",
            (1, 3) => "message header error / bad message type",
            (1, _) => "message header error",
            (2, 1) => "open message error / unsupported version number",
            (2, 2) => "open message error / bad peer AS",
            (2, 3) => "open message error / bad BGP identifier",
            (2, 4) => "open message error / unsupported optional parameter",
            (2, 6) => "open message error / unacceptable hold time",
            (2, 7) => "open message error / unsupported capability",
            (2, _) => "open message error",
            (3, 1) => "update message error / malformed attribute list",
            (3, _) => "update message error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 1) => "cease / maximum number of prefixes reached",
            (6, 2) => "cease / administrative shutdown",
            (6, 3) => "cease / peer de-configured",
            (6, 4) => "cease / administrative reset",
            (6, 5) => "cease / connection rejected",
            (6, 6) => "cease / other configuration change",
            (6, 7) => "cease / connection collision resolution",
            (6, 8) => "cease / out of resources",
            (6, 9) => "cease / hard reset",
            (6, _) => "cease",
            (7, _) => "route refresh message error",
            _ => "unknown error",
        };
        write!(f, "{name} ({}/{})", self.code, self.subcode)?;
        if let Some(msg) = self.shutdown_message() {
            write!(f, ": {msg:?}")?;
        }
        Ok(())
    }
}

/// Graceful restart capability as received (RFC 4724, RFC 8538 N bit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    pub restart_time: u16,
    pub restarted: bool,
    pub notification: bool,
    /// Families with the forwarding-state bit.
    pub families: Vec<(Family, bool)>,
}

/// What we learned from a peer's OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOpen {
    pub version: u8,
    /// The 2-octet "My AS" field.
    pub my_as: u16,
    /// The 4-octet ASN capability, if sent.
    pub asn4: Option<u32>,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    /// Multiprotocol capabilities we understand. Empty with `mp_sent ==
    /// false` means the peer sent none (implies IPv4 unicast).
    pub families: Vec<Family>,
    pub mp_sent: bool,
    pub route_refresh: bool,
    pub graceful_restart: Option<PeerGracefulRestart>,
}

impl PeerOpen {
    /// The peer's ASN: the 4-octet capability if present, else "My AS".
    pub fn asn(&self) -> u32 {
        self.asn4.unwrap_or(self.my_as as u32)
    }
}

/// What we put in our OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOpen {
    pub asn: u32,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub families: Vec<Family>,
    /// Restart time to advertise; `None`: no graceful restart capability.
    pub graceful_restart: Option<u16>,
    /// Set the Restart State bit (we have restarted).
    pub restarted: bool,
}

/// The counted contents of a received UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    pub announced: u32,
    pub withdrawn: u32,
    /// End-of-RIB marker for this family.
    pub end_of_rib: Option<Family>,
    /// RFC 7606 treat-as-withdraw: the message was structurally sound but an
    /// attribute was malformed.
    pub malformed: Option<String>,
}

/// A decoded message from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Open(PeerOpen),
    Update(UpdateSummary),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8, subtype: u8 },
}

/// Takes one complete message off the front of `buf`, after the RFC 4271
/// §6.1 header checks. `Ok(None)`: more bytes needed.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<Bytes>, Notification> {
    if buf.len() < HEADER_LEN {
        // Check the marker early so a stream of garbage is rejected quickly.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(Notification::new(
                err::HEADER,
                err::CONNECTION_NOT_SYNCHRONIZED,
                [],
            ));
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::new(
            err::HEADER,
            err::CONNECTION_NOT_SYNCHRONIZED,
            [],
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let typ = buf[18];
    let bad_len = || {
        Notification::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            (len as u16).to_be_bytes(),
        )
    };
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&len) {
        return Err(bad_len());
    }
    let ok = match typ {
        MSG_OPEN => len >= 29,
        MSG_UPDATE => len >= 23,
        MSG_NOTIFICATION => len >= 21,
        MSG_KEEPALIVE => len == 19,
        MSG_ROUTE_REFRESH => len == 23,
        _ => return Err(Notification::new(err::HEADER, err::BAD_MESSAGE_TYPE, [typ])),
    };
    if !ok {
        return Err(bad_len());
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf.split_to(len).freeze()))
}

/// Decodes one framed message (as returned by [`take_frame`]).
pub fn decode(frame: &[u8]) -> Result<Received, Notification> {
    // take_frame already checked these; re-check so any slice is safe.
    let min = match frame.get(18) {
        Some(&MSG_OPEN) => 29,
        Some(&MSG_UPDATE) => 23,
        Some(&MSG_NOTIFICATION) => 21,
        Some(&MSG_ROUTE_REFRESH) => 23,
        _ => HEADER_LEN,
    };
    if frame.len() < min {
        return Err(Notification::new(
            err::HEADER,
            err::BAD_MESSAGE_LENGTH,
            (frame.len() as u16).to_be_bytes(),
        ));
    }
    let body = &frame[HEADER_LEN..];
    match frame[18] {
        MSG_OPEN => decode_open(frame).map(Received::Open),
        MSG_UPDATE => scan_update(body).map(Received::Update),
        MSG_NOTIFICATION => Ok(Received::Notification(Notification::new(
            body[0],
            body[1],
            &body[2..],
        ))),
        MSG_KEEPALIVE => Ok(Received::Keepalive),
        MSG_ROUTE_REFRESH => Ok(Received::RouteRefresh {
            afi: u16::from_be_bytes([body[0], body[1]]),
            subtype: body[2],
            safi: body[3],
        }),
        t => Err(Notification::new(err::HEADER, err::BAD_MESSAGE_TYPE, [t])),
    }
}

fn decode_open(frame: &[u8]) -> Result<PeerOpen, Notification> {
    let body = &frame[HEADER_LEN..];
    // Version first: an unsupported version gets its own subcode with the
    // highest version we support as data.
    if body[0] != 4 {
        return Err(Notification::new(
            err::OPEN,
            err::UNSUPPORTED_VERSION,
            4u16.to_be_bytes(),
        ));
    }
    let mut ctx = BgpParsingContext::default();
    let msg = BgpMessage::parse(&mut SliceReader::new(frame), &mut ctx)
        .map_err(|e| Notification::new(err::OPEN, 0, format!("{e}").into_bytes()))?;
    let BgpMessage::Open(open) = msg else {
        return Err(Notification::new(err::OPEN, 0, []));
    };
    let mut out = PeerOpen {
        version: open.version(),
        my_as: open.my_as(),
        asn4: None,
        hold_time: open.hold_time(),
        bgp_id: open.bgp_id(),
        families: Vec::new(),
        mp_sent: false,
        route_refresh: false,
        graceful_restart: None,
    };
    for cap in open.capabilities() {
        match cap {
            BgpCapability::FourOctetAs(c) => out.asn4 = Some(c.asn4()),
            BgpCapability::MultiProtocolExtensions(c) => {
                out.mp_sent = true;
                if let Some(f) = Family::from_address_type(c.address_type()) {
                    if !out.families.contains(&f) {
                        out.families.push(f);
                    }
                }
            }
            BgpCapability::RouteRefresh | BgpCapability::CiscoRouteRefresh => {
                out.route_refresh = true
            }
            BgpCapability::GracefulRestartCapability(gr) => {
                out.graceful_restart = Some(PeerGracefulRestart {
                    restart_time: gr.time(),
                    restarted: gr.restart(),
                    notification: gr.graceful_notification(),
                    families: gr
                        .address_families()
                        .iter()
                        .filter_map(|af| {
                            Family::from_address_type(af.address_type())
                                .map(|f| (f, af.forwarding_state()))
                        })
                        .collect(),
                })
            }
            _ => {}
        }
    }
    if !out.mp_sent {
        out.families.push(Family::Ipv4);
    }
    Ok(out)
}

/// Walks an UPDATE body, counting routes without storing them (RFC 4271
/// §6.3 with RFC 7606 revisions).
pub fn scan_update(body: &[u8]) -> Result<UpdateSummary, Notification> {
    let malformed_list = || Notification::new(err::UPDATE, err::MALFORMED_ATTRIBUTE_LIST, []);
    let mut b = body;
    if b.len() < 4 {
        return Err(malformed_list());
    }
    let wlen = b.get_u16() as usize;
    if b.len() < wlen + 2 {
        return Err(malformed_list());
    }
    let withdrawn_field = &b[..wlen];
    b.advance(wlen);
    let alen = b.get_u16() as usize;
    if b.len() < alen {
        return Err(malformed_list());
    }
    let attrs = &b[..alen];
    let nlri = &b[alen..];
    let mut sum = UpdateSummary {
        withdrawn: count_prefixes(withdrawn_field, 32)
            .ok_or_else(|| Notification::new(err::UPDATE, err::INVALID_NETWORK_FIELD, []))?,
        announced: count_prefixes(nlri, 32)
            .ok_or_else(|| Notification::new(err::UPDATE, err::INVALID_NETWORK_FIELD, []))?,
        ..Default::default()
    };
    if wlen == 0 && alen == 0 && nlri.is_empty() {
        sum.end_of_rib = Some(Family::Ipv4);
        return Ok(sum);
    }
    // Attributes. RFC 7606 §4: if an attribute's length overruns the
    // attribute field, the attribute list is malformed; the NLRI can still
    // be located (it follows the field), so treat-as-withdraw applies.
    let mut a = attrs;
    let mut seen_mp_reach = false;
    let mut seen_mp_unreach = false;
    let mut mp_unreach_only: Option<Family> = None;
    let mut attr_count = 0;
    while !a.is_empty() {
        if a.len() < 3 {
            sum.malformed = Some("truncated attribute header".into());
            break;
        }
        let flags = a[0];
        let code = a[1];
        let (len, hdr) = if flags & 0x10 != 0 {
            if a.len() < 4 {
                sum.malformed = Some("truncated attribute header".into());
                break;
            }
            (u16::from_be_bytes([a[2], a[3]]) as usize, 4)
        } else {
            (a[2] as usize, 3)
        };
        if a.len() < hdr + len {
            sum.malformed = Some(format!(
                "attribute {code} length {len} overruns the attribute list"
            ));
            break;
        }
        let value = &a[hdr..hdr + len];
        attr_count += 1;
        match code {
            // RFC 7606 §7: fixed-length well-known attributes with a wrong
            // length are treat-as-withdraw.
            1 if len != 1 => sum.malformed = Some(format!("ORIGIN length {len}")),
            3 if len != 4 => sum.malformed = Some(format!("NEXT_HOP length {len}")),
            4 if len != 4 => sum.malformed = Some(format!("MULTI_EXIT_DISC length {len}")),
            5 if len != 4 => sum.malformed = Some(format!("LOCAL_PREF length {len}")),
            8 if len % 4 != 0 => sum.malformed = Some(format!("COMMUNITIES length {len}")),
            32 if len % 12 != 0 => sum.malformed = Some(format!("LARGE_COMMUNITY length {len}")),
            14 => {
                if std::mem::replace(&mut seen_mp_reach, true) {
                    // RFC 7606 §3(g): a repeated MP_REACH resets the session.
                    return Err(malformed_list());
                }
                // RFC 7606 §7.11: a malformed MP_REACH means the NLRI cannot
                // be located: session reset.
                sum.announced += count_mp_reach(value).ok_or_else(|| {
                    Notification::new(err::UPDATE, err::OPTIONAL_ATTRIBUTE_ERROR, [])
                })?;
            }
            15 => {
                if value.len() < 3 {
                    return Err(Notification::new(
                        err::UPDATE,
                        err::OPTIONAL_ATTRIBUTE_ERROR,
                        [],
                    ));
                }
                if std::mem::replace(&mut seen_mp_unreach, true) {
                    // RFC 7606 §3(g): a repeated MP_UNREACH resets the session.
                    return Err(malformed_list());
                }
                let afi = u16::from_be_bytes([value[0], value[1]]);
                let n = match prefix_bits(afi, value[2]) {
                    Some(bits) => count_prefixes(&value[3..], bits).ok_or_else(|| {
                        Notification::new(err::UPDATE, err::OPTIONAL_ATTRIBUTE_ERROR, [])
                    })?,
                    None => 0,
                };
                sum.withdrawn += n;
                if n == 0 {
                    mp_unreach_only = Family::from_afi_safi(afi, value[2]);
                }
            }
            _ => {}
        }
        a = &a[hdr + len..];
    }
    if attr_count == 1 && !seen_mp_reach && wlen == 0 && nlri.is_empty() {
        sum.end_of_rib = mp_unreach_only;
    }
    Ok(sum)
}

/// Counts prefixes in an NLRI field; `None` if malformed.
fn count_prefixes(mut b: &[u8], max_bits: u8) -> Option<u32> {
    let mut n = 0u32;
    while let Some((&bits, rest)) = b.split_first() {
        if bits > max_bits {
            return None;
        }
        let bytes = bits.div_ceil(8) as usize;
        if rest.len() < bytes {
            return None;
        }
        b = &rest[bytes..];
        n += 1;
    }
    Some(n)
}

/// Maximum prefix length for the prefix-encoded (unicast/multicast)
/// AFI/SAFIs; `None` for others, whose NLRI we neither parse nor count.
fn prefix_bits(afi: u16, safi: u8) -> Option<u8> {
    match (afi, safi) {
        (1, 1 | 2) => Some(32),
        (2, 1 | 2) => Some(128),
        _ => None,
    }
}

fn count_mp_reach(v: &[u8]) -> Option<u32> {
    if v.len() < 5 {
        return None;
    }
    let afi = u16::from_be_bytes([v[0], v[1]]);
    let nh_len = v[3] as usize;
    let rest = v.get(4 + nh_len..)?;
    let (_reserved, nlri) = rest.split_first()?;
    match prefix_bits(afi, v[2]) {
        Some(bits) => count_prefixes(nlri, bits),
        None => Some(0),
    }
}

// ------------------------------------------------------------------ encode

/// Errors while encoding our own messages (a bug, never peer input).
#[derive(Debug, thiserror::Error)]
#[error("encoding BGP {what}: {detail}")]
pub struct EncodeError {
    pub what: &'static str,
    pub detail: String,
}

pub(crate) fn write_msg(msg: &BgpMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    msg.write(out).map_err(|e| EncodeError {
        what: "message",
        detail: format!("{e:?}"),
    })
}

/// Encodes our OPEN.
pub fn encode_open(o: &LocalOpen) -> Result<Vec<u8>, EncodeError> {
    let mut caps: Vec<BgpCapability> = o
        .families
        .iter()
        .map(|f| {
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                f.address_type(),
            ))
        })
        .collect();
    caps.push(BgpCapability::RouteRefresh);
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        o.asn,
    )));
    if let Some(time) = o.graceful_restart {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                o.restarted,
                // RFC 8538 N bit: a NOTIFICATION (other than Hard Reset) keeps
                // the routes stale instead of flushing them.
                true,
                time.min(4095),
                o.families
                    .iter()
                    .map(|f| GracefulRestartAddressFamily::new(true, f.address_type()))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    let my_as = u16::try_from(o.asn).unwrap_or(AS_TRANS);
    let msg = BgpMessage::Open(BgpOpenMessage::new(
        my_as,
        o.hold_time,
        o.bgp_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ));
    let mut out = Vec::with_capacity(128);
    write_msg(&msg, &mut out)?;
    Ok(out)
}

pub fn encode_keepalive() -> Vec<u8> {
    let mut out = vec![0xff; 16];
    out.extend_from_slice(&19u16.to_be_bytes());
    out.push(MSG_KEEPALIVE);
    out
}

/// Encodes a NOTIFICATION through netgauze's typed representation.
pub fn encode_notification(n: &Notification) -> Result<Vec<u8>, EncodeError> {
    let value: Box<[u8]> = n.data.clone().into();
    let m =
        match (n.code, n.subcode) {
            (1, 1) => BgpNotificationMessage::MessageHeaderError(
                MessageHeaderError::ConnectionNotSynchronized { value },
            ),
            (1, 2) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageLength {
                    value,
                })
            }
            (1, 3) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::BadMessageType {
                    value,
                })
            }
            (1, _) => {
                BgpNotificationMessage::MessageHeaderError(MessageHeaderError::Unspecific { value })
            }
            (2, 1) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedVersionNumber { value },
            ),
            (2, 2) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadPeerAs { value })
            }
            (2, 3) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::BadBgpIdentifier {
                    value,
                })
            }
            (2, 4) => BgpNotificationMessage::OpenMessageError(
                OpenMessageError::UnsupportedOptionalParameter { value },
            ),
            (2, 6) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnacceptableHoldTime {
                    value,
                })
            }
            (2, 7) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::UnsupportedCapability {
                    value,
                })
            }
            (2, _) => {
                BgpNotificationMessage::OpenMessageError(OpenMessageError::Unspecific { value })
            }
            (3, 1) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::MalformedAttributeList { value },
            ),
            (3, 9) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::OptionalAttributeError { value },
            ),
            (3, 10) => BgpNotificationMessage::UpdateMessageError(
                UpdateMessageError::InvalidNetworkField { value },
            ),
            (3, _) => {
                BgpNotificationMessage::UpdateMessageError(UpdateMessageError::Unspecific { value })
            }
            (4, s) => {
                BgpNotificationMessage::HoldTimerExpiredError(HoldTimerExpiredError::Unspecific {
                    sub_code: s,
                    value,
                })
            }
            (5, 1) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenSentState { value },
            ),
            (5, 2) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInOpenConfirmState { value },
            ),
            (5, 3) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::ReceiveUnexpectedMessageInEstablishedState { value },
            ),
            (5, _) => BgpNotificationMessage::FiniteStateMachineError(
                FiniteStateMachineError::Unspecific { value },
            ),
            (6, s) => BgpNotificationMessage::CeaseError(match s {
                1 => CeaseError::MaximumNumberOfPrefixesReached { value },
                3 => CeaseError::PeerDeConfigured { value },
                4 => CeaseError::AdministrativeReset { value },
                5 => CeaseError::ConnectionRejected { value },
                6 => CeaseError::OtherConfigurationChange { value },
                7 => CeaseError::ConnectionCollisionResolution { value },
                8 => CeaseError::OutOfResources { value },
                9 => CeaseError::HardReset { value },
                10 => CeaseError::BfdDown { value },
                _ => CeaseError::AdministrativeShutdown { value },
            }),
            (7, _) => {
                BgpNotificationMessage::RouteRefreshError(RouteRefreshError::InvalidMessageLength {
                    value,
                })
            }
            _ => BgpNotificationMessage::CeaseError(CeaseError::AdministrativeReset { value }),
        };
    let mut out = Vec::with_capacity(21 + n.data.len());
    write_msg(&BgpMessage::Notification(m), &mut out)?;
    Ok(out)
}

/// Encodes a ROUTE-REFRESH request for `family` (normal request).
pub fn encode_route_refresh(family: Family) -> Result<Vec<u8>, EncodeError> {
    let msg = BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
        family.address_type(),
        netgauze_bgp_pkt::iana::RouteRefreshSubcode::NormalRequest,
    ));
    let mut out = Vec::with_capacity(23);
    write_msg(&msg, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(bytes: &[u8]) -> Result<Option<Bytes>, Notification> {
        let mut b = BytesMut::from(bytes);
        take_frame(&mut b)
    }

    fn header(len: u16, typ: u8) -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&len.to_be_bytes());
        v.push(typ);
        v
    }

    #[test]
    fn open_round_trips_with_capabilities() {
        let local = LocalOpen {
            asn: 4_200_000_001,
            hold_time: 90,
            bgp_id: Ipv4Addr::new(192, 0, 2, 9),
            families: vec![Family::Ipv4, Family::Ipv6],
            graceful_restart: Some(120),
            restarted: true,
        };
        let bytes = encode_open(&local).unwrap();
        let frame = frame_of(&bytes).unwrap().unwrap();
        let Received::Open(o) = decode(&frame).unwrap() else {
            panic!("not an OPEN")
        };
        assert_eq!(o.my_as, AS_TRANS);
        assert_eq!(o.asn(), 4_200_000_001);
        assert_eq!(o.hold_time, 90);
        assert_eq!(o.bgp_id, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(o.families, vec![Family::Ipv4, Family::Ipv6]);
        assert!(o.route_refresh);
        let gr = o.graceful_restart.unwrap();
        assert_eq!(gr.restart_time, 120);
        assert!(gr.restarted && gr.notification);
        assert_eq!(
            gr.families,
            vec![(Family::Ipv4, true), (Family::Ipv6, true)]
        );
    }

    #[test]
    fn bad_marker_is_connection_not_synchronized() {
        let mut m = encode_keepalive();
        m[3] = 0;
        assert_eq!(
            frame_of(&m).unwrap_err().subcode,
            err::CONNECTION_NOT_SYNCHRONIZED
        );
        // Even before a full header arrived.
        assert_eq!(frame_of(&[0xff, 0x00]).unwrap_err().code, err::HEADER);
    }

    #[test]
    fn bad_lengths_and_types() {
        let e = frame_of(&header(18, MSG_KEEPALIVE)).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data.clone()), (1, 2, vec![0, 18]));
        let e = frame_of(&header(4097, MSG_UPDATE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(20, MSG_KEEPALIVE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(22, MSG_UPDATE)).unwrap_err();
        assert_eq!((e.code, e.subcode), (1, 2));
        let e = frame_of(&header(19, 9)).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data.clone()), (1, 3, vec![9]));
        // Incomplete but plausible: wait for more.
        assert_eq!(frame_of(&header(30, MSG_UPDATE)).unwrap(), None);
    }

    #[test]
    fn frames_split_a_stream() {
        let mut b = BytesMut::new();
        b.extend_from_slice(&encode_keepalive());
        b.extend_from_slice(&encode_keepalive()[..7]);
        assert!(take_frame(&mut b).unwrap().is_some());
        assert_eq!(take_frame(&mut b).unwrap(), None);
        b.extend_from_slice(&encode_keepalive()[7..]);
        assert_eq!(
            decode(&take_frame(&mut b).unwrap().unwrap()).unwrap(),
            Received::Keepalive
        );
        assert!(b.is_empty());
    }

    #[test]
    fn truncated_update_is_malformed_attribute_list() {
        // Withdrawn length says 10 bytes but the body has only 2 more.
        let body = [0u8, 10, 24, 192];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
        // Attribute length field larger than the remaining body.
        let body = [0u8, 0, 0, 40, 0x40, 1, 1, 0];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
    }

    #[test]
    fn wrong_attribute_length_is_treat_as_withdraw() {
        // ORIGIN with length 2, AS_PATH empty, NEXT_HOP, one NLRI.
        let attrs = [0x40u8, 1, 2, 0, 0, 0x40, 2, 0, 0x40, 3, 4, 192, 0, 2, 1];
        let mut body = vec![0, 0, 0, attrs.len() as u8];
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&[24, 203, 0, 113]);
        let s = scan_update(&body).unwrap();
        assert_eq!(s.announced, 1);
        assert!(s.malformed.unwrap().contains("ORIGIN"));
        // An attribute overrunning the attribute list: also treat-as-withdraw.
        let body = [0u8, 0, 0, 4, 0x40, 1, 9, 0, 24, 203, 0, 113];
        let s = scan_update(&body).unwrap();
        assert!(s.malformed.is_some());
        assert_eq!(s.announced, 1);
    }

    #[test]
    fn repeated_mp_reach_resets_and_unknown_afi_is_ignored() {
        // Two empty MP_UNREACH (IPv6): malformed attribute list.
        let body = [0u8, 0, 0, 12, 0x80, 15, 3, 0, 2, 1, 0x80, 15, 3, 0, 2, 1];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::MALFORMED_ATTRIBUTE_LIST
        );
        // MP_REACH for L2VPN/EVPN (25/70) with opaque NLRI: not counted, no error.
        let body = [
            0u8, 0, 0, 14, 0x80, 14, 11, 0, 25, 70, 4, 192, 0, 2, 1, 0, 2, 200,
        ];
        let s = scan_update(&body).unwrap();
        assert_eq!((s.announced, s.malformed), (0, None));
    }

    #[test]
    fn bad_nlri_prefix_length_is_invalid_network_field() {
        let body = [0u8, 0, 0, 0, 33, 1, 2, 3, 4, 5];
        assert_eq!(
            scan_update(&body).unwrap_err().subcode,
            err::INVALID_NETWORK_FIELD
        );
    }

    #[test]
    fn end_of_rib_detection() {
        assert_eq!(
            scan_update(&[0, 0, 0, 0]).unwrap().end_of_rib,
            Some(Family::Ipv4)
        );
        let body = [0u8, 0, 0, 6, 0x80, 15, 3, 0, 2, 1];
        assert_eq!(scan_update(&body).unwrap().end_of_rib, Some(Family::Ipv6));
    }

    #[test]
    fn notification_round_trip_and_shutdown_message() {
        let n = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, "maintenance ✓");
        let bytes = encode_notification(&n).unwrap();
        let Received::Notification(back) = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap()
        else {
            panic!("not a notification")
        };
        assert_eq!(back, n);
        assert_eq!(back.shutdown_message().as_deref(), Some("maintenance ✓"));
        let long = "é".repeat(200);
        let n = Notification::cease_with_message(err::CEASE_ADMIN_SHUTDOWN, &long);
        assert!(n.data[0] as usize <= 255 && n.shutdown_message().is_some());
        for (code, sub) in [
            (1, 1),
            (1, 2),
            (1, 3),
            (2, 1),
            (2, 2),
            (2, 6),
            (3, 1),
            (4, 0),
            (5, 1),
            (5, 2),
            (5, 3),
            (6, 7),
        ] {
            let n = Notification::new(code, sub, [1, 2]);
            let bytes = encode_notification(&n).unwrap();
            let Received::Notification(back) = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap()
            else {
                panic!("not a notification")
            };
            assert_eq!(back, n);
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes after a valid header never panic the decoder.
        #[test]
        fn random_input_never_panics(typ in 1u8..=5, body in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut m = header((HEADER_LEN + body.len()) as u16, typ);
            m.extend_from_slice(&body);
            if let Ok(Some(f)) = frame_of(&m) {
                let _ = decode(&f);
            }
            let _ = decode(&body);
            let _ = scan_update(&body);
        }

        /// OPENs with random optional parameters never panic netgauze's
        /// parser or ours.
        #[test]
        fn random_open_parameters_never_panic(params in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            // One capabilities parameter (type 2) with random contents.
            let mut body = vec![4u8, 0xfd, 0xe9, 0, 9, 192, 0, 2, 1, params.len() as u8 + 2, 2, params.len() as u8];
            body.extend_from_slice(&params);
            let mut m = header((HEADER_LEN + body.len()) as u16, MSG_OPEN);
            m.extend_from_slice(&body);
            if let Ok(Some(f)) = frame_of(&m) {
                let _ = decode(&f);
            }
        }

        /// Random bytes as a stream never panic the framer.
        #[test]
        fn random_stream_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let mut b = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = take_frame(&mut b) {
                let _ = decode(&f);
            }
        }
    }

    #[test]
    fn route_refresh_round_trip() {
        let bytes = encode_route_refresh(Family::Ipv6).unwrap();
        assert_eq!(
            decode(&frame_of(&bytes).unwrap().unwrap()).unwrap(),
            Received::RouteRefresh {
                afi: 2,
                safi: 1,
                subtype: 0
            }
        );
    }

    #[test]
    fn unsupported_version() {
        let mut bytes = encode_open(&LocalOpen {
            asn: 65001,
            hold_time: 9,
            bgp_id: Ipv4Addr::new(192, 0, 2, 1),
            families: vec![Family::Ipv4],
            graceful_restart: None,
            restarted: false,
        })
        .unwrap();
        bytes[19] = 3;
        let e = decode(&frame_of(&bytes).unwrap().unwrap()).unwrap_err();
        assert_eq!((e.code, e.subcode, e.data), (2, 1, vec![0, 4]));
    }
}
