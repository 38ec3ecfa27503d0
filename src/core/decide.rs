//! Pure decisions of the core: how check verdicts combine into a PoP's
//! health (holding the verdict while new checks decide), why a PoP is in
//! its state (the reason texts of the API and events), what state a PoP is
//! in given its health and admin override, and which prefixes to announce
//! with which attributes. No I/O, no clocks.
//!
//! [`desired_announcements`] is the single function that decides what BGP
//! advertises; safety rules (floors, guards) wrap it rather than being
//! scattered over the speaker.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ipnet::IpNet;

use super::admin::{Override, Phase};
use super::hysteresis::Verdict;
use super::snapshot::{AnnounceMode, Announcement, CheckStatus, PopState, PopStatus};
use crate::model::{
    AnnouncePolicy, CheckName, Combine, Config, FailAction, Pop, PopName, RouteAttrs,
    GRACEFUL_SHUTDOWN,
};

/// Combines check verdicts into PoP health. `None` while the checks that
/// matter are still unknown. A PoP without checks is healthy.
pub fn combine(rule: Combine, verdicts: impl IntoIterator<Item = Verdict>) -> Option<bool> {
    let (mut up, mut down, mut unknown) = (0u32, 0u32, 0u32);
    for v in verdicts {
        match v {
            Verdict::Up => up += 1,
            Verdict::Down => down += 1,
            Verdict::Unknown => unknown += 1,
        }
    }
    let total = up + down + unknown;
    if total == 0 {
        return Some(true);
    }
    let need = match rule {
        Combine::All => total,
        Combine::Any => 1,
        Combine::AtLeast(n) => n.clamp(1, total),
    };
    if up >= need {
        Some(true)
    } else if up + unknown < need {
        Some(false)
    } else {
        None
    }
}

/// A PoP's health after a new combination: once a PoP has a verdict,
/// checks that are still undecided (added or renamed by a config reload)
/// never take it back to "unknown", which would withdraw a healthy PoP or
/// steer DNS away from it. The verdict changes when the checks decide.
pub fn hold_verdict(previous: Option<bool>, combined: Option<bool>) -> Option<bool> {
    combined.or(previous)
}

/// A PoP's health from its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PopHealth {
    /// What the checks say now ([`combine`]).
    pub combined: Option<bool>,
    /// The verdict acted on ([`hold_verdict`]): `combined`, or the previous
    /// verdict while checks that matter are undecided.
    pub healthy: Option<bool>,
}

impl PopHealth {
    /// The verdict is held over undecided checks (after a reload added
    /// some): the reason says which.
    pub fn held(&self) -> bool {
        self.combined.is_none() && self.healthy.is_some()
    }
}

/// Combines `checks` by `rule`, holding `previous` while they decide.
pub fn pop_health(
    rule: Combine,
    checks: &BTreeMap<CheckName, CheckStatus>,
    previous: Option<bool>,
) -> PopHealth {
    let combined = combine(rule, checks.values().map(|c| c.state.verdict));
    PopHealth {
        combined,
        healthy: hold_verdict(previous, combined),
    }
}

/// Why a PoP is in its state, in words, for the API and events: the admin
/// override if there is one (`drained by alice: fibre cut`), else its
/// health ([`health_reason`]), saying which new checks are still deciding
/// while the verdict is held.
pub fn pop_reason(
    rule: Combine,
    checks: &BTreeMap<CheckName, CheckStatus>,
    health: PopHealth,
    admin: Option<&Override>,
) -> String {
    if let Some(ov) = admin {
        return format!("{} by {}: {}", ov.phase, ov.who, ov.reason);
    }
    let reason = health_reason(rule, checks, health.healthy);
    if !health.held() {
        return reason;
    }
    let deciding: Vec<&str> = checks
        .iter()
        .filter(|(_, c)| c.state.verdict == Verdict::Unknown)
        .map(|(n, _)| n.as_str())
        .collect();
    format!(
        "{reason} (kept while new checks decide: {})",
        deciding.join(", ")
    )
}

/// Why a PoP has the health it has, in words, for logs and the API:
/// `check http-edge failed 2/2: connect refused`.
pub fn health_reason(
    rule: Combine,
    checks: &BTreeMap<CheckName, CheckStatus>,
    healthy: Option<bool>,
) -> String {
    let describe = |name: &CheckName, c: &CheckStatus| {
        let detail = c.last.as_ref().map(|o| o.detail.as_str()).unwrap_or("");
        match c.state.verdict {
            Verdict::Down => format!(
                "check {name} failed {}/{}: {detail}",
                c.state.failures.min(c.fall),
                c.fall
            ),
            Verdict::Up => format!(
                "check {name} passed {}/{}",
                c.state.successes.min(c.rise),
                c.rise
            ),
            Verdict::Unknown => format!("check {name} not decided yet"),
        }
    };
    match healthy {
        Some(true) if checks.is_empty() => "no checks configured".to_string(),
        Some(true) => {
            let ups: Vec<String> = checks
                .iter()
                .filter(|(_, c)| c.state.verdict == Verdict::Up)
                .map(|(n, c)| describe(n, c))
                .collect();
            ups.join("; ")
        }
        Some(false) => {
            let downs: Vec<String> = checks
                .iter()
                .filter(|(_, c)| c.state.verdict != Verdict::Up)
                .map(|(n, c)| describe(n, c))
                .collect();
            let rule = match rule {
                Combine::All => String::new(),
                Combine::Any => " (none of the checks passes)".to_string(),
                Combine::AtLeast(n) => format!(" (fewer than {n} checks pass)"),
            };
            format!("{}{rule}", downs.join("; "))
        }
        None => "waiting for first check results".to_string(),
    }
}

/// The operational state of a PoP.
pub fn pop_state(healthy: Option<bool>, phase: Option<Phase>) -> PopState {
    match phase {
        Some(Phase::Disabled) => PopState::Disabled,
        Some(_) => PopState::Draining,
        None if healthy == Some(true) => PopState::Up,
        None => PopState::Down,
    }
}

fn action_mode(action: FailAction) -> Option<AnnounceMode> {
    match action {
        FailAction::Withdraw => None,
        FailAction::Degrade => Some(AnnounceMode::Degraded),
        FailAction::GracefulShutdown => Some(AnnounceMode::GracefulShutdown),
    }
}

/// How a PoP's prefixes are announced (`None`: withdrawn), from its health
/// and admin phase. Failing health always wins over a drain in progress:
/// a PoP that is down is never announced normally.
pub fn disposition(
    policy: &AnnouncePolicy,
    healthy: Option<bool>,
    phase: Option<Phase>,
) -> Option<AnnounceMode> {
    let by_health = match healthy {
        Some(true) => Some(AnnounceMode::Normal),
        Some(false) => action_mode(policy.on_down),
        // Unknown health: announce nothing new. (After a controller restart
        // the routers keep our previous routes stale under graceful restart
        // until the speaker sends End-of-RIB.)
        None => None,
    };
    match phase {
        Some(Phase::Disabled) => None,
        None | Some(Phase::DnsRemoved) | Some(Phase::Restoring) => by_health,
        Some(Phase::Shutdown) => by_health.map(|mode| match (mode, policy.on_drain) {
            (AnnounceMode::Normal, FailAction::Degrade) => AnnounceMode::Degraded,
            (AnnounceMode::Normal, _) => AnnounceMode::GracefulShutdown,
            (other, _) => other,
        }),
        Some(Phase::Drained) => by_health.and_then(|mode| match mode {
            AnnounceMode::Normal => action_mode(policy.on_drain),
            other => Some(other),
        }),
    }
}

/// The exact attributes of a prefix announced in `mode`.
pub fn attrs_for(policy: &AnnouncePolicy, mode: AnnounceMode) -> RouteAttrs {
    let normal = &policy.normal;
    match mode {
        AnnounceMode::Normal => normal.clone(),
        AnnounceMode::Degraded => {
            let d = &policy.degraded;
            let mut a = normal.clone();
            a.prepend = a.prepend.saturating_add(d.prepend);
            a.med = d.med.or(a.med);
            a.local_pref = d.local_pref.or(a.local_pref);
            extend_unique(&mut a.communities, &d.communities);
            extend_unique(&mut a.large_communities, &d.large_communities);
            a
        }
        AnnounceMode::GracefulShutdown => {
            let mut a = normal.clone();
            extend_unique(&mut a.communities, &[GRACEFUL_SHUTDOWN]);
            a.local_pref = Some(0);
            a
        }
    }
}

fn extend_unique<T: PartialEq + Clone>(into: &mut Vec<T>, from: &[T]) {
    for x in from {
        if !into.contains(x) {
            into.push(x.clone());
        }
    }
}

/// What BGP must advertise: the local PoP's prefixes with the attributes of
/// their disposition, from the health its announcement follows (its own
/// inside verdict; see `fleet::announce_health`) and its admin phase.
/// Prefixes absent from the result are withdrawn.
pub fn desired_announcements(
    config: &Config,
    healthy: Option<bool>,
    phase: Option<Phase>,
) -> BTreeMap<IpNet, Announcement> {
    announcements_of(config, local_announcement(config, healthy, phase).as_ref())
}

/// The announcement every prefix of the local PoP gets (they all share one
/// disposition), or `None` when none is advertised. Cheap: it does not
/// look at the prefixes, so the core calls it on every input and rebuilds
/// the map ([`announcements_of`]) only when this or the config changed.
pub fn local_announcement(
    config: &Config,
    healthy: Option<bool>,
    phase: Option<Phase>,
) -> Option<Announcement> {
    let pop = config.local_pop()?;
    let mode = disposition(&pop.announce, healthy, phase)?;
    Some(Announcement {
        pop: pop.name.clone(),
        mode,
        attrs: attrs_for(&pop.announce, mode),
    })
}

/// The local PoP's prefixes, each with `announcement` (none without one).
/// One pass over the prefixes, built in bulk (no tree search per prefix).
pub fn announcements_of(
    config: &Config,
    announcement: Option<&Announcement>,
) -> BTreeMap<IpNet, Announcement> {
    match (config.local_pop(), announcement) {
        (Some(pop), Some(a)) => pop.prefixes.iter().map(|p| (*p, a.clone())).collect(),
        _ => BTreeMap::new(),
    }
}

/// The drain guard: taking `target` out would leave no other PoP in
/// service for one of its prefixes (or, for a PoP without prefixes, no PoP
/// in service at all).
pub fn is_last_pop(
    pops_cfg: &BTreeMap<PopName, Pop>,
    states: &BTreeMap<PopName, PopStatus>,
    target: &PopName,
) -> bool {
    let Some(t) = pops_cfg.get(target) else {
        return false;
    };
    let up = |p: &Pop| states.get(&p.name).is_some_and(|s| s.state == PopState::Up);
    if t.prefixes.is_empty() {
        return !pops_cfg.values().any(|p| &p.name != target && up(p));
    }
    first_uncovered(pops_cfg, t, up).is_some()
}

/// The first prefix of `target` that no other PoP for which `covers` is
/// true announces. Linear in the prefixes of those PoPs and of `target`
/// (one set, then one pass): anycast PoPs share all their prefixes, and
/// 100,000 of them per PoP must not cost a search per prefix.
pub fn first_uncovered(
    pops: &BTreeMap<PopName, Pop>,
    target: &Pop,
    covers: impl Fn(&Pop) -> bool,
) -> Option<IpNet> {
    let covering: Vec<&Pop> = pops
        .values()
        .filter(|p| p.name != target.name && covers(p))
        .collect();
    let set: HashSet<&IpNet> = covering.iter().flat_map(|p| &p.prefixes).collect();
    target
        .prefixes
        .iter()
        .find(|prefix| !set.contains(prefix))
        .copied()
}

/// Shares one attribute map between snapshots when nothing changed.
pub fn reuse_if_equal<T: PartialEq>(old: &Arc<T>, new: T) -> Arc<T> {
    if **old == new {
        old.clone()
    } else {
        Arc::new(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(on_down: FailAction, on_drain: FailAction) -> AnnouncePolicy {
        AnnouncePolicy {
            normal: RouteAttrs {
                prepend: 1,
                med: Some(10),
                communities: vec![(65000, 1)],
                ..Default::default()
            },
            degraded: RouteAttrs {
                prepend: 2,
                med: Some(500),
                communities: vec![(65000, 666)],
                ..Default::default()
            },
            on_down,
            on_drain,
        }
    }

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Up),
            Just(Verdict::Down),
            Just(Verdict::Unknown)
        ]
    }

    fn checks(states: &[(&str, Verdict, &str)]) -> BTreeMap<CheckName, CheckStatus> {
        use super::super::hysteresis::CheckState;
        states
            .iter()
            .map(|(name, verdict, detail)| {
                let (successes, failures) = match verdict {
                    Verdict::Up => (3, 0),
                    Verdict::Down => (0, 2),
                    Verdict::Unknown => (0, 0),
                };
                let status = CheckStatus {
                    state: CheckState {
                        verdict: *verdict,
                        successes,
                        failures,
                    },
                    rise: 3,
                    fall: 2,
                    last: (*verdict != Verdict::Unknown).then(|| super::super::ProbeOutcome {
                        ok: *verdict == Verdict::Up,
                        detail: detail.to_string(),
                        took: std::time::Duration::ZERO,
                        at: std::time::SystemTime::UNIX_EPOCH,
                    }),
                    seq: 0,
                };
                (CheckName::parse(name).expect("name"), status)
            })
            .collect()
    }

    /// A reload that adds a check to a decided PoP: the verdict is held and
    /// the reason says which checks are deciding; once they decide, their
    /// verdict counts.
    #[test]
    fn verdict_is_held_while_new_checks_decide() {
        use Verdict::*;
        let added = checks(&[("edge", Up, "connected"), ("new-http", Unknown, "")]);
        let h = pop_health(Combine::All, &added, Some(true));
        assert_eq!(
            h,
            PopHealth {
                combined: None,
                healthy: Some(true)
            }
        );
        assert!(h.held());
        assert_eq!(
            pop_reason(Combine::All, &added, h, None),
            "check edge passed 3/3 (kept while new checks decide: new-http)"
        );
        // A PoP that was down stays down, and says so.
        let h = pop_health(Combine::All, &added, Some(false));
        assert_eq!(h.healthy, Some(false));
        assert!(pop_reason(Combine::All, &added, h, None).starts_with(
            "check new-http not decided yet (kept while new checks decide: new-http)"
        ));
        // Never decided: nothing to hold.
        let h = pop_health(Combine::All, &added, None);
        assert!(!h.held());
        assert_eq!(
            pop_reason(Combine::All, &added, h, None),
            "waiting for first check results"
        );
        // The new check decides: its verdict counts.
        let decided = checks(&[("edge", Up, "connected"), ("new-http", Down, "status 503")]);
        let h = pop_health(Combine::All, &decided, Some(true));
        assert_eq!(h.healthy, Some(false));
        assert!(!h.held());
        assert_eq!(
            pop_reason(Combine::All, &decided, h, None),
            "check new-http failed 2/2: status 503"
        );
    }

    #[test]
    fn reasons_name_the_rule_and_the_override() {
        use Verdict::*;
        let cs = checks(&[("a", Down, "refused"), ("b", Up, "ok"), ("c", Down, "503")]);
        let h = pop_health(Combine::AtLeast(2), &cs, None);
        assert_eq!(h.healthy, Some(false));
        assert_eq!(
            pop_reason(Combine::AtLeast(2), &cs, h, None),
            "check a failed 2/2: refused; check c failed 2/2: 503 (fewer than 2 checks pass)"
        );
        let h = pop_health(Combine::Any, &cs, None);
        assert_eq!(pop_reason(Combine::Any, &cs, h, None), "check b passed 3/3");
        assert_eq!(
            pop_reason(
                Combine::Any,
                &BTreeMap::new(),
                pop_health(Combine::Any, &BTreeMap::new(), None),
                None
            ),
            "no checks configured"
        );
        let ov = Override {
            phase: Phase::Drained,
            reason: "fibre cut".into(),
            who: "alice".into(),
            since: std::time::SystemTime::UNIX_EPOCH,
            until: None,
            phase_ends: None,
            force: false,
        };
        assert_eq!(
            pop_reason(Combine::Any, &cs, h, Some(&ov)),
            "drained by alice: fibre cut"
        );
    }

    #[test]
    fn combine_rules() {
        use Verdict::*;
        assert_eq!(combine(Combine::All, [Up, Up]), Some(true));
        assert_eq!(combine(Combine::All, [Up, Down]), Some(false));
        assert_eq!(combine(Combine::All, [Up, Unknown]), None);
        assert_eq!(combine(Combine::Any, [Down, Up]), Some(true));
        assert_eq!(combine(Combine::Any, [Down, Down]), Some(false));
        assert_eq!(combine(Combine::Any, [Down, Unknown]), None);
        assert_eq!(combine(Combine::AtLeast(2), [Up, Down, Up]), Some(true));
        assert_eq!(combine(Combine::AtLeast(2), [Up, Down, Down]), Some(false));
        assert_eq!(combine(Combine::AtLeast(2), [Up, Down, Unknown]), None);
        assert_eq!(combine(Combine::All, []), Some(true));
    }

    proptest! {
        #[test]
        fn combine_matches_counting(vs in proptest::collection::vec(verdict(), 1..8), n in 1u32..8) {
            let ups = vs.iter().filter(|v| **v == Verdict::Up).count() as u32;
            let downs = vs.iter().filter(|v| **v == Verdict::Down).count() as u32;
            let total = vs.len() as u32;
            let need = n.min(total);
            match combine(Combine::AtLeast(n), vs.clone()) {
                Some(true) => prop_assert!(ups >= need),
                Some(false) => prop_assert!(total - downs < need),
                None => prop_assert!(ups < need && total - downs >= need),
            }
            // all == at_least(total), any == at_least(1)
            prop_assert_eq!(combine(Combine::All, vs.clone()), combine(Combine::AtLeast(total), vs.clone()));
            prop_assert_eq!(combine(Combine::Any, vs.clone()), combine(Combine::AtLeast(1), vs));
        }

        /// A PoP that is down is never announced with normal attributes, and
        /// a disabled PoP is never announced, whatever else holds.
        #[test]
        fn unhealthy_is_never_normal(healthy in proptest::option::of(any::<bool>()), phase in proptest::option::of(prop_oneof![Just(Phase::DnsRemoved), Just(Phase::Shutdown), Just(Phase::Drained), Just(Phase::Restoring), Just(Phase::Disabled)]), d in 0..3u8, r in 0..3u8) {
            let act = |x| [FailAction::Withdraw, FailAction::Degrade, FailAction::GracefulShutdown][x as usize];
            let p = policy(act(d), act(r));
            let m = disposition(&p, healthy, phase);
            if healthy != Some(true) { prop_assert_ne!(m, Some(AnnounceMode::Normal)); }
            if healthy.is_none() || phase == Some(Phase::Disabled) { prop_assert_eq!(m, None); }
        }
    }

    #[test]
    fn disposition_follows_health_and_drain() {
        let p = policy(FailAction::Withdraw, FailAction::Withdraw);
        assert_eq!(
            disposition(&p, Some(true), None),
            Some(AnnounceMode::Normal)
        );
        assert_eq!(disposition(&p, Some(false), None), None);
        assert_eq!(disposition(&p, None, None), None);
        assert_eq!(
            disposition(&p, Some(true), Some(Phase::DnsRemoved)),
            Some(AnnounceMode::Normal)
        );
        assert_eq!(
            disposition(&p, Some(true), Some(Phase::Shutdown)),
            Some(AnnounceMode::GracefulShutdown)
        );
        assert_eq!(disposition(&p, Some(true), Some(Phase::Drained)), None);
        let deg = policy(FailAction::Degrade, FailAction::Degrade);
        assert_eq!(
            disposition(&deg, Some(false), None),
            Some(AnnounceMode::Degraded)
        );
        assert_eq!(
            disposition(&deg, Some(true), Some(Phase::Shutdown)),
            Some(AnnounceMode::Degraded)
        );
        assert_eq!(
            disposition(&deg, Some(true), Some(Phase::Drained)),
            Some(AnnounceMode::Degraded)
        );
    }

    #[test]
    fn attributes_per_mode() {
        let p = policy(FailAction::Degrade, FailAction::GracefulShutdown);
        let d = attrs_for(&p, AnnounceMode::Degraded);
        assert_eq!(d.prepend, 3);
        assert_eq!(d.med, Some(500));
        assert_eq!(d.communities, vec![(65000, 1), (65000, 666)]);
        let g = attrs_for(&p, AnnounceMode::GracefulShutdown);
        assert!(g.communities.contains(&GRACEFUL_SHUTDOWN));
        assert_eq!(g.local_pref, Some(0));
        assert_eq!(g.prepend, 1);
        assert_eq!(attrs_for(&p, AnnounceMode::Normal), p.normal);
    }
}
