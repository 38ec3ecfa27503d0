//! The fleet's I/O: the client that talks to a peer's API ([`client`]),
//! the report's wire format ([`wire`], served by the API and read here)
//! and the task per peer that pulls its report into the core
//! ([`puller`]). Forwarded admin calls use the same clients.
//!
//! Decides nothing: the merge, freshness and every verdict are in
//! [`crate::core::fleet`]; this module only moves reports and calls.

pub mod client;
pub mod puller;
pub mod wire;

pub use client::{CallError, Clients, PeerClient};
pub use puller::{supervise, Pullers};
