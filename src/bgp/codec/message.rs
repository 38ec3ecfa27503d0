//! The message values of the wire format: constants, [`Family`],
//! [`Notification`] (with the error codes in [`err`]), what a peer's OPEN
//! tells us ([`PeerOpen`]), what ours says ([`LocalOpen`]) and the decoded
//! messages ([`Received`]). Plain data: no parsing, no encoding.

use std::net::Ipv4Addr;

use netgauze_iana::address_family::AddressType;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

    pub(crate) fn from_address_type(t: AddressType) -> Option<Family> {
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
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    // FSM error subcodes (RFC 6608).
    pub const FSM_UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const FSM_UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const FSM_UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    // Cease subcodes (RFC 4486, RFC 8538).
    pub const CEASE_MAX_PREFIXES: u8 = 1;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_OTHER_CONFIG_CHANGE: u8 = 6;
    pub const CEASE_COLLISION: u8 = 7;
    pub const CEASE_HARD_RESET: u8 = 9;
    /// RFC 9384: BFD found the peer unreachable.
    pub const CEASE_BFD_DOWN: u8 = 10;
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

    /// A Cease / Hard Reset (RFC 8538) carrying `inner`: the receiver
    /// ends the session without graceful restart.
    pub fn hard_reset(inner: &Notification) -> Self {
        let mut data = Vec::with_capacity(2 + inner.data.len());
        data.extend_from_slice(&[inner.code, inner.subcode]);
        data.extend_from_slice(&inner.data);
        Notification::new(err::CEASE, err::CEASE_HARD_RESET, data)
    }

    /// The NOTIFICATION a Cease / Hard Reset (RFC 8538) carries: its data
    /// is the inner error code, subcode and data.
    pub fn hard_reset_inner(&self) -> Option<Notification> {
        if self.code != err::CEASE || self.subcode != err::CEASE_HARD_RESET {
            return None;
        }
        match &self.data[..] {
            [code, subcode, data @ ..] => Some(Notification::new(*code, *subcode, data)),
            _ => None,
        }
    }

    /// The shutdown communication carried by a Cease/Administrative
    /// Shutdown or Reset (also inside a Hard Reset), if any and if valid
    /// UTF-8.
    pub fn shutdown_message(&self) -> Option<String> {
        if let Some(inner) = self.hard_reset_inner() {
            return inner.shutdown_message();
        }
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
            (3, 2) => "update message error / unrecognized well-known attribute",
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
            (6, 10) => "cease / BFD down",
            (6, _) => "cease",
            (7, _) => "route refresh message error",
            _ => "unknown error",
        };
        write!(f, "{name} ({}/{})", self.code, self.subcode)?;
        if let Some(inner) = self.hard_reset_inner() {
            // The inner one names the reason (and carries the message).
            return write!(f, " of {inner}");
        }
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
