//! The merge: this node's own view plus its peers' reports, at `now`, into
//! the fleet view of every PoP. Pure: no clock, no I/O; the previous view
//! is an input (verdicts held while nothing fresh says anything).
//!
//! The rules, in the order they apply (docs/fleet.md has the truth table):
//!
//! 1. A report older than `stale_after` counts as unknown, never as down.
//! 2. The owner's admin state wins (kept while its report is stale).
//! 3. The owner's inside verdict wins for "is the service up": `down` is
//!    down whatever the outside sees.
//! 4. Outside-in "unreachable" needs `unreachable_quorum` fresh vantage
//!    points, more than see it reachable.
//! 5. Fail static: a failure shared by at least `fraction` (and
//!    `min_pops`) of the PoPs holds the verdict the PoP had before its
//!    owner went down (so a PoP whose failure was seen first, before the
//!    rule applied, comes back with the others).
//! 6. Nothing fresh at all: the previous verdict is held.
//!
//! PoPs no fleet node owns are decided by this node alone, as without a
//! fleet.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::super::admin::Phase;
use super::super::decide;
use super::super::hysteresis::Verdict;
use super::super::snapshot::{AdminStatus, PopState};
use super::report::{Report, ReportRole};
use super::Local;
use crate::model::{CheckName, Config, FailStatic, FleetConfig, NodeName, PopName, Role};

/// A peer's latest report, as the core holds it.
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    pub report: Option<Arc<Report>>,
    /// When it was received (this node's monotonic clock).
    pub received: Option<Instant>,
}

/// Everything the merge reads.
pub struct Sources<'a> {
    pub config: &'a Config,
    pub fleet: &'a FleetConfig,
    /// This node's own verdict of every PoP: inside for the PoPs it owns
    /// and those nobody owns, outside-in for the others (no checks: it
    /// does not probe them).
    pub local: &'a BTreeMap<PopName, Local>,
    pub peers: &'a BTreeMap<NodeName, PeerReport>,
    /// The view of the previous merge.
    pub previous: Option<&'a FleetView>,
}

/// The fleet view of every PoP of the config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    pub pops: BTreeMap<PopName, PopView>,
}

/// One PoP in the fleet view.
#[derive(Debug, Clone, PartialEq)]
pub struct PopView {
    /// Its owner nodes (empty: nobody in the fleet owns it).
    pub owners: Vec<NodeName>,
    pub owner: OwnerView,
    /// The owner's admin state (this node's own for PoPs nobody owns).
    pub admin: Option<AdminView>,
    /// Every other fleet node as a vantage point (empty for PoPs nobody
    /// owns).
    pub vantage: BTreeMap<NodeName, VantageView>,
    pub reachability: Reach,
    /// Fresh vantage points that reach it / cannot reach it.
    pub reachable: u32,
    pub unreachable: u32,
    /// The owner's failure is shared fleet-wide and held (fail static).
    pub inside_held: bool,
    /// The outside-in failure is shared fleet-wide and ignored.
    pub reach_held: bool,
    /// Why the fail-static rule holds it, while it does.
    pub fail_static: Option<String>,
    /// The fleet health verdict (`None`: undecided).
    pub health: Option<bool>,
    /// The health it had before its current failure began — its owner
    /// going down or the outside-in quorum finding it unreachable,
    /// whichever came first (the health itself while neither is the
    /// case): what fail static holds.
    pub before_failure: Option<bool>,
    /// The fleet verdict: admin state, then health.
    pub state: PopState,
    /// The verdict, in words.
    pub why: String,
}

impl PopView {
    /// The owner says up and a quorum of the outside cannot reach it.
    pub fn disagrees(&self) -> bool {
        self.owner.verdict == Verdict::Up && self.reachability == Reach::Unreachable
    }
}

/// The owner side of a PoP.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerView {
    /// What the merge used: `Unknown` when every owner's report is stale.
    pub verdict: Verdict,
    /// What the owner's last report said (this node's own verdict for its
    /// own PoP), fresh or not.
    pub reported: Option<Verdict>,
    pub fresh: bool,
    /// When that report was received (`None` for this node's own).
    pub received: Option<Instant>,
    pub reason: String,
    /// Its check verdicts (of fresh owners).
    pub checks: BTreeMap<CheckName, Verdict>,
}

/// The owner's admin state and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminView {
    pub status: AdminStatus,
    pub from: NodeName,
    /// When its report was received (`None`: this node's own).
    pub received: Option<Instant>,
    pub fresh: bool,
}

/// One vantage point's outside-in verdict of a PoP.
#[derive(Debug, Clone, PartialEq)]
pub struct VantageView {
    pub verdict: VantageVerdict,
    pub fresh: bool,
    /// When its report was received (`None`: this node itself).
    pub received: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VantageVerdict {
    Up,
    Down,
    Unknown,
    /// It runs no check of this PoP (or has not reported yet).
    NotProbed,
}

impl VantageVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            VantageVerdict::Up => "up",
            VantageVerdict::Down => "down",
            VantageVerdict::Unknown => "unknown",
            VantageVerdict::NotProbed => "not_probed",
        }
    }
}

/// The outside-in quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    Reachable,
    Unreachable,
    Unknown,
}

impl Reach {
    pub fn as_str(self) -> &'static str {
        match self {
            Reach::Reachable => "reachable",
            Reach::Unreachable => "unreachable",
            Reach::Unknown => "unknown",
        }
    }
}

fn verdict_of(h: Option<bool>) -> Verdict {
    match h {
        Some(true) => Verdict::Up,
        Some(false) => Verdict::Down,
        None => Verdict::Unknown,
    }
}

/// How far out of service an admin phase takes a PoP (the most
/// restrictive of several owners' wins).
fn severity(p: Phase) -> u8 {
    match p {
        Phase::Restoring => 0,
        Phase::DnsRemoved => 1,
        Phase::Shutdown => 2,
        Phase::Drained => 3,
        Phase::Disabled => 4,
    }
}

/// The outside-in quorum from `reachable` and `unreachable` fresh votes.
pub fn quorum(reachable: u32, unreachable: u32, quorum: u32) -> Reach {
    if unreachable >= quorum && unreachable > reachable {
        Reach::Unreachable
    } else if reachable >= 1 {
        Reach::Reachable
    } else {
        Reach::Unknown
    }
}

/// The fleet health verdict from the owner verdict and the quorum. Where
/// nothing decides, `previous` is held; where `held` says the owner's
/// failure is a shared one, `before` (the health before that failure
/// began) is. The reason is in words.
pub fn health(
    owner: Verdict,
    held: bool,
    reach: Reach,
    counts: (u32, u32),
    previous: Option<bool>,
    before: Option<bool>,
) -> (Option<bool>, String) {
    let (r, u) = counts;
    let outside = match reach {
        Reach::Reachable => format!("reachable from {r} of {} vantage points", r + u),
        Reach::Unreachable => format!("unreachable from {u} of {} vantage points", r + u),
        Reach::Unknown => "outside-in undecided".to_string(),
    };
    let kept = |what: &str, h: Option<bool>| match h {
        Some(true) => format!("{what}: kept up"),
        Some(false) => format!("{what}: kept down"),
        None => format!("{what}: undecided"),
    };
    match (owner, held, reach) {
        (Verdict::Down, false, _) => (Some(false), format!("owner down; {outside}")),
        (Verdict::Unknown, false, Reach::Unreachable) => {
            (Some(false), format!("owner unknown and {outside}"))
        }
        (_, true, Reach::Unreachable) => (
            Some(false),
            format!("owner's failure is shared fleet-wide but {outside}: steered away"),
        ),
        (_, false, Reach::Unreachable) => (
            Some(false),
            format!("owner up but {outside}: steered away (the PoP keeps announcing)"),
        ),
        (_, true, _) => (
            before,
            kept(
                "owner's failure is shared fleet-wide, verdict from before it",
                before,
            ),
        ),
        (Verdict::Up, false, _) => (Some(true), format!("owner up; {outside}")),
        (Verdict::Unknown, false, Reach::Reachable) => {
            (Some(true), format!("owner unknown; {outside}"))
        }
        (Verdict::Unknown, false, Reach::Unknown) => (previous, kept("nothing fresh", previous)),
    }
}

/// Merges the sources into the fleet view at `now`.
pub fn merge(s: &Sources<'_>, now: Instant) -> FleetView {
    let fresh = |p: &PeerReport| {
        p.received
            .is_some_and(|r| now < r + s.fleet.stale_after && p.report.is_some())
    };
    let mut pops: BTreeMap<PopName, PopView> = BTreeMap::new();
    for name in s.config.pops.keys() {
        let local = s.local.get(name);
        let view = match s.config.role(name) {
            Role::Local => local_view(local, &s.fleet.me),
            Role::Own | Role::Peer => fleet_pop(s, name, local, &fresh),
        };
        pops.insert(name.clone(), view);
    }
    if let Some(rule) = s.fleet.fail_static {
        fail_static(&mut pops, s.config, rule);
    }
    for (name, v) in pops.iter_mut() {
        if s.config.role(name) == Role::Local {
            // Decided by this node alone: its health and reason as is.
            v.state = decide::pop_state(v.health, v.admin.as_ref().map(|a| a.status.step));
            continue;
        }
        let prev = s.previous.and_then(|p| p.pops.get(name));
        let previous = prev.and_then(|p| p.health);
        // Kept through the owner's failure: what fail static holds.
        let before = prev.and_then(|p| p.before_failure);
        let (health, why) = health(
            v.owner.verdict,
            v.inside_held,
            if v.reach_held {
                Reach::Unknown
            } else {
                v.reachability
            },
            (v.reachable, v.unreachable),
            previous,
            before,
        );
        v.health = health;
        // A failure starts when the owner goes down or the outside cannot
        // reach the PoP, whichever is seen first.
        v.before_failure =
            if v.owner.verdict == Verdict::Down || v.reachability == Reach::Unreachable {
                before
            } else {
                health
            };
        v.why = match &v.fail_static {
            Some(f) => format!("fail static: {f}; {why}"),
            None => why,
        };
        v.state = decide::pop_state(v.health, v.admin.as_ref().map(|a| a.status.step));
        if let Some(a) = &v.admin {
            let held = match &a.status.held {
                Some(h) => format!(", held: {h}"),
                None => String::new(),
            };
            v.why = format!(
                "{} by {}: {}{held} (owner {}; {})",
                a.status.step, a.status.who, a.status.reason, a.from, v.why
            );
        }
    }
    FleetView { pops }
}

/// A PoP nobody in the fleet owns: this node's own verdict and admin
/// state.
fn local_view(local: Option<&Local>, me: &NodeName) -> PopView {
    let health = local.and_then(|l| l.health);
    PopView {
        owners: Vec::new(),
        owner: OwnerView {
            verdict: verdict_of(health),
            reported: Some(verdict_of(health)),
            fresh: true,
            received: None,
            reason: local.map(|l| l.reason.clone()).unwrap_or_default(),
            checks: local.map(|l| l.checks.clone()).unwrap_or_default(),
        },
        admin: local.and_then(|l| l.admin.clone()).map(|status| AdminView {
            status,
            from: me.clone(),
            received: None,
            fresh: true,
        }),
        vantage: BTreeMap::new(),
        reachability: Reach::Unknown,
        reachable: 0,
        unreachable: 0,
        inside_held: false,
        reach_held: false,
        fail_static: None,
        health,
        before_failure: health,
        state: PopState::Down,
        why: local.map(|l| l.reason.clone()).unwrap_or_default(),
    }
}

/// A PoP some fleet node owns: the owner side, the admin state and the
/// outside-in quorum (health is decided after the fail-static pass).
fn fleet_pop(
    s: &Sources<'_>,
    name: &PopName,
    local: Option<&Local>,
    fresh: &dyn Fn(&PeerReport) -> bool,
) -> PopView {
    let owners = s.fleet.owners.get(name).cloned().unwrap_or_default();
    let me = &s.fleet.me;
    // Owner side.
    let mut said: Vec<(Verdict, bool)> = Vec::new(); // (verdict, fresh)
    let mut owner = OwnerView {
        verdict: Verdict::Unknown,
        reported: None,
        fresh: false,
        received: None,
        reason: String::new(),
        checks: BTreeMap::new(),
    };
    let mut admin: Option<AdminView> = None;
    for o in &owners {
        let (verdict, is_fresh, received, reason, checks, adm) = if o == me {
            let Some(l) = local else { continue };
            (
                verdict_of(l.health),
                true,
                None,
                l.reason.clone(),
                l.checks.clone(),
                l.admin.clone(),
            )
        } else {
            let Some(peer) = s.peers.get(o) else { continue };
            let Some(pr) = peer
                .report
                .as_ref()
                .and_then(|r| r.pops.get(name))
                .filter(|p| p.role == ReportRole::Owner)
            else {
                continue;
            };
            (
                pr.verdict,
                fresh(peer),
                peer.received,
                pr.reason.clone(),
                pr.checks.clone(),
                pr.admin.as_ref().map(|a| a.status()),
            )
        };
        said.push((verdict, is_fresh));
        if owner.reported.is_none() {
            owner.reported = Some(verdict);
            owner.received = received;
            owner.reason = reason;
        }
        if is_fresh {
            owner.fresh = true;
            for (c, v) in checks {
                let e = owner.checks.entry(c).or_insert(v);
                if v == Verdict::Down {
                    *e = Verdict::Down;
                }
            }
        }
        if let Some(status) = adm {
            let worse = admin
                .as_ref()
                .is_none_or(|a| severity(status.step) > severity(a.status.step));
            if worse {
                admin = Some(AdminView {
                    status,
                    from: o.clone(),
                    received,
                    fresh: is_fresh,
                });
            }
        }
    }
    let fresh_said: Vec<Verdict> = said.iter().filter(|(_, f)| *f).map(|(v, _)| *v).collect();
    owner.verdict = if fresh_said.contains(&Verdict::Up) {
        Verdict::Up
    } else if !fresh_said.is_empty() && fresh_said.iter().all(|v| *v == Verdict::Down) {
        Verdict::Down
    } else {
        Verdict::Unknown
    };
    if !owner.fresh && owner.reported.is_some() {
        owner.reason = format!("report of the owner is stale (it said: {})", owner.reason);
    }
    // Vantage points: every fleet node that does not own the PoP.
    let mut vantage = BTreeMap::new();
    let (mut r, mut u) = (0u32, 0u32);
    for n in s.fleet.nodes() {
        if owners.contains(&n) {
            continue;
        }
        let v = if &n == me {
            VantageView {
                verdict: match local {
                    Some(l) if !l.checks.is_empty() => match l.health {
                        Some(true) => VantageVerdict::Up,
                        Some(false) => VantageVerdict::Down,
                        None => VantageVerdict::Unknown,
                    },
                    _ => VantageVerdict::NotProbed,
                },
                fresh: true,
                received: None,
            }
        } else {
            let peer = s.peers.get(&n);
            let pr = peer
                .and_then(|p| p.report.as_ref())
                .and_then(|r| r.pops.get(name))
                .filter(|p| p.role == ReportRole::Vantage);
            VantageView {
                verdict: match pr.map(|p| p.verdict) {
                    None => VantageVerdict::NotProbed,
                    Some(Verdict::Up) => VantageVerdict::Up,
                    Some(Verdict::Down) => VantageVerdict::Down,
                    Some(Verdict::Unknown) => VantageVerdict::Unknown,
                },
                fresh: peer.is_some_and(fresh),
                received: peer.and_then(|p| p.received),
            }
        };
        if v.fresh {
            match v.verdict {
                VantageVerdict::Up => r += 1,
                VantageVerdict::Down => u += 1,
                _ => {}
            }
        }
        vantage.insert(n, v);
    }
    PopView {
        owners,
        owner,
        admin,
        vantage,
        reachability: quorum(r, u, s.fleet.unreachable_quorum),
        reachable: r,
        unreachable: u,
        inside_held: false,
        reach_held: false,
        fail_static: None,
        health: None,
        before_failure: None,
        state: PopState::Down,
        why: String::new(),
    }
}

/// The fail-static pass: marks the PoPs whose every failure is shared by
/// at least `rule.fraction` (and `rule.min_pops`) of the PoPs.
fn fail_static(pops: &mut BTreeMap<PopName, PopView>, config: &Config, rule: FailStatic) {
    let shared = |down: usize, of: usize| {
        down >= rule.min_pops as usize && (down as f64) >= rule.fraction * (of as f64)
    };
    // Per check name: PoPs with a fresh inside verdict that have it, and
    // those where it is down.
    let mut has: BTreeMap<&CheckName, (Vec<&PopName>, Vec<&PopName>)> = BTreeMap::new();
    let (mut decided, mut unreachable) = (0usize, Vec::new());
    for (name, v) in pops.iter() {
        if v.owner.fresh {
            for (c, verdict) in &v.owner.checks {
                let e = has.entry(c).or_default();
                e.0.push(name);
                if *verdict == Verdict::Down {
                    e.1.push(name);
                }
            }
        }
        if config.role(name) != Role::Local && v.reachability != Reach::Unknown {
            decided += 1;
            if v.reachability == Reach::Unreachable {
                unreachable.push(name.clone());
            }
        }
    }
    let shared_checks: BTreeMap<CheckName, String> = has
        .iter()
        .filter(|(_, (all, down))| shared(down.len(), all.len()))
        .map(|(c, (all, down))| {
            let names: Vec<&str> = down.iter().map(|p| p.as_str()).collect();
            (
                (*c).clone(),
                format!(
                    "check {c} fails on {} of {} PoPs ({})",
                    down.len(),
                    all.len(),
                    names.join(", ")
                ),
            )
        })
        .collect();
    let reach_shared = shared(unreachable.len(), decided).then(|| {
        let names: Vec<&str> = unreachable.iter().map(|p| p.as_str()).collect();
        format!(
            "{} of {} PoPs unreachable from outside ({})",
            unreachable.len(),
            decided,
            names.join(", ")
        )
    });
    for (name, v) in pops.iter_mut() {
        if config.role(name) == Role::Local {
            continue;
        }
        let mut why: Vec<String> = Vec::new();
        if v.owner.verdict == Verdict::Down {
            let failing: Vec<&CheckName> = v
                .owner
                .checks
                .iter()
                .filter(|(_, x)| **x == Verdict::Down)
                .map(|(c, _)| c)
                .collect();
            if !failing.is_empty() && failing.iter().all(|c| shared_checks.contains_key(*c)) {
                v.inside_held = true;
                why.extend(failing.iter().map(|c| shared_checks[*c].clone()));
            }
        }
        if v.reachability == Reach::Unreachable {
            if let Some(w) = &reach_shared {
                v.reach_held = true;
                why.push(w.clone());
            }
        }
        if !why.is_empty() {
            v.fail_static = Some(why.join("; "));
        }
    }
}

/// The health the node's own PoP's announcement follows: its inside
/// verdict, except that a PoP announced when its inside verdict went down
/// (`before`) stays announced while the fail-static rule holds it
/// (`held`; announced again if it was withdrawn before the rule applied),
/// and for `window` after `since` — when the verdict went down, or when
/// the rule last stopped holding it — so that a failure the other PoPs
/// share is never withdrawn first and re-announced after, and a PoP whose
/// recovery is seen a little later than the others' is not withdrawn in
/// between. Returns the health and, while the window runs, when it ends.
pub fn announce_health(
    inside: Option<bool>,
    held: bool,
    before: Option<bool>,
    since: Instant,
    window: Option<Duration>,
    now: Instant,
) -> (Option<bool>, Option<Instant>) {
    if inside != Some(false) || before != Some(true) {
        return (inside, None);
    }
    if held {
        return (Some(true), None);
    }
    match window.map(|w| since + w) {
        Some(end) if now < end => (Some(true), Some(end)),
        _ => (inside, None),
    }
}
