//! The steering DNS server: an authoritative server for the configured
//! zones whose steered A/AAAA records follow the same snapshot that drives
//! BGP, so DNS and routing never disagree.
//!
//! - [`policy`]: pure steering (failover, weighted, geo, all_healthy,
//!   fail-open, dynamic TTL); [`explain`] reports its decisions in words.
//!   `geo` and `nearest` look clients up in [`crate::geoip`].
//! - [`rrl`]: response rate limiting per client block (UDP).
//! - [`zone`]: config zones compiled into lookup tables.
//! - [`answer`]: the general path over hickory-proto messages
//!   (authoritative semantics, EDNS, ECS, NSID, CHAOS, truncation).
//! - [`handler`]: hickory-server's `RequestHandler` over the general path;
//!   TCP requests are decoded by hickory-server and answered through it.
//! - [`fast`]: pre-encoded answers replayed for plain UDP queries;
//!   [`negative`]: its NXDOMAIN/NODATA/REFUSED answers.
//! - [`fnv`]: the stable FNV-1a hash of the fast path's tables and weighted
//!   steering.
//! - [`state`]: what one snapshot gives (plans + pre-encoded answers).
//! - [`server`]: starts and stops the listeners and the rebuild task;
//!   [`udp`]: the UDP listener threads; [`tcp`]: the TCP listener and its
//!   connection limits; [`stats`]: counters.
//!
//! It must not change state: it only reads snapshots.

pub mod answer;
pub mod explain;
pub mod fast;
pub mod fnv;
pub mod handler;
pub mod negative;
pub mod policy;
pub mod rrl;
pub mod server;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod udp;
pub mod zone;

pub use explain::{explain, ExplainError, Explanation};
pub use policy::Client;
pub use server::{serve, DnsError, DnsServer};
pub use stats::{DnsStats, Sample};

#[cfg(test)]
mod negative_tests;
#[cfg(test)]
mod tcp_tests;
#[cfg(test)]
mod tests;
