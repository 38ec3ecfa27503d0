//! The BGP speaker: keeps what every configured peer has from us equal to
//! the core's desired announcements (`Snapshot::announcements`). Routes
//! received from peers are counted, never stored.
//!
//! Layers, from the wire up:
//!
//! - [`codec`]: the wire format — framing and header checks, decoding and
//!   scanning of what peers send, encoding of what we send (UPDATEs
//!   included).
//! - Sans-IO protocol logic, no sockets, no clock reads, unit- and
//!   property-tested: [`fsm`] (the RFC 4271 session state machine of one
//!   connection) and [`peer`] (the driver of one peer around it:
//!   connection collisions in [`collision`], the per-family filtering, the
//!   Adj-RIB-Out in [`rib_out`], the End-of-RIB hold in [`eor`], the stop
//!   and shutdown choreography in [`shutdown`]). [`peer::Input`] and
//!   [`peer::Output`] are the whole interface between protocol and I/O.
//! - I/O shells: [`session`] (the socket task of one peer: dial, accept,
//!   read, write, timers, status), [`sockopt`] (TCP MD5, GTSM),
//!   [`lograte`] (log rate limits) and [`speaker`] (the public handle:
//!   spawn, status, shutdown; the listener; reconciling the peers when a
//!   reloaded config arrives in the snapshot). The speaker also
//!   owns the [`crate::bfd`] sessions of peers with `bfd`; each session
//!   task passes its peer's BFD status in as [`peer::Input::Bfd`].
//!
//! netgauze-bgp-pkt (only its wire (de)serializer, the feature it calls
//! `serde`) decodes the peer's OPEN and serializes everything we send:
//! OPEN, NOTIFICATION, ROUTE-REFRESH and UPDATEs, from typed values. We do
//! not use it to frame the TCP stream (our [`codec::frame`] answers every
//! header error with its exact NOTIFICATION before anything allocates), nor
//! to decode received UPDATEs ([`codec::scan_update`] counts a full table
//! without allocating per route and applies RFC 7606), nor for the session
//! itself (FSM, Adj-RIB-Out and policy are ours). docs/bgp.md explains the
//! choice.
//!
//! Use: `let bgp = bgp::spawn(snapshot_rx);` (the peers come from
//! `snapshot.config`, and follow it on reload), read `bgp.status()` and
//! call `bgp.shutdown().await` on SIGTERM.

pub mod codec;
pub mod collision;
pub mod eor;
pub mod fsm;
pub mod lograte;
pub mod peer;
pub mod rib_out;
pub mod session;
pub mod shutdown;
pub mod sockopt;
pub mod speaker;

pub use codec::Family;
pub use fsm::State as SessionState;
pub use session::PeerStatus;
pub use speaker::{spawn, BgpHandle, StatusMap};
