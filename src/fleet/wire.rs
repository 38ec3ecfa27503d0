//! The fleet report on the wire, format 1: what `GET /v1/fleet/report`
//! answers and what the puller reads from a peer (docs/fleet.md). These
//! types own the format (field names, order, value spellings, Unix-second
//! times) and its OpenAPI schema; [`crate::core::fleet::Report`] is the
//! core's value, converted explicitly in both directions.
//!
//! A peer's report is input from outside the process: [`parse`] checks
//! the format number first (a report of another format is a clear error,
//! not a confusing missing field), then the shape (errors name the field's
//! path), then the values (names are validated like the config's). Fields
//! it does not know are ignored, so fields can be added within format 1; a
//! verdict it does not know reads as `unknown` (never as `down`); a role,
//! admin kind or admin step it does not know is an error, because acting
//! on a guess could drop an operator's drain.
//!
//! Converts only: whether a report is used (its node, its freshness) is
//! decided by the core.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::core::admin::Phase;
use crate::core::fleet::{Applied, PopReport, Report, ReportAdmin, ReportRole};
use crate::core::hysteresis::Verdict;
use crate::core::snapshot::AdminKind;
use crate::model::Name;

/// The report format this node writes and reads.
pub const FORMAT: u32 = 1;

/// One node's report (format 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReportV1 {
    /// The report format: 1.
    pub format: u32,
    /// The publisher (its `node.name`).
    pub node: String,
    /// The publisher's own PoP (its `node.pop`; `null` for a node without one).
    pub pop: Option<String>,
    /// Random per process start: revisions count from 1 again with a new
    /// instance.
    pub instance: String,
    /// Increases whenever the content changes (not for `generated_at`).
    pub revision: u64,
    /// Increases with every change of the admin state of the publisher's
    /// own PoPs.
    pub admin_revision: u64,
    /// Unix time the publisher built it (its clock; for humans only).
    pub generated_at: f64,
    /// Its own PoPs (inside view) and the PoPs it probes from outside.
    pub pops: BTreeMap<String, PopReportV1>,
    /// For each peer: the report of it this node acts on.
    #[serde(default)]
    pub applied: BTreeMap<String, AppliedV1>,
}

/// What the publisher says about one PoP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PopReportV1 {
    pub role: RoleV1,
    /// Inside verdict (owner) or outside-in verdict (vantage).
    pub verdict: VerdictV1,
    /// Unix time `verdict` last changed (the publisher's clock).
    pub decided_at: f64,
    /// The verdict in words.
    #[serde(default)]
    pub reason: String,
    /// The verdict of each check run for the PoP.
    #[serde(default)]
    pub checks: BTreeMap<String, VerdictV1>,
    /// The owner's drain or disable (owner entries only; `null` when none).
    #[serde(default)]
    pub admin: Option<AdminV1>,
}

/// Whether an entry is the owner's inside view or a vantage point's
/// outside-in view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleV1 {
    Owner,
    Vantage,
}

/// A verdict; a value this node does not know reads as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VerdictV1 {
    Up,
    Down,
    #[serde(other)]
    Unknown,
}

/// An owner's drain or disable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdminV1 {
    pub kind: AdminKindV1,
    pub step: StepV1,
    pub reason: String,
    pub who: String,
    /// Unix time the drain or disable was asked for.
    pub since: f64,
    /// Unix time of the next step or the auto-undrain, whichever is first.
    pub next_at: Option<f64>,
    /// Unix time of the auto-undrain.
    pub until: Option<f64>,
    /// `true` when the drain or disable was forced past the last-PoP
    /// guard (absent otherwise): such a drain never holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// Present only while the drain holds at the end of its DNS step (the
    /// last-PoP guard against the owner's fleet view): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminKindV1 {
    Drain,
    Disable,
}

/// The step of a drain (`dns_removed`, `shutdown`, `drained`,
/// `restoring`) or `disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepV1 {
    DnsRemoved,
    Shutdown,
    Drained,
    Restoring,
    Disabled,
}

/// Which report of a peer the publisher acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppliedV1 {
    pub instance: String,
    pub admin_revision: u64,
}

/// Why a peer's answer is not a report this node can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the answer is not a fleet report: {0}")]
    NotAReport(String),
    #[error("report format {0} is not supported (this node reads format {FORMAT}); upgrade the older node")]
    Format(String),
    #[error("invalid fleet report: {path}: {detail}")]
    Invalid { path: String, detail: String },
}

/// Parses a peer's report (format 1) into the core's value.
pub fn parse(bytes: &[u8]) -> Result<Report, ParseError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::NotAReport(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(ParseError::NotAReport("not a JSON object".into()));
    };
    match obj.get("format") {
        None => return Err(ParseError::NotAReport("no format field".into())),
        Some(f) if f.as_u64() == Some(u64::from(FORMAT)) => {}
        Some(f) => return Err(ParseError::Format(f.to_string())),
    }
    let wire: ReportV1 = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ParseError::Invalid {
            path,
            detail: e.into_inner().to_string(),
        }
    })?;
    wire.into_core()
}

fn name<K>(path: impl FnOnce() -> String, s: &str) -> Result<Name<K>, ParseError> {
    Name::parse(s).map_err(|detail| ParseError::Invalid {
        path: path(),
        detail,
    })
}

/// Names as map keys, each validated.
fn keyed<K, A, B>(
    field: &str,
    m: BTreeMap<String, A>,
    f: impl Fn(&str, A) -> Result<B, ParseError>,
) -> Result<BTreeMap<Name<K>, B>, ParseError> {
    m.into_iter()
        .map(|(k, v)| {
            let at = format!("{field}.{k}");
            Ok((name(|| field.to_string(), &k)?, f(&at, v)?))
        })
        .collect()
}

impl ReportV1 {
    /// The core's value; errors name the field.
    pub fn into_core(self) -> Result<Report, ParseError> {
        Ok(Report {
            node: name(|| "node".into(), &self.node)?,
            pop: self
                .pop
                .as_deref()
                .map(|p| name(|| "pop".into(), p))
                .transpose()?,
            instance: self.instance,
            revision: self.revision,
            admin_revision: self.admin_revision,
            generated_at: self.generated_at,
            pops: keyed("pops", self.pops, |at, p| p.into_core(at))?,
            applied: keyed("applied", self.applied, |_, a| {
                Ok(Applied {
                    instance: a.instance,
                    admin_revision: a.admin_revision,
                })
            })?,
        })
    }
}

impl PopReportV1 {
    fn into_core(self, at: &str) -> Result<PopReport, ParseError> {
        Ok(PopReport {
            role: match self.role {
                RoleV1::Owner => ReportRole::Owner,
                RoleV1::Vantage => ReportRole::Vantage,
            },
            verdict: self.verdict.into(),
            decided_at: self.decided_at,
            reason: self.reason,
            checks: keyed(&format!("{at}.checks"), self.checks, |_, v| Ok(v.into()))?,
            admin: self.admin.map(|a| ReportAdmin {
                kind: match a.kind {
                    AdminKindV1::Drain => AdminKind::Drain,
                    AdminKindV1::Disable => AdminKind::Disable,
                },
                step: a.step.into(),
                reason: a.reason,
                who: a.who,
                since: a.since,
                next_at: a.next_at,
                until: a.until,
                force: a.force,
                held: a.held,
            }),
        })
    }
}

impl From<&Report> for ReportV1 {
    fn from(r: &Report) -> ReportV1 {
        ReportV1 {
            format: FORMAT,
            node: r.node.to_string(),
            pop: r.pop.as_ref().map(|p| p.to_string()),
            instance: r.instance.clone(),
            revision: r.revision,
            admin_revision: r.admin_revision,
            generated_at: r.generated_at,
            pops: r
                .pops
                .iter()
                .map(|(n, p)| (n.to_string(), PopReportV1::from(p)))
                .collect(),
            applied: r
                .applied
                .iter()
                .map(|(n, a)| {
                    (
                        n.to_string(),
                        AppliedV1 {
                            instance: a.instance.clone(),
                            admin_revision: a.admin_revision,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl From<&PopReport> for PopReportV1 {
    fn from(p: &PopReport) -> PopReportV1 {
        PopReportV1 {
            role: match p.role {
                ReportRole::Owner => RoleV1::Owner,
                ReportRole::Vantage => RoleV1::Vantage,
            },
            verdict: p.verdict.into(),
            decided_at: p.decided_at,
            reason: p.reason.clone(),
            checks: p
                .checks
                .iter()
                .map(|(n, v)| (n.to_string(), VerdictV1::from(*v)))
                .collect(),
            admin: p.admin.as_ref().map(|a| AdminV1 {
                kind: match a.kind {
                    AdminKind::Drain => AdminKindV1::Drain,
                    AdminKind::Disable => AdminKindV1::Disable,
                },
                step: a.step.into(),
                reason: a.reason.clone(),
                who: a.who.clone(),
                since: a.since,
                next_at: a.next_at,
                until: a.until,
                force: a.force,
                held: a.held.clone(),
            }),
        }
    }
}

impl From<Verdict> for VerdictV1 {
    fn from(v: Verdict) -> VerdictV1 {
        match v {
            Verdict::Up => VerdictV1::Up,
            Verdict::Down => VerdictV1::Down,
            Verdict::Unknown => VerdictV1::Unknown,
        }
    }
}

impl From<VerdictV1> for Verdict {
    fn from(v: VerdictV1) -> Verdict {
        match v {
            VerdictV1::Up => Verdict::Up,
            VerdictV1::Down => Verdict::Down,
            VerdictV1::Unknown => Verdict::Unknown,
        }
    }
}

impl From<Phase> for StepV1 {
    fn from(p: Phase) -> StepV1 {
        match p {
            Phase::DnsRemoved => StepV1::DnsRemoved,
            Phase::Shutdown => StepV1::Shutdown,
            Phase::Drained => StepV1::Drained,
            Phase::Restoring => StepV1::Restoring,
            Phase::Disabled => StepV1::Disabled,
        }
    }
}

impl From<StepV1> for Phase {
    fn from(s: StepV1) -> Phase {
        match s {
            StepV1::DnsRemoved => Phase::DnsRemoved,
            StepV1::Shutdown => Phase::Shutdown,
            StepV1::Drained => Phase::Drained,
            StepV1::Restoring => Phase::Restoring,
            StepV1::Disabled => Phase::Disabled,
        }
    }
}

#[cfg(test)]
mod tests;
