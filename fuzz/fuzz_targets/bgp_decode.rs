//! BGP framing and decoding of what a peer sends: bytes as a TCP stream
//! (take_frame, then decode: OPEN through netgauze, UPDATEs through our
//! scanner, NOTIFICATION, KEEPALIVE, ROUTE-REFRESH). No panic; every frame
//! within the RFC 4271 bounds; every NOTIFICATION we answer with encodes
//! and decodes back to itself. Seeds: the FRR, BIRD and GoBGP captures of
//! src/bgp/testdata.
#![no_main]

use anypop::bgp::codec::scan_update;
use anypop_fuzz::{check_notification_round_trip, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    wire(data);
    // The UPDATE scanner on its own, on any body a frame can carry.
    if data.len() <= 4096 - 19 {
        if let Err(n) = scan_update(data) {
            check_notification_round_trip(&n);
        }
    }
});
