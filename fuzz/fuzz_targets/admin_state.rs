//! The admin-state file (operator drains and disables kept across
//! restarts) as an operator might hand-edit it: decoded like the file on
//! disk, then restored into the core at start (the drain phases resumed on
//! the monotonic clock, auto-undrain times compared with the wall clock) and
//! the core's timer run a while later, with the wall clock right and with
//! it at 1970 (no real-time clock, before NTP). No panic: a file the
//! decoder takes is one the core can start with. Seeds: files the core
//! wrote.
#![no_main]

use std::path::Path;
use std::time::{Duration, SystemTime};

use anypop::core::clock::Now;
use anypop::core::persist::decode;
use anypop::core::Core;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(overrides) = decode(data, Path::new("admin-state.json")) else {
        return;
    };
    // The wall clock now, and that of a host without a real-time clock
    // before NTP has set it (earlier than any time in a file).
    for wall in [SystemTime::now(), SystemTime::UNIX_EPOCH] {
        let now = Now {
            mono: Instant::now(),
            wall,
        };
        let (mut core, _handle, _io) = Core::new(anypop_fuzz::config(), overrides.clone(), now);
        for later in [1, 3600, 400 * 86_400] {
            let d = Duration::from_secs(later);
            let t = Now {
                mono: now.mono + d,
                wall: now.wall + d,
            };
            let _ = core.deadline(t);
            core.tick(t);
        }
    }
});
