//! Rollouts under the operator: the core's planner decides which members go next (roles,
//! quorum, partition, maxUnavailable); berth deletes those pods and the StatefulSet controller
//! (`OnDelete`) recreates them at the new revision.

use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::rollout::{self, Policy, Step};
use berth_core::spec::StatefulApp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::events::EventType;

use crate::reconcile::{Context, publish};
use crate::watch;
use crate::{Error, Result};

/// Takes the next rollout steps of every StatefulSet part: the core's planner decides which
/// members go next (roles, quorum, partition, maxUnavailable); berth deletes those pods and the
/// StatefulSet controller (`OnDelete`) recreates them at the new revision. Returns whether any
/// part is still rolling.
pub(crate) async fn roll_members(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
) -> Result<bool> {
    let namespace = validated.namespace();
    let mut rolling = false;
    for part in validated
        .parts()
        .iter()
        .filter(|p| p.kind == berth_core::spec::WorkloadKind::StatefulSet)
    {
        let workload = names::workload_name(&validated.name(), &part.name);
        let Some(set) = watch::find(&ctx.stores.stateful_sets, &namespace, &workload) else {
            continue;
        };
        let pods = watch::select(
            &ctx.stores.pods,
            &namespace,
            &names::selector_labels(&validated.name(), &part.name),
        );
        let Some(members) = berth_k8s::rollout::member_states(&set, &pods, Timestamp::now()) else {
            continue;
        };
        // Switchover actions need to run inside a member; on Kubernetes they are not performed
        // yet, so the planner updates the leader last without one.
        let policy = Policy::resolve(
            &part.update,
            &part.state.topology,
            part.desired_replicas(),
            false,
        );
        let plan = rollout::plan(&members, &policy);
        rolling |= !plan.complete;
        for step in plan.steps {
            if let Step::Update { ordinal } = step {
                let pod = names::member_name(&workload, ordinal);
                let uid = pods
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(pod.as_str()))
                    .and_then(|p| p.metadata.uid.clone());
                replace_pod(ctx, &namespace, &pod, uid).await?;
                publish(
                    ctx,
                    app,
                    EventType::Normal,
                    "RollingUpdate",
                    &format!("replacing member {pod} to take the new revision"),
                )
                .await;
            }
        }
    }
    Ok(rolling)
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
