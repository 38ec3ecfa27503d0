//! The config parser: YAML text → raw structs → validated config, with
//! path-tagged errors. No panic, no hang; an accepted config also goes
//! through what the daemon does next with it (the summary, the DNS zone
//! compilation and a DNS state with every PoP up). Seeds: the examples of
//! docs/, the topologies' configs, the built-in default config.
#![no_main]

use std::sync::Arc;

use anypop::core::PopState;
use anypop::dns::state::State;
use anypop::dns::zone::Zones;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match anypop::config::parse(text) {
        Ok(c) => Arc::new(c),
        Err(errors) => {
            assert!(!errors.errors().is_empty(), "rejected without an error");
            return;
        }
    };
    let _ = anypop::config::summary(&config);
    let Ok(zones) = Zones::compile(&config) else {
        return;
    };
    let names: Vec<String> = config.pops.keys().map(|p| p.to_string()).collect();
    let pops: Vec<(&str, PopState)> = names.iter().map(|n| (n.as_str(), PopState::Up)).collect();
    let now = Instant::now();
    let snap = anypop_fuzz::snapshot(config, &pops, now);
    let _ = State::build(&snap, Arc::new(zones), now, None, None);
});
