//! The last-PoP guard of a graceful drain, checked again against the
//! fleet view when the drain is about to leave its DNS step (before BGP
//! is touched). Pure: the caller passes the fleet view's states and the
//! drains it shows; no clock, no I/O. It decides only whether a drain
//! holds in `dns_removed`; the core keeps it there and raises the events.
//!
//! Two owners can each drain one of the last two PoPs of a prefix within
//! one report round trip: each request's guard saw the other PoP in
//! service. Both drains reach the end of their DNS step; the one that
//! started later (on equal start times: the PoP whose name sorts later)
//! holds, so the prefix stays announced, and the earlier one goes on.
//! Every node decides from the same published start times, so the two
//! owners agree which one holds without talking to each other.

use std::collections::BTreeMap;

use super::super::decide;
use super::super::snapshot::PopState;
use crate::model::{Pop, PopName};

/// A PoP as the check sees it in the fleet view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seen {
    /// Its fleet verdict.
    pub state: PopState,
    /// Its graceful drain, while at the DNS step (`dns_removed`): when it
    /// started (Unix seconds, as its owner publishes it) and whether it
    /// was forced past the guard (then it never holds).
    pub dns_step: Option<(f64, bool)>,
}

/// Whether the graceful drain of `target`, started at `since` (Unix
/// seconds, as published), must hold in `dns_removed`, and why.
///
/// For each prefix of `target` another PoP of that prefix must either be
/// in service (`up` in the fleet view), or be at the DNS step of a drain
/// that started later (tie: its name sorts later) and was not forced — a
/// drain that holds in turn, keeping the prefix announced. A PoP without
/// prefixes never holds (its drain withdraws nothing).
pub fn drain_hold(
    pops: &BTreeMap<PopName, Pop>,
    seen: &BTreeMap<PopName, Seen>,
    target: &PopName,
    since: f64,
) -> Option<String> {
    let t = pops.get(target)?;
    let me = (since, target);
    let stays = |p: &Pop| match seen.get(&p.name) {
        Some(s) if s.state == PopState::Up => true,
        Some(Seen {
            dns_step: Some((started, false)),
            ..
        }) => (*started, &p.name) > me,
        _ => false,
    };
    let prefix = decide::first_uncovered(pops, t, stays)?;
    let what: Vec<String> = pops
        .values()
        .filter(|p| &p.name != target && p.prefixes.contains(&prefix))
        .map(|p| match seen.get(&p.name) {
            Some(Seen {
                dns_step: Some((_, true)),
                ..
            }) => format!("{} draining, forced", p.name),
            Some(Seen {
                dns_step: Some(_), ..
            }) => format!("{} draining, its drain started first", p.name),
            Some(s) => format!("{} {}", p.name, s.state),
            None => format!("{} unknown", p.name),
        })
        .collect();
    let what = if what.is_empty() {
        "no other PoP announces it".to_string()
    } else {
        what.join(", ")
    };
    Some(format!(
        "last PoP in service for {prefix} ({what}): held in dns_removed until another PoP of it is back in service"
    ))
}
