//! What a node publishes to its fleet (`GET /v1/fleet/report`) and the
//! checks a report from a peer must pass before it is used.
//!
//! These are the core's values, times as Unix seconds as the publisher
//! stated them; the wire format and its parsing are `fleet::wire`'s.
//! [`build`] makes this node's report from its own state, pure: the same
//! inputs give the same report, and `revision` only moves when the content
//! does, so long-polling peers wake up for changes only.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::super::admin::Phase;
use super::super::hysteresis::Verdict;
use super::super::snapshot::{AdminKind, AdminStatus};
use super::Local;
use crate::model::{CheckName, Config, FleetPeer, NodeName, PopName, Role};
use crate::unix_time;

/// One node's report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The publisher (`node.name`).
    pub node: NodeName,
    /// The publisher's own PoP (`node.pop`).
    pub pop: Option<PopName>,
    /// Random per process start: revisions count from 1 again with a new
    /// instance.
    pub instance: String,
    /// Increases whenever the content changes (not for `generated_at`).
    pub revision: u64,
    /// Increases with every change of the admin state of the publisher's
    /// own PoPs.
    pub admin_revision: u64,
    /// When the publisher built it (its clock; for humans only).
    pub generated_at: f64,
    /// Its owned PoPs (inside view) and the PoPs it probes from outside.
    pub pops: BTreeMap<PopName, PopReport>,
    /// For each peer: the report of it this node acts on.
    pub applied: BTreeMap<NodeName, Applied>,
}

/// What the publisher says about one PoP.
#[derive(Debug, Clone, PartialEq)]
pub struct PopReport {
    pub role: ReportRole,
    /// Inside verdict (owner) or outside-in verdict (vantage).
    pub verdict: Verdict,
    /// When `verdict` last changed (the publisher's clock).
    pub decided_at: f64,
    pub reason: String,
    /// The verdict of each check run for it.
    pub checks: BTreeMap<CheckName, Verdict>,
    /// The owner's admin state (owner entries only).
    pub admin: Option<ReportAdmin>,
}

/// Whether a [`PopReport`] is the owner's or a vantage point's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportRole {
    Owner,
    Vantage,
}

/// An owner's drain or disable, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAdmin {
    pub kind: AdminKind,
    pub step: Phase,
    pub reason: String,
    pub who: String,
    pub since: f64,
    pub next_at: Option<f64>,
    pub until: Option<f64>,
    /// Taken out past the last-PoP guard: its drain never holds.
    pub force: bool,
    /// Why the drain holds at the end of its DNS step, while it does.
    pub held: Option<String>,
}

impl ReportAdmin {
    fn new(a: &AdminStatus) -> ReportAdmin {
        ReportAdmin {
            kind: a.kind,
            step: a.step,
            reason: a.reason.clone(),
            who: a.who.clone(),
            since: unix_time::secs(a.since),
            next_at: a.next_at.map(unix_time::secs),
            until: a.until.map(unix_time::secs),
            force: a.force,
            held: a.held.clone(),
        }
    }

    /// The admin state as this node shows it.
    pub fn status(&self) -> AdminStatus {
        AdminStatus {
            kind: self.kind,
            reason: self.reason.clone(),
            who: self.who.clone(),
            step: self.step,
            since: unix_time::from_secs(self.since),
            next_at: self.next_at.map(unix_time::from_secs),
            until: self.until.map(unix_time::from_secs),
            force: self.force,
            held: self.held.clone(),
        }
    }
}

/// Which report of a peer a node acts on: the confirmation a drain's DNS
/// step waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub instance: String,
    pub admin_revision: u64,
}

/// Why a peer's report is not used.
pub fn check(peer: &FleetPeer, r: &Report) -> Result<(), String> {
    if r.node != peer.name {
        return Err(format!(
            "the report is from node {:?}, expected {:?}: check fleet.peers[].url",
            r.node.as_str(),
            peer.name.as_str()
        ));
    }
    if r.pop != peer.pop {
        let show = |p: &Option<PopName>| p.as_ref().map_or("none".to_string(), |p| p.to_string());
        return Err(format!(
            "node {} says its pop is {}, this config says {}: the configs disagree",
            peer.name,
            show(&r.pop),
            show(&peer.pop)
        ));
    }
    Ok(())
}

/// This node's report: its own PoPs' inside view and admin state, its
/// outside-in view of the PoPs other nodes own (those it probes), and the
/// peer reports it acts on. `prev` is its previous report (revisions).
pub fn build(
    config: &Config,
    instance: &str,
    local: &BTreeMap<PopName, Local>,
    applied: BTreeMap<NodeName, Applied>,
    prev: Option<&Report>,
    now: SystemTime,
) -> Option<Report> {
    let fleet = config.fleet.as_ref()?;
    let mut pops = BTreeMap::new();
    for (name, l) in local {
        let role = match config.role(name) {
            Role::Own => ReportRole::Owner,
            Role::Peer if !l.checks.is_empty() => ReportRole::Vantage,
            Role::Peer | Role::Local => continue,
        };
        pops.insert(
            name.clone(),
            PopReport {
                role,
                verdict: match l.health {
                    Some(true) => Verdict::Up,
                    Some(false) => Verdict::Down,
                    None => Verdict::Unknown,
                },
                decided_at: unix_time::secs(l.since),
                reason: l.reason.clone(),
                checks: l.checks.clone(),
                admin: match role {
                    ReportRole::Owner => l.admin.as_ref().map(ReportAdmin::new),
                    ReportRole::Vantage => None,
                },
            },
        );
    }
    let mut r = Report {
        node: fleet.me.clone(),
        pop: config.node.pop.clone(),
        instance: instance.to_string(),
        revision: 1,
        admin_revision: 1,
        generated_at: unix_time::secs(now),
        pops,
        applied,
    };
    if let Some(p) = prev.filter(|p| p.instance == instance) {
        let admin = |r: &Report| -> Vec<(PopName, Option<ReportAdmin>)> {
            r.pops
                .iter()
                .filter(|(_, p)| p.role == ReportRole::Owner)
                .map(|(n, p)| (n.clone(), p.admin.clone()))
                .collect()
        };
        r.admin_revision = p.admin_revision + u64::from(admin(p) != admin(&r));
        let same = p.node == r.node
            && p.pop == r.pop
            && p.pops == r.pops
            && p.applied == r.applied
            && p.admin_revision == r.admin_revision;
        r.revision = p.revision + u64::from(!same);
        if same {
            r.generated_at = p.generated_at;
        }
    }
    Some(r)
}
