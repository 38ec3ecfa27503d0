//! A peer's fleet report (`GET /v1/fleet/report`, format 1) as the puller
//! reads it: parsed into the core's value, checked against the peer it
//! should come from, every admin state shown as the core shows it. No
//! panic; a rejection is an error with a message; an accepted report
//! written back in this node's format is accepted again with the same
//! names. Seeds: the recorded reports and the example in docs/fleet.md.
#![no_main]

use anypop::core::fleet::report::check;
use anypop::fleet::wire::{parse, ReportV1};
use anypop::model::{FleetPeer, Name, PeerUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = match parse(data) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without a message");
            return;
        }
    };
    for p in report.pops.values() {
        if let Some(a) = &p.admin {
            let _ = a.status();
        }
    }
    if let Ok(name) = Name::parse("a") {
        let peer = FleetPeer {
            name,
            pop: report.pop.clone(),
            url: PeerUrl {
                tls: false,
                host: "192.0.2.1".into(),
                port: 8080,
                base_path: String::new(),
            },
            token_file: None,
            ca_file: None,
        };
        let _ = check(&peer, &report);
    }
    let text = serde_json::to_vec(&ReportV1::from(&report)).expect("a report serializes");
    let back = parse(&text).expect("a report this node writes is one it reads");
    assert_eq!(back.node, report.node);
    assert_eq!(back.pop, report.pop);
    assert!(back.pops.keys().eq(report.pops.keys()));
    assert_eq!(back.applied, report.applied);
});
