//! BFD (RFC 5880 asynchronous mode, RFC 5881 single hop over IPv4 and IPv6)
//! to notice a dead host or link within `multiplier × interval` instead of
//! the BGP hold time.
//!
//! Layers, from the wire up: [`packet`] (Control packet encoding and the
//! session-independent checks), [`fsm`] (sans-IO session state machine
//! with timers as deadlines), [`damp`] (hold-down of a flapping session),
//! [`socket`] (UDP sockets: TTL 255 sent and required, source ports from
//! 49152–65535) and [`service`] (the task that owns every session: timers,
//! demultiplexing, status).
//!
//! Use: `let bfd = bfd::spawn();`, then `bfd.add(peer, local, params)` per
//! BGP peer with `bfd:` configured; the returned watch tells the peer's BGP
//! session when BFD holds it down.

pub mod damp;
pub mod fsm;
pub mod packet;
pub mod service;
pub mod socket;

pub use fsm::{Params, Status};
pub use packet::State;
pub use service::{spawn, BfdHandle, SessionStatus};
