//! The single-writer controller.

pub mod snapshot;
pub use snapshot::*;
