//! The role agent's decisions, for members whose role is found by a process running next to
//! them (`berth agent` in the member's pod) instead of by the operator's `pods/exec`:
//! - [`next_label`]: what a member's role label should become after one probe, given what its
//!   pod carries now; `None` when nothing is to be written (the common case: the role holds,
//!   and then the agent makes no request at all);
//! - [`stale_writers`]: among the members of a part, those still labelled with a writable role
//!   although another member reported that role in a newer term, so a Service never points at
//!   two writers because one of them could not relabel itself;
//! - [`unready`]: when the agent must take its member out of every Service (its readiness
//!   fails) because a label it has to change cannot be written.
//!
//! A probe prints its role on its first non-empty line, optionally followed by a term (a whole
//! number that grows with every election, such as Raft's term): `leader 7`
//! ([`crate::topology::report_from_probe_output`]). The term is kept next to the label (the
//! pod annotation `berth.io/role-term`), so an older report never overwrites a newer one.

use std::time::Duration;

use crate::spec::RoleSpec;

/// A role probe's report: the role a member holds, and the term it holds it in, if the probe
/// prints one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The role's name, one of the part's `roles`.
    pub role: String,
    /// The term it was reported in.
    pub term: Option<u64>,
}

/// The role label (and term) a member's pod carries, or should carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labelled {
    /// The `berth.io/role` label; `None` when the pod has none.
    pub role: Option<String>,
    /// The `berth.io/role-term` annotation; `None` when the pod has none.
    pub term: Option<u64>,
}

/// What one probe run saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The probe exited 0 and printed a role.
    Reported(Report),
    /// The probe failed, timed out or printed nothing: the member holds no role it could name.
    Failed,
}

/// The label the pod should carry after `seen`, when it differs from `current`.
///
/// - A failed probe removes the role at once (the agent probes next to the member, so a
///   failure is the member's, not the network's); the term is kept, so a report older than the
///   last one still loses.
/// - A report in an older term than the pod's is stale and changes nothing.
/// - Otherwise the reported role and term are written if either differs.
pub fn next_label(current: &Labelled, seen: &Observation) -> Option<Labelled> {
    let wanted = match seen {
        Observation::Failed => Labelled {
            role: None,
            term: current.term,
        },
        Observation::Reported(report) => {
            if is_older(report.term, current.term) {
                return None;
            }
            Labelled {
                role: Some(report.role.clone()),
                term: report.term.or(current.term),
            }
        }
    };
    (wanted != *current).then_some(wanted)
}

/// Whether a report in term `reported` is older than the term `known` already written.
fn is_older(reported: Option<u64>, known: Option<u64>) -> bool {
    matches!((reported, known), (Some(r), Some(k)) if r < k)
}

/// What an agent knows when it judges its readiness.
#[derive(Clone, Debug)]
pub struct AgentView<'a> {
    /// A label change it had to make could not be written (or its pod is not known yet).
    pub pending: bool,
    /// The label its pod carries, once known.
    pub label: Option<&'a Labelled>,
    /// The part's writable roles.
    pub writable: &'a [String],
    /// How long its watch of the API server has been failing, if it is.
    pub api_lost_for: Option<Duration>,
    /// The probe period.
    pub period: Duration,
}

/// Whether the agent must fail its readiness: a label change is pending, or its member holds a
/// writable role and the API server has been out of reach for longer than a probe period.
/// Then the pod leaves every Service until the label is right again; a member holding a
/// read-only role keeps serving reads through an API server outage.
pub fn unready(view: &AgentView) -> bool {
    let holds_writable = view
        .label
        .and_then(|l| l.role.as_ref())
        .is_some_and(|r| view.writable.contains(r));
    let api_lost = view.api_lost_for.is_some_and(|d| d > view.period);
    view.pending || (holds_writable && api_lost)
}

/// A member as the operator sees it: its name and its pod's label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberLabel {
    /// The member's (pod's) name.
    pub name: String,
    /// What its pod carries.
    pub label: Labelled,
}

/// The members whose writable role label must go, each with the label it must carry
/// instead: when several members of a part carry a writable role, those reported in an older
/// term than the newest one lose their role and take the newest term, so that their own
/// reports from the older term ([`next_label`]) cannot label them again. Members without a
/// term are never judged (a probe that prints no term cannot be ordered); nor are members
/// when only one holds a writable role. Parts with `multipleWriters` are not passed here.
pub fn stale_writers(roles: &[RoleSpec], members: &[MemberLabel]) -> Vec<MemberLabel> {
    let writable = |m: &&MemberLabel| {
        m.label
            .role
            .as_deref()
            .is_some_and(|r| roles.iter().any(|s| s.name == r && s.writable))
    };
    let writers: Vec<&MemberLabel> = members.iter().filter(writable).collect();
    if writers.len() < 2 {
        return Vec::new();
    }
    let Some(newest) = writers.iter().filter_map(|m| m.label.term).max() else {
        return Vec::new();
    };
    writers
        .iter()
        .filter(|m| m.label.term.is_some_and(|t| t < newest))
        .map(|m| MemberLabel {
            name: m.name.clone(),
            label: Labelled {
                role: None,
                term: Some(newest),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests;
