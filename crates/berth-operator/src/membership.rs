//! Scaling with membership actions under the operator. For a StatefulSet part that declares
//! `memberJoin` / `memberLeave`, the core's `membership::plan` decides how many members to run
//! now and which action to run first; the action runs in a member's pod through exec, and only
//! once it succeeded does the rendered StatefulSet get the new size. The app is then rendered at
//! that admitted size, so templates list exactly the members the running ones know.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_core::exec::{ActionTarget, ExecKind};
use berth_core::lifecycle::ActionFailure;
use berth_core::load::ValidatedApp;
use berth_core::membership::{self, Actions, Change};
use berth_core::names;
use berth_core::spec::{StatefulApp, WorkloadKind};
use berth_k8s::roles;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;

use crate::MANAGER;
use crate::prober;
use crate::reconcile::{Context, publish};
use crate::watch;

/// Sizes admitted after an action, until the StatefulSet cache shows them: without this, a
/// reconcile reading a stale cache would run the same join again.
#[derive(Default)]
pub struct Admitted(Mutex<HashMap<String, i32>>);

impl Admitted {
    /// The size the part runs: the one last admitted here while the cache lags behind it.
    fn current(&self, key: &str, cached: i32) -> i32 {
        let mut sizes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match sizes.get(key) {
            Some(admitted) if *admitted != cached => *admitted,
            _ => {
                sizes.remove(key);
                cached
            }
        }
    }

    fn record(&self, key: &str, replicas: i32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), replicas);
    }
}

/// `validated` with each part that declares membership actions at its admitted size, after
/// running the action that size needs.
pub(crate) async fn admit(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
) -> ValidatedApp {
    let mut admitted = validated.clone();
    for index in 0..validated.parts().len() {
        if let Some(replicas) = admitted_size(app, ctx, validated, index).await {
            admitted.app.spec.parts[index].replicas = Some(replicas);
        }
    }
    admitted
}

/// The size part `part` may run now, or `None` when it takes its wanted size as it is.
async fn admitted_size(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
    index: usize,
) -> Option<i32> {
    let part = &validated.parts()[index];
    let topology = &part.state.topology;
    let declared = Actions {
        join: topology.member_join().is_some(),
        leave: topology.member_leave().is_some(),
    };
    if part.kind != WorkloadKind::StatefulSet || declared == Actions::default() {
        return None;
    }
    let namespace = validated.namespace();
    let workload = names::workload_name(&validated.name(), &part.name);
    // A part created now starts at its wanted size: its first members form the cluster together.
    let set = watch::find(&ctx.stores.stateful_sets, &namespace, &workload)?;
    let key = format!("{namespace}/{workload}");
    let cached = berth_k8s::rollout::admitted_size(&set);
    let current = ctx.admitted.current(&key, cached);
    let pods = watch::select(
        &ctx.stores.pods,
        &namespace,
        &names::selector_labels(&validated.name(), &part.name),
    );
    let members =
        berth_k8s::rollout::member_states(&set, &pods, Timestamp::now()).unwrap_or_default();
    let plan = membership::plan(
        current,
        part.desired_replicas(),
        &members,
        &part.state.topology.roles,
        declared,
    );
    let Some(change) = plan.change else {
        return Some(plan.replicas);
    };
    let (kind, subject, run_in) = match change {
        Change::Join { ordinal, run_in } => (ExecKind::MemberJoin, ordinal, run_in),
        Change::Leave { ordinal, run_in } => (ExecKind::MemberLeave, ordinal, run_in),
    };
    kind.action(&part.state)?;
    let target = roles::action_target(validated, part, subject);
    let runner = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(&names::member_name(&workload, run_in)))?;
    let outcome = prober::run_action(&ctx.client, runner, validated, index, kind, &target).await;
    // Recorded before anything else is said or done: an operator killed after the action ran
    // reads the size and does not run it again.
    if outcome.is_ok() {
        ctx.admitted.record(&key, plan.replicas);
        record_admitted(ctx, &namespace, &workload, plan.replicas).await;
    }
    announce(app, ctx, kind, runner, &target, &outcome).await;
    Some(outcome.as_ref().map_or(current, |()| plan.replicas))
}

/// Publishes how membership action `kind` went in `runner`: `Member<verb>` or
/// `Member<verb>Failed`.
async fn announce(
    app: &StatefulApp,
    ctx: &Context,
    kind: ExecKind,
    runner: &Pod,
    target: &ActionTarget,
    outcome: &Result<(), ActionFailure>,
) {
    let verb = if kind == ExecKind::MemberJoin {
        "Join"
    } else {
        "Leave"
    };
    let runner_name = runner.metadata.name.clone().unwrap_or_default();
    let member = &target.member;
    let (type_, reason, note) = match outcome {
        Ok(()) => (
            EventType::Normal,
            format!("Member{verb}"),
            format!("member{verb} for {member} ran in {runner_name}"),
        ),
        Err(why) => (
            EventType::Warning,
            format!("Member{verb}Failed"),
            format!(
                "member{verb} for {member} failed in {runner_name} ({why}); the size stays, \
                 retrying"
            ),
        ),
    };
    publish(ctx, app, type_, &reason, &note).await;
}

/// Records on the StatefulSet the size an action just admitted, before the size is applied: an
/// operator restarted in between reads it and does not run the action again. A failure is
/// logged: the in-process record still covers this operator's own reconciles.
async fn record_admitted(ctx: &Context, namespace: &str, workload: &str, replicas: i32) {
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = serde_json::json!({
        "metadata": {"annotations": {names::ANNOTATION_ADMITTED_REPLICAS: replicas.to_string()}}
    });
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    if let Err(e) = api.patch(workload, &params, &Patch::Merge(&patch)).await {
        tracing::warn!(statefulset = %workload, error = %e, "could not record the admitted size");
    }
}
