//! The merge: one test per row of the truth table in docs/fleet.md, the
//! admin and fail-static rules, the last-PoP guard at the end of a drain's
//! DNS step, the report's revisions, and properties over
//! random inputs (stale reports never count, one vantage point never steers
//! a PoP out, the owner's `down` and the admin state always win).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use tokio::time::Instant;

use super::guard;
use super::merge::{self, FleetView, PeerReport, Reach, Sources};
use super::report::{self, Applied, PopReport, Report, ReportAdmin, ReportRole};
use super::Local;
use crate::core::admin::Phase;
use crate::core::hysteresis::Verdict;
use crate::core::snapshot::{AdminKind, PopState};
use crate::model::{Config, Name, NodeName, PopName};

/// Node `a` of a fleet a, b, c (each owning the PoP of its name) and `d`
/// (a DNS-only node). Every PoP has an outside-capable tcp check `web` and
/// an inside-only `maintenance` file check.
fn config() -> Config {
    config_with("")
}

fn config_with(extra: &str) -> Config {
    parse(&yaml_with(extra))
}

fn parse(yaml: &str) -> Config {
    match crate::config::parse(yaml) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

fn yaml_with(extra: &str) -> String {
    let mut pops = String::new();
    for (p, ip) in [("a", "192.0.2.1"), ("b", "192.0.2.2"), ("c", "192.0.2.3")] {
        pops.push_str(&format!(
            "  - name: {p}
    addresses: [{ip}]
    checks:
      - {{name: web, type: tcp, target: \"{ip}:80\"}}
      - {{name: maintenance, type: file, path: /etc/anypop/maintenance}}
"
        ));
    }
    format!(
        "node: {{name: a, pop: a}}
pops:
{pops}fleet:
  peers:
    - {{name: b, pop: b, url: \"http://192.0.2.12:8080\"}}
    - {{name: c, pop: c, url: \"http://192.0.2.13:8080\"}}
    - {{name: d, url: \"http://192.0.2.14:8080\"}}
{extra}"
    )
}

fn n<K>(s: &str) -> Name<K> {
    Name::parse(s).expect("name")
}

fn verdict(h: Option<bool>) -> Verdict {
    match h {
        Some(true) => Verdict::Up,
        Some(false) => Verdict::Down,
        None => Verdict::Unknown,
    }
}

/// This node's own view: its PoP `a` from the inside, `b` and `c` from
/// the outside (`None` in `outside`: it does not probe that PoP).
fn local(
    inside: Option<bool>,
    outside: &[(&str, Option<Option<bool>>)],
) -> BTreeMap<PopName, Local> {
    let mut m = BTreeMap::new();
    m.insert(
        n("a"),
        Local {
            health: inside,
            since: SystemTime::UNIX_EPOCH,
            reason: String::new(),
            checks: [(n("web"), verdict(inside))].into_iter().collect(),
            admin: None,
        },
    );
    for (p, h) in outside {
        m.insert(
            n(p),
            Local {
                health: h.flatten(),
                since: SystemTime::UNIX_EPOCH,
                reason: String::new(),
                checks: match h {
                    Some(h) => [(n("web"), verdict(*h))].into_iter().collect(),
                    None => BTreeMap::new(),
                },
                admin: None,
            },
        );
    }
    m
}

/// A report of `node` (owning `pop`, if any): its inside verdict and admin
/// state of its PoP, and outside-in verdicts of others.
struct R {
    node: &'static str,
    pop: Option<&'static str>,
    inside: Option<bool>,
    admin: Option<Phase>,
    outside: Vec<(&'static str, Option<bool>)>,
}

fn report(r: &R) -> Report {
    let mut pops = BTreeMap::new();
    if let Some(p) = r.pop {
        pops.insert(
            n(p),
            PopReport {
                role: ReportRole::Owner,
                verdict: verdict(r.inside),
                decided_at: 1.0,
                reason: format!("inside {:?}", r.inside),
                checks: [(n("web"), verdict(r.inside))].into_iter().collect(),
                admin: r.admin.map(|step| ReportAdmin {
                    kind: if step == Phase::Disabled {
                        AdminKind::Disable
                    } else {
                        AdminKind::Drain
                    },
                    step,
                    reason: "maintenance".into(),
                    who: "alice".into(),
                    since: 1.0,
                    next_at: None,
                    until: None,
                    force: false,
                    held: None,
                }),
            },
        );
    }
    for (p, h) in &r.outside {
        pops.insert(
            n(p),
            PopReport {
                role: ReportRole::Vantage,
                verdict: verdict(*h),
                decided_at: 1.0,
                reason: String::new(),
                checks: [(n("web"), verdict(*h))].into_iter().collect(),
                admin: None,
            },
        );
    }
    Report {
        node: n(r.node),
        pop: r.pop.map(n),
        instance: format!("i-{}", r.node),
        revision: 1,
        admin_revision: 1,
        generated_at: 1.0,
        pops,
        applied: BTreeMap::new(),
    }
}

/// An owner's report of its PoP (named like the node) and nothing else.
fn owner(node: &'static str, inside: Option<bool>) -> R {
    R {
        node,
        pop: Some(node),
        inside,
        admin: None,
        outside: vec![],
    }
}

const STALE: Duration = Duration::from_secs(60);

/// Peers' reports, received at `now` (fresh) or `now - STALE` (stale).
fn peers(now: Instant, reports: &[(R, bool)]) -> BTreeMap<NodeName, PeerReport> {
    reports
        .iter()
        .map(|(r, fresh)| {
            let received = if *fresh { now } else { now - STALE };
            (
                n(r.node),
                PeerReport {
                    report: Some(Arc::new(report(r))),
                    received: Some(received),
                },
            )
        })
        .collect()
}

fn merge_at(
    config: &Config,
    local: &BTreeMap<PopName, Local>,
    peers: &BTreeMap<NodeName, PeerReport>,
    previous: Option<&FleetView>,
    now: Instant,
) -> FleetView {
    let fleet = config.fleet.as_ref().expect("fleet");
    merge::merge(
        &Sources {
            config,
            fleet,
            local,
            peers,
            previous,
        },
        now,
    )
}

/// PoP `c` as node `a` sees it: owner `c` says `owner` (`None`: unknown;
/// `stale`: its report is old), vantage points a, b, d say `votes`.
fn pop_c(owner: Option<bool>, owner_fresh: bool, votes: [Option<bool>; 3]) -> (FleetView, Instant) {
    pop_c_after(owner, owner_fresh, votes, None)
}

fn pop_c_after(
    owner: Option<bool>,
    owner_fresh: bool,
    votes: [Option<bool>; 3],
    previous: Option<&FleetView>,
) -> (FleetView, Instant) {
    let now = Instant::now() + STALE * 2;
    let config = config();
    let [va, vb, vd] = votes;
    let local = local(Some(true), &[("b", Some(Some(true))), ("c", Some(va))]);
    let peers = peers(
        now,
        &[
            (
                R {
                    node: "b",
                    pop: Some("b"),
                    inside: Some(true),
                    admin: None,
                    outside: vec![("a", Some(true)), ("c", vb)],
                },
                true,
            ),
            (
                R {
                    node: "c",
                    pop: Some("c"),
                    inside: owner,
                    admin: None,
                    outside: vec![],
                },
                owner_fresh,
            ),
            (
                R {
                    node: "d",
                    pop: None,
                    inside: None,
                    admin: None,
                    outside: vec![("a", Some(true)), ("b", Some(true)), ("c", vd)],
                },
                true,
            ),
        ],
    );
    (merge_at(&config, &local, &peers, previous, now), now)
}

fn c_of(v: &FleetView) -> &merge::PopView {
    &v.pops[&n("c")]
}

const UP: Option<bool> = Some(true);
const DOWN: Option<bool> = Some(false);
const UNK: Option<bool> = None;

// --- The truth table of docs/fleet.md, one test per row. ---

/// PoP c with owner `owner` (fresh or not) and vantage votes `votes` has
/// the outside-in quorum `reach`, the fleet health `health` (and the state
/// that follows), and a `why` containing `why`.
#[track_caller]
fn row(
    (owner, fresh): (Option<bool>, bool),
    votes: [Option<bool>; 3],
    reach: Reach,
    health: Option<bool>,
    why: &str,
) -> merge::PopView {
    let (v, _) = pop_c(owner, fresh, votes);
    let c = c_of(&v).clone();
    let state = if health == Some(true) {
        PopState::Up
    } else {
        PopState::Down
    };
    assert_eq!(c.reachability, reach, "{}", c.why);
    assert_eq!((c.health, c.state), (health, state), "{}", c.why);
    assert!(c.why.contains(why), "{:?} does not say {why:?}", c.why);
    c
}

#[test]
fn row_owner_up_reachable_is_up() {
    let c = row(
        (UP, true),
        [UP, UP, DOWN],
        Reach::Reachable,
        UP,
        "owner up; reachable from 2 of 3",
    );
    assert_eq!((c.reachable, c.unreachable), (2, 1));
}

#[test]
fn row_owner_up_outside_unknown_is_up() {
    row(
        (UP, true),
        [UNK, UNK, DOWN],
        Reach::Unknown,
        UP,
        "outside-in undecided",
    );
}

#[test]
fn row_owner_up_unreachable_is_steered_away() {
    let c = row(
        (UP, true),
        [DOWN, DOWN, UP],
        Reach::Unreachable,
        DOWN,
        "steered away",
    );
    assert!(c.disagrees());
}

#[test]
fn row_owner_down_reachable_is_down() {
    row(
        (DOWN, true),
        [UP, UP, UP],
        Reach::Reachable,
        DOWN,
        "owner down",
    );
}

#[test]
fn row_owner_down_outside_unknown_is_down() {
    row(
        (DOWN, true),
        [UNK, UNK, UNK],
        Reach::Unknown,
        DOWN,
        "owner down",
    );
}

#[test]
fn row_owner_down_unreachable_is_down() {
    let c = row(
        (DOWN, true),
        [DOWN, DOWN, DOWN],
        Reach::Unreachable,
        DOWN,
        "owner down",
    );
    assert!(!c.disagrees());
}

#[test]
fn row_owner_unknown_reachable_is_up() {
    // The owner's report is stale: it said down, which no longer counts.
    let c = row(
        (DOWN, false),
        [UP, UNK, UNK],
        Reach::Reachable,
        UP,
        "owner unknown",
    );
    assert_eq!(c.owner.verdict, Verdict::Unknown);
    assert_eq!(c.owner.reported, Some(Verdict::Down));
}

#[test]
fn row_owner_unknown_outside_unknown_holds_the_last_verdict() {
    // Never decided: undecided, not in DNS.
    row(
        (UNK, true),
        [UNK, UNK, UNK],
        Reach::Unknown,
        UNK,
        "nothing fresh",
    );
    // Up before: stays up when the owner goes silent and nobody probes.
    let (up, _) = pop_c(UP, true, [UNK, UNK, UNK]);
    let (held, _) = pop_c_after(DOWN, false, [UNK, UNK, UNK], Some(&up));
    assert_eq!(
        (c_of(&held).health, c_of(&held).state),
        (Some(true), PopState::Up)
    );
    assert!(
        c_of(&held).why.contains("nothing fresh: kept up"),
        "{}",
        c_of(&held).why
    );
    // Down before: stays down.
    let (down, _) = pop_c(DOWN, true, [UNK, UNK, UNK]);
    let (held, _) = pop_c_after(UP, false, [UNK, UNK, UNK], Some(&down));
    assert_eq!(c_of(&held).health, Some(false));
}

#[test]
fn row_owner_unknown_unreachable_is_down() {
    let c = row(
        (UP, false),
        [DOWN, DOWN, UNK],
        Reach::Unreachable,
        DOWN,
        "owner unknown",
    );
    assert_eq!(c.owner.verdict, Verdict::Unknown);
}

// --- Quorum and admin state. ---

#[test]
fn one_vantage_point_alone_never_steers_out() {
    let (v, _) = pop_c(UP, true, [DOWN, UNK, UNK]);
    assert_eq!(c_of(&v).reachability, Reach::Unknown);
    assert_eq!(c_of(&v).health, Some(true));
    // Two against two: not more unreachable than reachable.
    assert_eq!(merge::quorum(2, 2, 2), Reach::Reachable);
    assert_eq!(merge::quorum(0, 2, 2), Reach::Unreachable);
    assert_eq!(merge::quorum(0, 2, 3), Reach::Unknown);
}

#[test]
fn stale_vantage_votes_do_not_count() {
    let now = Instant::now() + STALE * 2;
    let config = config();
    let local = local(
        Some(true),
        &[("b", Some(Some(true))), ("c", Some(Some(false)))],
    );
    let stale_d = R {
        node: "d",
        pop: None,
        inside: None,
        admin: None,
        outside: vec![("c", Some(false))],
    };
    let peers = peers(now, &[(stale_d, false)]);
    let v = merge_at(&config, &local, &peers, None, now);
    let c = c_of(&v);
    assert_eq!((c.reachable, c.unreachable), (0, 1));
    assert!(!c.vantage[&n("d")].fresh);
    assert_eq!(c.reachability, Reach::Unknown);
}

#[test]
fn the_owners_admin_state_wins_and_outlives_its_report() {
    for (phase, state) in [
        (Phase::DnsRemoved, PopState::Draining),
        (Phase::Shutdown, PopState::Draining),
        (Phase::Drained, PopState::Draining),
        (Phase::Restoring, PopState::Draining),
        (Phase::Disabled, PopState::Disabled),
    ] {
        for fresh in [true, false] {
            let now = Instant::now() + STALE * 2;
            let config = config();
            let local = local(
                Some(true),
                &[("b", Some(Some(true))), ("c", Some(Some(true)))],
            );
            let c = R {
                node: "c",
                pop: Some("c"),
                inside: Some(true),
                admin: Some(phase),
                outside: vec![],
            };
            let v = merge_at(&config, &local, &peers(now, &[(c, fresh)]), None, now);
            let c = c_of(&v);
            assert_eq!(c.state, state, "{phase:?} fresh={fresh}");
            let a = c.admin.as_ref().expect("admin");
            assert_eq!((a.from.as_str(), a.fresh), ("c", fresh));
            assert!(
                c.why.contains("by alice: maintenance (owner c"),
                "{}",
                c.why
            );
        }
    }
}

#[test]
fn own_pop_uses_own_verdict_and_admin() {
    let now = Instant::now();
    let config = config();
    let mut local = local(Some(false), &[]);
    let v = merge_at(&config, &local, &BTreeMap::new(), None, now);
    assert_eq!(v.pops[&n("a")].health, Some(false));
    assert!(v.pops[&n("a")].owner.fresh);
    local.get_mut(&n("a")).expect("a").health = Some(true);
    let v = merge_at(&config, &local, &BTreeMap::new(), None, now);
    assert_eq!(v.pops[&n("a")].state, PopState::Up);
}

// --- Several owners of one PoP. ---

/// What one owner says: (inside verdict, admin phase, fresh), or nothing.
type Said = Option<(Option<bool>, Option<Phase>, bool)>;

/// Node `a`'s view of PoP c, owned by nodes c and e (two anypop nodes in
/// that PoP). `owners`: what c and e say, fresh or stale (`None`: no
/// report at all); nobody probes c from the outside.
fn two_owners(owners: [Said; 2], previous: Option<&FleetView>) -> FleetView {
    let c = parse(
        &yaml_with("    - {name: e, pop: c, url: \"http://192.0.2.15:8080\"}\n").replace(
            "  - name: c\n    addresses",
            "  - name: c\n    owners: [c, e]\n    addresses",
        ),
    );
    let now = Instant::now() + STALE * 2;
    let local = local(Some(true), &[("b", Some(Some(true))), ("c", None)]);
    let mut reports = Vec::new();
    for (node, said) in ["c", "e"].into_iter().zip(owners) {
        if let Some((inside, admin, fresh)) = said {
            let r = R {
                node,
                pop: Some("c"),
                inside,
                admin,
                outside: vec![],
            };
            reports.push((r, fresh));
        }
    }
    merge_at(&c, &local, &peers(now, &reports), previous, now)
}

#[test]
fn several_owners_any_fresh_owner_up_keeps_the_pop_up() {
    let fresh = |h| Some((h, None, true));
    // They disagree: the PoP is up (the owner that is up announces it).
    for (c, e) in [(UP, DOWN), (DOWN, UP), (UP, UNK), (UP, UP)] {
        let v = two_owners([fresh(c), fresh(e)], None);
        let p = c_of(&v);
        assert_eq!(p.owners, [n("c"), n("e")] as [NodeName; 2]);
        assert_eq!(p.owner.verdict, Verdict::Up, "c {c:?}, e {e:?}");
        assert_eq!((p.health, p.state), (UP, PopState::Up), "{}", p.why);
    }
    // Every fresh owner down: down.
    let v = two_owners([fresh(DOWN), fresh(DOWN)], None);
    assert_eq!(c_of(&v).owner.verdict, Verdict::Down);
    assert_eq!(c_of(&v).state, PopState::Down);
    // Down and unknown (an owner without a verdict yet): undecided.
    let v = two_owners([fresh(DOWN), fresh(UNK)], None);
    assert_eq!(c_of(&v).owner.verdict, Verdict::Unknown);
    assert_eq!(c_of(&v).health, None, "{}", c_of(&v).why);
}

#[test]
fn several_owners_a_stale_owner_does_not_count() {
    let fresh = |h| Some((h, None, true));
    let stale = |h| Some((h, None, false));
    // The stale owner said up, the fresh one says down: the fresh word
    // wins (the silent one may be gone; DNS must not send clients to a
    // PoP whose only live owner has its service down).
    let v = two_owners([stale(UP), fresh(DOWN)], None);
    assert_eq!(c_of(&v).owner.verdict, Verdict::Down);
    assert_eq!(c_of(&v).state, PopState::Down, "{}", c_of(&v).why);
    // The stale owner said down, the fresh one says up: up.
    let v = two_owners([stale(DOWN), fresh(UP)], None);
    assert_eq!(c_of(&v).state, PopState::Up, "{}", c_of(&v).why);
    // No report at all from one owner: the other decides.
    let v = two_owners([None, fresh(UP)], None);
    assert_eq!(c_of(&v).state, PopState::Up);
    let v = two_owners([None, fresh(DOWN)], None);
    assert_eq!(c_of(&v).state, PopState::Down);
    // Both stale: unknown, the last fleet verdict is kept (never down
    // because the owners went silent, never up from nothing).
    let up = two_owners([fresh(UP), fresh(UP)], None);
    let v = two_owners([stale(DOWN), stale(DOWN)], Some(&up));
    assert_eq!(c_of(&v).owner.verdict, Verdict::Unknown);
    assert_eq!((c_of(&v).health, c_of(&v).state), (UP, PopState::Up));
    assert!(
        c_of(&v).why.contains("nothing fresh: kept up"),
        "{}",
        c_of(&v).why
    );
    let v = two_owners([stale(UP), stale(UP)], None);
    assert_eq!(c_of(&v).health, None);
    let down = two_owners([fresh(DOWN), fresh(DOWN)], None);
    let v = two_owners([stale(UP), None], Some(&down));
    assert_eq!(c_of(&v).health, DOWN);
}

#[test]
fn several_owners_the_most_restrictive_admin_state_wins() {
    let with = |admin, fresh| Some((UP, admin, fresh));
    // One owner draining (fresh or stale): the PoP is draining, from it.
    for fresh in [true, false] {
        let v = two_owners([with(None, true), with(Some(Phase::Drained), fresh)], None);
        let p = c_of(&v);
        assert_eq!(p.state, PopState::Draining, "{}", p.why);
        let a = p.admin.as_ref().expect("admin");
        assert_eq!((a.from.as_str(), a.fresh), ("e", fresh));
    }
    // Drained and disabled: disabled; restoring and shutdown: shutdown.
    let v = two_owners(
        [
            with(Some(Phase::Disabled), true),
            with(Some(Phase::Drained), true),
        ],
        None,
    );
    assert_eq!(c_of(&v).state, PopState::Disabled);
    let v = two_owners(
        [
            with(Some(Phase::Restoring), true),
            with(Some(Phase::Shutdown), true),
        ],
        None,
    );
    let a = c_of(&v).admin.as_ref().expect("admin");
    assert_eq!((a.status.step, a.from.as_str()), (Phase::Shutdown, "e"));
}

// --- Fail static. ---

#[test]
fn a_check_failing_on_most_pops_holds_their_verdicts() {
    let now = Instant::now() + STALE * 2;
    let config = config();
    let peers_up = peers(
        now,
        &[
            (owner("b", Some(true)), true),
            (owner("c", Some(true)), true),
        ],
    );
    let before = merge_at(&config, &local(Some(true), &[]), &peers_up, None, now);
    assert!(before.pops.values().all(|p| p.state == PopState::Up));
    // `web` fails on a and b (2 of 3 ≥ 0.5, ≥ 2 PoPs): held; c is fine.
    let peers_down = peers(
        now,
        &[
            (owner("b", Some(false)), true),
            (owner("c", Some(true)), true),
        ],
    );
    let held = merge_at(
        &config,
        &local(Some(false), &[]),
        &peers_down,
        Some(&before),
        now,
    );
    for p in ["a", "b"] {
        let v = &held.pops[&n(p)];
        assert_eq!(v.state, PopState::Up, "{p}: {}", v.why);
        assert!(v.inside_held);
        let why = v.fail_static.as_deref().expect("fail static");
        assert!(
            why.contains("check web fails on 2 of 3 PoPs (a, b)"),
            "{why}"
        );
        assert!(v.why.starts_with("fail static: "), "{}", v.why);
    }
    assert!(held.pops[&n("c")].fail_static.is_none());
    // Never brings up a PoP that was not up.
    let cold = merge_at(&config, &local(Some(false), &[]), &peers_down, None, now);
    assert_eq!(cold.pops[&n("a")].health, None);
    // Off: the failures count as usual.
    let off = config_with("  fail_static: off\n");
    let v = merge_at(
        &off,
        &local(Some(false), &[]),
        &peers_down,
        Some(&before),
        now,
    );
    assert_eq!(v.pops[&n("a")].state, PopState::Down);
    assert_eq!(v.pops[&n("b")].state, PopState::Down);
}

#[test]
fn a_failure_on_one_pop_is_not_held() {
    let now = Instant::now() + STALE * 2;
    let config = config();
    let before = merge_at(
        &config,
        &local(Some(true), &[]),
        &BTreeMap::new(),
        None,
        now,
    );
    let peers = peers(now, &[(owner("b", UP), true), (owner("c", UP), true)]);
    let v = merge_at(
        &config,
        &local(Some(false), &[]),
        &peers,
        Some(&before),
        now,
    );
    assert_eq!(v.pops[&n("a")].state, PopState::Down);
    assert!(v.pops[&n("a")].fail_static.is_none());
}

/// Node a's view of a world where the PoPs in `down` fail `web`: their
/// owners say so from the inside and, with `outside`, every vantage point
/// (a, b, c, d) cannot reach them either.
fn shared_world(
    down: &[&str],
    outside: bool,
    now: Instant,
) -> (BTreeMap<PopName, Local>, BTreeMap<NodeName, PeerReport>) {
    shared_world_seen(down, if outside { down } else { &[] }, now)
}

/// Node a's view of a world where the owners of the PoPs in `down` see
/// `web` fail, and every vantage point (a, b, c, d) cannot reach the PoPs
/// in `unreachable`.
fn shared_world_seen(
    down: &[&str],
    unreachable: &[&str],
    now: Instant,
) -> (BTreeMap<PopName, Local>, BTreeMap<NodeName, PeerReport>) {
    let up = |p: &str| Some(!down.contains(&p));
    let seen = |p: &str| Some(!unreachable.contains(&p));
    let local = local(up("a"), &[("b", Some(seen("b"))), ("c", Some(seen("c")))]);
    let vantage = |me: &str| -> Vec<(&'static str, Option<bool>)> {
        POPS.iter()
            .filter(|p| **p != me)
            .map(|p| (*p, seen(p)))
            .collect()
    };
    let peers = peers(
        now,
        &[
            (
                R {
                    outside: vantage("b"),
                    ..owner("b", up("b"))
                },
                true,
            ),
            (
                R {
                    outside: vantage("c"),
                    ..owner("c", up("c"))
                },
                true,
            ),
            (
                R {
                    node: "d",
                    pop: None,
                    inside: None,
                    admin: None,
                    outside: vantage("d"),
                },
                true,
            ),
        ],
    );
    (local, peers)
}

/// Every order of three items.
fn orders(items: [&'static str; 3]) -> Vec<[&'static str; 3]> {
    let [x, y, z] = items;
    vec![
        [x, y, z],
        [x, z, y],
        [y, x, z],
        [y, z, x],
        [z, x, y],
        [z, y, x],
    ]
}

/// One merge after another, each with the previous view, as node a runs
/// them while the failures (and then the recoveries) arrive one PoP at a
/// time, in every order, with and without the outside-in view failing
/// too. With `min_pops` 2 (of 3 PoPs): the first PoP to fail is down on
/// its own; once a second one fails both are held up — the first one
/// comes back — and the third joins them; recoveries end the hold when
/// fewer than two PoPs fail, and the last one to recover is down until it
/// does. Nothing is ever down while the rule holds it.
#[test]
fn shared_failure_arriving_in_any_order_holds_every_pop_up() {
    let config = config();
    for outside in [false, true] {
        for fail in orders(POPS) {
            for recover in orders(POPS) {
                let now = Instant::now() + STALE * 2;
                let ctx = format!("outside {outside}, fail {fail:?}, recover {recover:?}");
                let (l, p) = shared_world(&[], outside, now);
                let mut view = merge_at(&config, &l, &p, None, now);
                assert!(view.pops.values().all(|v| v.state == PopState::Up), "{ctx}");
                // Failures, one PoP after another.
                for k in 1..=3 {
                    let down = &fail[..k];
                    let (l, p) = shared_world(down, outside, now);
                    view = merge_at(&config, &l, &p, Some(&view), now);
                    for pop in POPS {
                        let v = &view.pops[&n(pop)];
                        let failing = down.contains(&pop);
                        if k == 1 && failing {
                            assert_eq!(v.state, PopState::Down, "{ctx}, {pop}: {}", v.why);
                            assert!(v.fail_static.is_none(), "{ctx}, {pop}: {}", v.why);
                        } else {
                            assert_eq!(v.state, PopState::Up, "{ctx}, {pop}: {}", v.why);
                            assert_eq!(v.fail_static.is_some(), failing, "{ctx}, {pop}: {}", v.why);
                        }
                        if failing && k > 1 {
                            let why = v.fail_static.as_deref().unwrap_or_default();
                            let shared = format!("{k} of 3 PoPs");
                            assert!(why.contains(&shared), "{ctx}, {pop}: {why}");
                            assert!(v.why.starts_with("fail static: "), "{ctx}: {}", v.why);
                        }
                    }
                }
                // Recoveries, one PoP after another.
                for k in 1..=3 {
                    let down = &recover[k..];
                    let (l, p) = shared_world(down, outside, now);
                    view = merge_at(&config, &l, &p, Some(&view), now);
                    for pop in POPS {
                        let v = &view.pops[&n(pop)];
                        let failing = down.contains(&pop);
                        let held = failing && down.len() >= 2;
                        assert_eq!(v.fail_static.is_some(), held, "{ctx}, {pop}: {}", v.why);
                        let state = if failing && !held {
                            PopState::Down
                        } else {
                            PopState::Up
                        };
                        assert_eq!(v.state, state, "{ctx}, {pop}: {}", v.why);
                    }
                }
            }
        }
    }
}

/// With `min_pops: 3` the first two PoPs to fail are down until the third
/// fails too; then all three are back (the rule holds the verdict from
/// before each one's failure, not the verdict at the moment it applied).
/// A PoP that was down for another reason before the shared failure is
/// not brought up by it.
#[test]
fn pops_that_failed_before_the_rule_applied_come_back_with_it() {
    let config = config_with("  fail_static: {fraction: 0.5, min_pops: 3, window: 2s}\n");
    for fail in orders(POPS) {
        let now = Instant::now() + STALE * 2;
        let (l, p) = shared_world(&[], true, now);
        let mut view = merge_at(&config, &l, &p, None, now);
        for k in 1..=3 {
            let (l, p) = shared_world(&fail[..k], true, now);
            view = merge_at(&config, &l, &p, Some(&view), now);
        }
        for pop in POPS {
            let v = &view.pops[&n(pop)];
            assert_eq!(v.state, PopState::Up, "{fail:?}, {pop}: {}", v.why);
            assert_eq!(v.before_failure, Some(true), "{fail:?}, {pop}");
            let why = v.fail_static.as_deref().unwrap_or_default();
            assert!(
                why.contains("check web fails on 3 of 3 PoPs (a, b, c)"),
                "{why}"
            );
        }
    }
    // Before the third failure, two are down and nothing is held.
    let now = Instant::now() + STALE * 2;
    let (l, p) = shared_world(&[], false, now);
    let up = merge_at(&config, &l, &p, None, now);
    let (l, p) = shared_world(&["b", "c"], false, now);
    let two = merge_at(&config, &l, &p, Some(&up), now);
    for pop in ["b", "c"] {
        assert_eq!(two.pops[&n(pop)].state, PopState::Down, "{pop}");
        assert!(two.pops[&n(pop)].fail_static.is_none(), "{pop}");
    }
    // A PoP that never was up (no verdict before its failure) stays as it
    // was while the rule holds it.
    let (l, p) = shared_world(&["a", "b", "c"], false, now);
    let cold = merge_at(&config, &l, &p, None, now);
    for pop in POPS {
        let v = &cold.pops[&n(pop)];
        assert!(v.fail_static.is_some(), "{pop}");
        assert_eq!(v.health, None, "{pop}: {}", v.why);
    }
}

#[test]
fn announcement_waits_for_the_window_and_holds_shared_failures() {
    let t0 = Instant::now();
    let w = Some(Duration::from_secs(2));
    // Up and up: nothing to hold.
    assert_eq!(
        merge::announce_health(Some(true), false, Some(true), t0, w, t0),
        (Some(true), None)
    );
    // Just went down: held until the window ends.
    assert_eq!(
        merge::announce_health(
            Some(false),
            false,
            Some(true),
            t0,
            w,
            t0 + Duration::from_secs(1)
        ),
        (Some(true), Some(t0 + Duration::from_secs(2)))
    );
    // The window is over: withdrawn.
    assert_eq!(
        merge::announce_health(
            Some(false),
            false,
            Some(true),
            t0,
            w,
            t0 + Duration::from_secs(2)
        ),
        (Some(false), None)
    );
    // Shared failure: held as long as it lasts.
    assert_eq!(
        merge::announce_health(
            Some(false),
            true,
            Some(true),
            t0,
            w,
            t0 + Duration::from_secs(60)
        ),
        (Some(true), None)
    );
    // Never up: nothing to hold; rule off: no window.
    assert_eq!(
        merge::announce_health(Some(false), true, None, t0, w, t0),
        (Some(false), None)
    );
    assert_eq!(
        merge::announce_health(Some(false), false, Some(true), t0, None, t0),
        (Some(false), None)
    );
}

// --- The last-PoP guard at the end of a drain's DNS step. ---

/// PoPs a, b and c serve 203.0.113.0/24; d has no prefixes.
fn guard_pops() -> BTreeMap<PopName, crate::model::Pop> {
    let yaml = "node: {name: a, pop: a}
pops:
  - {name: a, prefixes: [203.0.113.0/24]}
  - {name: b, prefixes: [203.0.113.0/24]}
  - {name: c, prefixes: [203.0.113.0/24]}
  - {name: d}
";
    match crate::config::parse(yaml) {
        Ok(c) => c.pops.clone(),
        Err(e) => panic!("test config: {e}"),
    }
}

/// The fleet view as the guard reads it: every PoP up except those given
/// (`dns_step`: the drain's start and whether it was forced).
/// A PoP other than up: its state and its drain at the DNS step (start,
/// forced).
type Other<'a> = (&'a str, PopState, Option<(f64, bool)>);

fn seen_with(others: &[Other<'_>]) -> BTreeMap<PopName, guard::Seen> {
    let mut m: BTreeMap<PopName, guard::Seen> = ["a", "b", "c", "d"]
        .iter()
        .map(|p| {
            (
                n(p),
                guard::Seen {
                    state: PopState::Up,
                    dns_step: None,
                },
            )
        })
        .collect();
    for (p, state, dns_step) in others {
        m.insert(
            n(p),
            guard::Seen {
                state: *state,
                dns_step: *dns_step,
            },
        );
    }
    m
}

const T0: f64 = 1_700_000_000.0;

#[test]
fn a_drain_goes_on_while_another_pop_of_each_prefix_is_up() {
    let pops = guard_pops();
    let me = Some((T0, false));
    // b and c up, or only c.
    let s = seen_with(&[("a", PopState::Draining, me)]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("a"), T0), None);
    let s = seen_with(&[("a", PopState::Draining, me), ("b", PopState::Down, None)]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("a"), T0), None);
    // Nothing else up: the last PoP holds, whatever the others are.
    let s = seen_with(&[
        ("a", PopState::Draining, me),
        ("b", PopState::Down, None),
        ("c", PopState::Draining, None),
    ]);
    let why = guard::drain_hold(&pops, &s, &n("a"), T0).expect("held");
    assert_eq!(
        why,
        "last PoP in service for 203.0.113.0/24 (b down, c draining): held in dns_removed until another PoP of it is back in service"
    );
    // A PoP without prefixes withdraws nothing: never held.
    let s = seen_with(&[
        ("a", PopState::Down, None),
        ("b", PopState::Down, None),
        ("c", PopState::Down, None),
    ]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("d"), T0), None);
}

/// The last two PoPs of the prefix (c is down) drained within one round
/// trip, in both orders: the drain that started later holds, the other
/// goes on; both owners, each checking its own drain against the same
/// view, agree.
#[test]
fn of_two_drains_of_the_last_two_pops_the_later_one_holds() {
    let pops = guard_pops();
    for (first, second) in [("a", "b"), ("b", "a")] {
        let s = seen_with(&[
            (first, PopState::Draining, Some((T0, false))),
            (second, PopState::Draining, Some((T0 + 0.25, false))),
            ("c", PopState::Down, None),
        ]);
        assert_eq!(
            guard::drain_hold(&pops, &s, &n(first), T0),
            None,
            "{first} started first"
        );
        let why = guard::drain_hold(&pops, &s, &n(second), T0 + 0.25).expect("held");
        assert!(
            why.contains(&format!(
                "({first} draining, its drain started first, c down)"
            )),
            "{why}"
        );
        // The earlier drain went on (shutdown, no longer at the DNS step):
        // the later one still holds.
        let s = seen_with(&[
            (first, PopState::Draining, None),
            (second, PopState::Draining, Some((T0 + 0.25, false))),
            ("c", PopState::Down, None),
        ]);
        assert!(guard::drain_hold(&pops, &s, &n(second), T0 + 0.25).is_some());
        // Released when another PoP of the prefix is back: the earlier
        // one undrained, or c recovered.
        let later = Some((T0 + 0.25, false));
        let s = seen_with(&[
            (second, PopState::Draining, later),
            ("c", PopState::Down, None),
        ]);
        assert_eq!(guard::drain_hold(&pops, &s, &n(second), T0 + 0.25), None);
        let s = seen_with(&[
            (second, PopState::Draining, later),
            (first, PopState::Draining, None),
        ]);
        assert_eq!(guard::drain_hold(&pops, &s, &n(second), T0 + 0.25), None);
    }
}

/// Equal start times: the PoP whose name sorts later holds, seen from
/// either owner.
#[test]
fn equal_start_times_are_broken_by_the_pop_name() {
    let pops = guard_pops();
    let s = seen_with(&[
        ("a", PopState::Draining, Some((T0, false))),
        ("b", PopState::Draining, Some((T0, false))),
        ("c", PopState::Down, None),
    ]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("a"), T0), None);
    assert!(guard::drain_hold(&pops, &s, &n("b"), T0).is_some());
    // Three drains at once: only the last one in (start, name) order holds.
    let s = seen_with(&[
        ("a", PopState::Draining, Some((T0 + 1.0, false))),
        ("b", PopState::Draining, Some((T0, false))),
        ("c", PopState::Draining, Some((T0, false))),
    ]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("b"), T0), None);
    assert_eq!(guard::drain_hold(&pops, &s, &n("c"), T0), None);
    assert!(guard::drain_hold(&pops, &s, &n("a"), T0 + 1.0).is_some());
}

/// A drain forced past the guard never holds (the core does not ask), so
/// a later forced drain of the other PoP does not count as one that will
/// keep the prefix announced.
#[test]
fn a_forced_drain_does_not_count_as_one_that_holds() {
    let pops = guard_pops();
    let s = seen_with(&[
        ("a", PopState::Draining, Some((T0, false))),
        ("b", PopState::Draining, Some((T0 + 1.0, true))),
        ("c", PopState::Down, None),
    ]);
    let why = guard::drain_hold(&pops, &s, &n("a"), T0).expect("held");
    assert!(why.contains("b draining, forced"), "{why}");
}

/// At the scale the docs claim: PoPs a and b share 100,000 anycast
/// prefixes, except that only c announces b's last one. The guard finds
/// exactly the one prefix nobody else covers (one pass, no search per
/// prefix).
#[test]
fn the_guard_at_100k_shared_prefixes_names_the_one_left_uncovered() {
    let mut pops = guard_pops();
    let all: Vec<ipnet::IpNet> = (0..100_000u32)
        .map(|i| {
            let a = std::net::Ipv6Addr::new(
                0x2001,
                0xdb8,
                (i >> 8) as u16,
                ((i & 0xff) << 8) as u16,
                0,
                0,
                0,
                0,
            );
            ipnet::IpNet::new(a.into(), 56).expect("prefix")
        })
        .collect();
    let last = all[all.len() - 1];
    for (p, prefixes) in [
        ("a", &all[..all.len() - 1]),
        ("b", &all[..]),
        ("c", &all[all.len() - 1..]),
    ] {
        if let Some(pop) = pops.get_mut(&n(p)) {
            pop.prefixes = prefixes.to_vec();
        }
    }
    let s = seen_with(&[("b", PopState::Draining, Some((T0, false)))]);
    assert_eq!(guard::drain_hold(&pops, &s, &n("b"), T0), None);
    let s = seen_with(&[
        ("b", PopState::Draining, Some((T0, false))),
        ("c", PopState::Down, None),
    ]);
    let why = guard::drain_hold(&pops, &s, &n("b"), T0).expect("held");
    assert!(
        why.starts_with(&format!("last PoP in service for {last} (c down)")),
        "{why}"
    );
    let up = |p: &crate::model::Pop| p.name != n("c");
    assert_eq!(
        crate::core::decide::first_uncovered(&pops, &pops[&n("b")], up),
        Some(last)
    );
    assert_eq!(
        crate::core::decide::first_uncovered(&pops, &pops[&n("a")], up),
        None
    );
}

// --- The report. ---

#[test]
fn report_revision_moves_with_content_only() {
    let config = config();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let l = local(Some(true), &[("b", Some(Some(true))), ("c", None)]);
    let r1 = report::build(&config, "x", &l, BTreeMap::new(), None, t).expect("report");
    assert_eq!((r1.revision, r1.admin_revision), (1, 1));
    assert_eq!(r1.pops[&n("a")].role, ReportRole::Owner);
    assert_eq!(r1.pops[&n("b")].role, ReportRole::Vantage);
    assert!(!r1.pops.contains_key(&n("c")), "c is not probed");
    let later = t + Duration::from_secs(5);
    let r2 = report::build(&config, "x", &l, BTreeMap::new(), Some(&r1), later).expect("report");
    assert_eq!(r2, r1);
    let applied: BTreeMap<NodeName, Applied> = [(
        n("b"),
        Applied {
            instance: "i".into(),
            admin_revision: 3,
        },
    )]
    .into_iter()
    .collect();
    let r3 = report::build(&config, "x", &l, applied, Some(&r2), later).expect("report");
    assert_eq!((r3.revision, r3.admin_revision), (2, 1));
    // A new instance starts again at 1.
    let r4 = report::build(&config, "y", &l, BTreeMap::new(), Some(&r3), later).expect("report");
    assert_eq!((r4.revision, r4.admin_revision), (1, 1));
}

#[test]
fn report_checks_catch_wiring_mistakes() {
    let config = config();
    let fleet = config.fleet.as_ref().expect("fleet");
    let b = &fleet.peers[&n("b")];
    let mut r = report(&owner("b", Some(true)));
    assert_eq!(report::check(b, &r), Ok(()));
    r.node = n("c");
    assert!(report::check(b, &r).is_err_and(|e| e.contains("check fleet.peers[].url")));
    r.node = n("b");
    r.pop = Some(n("c"));
    assert!(report::check(b, &r).is_err_and(|e| e.contains("the configs disagree")));
}

// --- Properties. ---

fn h() -> impl Strategy<Value = Option<bool>> {
    prop_oneof![Just(None), Just(Some(true)), Just(Some(false))]
}

fn phase() -> impl Strategy<Value = Option<Phase>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(Phase::DnsRemoved)),
        1 => Just(Some(Phase::Drained)),
        1 => Just(Some(Phase::Disabled)),
    ]
}

/// One random peer: present or not, fresh or stale, its inside verdict,
/// admin state and outside-in verdicts of a, b, c.
#[derive(Debug, Clone)]
struct Gen {
    present: bool,
    fresh: bool,
    inside: Option<bool>,
    admin: Option<Phase>,
    outside: [Option<Option<bool>>; 3],
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        any::<bool>(),
        h(),
        phase(),
        prop::array::uniform3(prop::option::of(h())),
    )
        .prop_map(|(present, fresh, inside, admin, outside)| Gen {
            present,
            fresh,
            inside,
            admin,
            outside,
        })
}

#[derive(Debug, Clone)]
struct World {
    inside: Option<bool>,
    outside: [Option<Option<bool>>; 2],
    peers: [Gen; 3],
    previous: [Option<bool>; 3],
}

fn world() -> impl Strategy<Value = World> {
    (
        h(),
        prop::array::uniform2(prop::option::of(h())),
        prop::array::uniform3(gen()),
        prop::array::uniform3(h()),
    )
        .prop_map(|(inside, outside, peers, previous)| World {
            inside,
            outside,
            peers,
            previous,
        })
}

const NODES: [(&str, Option<&str>); 3] = [("b", Some("b")), ("c", Some("c")), ("d", None)];
const POPS: [&str; 3] = ["a", "b", "c"];

/// The merge of `w` (with the stale peers' verdicts replaced by `flip`ped
/// ones when `flip_stale`).
fn run(w: &World, flip_stale: bool, now: Instant) -> FleetView {
    let config = config();
    let local = local(w.inside, &[("b", w.outside[0]), ("c", w.outside[1])]);
    let mut reports = Vec::new();
    for ((node, pop), g) in NODES.iter().zip(&w.peers) {
        if !g.present {
            continue;
        }
        let flip = |x: Option<bool>| {
            if flip_stale && !g.fresh {
                x.map(|b| !b).or(Some(false))
            } else {
                x
            }
        };
        let outside = POPS
            .iter()
            .zip(g.outside)
            .filter(|(p, _)| Some(**p) != *pop)
            .filter_map(|(p, o)| o.map(|o| (*p, flip(o))))
            .collect();
        reports.push((
            R {
                node,
                pop: *pop,
                inside: flip(g.inside),
                admin: g.admin,
                outside,
            },
            g.fresh,
        ));
    }
    let peers = peers(now, &reports);
    let mut previous = FleetView::default();
    for (p, prev) in POPS.iter().zip(w.previous) {
        let mut v = merge_at(&config, &local, &BTreeMap::new(), None, now).pops[&n(p)].clone();
        v.health = prev;
        v.before_failure = prev;
        previous.pops.insert(n(p), v);
    }
    merge_at(&config, &local, &peers, Some(&previous), now)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What a stale report says never matters (its admin state aside,
    /// which is kept on purpose).
    #[test]
    fn stale_report_content_never_counts(w in world()) {
        let now = Instant::now() + STALE * 2;
        let a = run(&w, false, now);
        let b = run(&w, true, now);
        for p in POPS {
            prop_assert_eq!(a.pops[&n(p)].health, b.pops[&n(p)].health, "pop {}", p);
            prop_assert_eq!(a.pops[&n(p)].state, b.pops[&n(p)].state, "pop {}", p);
        }
    }

    /// With every peer silent, a PoP another node owns is never taken
    /// down: it keeps its last verdict or is up from this node's probes.
    #[test]
    fn silent_peers_never_turn_a_pop_down(mut w in world()) {
        for g in &mut w.peers { g.fresh = false; }
        let v = run(&w, false, Instant::now() + STALE * 2);
        for (i, p) in ["b", "c"].iter().enumerate() {
            let health = v.pops[&n(p)].health;
            prop_assert!(health == Some(true) || health == w.previous[i + 1], "pop {}: {:?}", p, health);
        }
    }

    /// One vantage point that cannot reach a PoP never takes it down.
    #[test]
    fn one_vantage_point_never_makes_a_pop_down(w in world()) {
        let v = run(&w, false, Instant::now() + STALE * 2);
        for (i, p) in POPS.iter().enumerate() {
            let pv = &v.pops[&n(p)];
            if pv.owner.verdict != Verdict::Down && pv.unreachable <= 1 {
                prop_assert!(
                    pv.health == Some(true) || pv.health == w.previous[i],
                    "pop {}: {:?} ({})", p, pv.health, pv.why
                );
            }
        }
    }

    /// Any sequence of failure states, starting with every PoP up. Each
    /// step: which PoPs' owners see `web` fail and which PoPs every vantage
    /// point cannot reach — so the outside may see a failure before the
    /// owner does, or after. Whatever the order: a PoP whose inside failure
    /// the rule holds is up unless an outside-in failure the rule does not
    /// hold steers it away; a failure it does not hold takes the PoP down;
    /// `fail_static` says exactly when the rule applies; and once every
    /// check recovers nothing is held.
    #[test]
    fn fail_static_holds_up_whatever_the_order(
        steps in prop::collection::vec(
            (prop::array::uniform3(any::<bool>()), prop::array::uniform3(any::<bool>())),
            1..10,
        ),
    ) {
        let config = config();
        let now = Instant::now() + STALE * 2;
        let (l, p) = shared_world(&[], false, now);
        let mut view = merge_at(&config, &l, &p, None, now);
        let set = |f: [bool; 3]| -> Vec<&str> {
            POPS.iter().zip(f).filter(|(_, x)| *x).map(|(p, _)| *p).collect()
        };
        let last = ([false; 3], [false; 3]);
        for (i, (inside, outside)) in steps.iter().copied().chain([last]).enumerate() {
            let (down, unreachable) = (set(inside), set(outside));
            let (l, p) = shared_world_seen(&down, &unreachable, now);
            view = merge_at(&config, &l, &p, Some(&view), now);
            for pop in POPS {
                let v = &view.pops[&n(pop)];
                let held_inside = down.contains(&pop) && down.len() >= 2;
                let held_outside = unreachable.contains(&pop) && unreachable.len() >= 2;
                let steered = unreachable.contains(&pop) && !held_outside;
                let state = if steered || (down.contains(&pop) && !held_inside) {
                    PopState::Down
                } else {
                    PopState::Up
                };
                let ctx = format!("step {i}: down {down:?}, unreachable {unreachable:?}, {pop}: {}", v.why);
                prop_assert_eq!(v.state, state, "{}", ctx);
                prop_assert_eq!(v.fail_static.is_some(), held_inside || held_outside, "{}", ctx);
            }
        }
        prop_assert!(view.pops.values().all(|v| v.fail_static.is_none()));
    }

    /// A fresh owner's `down` always wins over the outside's reachable
    /// (unless fail static holds a shared failure), and an admin state
    /// always wins over health.
    #[test]
    fn owner_down_and_admin_always_win(w in world()) {
        let v = run(&w, false, Instant::now() + STALE * 2);
        for p in POPS {
            let pv = &v.pops[&n(p)];
            if pv.owner.verdict == Verdict::Down && !pv.inside_held {
                prop_assert_eq!(pv.health, Some(false));
            }
            match pv.admin.as_ref().map(|a| a.status.step) {
                Some(Phase::Disabled) => prop_assert_eq!(pv.state, PopState::Disabled),
                Some(_) => prop_assert_eq!(pv.state, PopState::Draining),
                None => prop_assert_eq!(pv.state == PopState::Up, pv.health == Some(true)),
            }
        }
    }
}
