//! `topologies/bench` with the 100,000 benchmark prefixes, as the scale
//! tests use it: the lab, pop1's config announcing the first `n` prefixes
//! of [`super::mrt::bench_prefix`], and what FRR (r1) holds of pop1's
//! routes — its table, how many are stale, its kernel FIB, the UPDATEs it
//! received and whether a route carries GRACEFUL_SHUTDOWN.
//!
//! It only builds and measures; the tests assert.

use std::time::{Duration, Instant};

use super::frr::{communities, Frr};
use super::{mrt, repo_root, topology_file, Lab};
use crate::wait_until_every;

/// The prefix count the docs claim.
pub const N: u64 = 100_000;
/// pop1's address on its link to r1 (FRR's name for the session).
pub const POP1: &str = "2001:db8:0:1::2";
/// Loading (or emptying) 100,000 routes into FRR and its kernel FIB on a
/// loaded two-core machine.
pub const LOAD: Duration = Duration::from_secs(600);
/// Between two polls of FRR's table and FIB (each lists up to 100,000
/// routes: polling faster slows FRR down on a loaded machine).
pub const POLL: Duration = Duration::from_millis(250);
/// The programs the bench lab runs.
pub const PROGRAMS: &[&str] = &["/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "vtysh"];

/// The bench lab's namespaces (r1, pop1, g1).
pub fn lab() -> Lab {
    Lab::from_clab(&repo_root().join("topologies/bench/bench.clab.yml"))
}

/// FRR r1 with the topology's config.
pub fn r1(lab: &Lab) -> Frr {
    Frr::start(lab, "r1", &topology_file("bench/frr/r1/frr.conf"))
}

/// pop1's topology config announcing the first `n` benchmark prefixes
/// (healthy from the start: its check's file does not exist).
pub fn pop1_yaml(n: u32) -> String {
    let line = "    prefixes: [\"2001:db8:100::/48\"]";
    let yaml = topology_file("bench/anypop/pop1.yaml");
    assert!(yaml.contains(line), "topology config changed: {line:?}");
    yaml.replace(
        line,
        &format!("    prefixes: {}", mrt::bench_prefix_list(n)),
    )
}

/// Routes from pop1 in FRR's table, how many are stale, and BGP routes in
/// r1's kernel FIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub table: u64,
    pub stale: u64,
    pub fib: u64,
}

impl Counts {
    /// `n` routes, none stale, all in the FIB.
    pub fn loaded(n: u64) -> Counts {
        Counts {
            table: n,
            stale: 0,
            fib: n,
        }
    }
}

/// What r1 holds of pop1's routes now (`u64::MAX` in table and stale when
/// FRR did not answer).
pub fn counts(lab: &Lab, r1: &Frr) -> Counts {
    let (table, stale) = r1
        .prefix_counts(POP1, "ipv6")
        .unwrap_or((u64::MAX, u64::MAX));
    Counts {
        table,
        stale,
        fib: lab.bgp_routes("r1", 6).len() as u64,
    }
}

/// Polls r1 (every [`POLL`], at most `bound`) until it holds exactly
/// `want`; whether it did.
pub fn wait_counts(lab: &Lab, r1: &Frr, want: Counts, bound: Duration) -> bool {
    wait_until_every(bound, POLL, || counts(lab, r1) == want)
}

/// How FRR emptied: whether table and FIB were empty in time, the most
/// stale routes any sample showed, and when each was first seen empty
/// (since `t0`).
pub struct Emptying {
    pub emptied: bool,
    pub max_stale: u64,
    pub table_empty: Option<Duration>,
    pub fib_empty: Option<Duration>,
}

/// Samples FRR until its table and FIB hold none of pop1's routes (at most
/// `bound`); every sample records how many routes were stale.
pub fn wait_empty(lab: &Lab, r1: &Frr, t0: Instant, bound: Duration) -> Emptying {
    let mut max_stale = 0;
    let mut table_empty = None;
    let mut fib_empty = None;
    let emptied = wait_until_every(bound, POLL, || {
        let c = counts(lab, r1);
        if c.stale != u64::MAX {
            max_stale = max_stale.max(c.stale);
        }
        if c.table == 0 && table_empty.is_none() {
            table_empty = Some(t0.elapsed());
        }
        if c.fib == 0 && fib_empty.is_none() {
            fib_empty = Some(t0.elapsed());
        }
        table_empty.is_some() && fib_empty.is_some()
    });
    Emptying {
        emptied,
        max_stale,
        table_empty,
        fib_empty,
    }
}

/// Seconds of an optional duration (NaN for none), for printing.
pub fn secs(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64())
}

/// `/messageStats/updatesRecv` of FRR's view of pop1.
pub fn updates_received(r1: &Frr) -> u64 {
    r1.neighbor(POP1)
        .and_then(|n| {
            n.pointer("/messageStats/updatesRecv")
                .and_then(|v| v.as_u64())
        })
        .expect("FRR's neighbor pop1 with message statistics")
}

/// Whether FRR's path for benchmark prefix `i` from pop1 carries
/// GRACEFUL_SHUTDOWN (65535:0; FRR prints its well-known name).
pub fn gshut(r1: &Frr, i: u32) -> bool {
    let (a, l) = mrt::bench_prefix(i);
    r1.path_from(&format!("{a}/{l}"), POP1).is_some_and(|p| {
        communities(&p)
            .iter()
            .any(|c| c == "65535:0" || c == "graceful-shutdown")
    })
}
