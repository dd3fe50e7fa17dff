//! Rollouts under the operator: the core's planner decides which members go next (roles,
//! quorum, partition, maxUnavailable); berth brings each to the new revision either by deleting
//! its pod, which the StatefulSet controller (`OnDelete`) recreates, or, when only images changed
//! and the part allows it, by patching the pod's images in place behind a readiness gate
//! (`berth_k8s::inplace`).

use std::collections::BTreeMap;

use berth_core::exec::ExecKind;
use berth_core::lifecycle::{self, ActionFailure, Command, Decision, SwitchoverRecord};
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::rollout::Policy;
use berth_core::spec::{PartSpec, StatefulApp, WorkloadKind};
use berth_k8s::inplace::{self, Method};
use berth_k8s::prune::ObjectKey;
use berth_k8s::roles;
use berth_k8s::status::{Observed, PartLifecycle};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::prober;
use crate::reconcile::{Context, publish};
use crate::{Error, MANAGER, Result};

/// One StatefulSet part being rolled, with what every member update needs.
struct PartRollout<'a> {
    app: &'a StatefulApp,
    validated: &'a ValidatedApp,
    index: usize,
    part: &'a PartSpec,
    namespace: String,
    template: PodTemplateSpec,
    update_revision: String,
}

/// Takes the next rollout steps of every StatefulSet part, as the core's lifecycle decides
/// them, and opens the readiness gates of members that are ready for it. Returns whether any
/// part is still rolling, and what the lifecycle said of each part (for the status).
pub(crate) async fn roll_members(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
    objects: &[(ObjectKey, Value)],
    observed: &Observed,
) -> Result<(bool, BTreeMap<String, PartLifecycle>)> {
    let mut rolling = false;
    let mut lifecycles = BTreeMap::new();
    for (index, part) in validated.parts().iter().enumerate() {
        if part.kind == WorkloadKind::StatefulSet {
            let (part_rolling, lifecycle) =
                roll_part(app, ctx, validated, index, objects, observed).await?;
            rolling |= part_rolling;
            lifecycles.insert(part.name.clone(), lifecycle);
        }
    }
    Ok((rolling, lifecycles))
}

/// One part's rollout step: whether it is still rolling, and what the lifecycle said of it.
async fn roll_part(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
    index: usize,
    objects: &[(ObjectKey, Value)],
    observed: &Observed,
) -> Result<(bool, PartLifecycle)> {
    let part = &validated.parts()[index];
    let workload = names::workload_name(&validated.name(), &part.name);
    let memory_key = format!("{}/{}", app.uid().unwrap_or_default(), part.name);
    let remembered = ctx.remembered_switchover(&memory_key, app, &part.name);
    let unchanged = PartLifecycle {
        switchover: remembered.clone(),
        ..PartLifecycle::default()
    };
    let Some(set) = observed.stateful_sets.get(&workload) else {
        return Ok((false, unchanged));
    };
    let pods = part_pods(observed, &validated.name(), part);
    open_gates(app, ctx, &validated.namespace(), &pods).await?;
    // Until the controller has seen the applied spec, its update revision is not the rendered
    // template's: wait rather than label a pod with the wrong revision.
    let (Some(update_revision), Some(template), true) = (
        set.status.as_ref().and_then(|s| s.update_revision.clone()),
        rendered_template(objects, &workload),
        observed.caught_up(&workload),
    ) else {
        return Ok((true, unchanged));
    };
    let Some(members) = berth_k8s::rollout::member_states(set, &pods, Timestamp::now()) else {
        return Ok((false, unchanged));
    };
    let policy = Policy::for_part(part, part.desired_replicas());
    let name = |ordinal: i32| names::member_name(&workload, ordinal);
    let now = Timestamp::now().as_second();
    let decision = lifecycle::decide(&policy, &members, remembered.as_ref(), now, &name);
    let rollout = PartRollout {
        app,
        validated,
        index,
        part,
        namespace: validated.namespace(),
        template,
        update_revision,
    };
    let switchover = execute(ctx, &rollout, &pods, &decision).await?;
    ctx.remember_switchover(&memory_key, switchover.clone());
    let lifecycle = PartLifecycle {
        stuck: decision.stuck.iter().map(|o| name(*o)).collect(),
        degraded: decision.degraded,
        switchover,
    };
    Ok((!decision.complete, lifecycle))
}

/// Carries out the lifecycle's commands; returns the switchover to remember afterwards.
async fn execute(
    ctx: &Context,
    rollout: &PartRollout<'_>,
    pods: &[Pod],
    decision: &Decision,
) -> Result<Option<SwitchoverRecord>> {
    let workload = names::workload_name(&rollout.validated.name(), &rollout.part.name);
    let pod_of = |ordinal: i32| {
        let name = names::member_name(&workload, ordinal);
        pods.iter()
            .find(|p| p.metadata.name.as_ref() == Some(&name))
    };
    let mut record = decision.switchover.clone();
    for command in &decision.commands {
        match *command {
            Command::Update { ordinal } => {
                if let Some(pod) = pod_of(ordinal) {
                    update_member(ctx, rollout, pod).await?;
                }
            }
            Command::Switchover { from, to } => {
                if let Some(leader) = pod_of(from) {
                    let result = switch_over(ctx, rollout, leader, to).await;
                    let now = Timestamp::now().as_second();
                    let ran = (from, to);
                    let outcome = result.clone();
                    record = Some(lifecycle::switchover_ran(
                        record.as_ref(),
                        ran,
                        now,
                        outcome,
                    ));
                    keep_switchover(ctx, rollout, record.as_ref()).await;
                    announce_switchover(ctx, rollout, leader, (to, pod_of(to)), &result).await;
                }
            }
        }
    }
    Ok(record)
}

/// The cached pods of one part of app `app`.
fn part_pods(observed: &Observed, app: &str, part: &PartSpec) -> Vec<Pod> {
    let selector = names::selector_labels(app, &part.name);
    observed
        .pods
        .iter()
        .filter(|p| selector.iter().all(|(k, v)| p.labels().get(k) == Some(v)))
        .cloned()
        .collect()
}

/// The pod template berth rendered for `workload` in this reconcile.
fn rendered_template(objects: &[(ObjectKey, Value)], workload: &str) -> Option<PodTemplateSpec> {
    let (_, object) = objects
        .iter()
        .find(|(key, _)| key.kind == "StatefulSet" && key.name == workload)?;
    serde_json::from_value(object.pointer("/spec/template")?.clone()).ok()
}

/// Brings one member to the new revision the way its part's `podUpdatePolicy` allows.
async fn update_member(ctx: &Context, rollout: &PartRollout<'_>, pod: &Pod) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let method = inplace::update_method(
        pod,
        &rollout.template,
        &rollout.update_revision,
        rollout.part.update.pod_update_policy,
    );
    let (type_, reason, note) = match method {
        Method::InPlace(patch) => {
            update_in_place(ctx, &rollout.namespace, pod, patch).await?;
            (
                EventType::Normal,
                "InPlaceUpdate",
                format!("updating member {name} in place to take the new images"),
            )
        }
        Method::Recreate => {
            replace_pod(ctx, &rollout.namespace, &name, pod.metadata.uid.clone()).await?;
            (
                EventType::Normal,
                "RollingUpdate",
                format!("replacing member {name} to take the new revision"),
            )
        }
        Method::Impossible(why) => (
            EventType::Warning,
            "InPlaceImpossible",
            format!("member {name} waits: podUpdatePolicy is InPlaceOnly but {why}"),
        ),
    };
    publish(ctx, rollout.app, type_, reason, &note).await;
    Ok(())
}

/// Runs the part's switchover action in the leader's pod, handing leadership to member `to`.
async fn switch_over(
    ctx: &Context,
    rollout: &PartRollout<'_>,
    leader: &Pod,
    to: i32,
) -> std::result::Result<(), ActionFailure> {
    let target = &roles::action_target(rollout.validated, rollout.part, to);
    let (app, index) = (rollout.validated, rollout.index);
    prober::run_action(
        &ctx.client,
        leader,
        app,
        index,
        ExecKind::Switchover,
        target,
    )
    .await
}

/// Writes the switchover that just ran into the part's status at once, before its event and
/// the probes: an operator killed after the action ran finds it there when it restarts, and
/// does not run it again while stale role labels still show the old leader. (The status
/// written at the end of the reconcile keeps it too.) A failure is logged: this process
/// remembers the record anyway.
async fn keep_switchover(
    ctx: &Context,
    rollout: &PartRollout<'_>,
    record: Option<&SwitchoverRecord>,
) {
    let Some(mut parts) = rollout.app.status.as_ref().map(|s| s.parts.clone()) else {
        return;
    };
    let Some(part) = parts.iter_mut().find(|p| p.name == rollout.part.name) else {
        return;
    };
    part.switchover = record.cloned();
    let api: Api<StatefulApp> = Api::namespaced(ctx.client.clone(), &rollout.namespace);
    let patch = serde_json::json!({ "status": { "parts": parts } });
    let name = rollout.app.name_any();
    let written = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    if let Err(e) = written {
        tracing::warn!(app = %name, error = %e, "could not record the switchover in the status");
    }
}

/// Publishes a switchover's outcome, then probes the leader at once and the target until it
/// reports a writable role (at most [`PROMOTION_WAIT`]), so role Services follow the move
/// without waiting a probe period: a target probed once, right after the action returned,
/// may not be promoted yet (Redis' `FAILOVER` returns before the handshake ends), and a write
/// Service would then have no member until the next periodic probe.
async fn announce_switchover(
    ctx: &Context,
    rollout: &PartRollout<'_>,
    leader: &Pod,
    (to, target_pod): (i32, Option<&Pod>),
    result: &std::result::Result<(), ActionFailure>,
) {
    let from = leader.name_any();
    let to = roles::action_target(rollout.validated, rollout.part, to).member;
    let (type_, reason, note) = match result {
        Ok(()) => (
            EventType::Normal,
            "Switchover",
            format!("moved leadership from {from} to {to} before updating {from}"),
        ),
        Err(why) => (
            EventType::Warning,
            "SwitchoverFailed",
            format!(
                "the switchover action failed in {from} (target {to}): {why}; {from} keeps its \
                 revision"
            ),
        ),
    };
    publish(ctx, rollout.app, type_, reason, &note).await;
    let (app, index) = (rollout.validated, rollout.index);
    let Some(probe) = prober::rendered(app, index, ExecKind::RoleProbe) else {
        return;
    };
    prober::probe(&ctx.client, leader, probe.clone()).await;
    let Some(target) = target_pod else { return };
    let topology = &rollout.part.state.topology;
    let deadline = tokio::time::Instant::now() + PROMOTION_WAIT;
    loop {
        let role = prober::probe(&ctx.client, target, probe.clone()).await;
        let promoted = role.is_some_and(|r| topology.is_writable(&r) == Some(true));
        if promoted || result.is_err() || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(PROMOTION_POLL).await;
    }
}

/// How long the target of a switchover is probed, after the action, for its new role.
const PROMOTION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often it is probed meanwhile.
const PROMOTION_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// Closes the pod's readiness gate, so Services drop it, then patches its images and revision.
async fn update_in_place(
    ctx: &Context,
    namespace: &str,
    pod: &Pod,
    mut patch: Value,
) -> Result<()> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    set_gate(ctx, namespace, &name, false, "InPlaceUpdating").await?;
    // The UID makes the API server refuse the patch if the pod was replaced meanwhile.
    patch["metadata"]["uid"] = pod.metadata.uid.clone().into();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match api.patch(&name, &params(), &Patch::Strategic(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("patch pod {name} in place"))(e)),
    }
}

/// Opens the gates of new pods, of pods whose in-place update has finished, and of gates closed
/// for an update that never came.
async fn open_gates(app: &StatefulApp, ctx: &Context, namespace: &str, pods: &[Pod]) -> Result<()> {
    for pod in pods {
        let Some(reason) = inplace::gate_to_open(pod, Timestamp::now()) else {
            continue;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        set_gate(ctx, namespace, &name, true, reason).await?;
        if inplace::updated_in_place(pod) {
            let note = format!("member {name} runs the new images, updated in place");
            publish(ctx, app, EventType::Normal, "InPlaceUpdated", &note).await;
        }
    }
    Ok(())
}

async fn set_gate(
    ctx: &Context,
    namespace: &str,
    name: &str,
    open: bool,
    reason: &str,
) -> Result<()> {
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let patch = inplace::gate_patch(open, reason, &now);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match api
        .patch_status(name, &params(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(Error::kube(format!("set readiness gate of pod {name}"))(e)),
    }
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    }
}

/// Deletes a member's pod, only if it is still the pod the plan was made for.
async fn replace_pod(
    ctx: &Context,
    namespace: &str,
    name: &str,
    uid: Option<String>,
) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid,
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 409 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete pod {name}"))(e)),
    }
}
