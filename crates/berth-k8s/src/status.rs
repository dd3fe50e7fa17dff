//! The app's status as a pure function of what the operator observed: workloads, pods and the
//! clock, and the core lifecycle's word on each StatefulSet part (stuck members, failing
//! switchovers). The operator only fetches and writes; every other judgement (ready,
//! progressing) is here.

use std::collections::BTreeMap;

use berth_core::lifecycle::DEFAULT_PROGRESS_DEADLINE_SECONDS;
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::phase::{self, Health, Phase};
use berth_core::spec::{
    Condition, MemberStatus, PartSpec, PartStatus, RestorePhase, RestoreStatus, StatefulAppStatus,
    StatusSummary, WorkloadKind,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::member::{self, ready_condition};

/// What the operator saw of one app in the cluster.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// StatefulSets by name.
    pub stateful_sets: BTreeMap<String, StatefulSet>,
    /// Deployments by name.
    pub deployments: BTreeMap<String, Deployment>,
    /// DaemonSets by name.
    pub daemon_sets: BTreeMap<String, DaemonSet>,
    /// The app's pods.
    pub pods: Vec<Pod>,
    /// Workload generations just applied, by name: caches may not have seen them yet.
    pub applied_generations: BTreeMap<String, i64>,
    /// What the core's lifecycle decided for each StatefulSet part this reconcile, by part name.
    pub lifecycle: BTreeMap<String, PartLifecycle>,
    /// The phase the app's status showed before this reconcile.
    pub previous_phase: Option<Phase>,
    /// The restore from `spec.restoreFrom`, as the operator knows it.
    pub restore: Option<RestoreStatus>,
}

/// What the core's lifecycle ([`berth_core::lifecycle::decide`]) said of a StatefulSet part.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartLifecycle {
    /// Members unready on the new revision past the progress deadline.
    pub stuck: Vec<String>,
    /// Why the part is Degraded, if it is.
    pub degraded: Option<String>,
    /// The switchover to remember (in the part's status).
    pub switchover: Option<berth_core::lifecycle::SwitchoverRecord>,
}

impl PartLifecycle {
    /// The Degraded condition's reason for this part.
    fn reason(&self) -> &'static str {
        match &self.switchover {
            Some(record) if record.failure.is_some() => "SwitchoverFailed",
            _ => "MemberStuck",
        }
    }
}

impl Observed {
    /// Whether the controller of workload `name` has observed its latest spec: until then its
    /// status (replicas, revisions) describes an older spec.
    pub fn caught_up(&self, name: &str) -> bool {
        let (generation, observed) = if let Some(w) = self.stateful_sets.get(name) {
            (
                w.metadata.generation,
                w.status.as_ref().and_then(|s| s.observed_generation),
            )
        } else if let Some(w) = self.deployments.get(name) {
            (
                w.metadata.generation,
                w.status.as_ref().and_then(|s| s.observed_generation),
            )
        } else if let Some(w) = self.daemon_sets.get(name) {
            (
                w.metadata.generation,
                w.status.as_ref().and_then(|s| s.observed_generation),
            )
        } else {
            return false;
        };
        let wanted = generation.max(self.applied_generations.get(name).copied());
        observed.is_some() && observed >= wanted
    }
}

/// The status of a valid app.
pub fn compute(
    app: &ValidatedApp,
    generation: Option<i64>,
    observed: &Observed,
    now: Timestamp,
) -> StatefulAppStatus {
    let app_name = app.name();
    let parts: Vec<PartStatus> = app
        .parts()
        .iter()
        .map(|p| part_status(&app_name, p, observed))
        .collect();
    let progress: Vec<Progress> = app
        .parts()
        .iter()
        .map(|p| Progress::of(p, observed, &app_name))
        .collect();
    let desired: Vec<i32> = progress.iter().map(|p| p.desired).collect();
    let health = Health {
        settled: parts.iter().zip(&progress).all(|(s, p)| p.settled(s)),
        started: parts.iter().any(|p| p.replicas > 0) || desired.iter().all(|d| *d == 0),
        changing: parts.iter().zip(&progress).any(|(s, p)| p.changing(s)),
        degraded: degraded(app, observed, now),
    };
    let phase = phase::phase(observed.previous_phase, &health);
    let not_ready = not_ready_message(&parts, &progress);
    let mut conditions = phase::conditions(phase, &health, &not_ready);
    for c in &mut conditions {
        c.observed_generation = generation;
    }
    StatefulAppStatus {
        observed_generation: generation,
        phase: Some(phase.to_string()),
        conditions,
        summary: Some(summary(app, &parts, &desired)),
        parts,
        extra_objects: Vec::new(),
        restore: observed.restore.clone(),
    }
}

/// How far a part is from settled: its wanted size, how many members must run the update
/// revision (members below a partition stay on the old one on purpose), whether its
/// controller has seen the applied spec, whether a scale is under way (the StatefulSet's
/// admitted size is not the wanted one yet).
struct Progress {
    desired: i32,
    to_update: i32,
    caught_up: bool,
    scaling: bool,
}

impl Progress {
    fn of(part: &PartSpec, observed: &Observed, app: &str) -> Self {
        let desired = desired_members(part, observed, app);
        let name = names::workload_name(app, &part.name);
        let admitted = observed
            .stateful_sets
            .get(&name)
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas);
        Self {
            desired,
            to_update: desired - part.update.partition.unwrap_or(0).clamp(0, desired),
            caught_up: observed.caught_up(&name),
            scaling: admitted.is_some_and(|a| a != desired),
        }
    }

    /// Whether a change of the spec is still being carried out in the part (rather than a
    /// member having lost its readiness on its own).
    fn changing(&self, status: &PartStatus) -> bool {
        !self.caught_up || self.scaling || status.updated < self.to_update
    }

    fn settled(&self, status: &PartStatus) -> bool {
        self.caught_up
            && status.ready == self.desired
            && status.updated >= self.to_update
            && status.replicas == self.desired
    }
}

/// What keeps the parts that are not settled from it, one clause per part.
fn not_ready_message(parts: &[PartStatus], progress: &[Progress]) -> String {
    parts
        .iter()
        .zip(progress)
        .filter(|(s, p)| !p.settled(s))
        .map(|(s, p)| {
            let waiting = if p.caught_up {
                ""
            } else {
                ", waiting for its controller to observe the new spec"
            };
            format!(
                "{}: {}/{} ready, {} updated{waiting}{}",
                s.name,
                s.ready,
                p.desired,
                s.updated,
                not_ready_members(s)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The status of an app that does not validate: `Ready=False` with the validation messages.
pub fn invalid(generation: Option<i64>, messages: &str) -> StatefulAppStatus {
    StatefulAppStatus {
        observed_generation: generation,
        phase: Some(Phase::Invalid.to_string()),
        conditions: vec![
            condition("Ready", false, "Invalid", messages, generation),
            condition(
                "Progressing",
                false,
                "Invalid",
                "nothing is applied until the spec is fixed",
                generation,
            ),
            condition("Degraded", false, "Invalid", "", generation),
        ],
        summary: Some(StatusSummary {
            parts: String::new(),
            ready: "-".to_string(),
        }),
        parts: Vec::new(),
        extra_objects: Vec::new(),
        restore: None,
    }
}

/// Marks `status` as blocked: nothing of the current spec was applied, for `reason`
/// (`Conflict`, `ApplyFailed`) explained by `message`. Members keep running as they are.
pub fn blocked(status: &mut StatefulAppStatus, reason: &str, message: &str) {
    status.phase = Some(Phase::Blocked.to_string());
    for c in &mut status.conditions {
        match c.type_.as_str() {
            "Ready" | "Progressing" => {
                c.status = "False".to_string();
                c.reason = reason.to_string();
                c.message = message.chars().take(1024).collect();
            }
            _ => {}
        }
    }
}

/// Whether `new` says the same as `old` about readiness (the Ready condition's status, reason
/// and message): a Warning about it was published already then.
pub fn same_readiness(old: Option<&StatefulAppStatus>, new: &StatefulAppStatus) -> bool {
    let ready = |s: &StatefulAppStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    old.and_then(ready).is_some_and(|o| Some(o) == ready(new))
}

/// Keeps each condition's previous transition time when its status did not change.
pub fn carry_transition_times(
    new: &mut StatefulAppStatus,
    old: Option<&StatefulAppStatus>,
    now: Timestamp,
) {
    for c in &mut new.conditions {
        let previous = old.and_then(|o| o.conditions.iter().find(|p| p.type_ == c.type_));
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status && p.last_transition_time.is_some() => {
                p.last_transition_time.clone()
            }
            _ => Some(now.to_string()),
        };
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.chars().take(1024).collect(),
        last_transition_time: None,
        observed_generation: generation,
    }
}

fn summary(app: &ValidatedApp, parts: &[PartStatus], desired: &[i32]) -> StatusSummary {
    let names: Vec<&str> = app.parts().iter().map(|p| p.name.as_str()).collect();
    let ready: i32 = parts.iter().map(|p| p.ready).sum();
    StatusSummary {
        parts: names.join(","),
        ready: format!("{ready}/{}", desired.iter().sum::<i32>()),
    }
}

/// Members wanted: the spec's replicas, or for a DaemonSet what its controller schedules.
fn desired_members(part: &PartSpec, observed: &Observed, app: &str) -> i32 {
    match part.kind {
        WorkloadKind::DaemonSet => {
            let name = names::workload_name(app, &part.name);
            observed
                .daemon_sets
                .get(&name)
                .and_then(|d| d.status.as_ref())
                .map_or(0, |s| s.desired_number_scheduled)
        }
        _ => part.desired_replicas(),
    }
}

fn part_status(app: &str, part: &PartSpec, observed: &Observed) -> PartStatus {
    let name = names::workload_name(app, &part.name);
    let mut status = PartStatus {
        name: part.name.clone(),
        ..Default::default()
    };
    match part.kind {
        WorkloadKind::StatefulSet => {
            if let Some(s) = observed
                .stateful_sets
                .get(&name)
                .and_then(|s| s.status.as_ref())
            {
                status.replicas = s.replicas;
                status.updated = s.updated_replicas.unwrap_or(0);
                status.current_revision = s.current_revision.clone();
                status.update_revision = s.update_revision.clone();
            }
        }
        WorkloadKind::Deployment => {
            if let Some(s) = observed
                .deployments
                .get(&name)
                .and_then(|d| d.status.as_ref())
            {
                status.replicas = s.replicas.unwrap_or(0);
                status.updated = s.updated_replicas.unwrap_or(0);
            }
        }
        WorkloadKind::DaemonSet => {
            if let Some(s) = observed
                .daemon_sets
                .get(&name)
                .and_then(|d| d.status.as_ref())
            {
                status.replicas = s.current_number_scheduled;
                status.updated = s.updated_number_scheduled.unwrap_or(0);
            }
        }
    }
    status.members = members_of(app, part, observed);
    status.switchover = observed
        .lifecycle
        .get(&part.name)
        .and_then(|l| l.switchover.clone());
    // Counted from the members, not the workload's `readyReplicas`: controllers count a
    // terminating pod that still reports Ready.
    status.ready = status.members.iter().filter(|m| m.ready).count() as i32;
    if let Some(current) = current_revision(&status.members, status.update_revision.as_deref()) {
        // Under the operator StatefulSets use OnDelete, whose controller never advances
        // currentRevision; what the members run is the truth.
        status.current_revision = Some(current);
    }
    status
}

fn pods_of<'a>(
    app: &'a str,
    part: &'a PartSpec,
    observed: &'a Observed,
) -> impl Iterator<Item = &'a Pod> + 'a {
    let selector = names::selector_labels(app, &part.name);
    observed.pods.iter().filter(move |p| {
        let labels = p.metadata.labels.as_ref();
        selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    })
}

fn members_of(app: &str, part: &PartSpec, observed: &Observed) -> Vec<MemberStatus> {
    let mut members: Vec<MemberStatus> = pods_of(app, part, observed)
        .map(|pod| {
            let label = |k: &str| pod.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
            let why = member::not_ready(pod);
            MemberStatus {
                name: pod.metadata.name.clone().unwrap_or_default(),
                ready: why.is_none(),
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                revision: label("controller-revision-hash").or_else(|| label("pod-template-hash")),
                role: label(names::LABEL_ROLE),
                updated_in_place: crate::inplace::updated_in_place(pod),
                message: why
                    .as_ref()
                    .map(|w| w.message.clone())
                    .filter(|m| !m.is_empty()),
                reason: why.map(|w| w.reason),
            }
        })
        .collect();
    members.extend(missing_members(app, part, observed, &members));
    members.sort_by_key(|m| natural_key(&m.name));
    members
}

/// The members of a StatefulSet part its controller should have created but whose pods do not
/// exist (yet), as not ready with reason `NoPod`.
fn missing_members(
    app: &str,
    part: &PartSpec,
    observed: &Observed,
    present: &[MemberStatus],
) -> Vec<MemberStatus> {
    let workload = names::workload_name(app, &part.name);
    let Some(set) = observed.stateful_sets.get(&workload) else {
        return Vec::new();
    };
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let why = member::NotReady::no_pod();
    (0..replicas)
        .map(|ordinal| names::member_name(&workload, ordinal))
        .filter(|name| present.iter().all(|m| &m.name != name))
        .map(|name| MemberStatus {
            name,
            reason: Some(why.reason.clone()),
            message: Some(why.message.clone()),
            ..Default::default()
        })
        .collect()
}

/// The not-ready members of a part with their reasons, for the `Ready` condition's message.
fn not_ready_members(part: &PartStatus) -> String {
    let reasons: Vec<String> = part
        .members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| match (&m.reason, &m.message) {
            (Some(r), Some(msg)) => format!("{} {r}: {msg}", m.name),
            (Some(r), None) => format!("{} {r}", m.name),
            _ => format!("{} not ready", m.name),
        })
        .collect();
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join("; "))
    }
}

/// The oldest revision a member still runs, so that `current == update` means the rollout is
/// done: the update revision once every member runs it; otherwise the revision of the members
/// not yet on it (the one most of them run, ties broken lexically, to stay deterministic).
/// `None` when no member reports a revision.
fn current_revision(members: &[MemberStatus], update: Option<&str>) -> Option<String> {
    let revisions: Vec<&str> = members
        .iter()
        .filter_map(|m| m.revision.as_deref())
        .collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in revisions.iter().filter(|r| Some(**r) != update) {
        *counts.entry(r).or_default() += 1;
    }
    let Some(most) = counts.values().copied().max() else {
        return (!revisions.is_empty()).then(|| update.unwrap_or_default().to_string());
    };
    counts
        .into_iter()
        .find(|(_, n)| *n == most)
        .map(|(r, _)| r.to_string())
}

/// Sorts `web-10` after `web-9`.
fn natural_key(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((prefix, n)) if n.chars().all(|c| c.is_ascii_digit()) => {
            (prefix.to_string(), n.parse().unwrap_or(0))
        }
        _ => (name.to_string(), 0),
    }
}

/// Why the app is Degraded (each part's reason, empty when it is not) and the Degraded
/// condition's reason. StatefulSet parts say so through the core's lifecycle (members stuck on
/// the new revision, a failing switchover); Deployments and DaemonSets, which berth does not
/// roll, through their pods unready past the progress deadline.
/// The lifecycle's Degraded verdict over every part: the condition's reason and message.
fn degraded(app: &ValidatedApp, observed: &Observed, now: Timestamp) -> Option<(String, String)> {
    let mut reason = "AsExpected";
    let mut messages = Vec::new();
    for part in app.parts() {
        let message = if part.kind == WorkloadKind::StatefulSet {
            let lifecycle = observed.lifecycle.get(&part.name);
            let Some((why, lifecycle)) = lifecycle.and_then(|l| Some((l.degraded.clone()?, l)))
            else {
                continue;
            };
            reason = lifecycle.reason();
            why
        } else {
            let stuck = stuck_pods(&app.name(), part, observed, now);
            if stuck.is_empty() {
                continue;
            }
            reason = "MemberStuck";
            format!("unready past the progress deadline: {}", stuck.join(", "))
        };
        messages.push(format!("{}: {message}", part.name));
    }
    let app_name = app.name();
    let agents: Vec<String> = app
        .parts()
        .iter()
        .filter(|p| crate::agent::wanted(p))
        .flat_map(|p| pods_of(&app_name, p, observed))
        .filter_map(|pod| crate::agent::trouble(pod, now))
        .collect();
    if !agents.is_empty() {
        reason = "AgentDown";
        messages.push(agents.join(", "));
    }
    let failed = |r: &&RestoreStatus| r.phase == RestorePhase::Failed;
    if let Some(restore) = observed.restore.as_ref().filter(failed) {
        reason = "RestoreFailed";
        let why = restore.message.as_deref().unwrap_or_default();
        messages.push(format!(
            "{}: restore from {}: {why}",
            restore.part, restore.url
        ));
    }
    (!messages.is_empty()).then(|| (reason.to_string(), messages.join("; ")))
}

/// The part's pods unready for longer than its progress deadline.
fn stuck_pods(app: &str, part: &PartSpec, observed: &Observed, now: Timestamp) -> Vec<String> {
    let deadline = part
        .update
        .progress_deadline_seconds
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    let deadline = i64::try_from(deadline).unwrap_or(i64::MAX);
    pods_of(app, part, observed)
        .filter(|pod| {
            let since = ready_condition(pod)
                .filter(|c| c.status != "True")
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .or_else(|| {
                    pod.metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0)
                        .filter(|_| ready_condition(pod).is_none())
                });
            since.is_some_and(|t| now.as_second() - t.as_second() > deadline)
        })
        .map(|pod| pod.metadata.name.clone().unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn observed(generation: i64, observed_generation: Option<i64>) -> Observed {
        let set = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(generation),
                ..Default::default()
            },
            status: Some(StatefulSetStatus {
                observed_generation,
                ..Default::default()
            }),
            ..Default::default()
        };
        Observed {
            stateful_sets: BTreeMap::from([("db".to_string(), set)]),
            ..Default::default()
        }
    }

    #[test]
    fn a_workload_is_caught_up_once_its_controller_observed_the_latest_generation() {
        assert!(observed(2, Some(2)).caught_up("db"));
        assert!(!observed(2, Some(1)).caught_up("db"));
        assert!(!observed(2, None).caught_up("db"));
        assert!(
            !observed(2, Some(2)).caught_up("other"),
            "a missing workload"
        );
    }

    fn on(revisions: &[&str]) -> Vec<MemberStatus> {
        revisions
            .iter()
            .map(|r| MemberStatus {
                revision: Some(r.to_string()),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn the_current_revision_is_the_old_one_while_any_member_runs_it() {
        let current = |members: &[&str]| current_revision(&on(members), Some("new"));
        assert_eq!(current(&["old", "new", "new"]).as_deref(), Some("old"));
        assert_eq!(current(&["new", "new", "new"]).as_deref(), Some("new"));
        assert_eq!(
            current(&["b", "a", "new"]).as_deref(),
            Some("a"),
            "ties: lexical"
        );
        assert_eq!(
            current(&["a", "b", "b"]).as_deref(),
            Some("b"),
            "most not updated"
        );
        assert_eq!(
            current_revision(&[MemberStatus::default()], Some("new")),
            None
        );
    }

    #[test]
    fn readiness_is_the_same_when_the_ready_condition_says_the_same() {
        let long = "x".repeat(2000);
        let old = invalid(Some(1), &long);
        assert!(
            same_readiness(Some(&old), &invalid(Some(2), &long)),
            "truncated alike"
        );
        assert!(!same_readiness(Some(&old), &invalid(Some(2), "other")));
        assert!(!same_readiness(None, &old));
    }

    #[test]
    fn a_generation_just_applied_counts_even_when_the_cache_has_not_seen_it() {
        let mut stale = observed(2, Some(2));
        stale.applied_generations.insert("db".into(), 3);
        assert!(!stale.caught_up("db"));
    }
}
