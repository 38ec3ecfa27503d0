//! BGP wire format: the message values the protocol layers exchange
//! ([`Received`] from a peer, [`LocalOpen`] and [`Notification`] to send),
//! and the code that turns bytes into them and back.
//!
//! - [`frame`]: splits the TCP byte stream into messages with the header
//!   checks of RFC 4271 §6.1 (our own code: it runs on every byte a peer
//!   sends and must reject garbage before anything allocates).
//! - [`mod@decode`]: OPEN (through netgauze-bgp-pkt's parser), NOTIFICATION,
//!   KEEPALIVE, ROUTE-REFRESH, and UPDATEs *scanned, never stored*:
//!   [`scan_update`] counts a received UPDATE's routes without allocating
//!   per route, so a full table from a router costs no memory. RFC 7606 is
//!   applied: structural errors that make the NLRI impossible to locate
//!   reset the session; attribute errors are "treat-as-withdraw", which for
//!   a speaker that ignores received routes means "count and carry on".
//! - [`encode`]: OPEN, KEEPALIVE, NOTIFICATION and ROUTE-REFRESH we send
//!   (netgauze-bgp-pkt values, serialized by it).
//! - [`update`]: the UPDATEs we send (path attributes, NLRI batches,
//!   End-of-RIB), also serialized by netgauze-bgp-pkt.
//!
//! This module must not know about sessions, timers or the Adj-RIB-Out.

pub mod decode;
pub mod encode;
pub mod frame;
mod message;
pub mod update;

#[cfg(test)]
mod fixtures;

pub use decode::{decode, scan_update};
pub use encode::{
    encode_keepalive, encode_notification, encode_open, encode_route_refresh, EncodeError,
};
pub use frame::take_frame;
pub use message::*;
