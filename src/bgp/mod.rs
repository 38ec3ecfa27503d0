//! The BGP speaker: keeps what every configured peer has from us equal to
//! the core's desired announcements (`Snapshot::announcements`).
//!
//! Layers, from the wire up: [`codec`] (the wire format: framing and header
//! checks, decoding and scanning of what peers send, encoding of what we
//! send, UPDATEs included), [`fsm`] (sans-IO RFC 4271 session state machine), [`rib_out`] (per-peer
//! Adj-RIB-Out, diff and batching), [`sockopt`] (TCP MD5, GTSM),
//! [`session`] (the socket task of one peer) and [`speaker`] (the public
//! handle: spawn, status, reconfigure, shutdown). Routes received from peers
//! are counted, never stored.
//!
//! Use: `let bgp = bgp::spawn(&config.node, &config.bgp, snapshot_rx);`,
//! read `bgp.status()`, call `bgp.reconfigure(..)` on reload and
//! `bgp.shutdown().await` on SIGTERM.

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
