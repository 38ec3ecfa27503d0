//! anypop: a PoP routing controller.
//!
//! One process per Point of Presence health-checks the PoP's services,
//! announces or withdraws its anycast prefixes over BGP, and answers an
//! authoritative DNS steering zone, all from one decided state.
//!
//! Data flow: [`config`] parses and validates the YAML into [`model`] types;
//! [`health`] probes report results to the [`core`], the single task that
//! owns state and publishes immutable [`core::Snapshot`]s; [`bgp`], [`dns`]
//! and [`api`] read those snapshots and send admin actions back to the core.
//! [`geoip`] (MaxMind database lookups, held by the validated config) and
//! [`unix_time`] are leaves that depend on no other module of the crate.

pub mod api;
pub mod bfd;
pub mod bgp;
pub mod config;
pub mod core;
pub mod ctl;
pub mod daemon;
pub mod dns;
pub mod fleet;
pub mod geoip;
pub mod health;
pub mod manual;
pub mod model;
pub mod systemd;
pub mod telemetry;
pub mod unix_time;

/// Builders for unit tests and the fuzz targets (`fuzz/`); test and
/// `cfg(fuzzing)` builds only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod testutil;
