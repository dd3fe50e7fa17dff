//! Holds canary partitions (`berth_k8s::partition`): marks each rendered StatefulSet with its
//! template digest, hands a held part's StatefulSet its partitioned `RollingUpdate`, and first
//! sets its `status.currentRevision` to the revision the members below the partition run.

use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_k8s::ownership::{self, Claim};
use berth_k8s::partition::{self, Hold};
use berth_k8s::prune::ObjectKey;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::Value;

use crate::reconcile::Context;
use crate::{Error, MANAGER, Result, watch};

/// Marks the app's rendered StatefulSets and holds those whose partition holds members back
/// (only StatefulSets berth created for this app, whose UID is `app_uid`). Returns the held
/// StatefulSets with their holds.
pub(crate) fn hold_parts(
    ctx: &Context,
    app: &ValidatedApp,
    app_uid: &str,
    objects: &mut [(ObjectKey, Value)],
) -> Vec<(StatefulSet, Hold)> {
    let namespace = app.namespace();
    let selector =
        std::collections::BTreeMap::from([(names::LABEL_INSTANCE.to_string(), app.name())]);
    let pods = watch::select(&ctx.stores.pods, &namespace, &selector);
    let find = |name: &str| watch::find(&ctx.stores.stateful_sets, &namespace, name);
    hold_objects(app, app_uid, objects, &find, &pods)
}

/// [`hold_parts`] over StatefulSets found by `find` (by name) and the app's `pods`, as read
/// from the caches or, for a preview, from the API.
pub(crate) fn hold_objects(
    app: &ValidatedApp,
    app_uid: &str,
    objects: &mut [(ObjectKey, Value)],
    find: &dyn Fn(&str) -> Option<StatefulSet>,
    pods: &[Pod],
) -> Vec<(StatefulSet, Hold)> {
    let mut holds = Vec::new();
    for part in app.parts() {
        let workload = names::workload_name(&app.name(), &part.name);
        let Some((_, object)) = objects
            .iter_mut()
            .find(|(k, _)| k.kind == "StatefulSet" && k.name == workload)
        else {
            continue;
        };
        partition::mark_template_digest(object);
        let Some(set) = find(&workload)
            .filter(|set| ownership::claim(Some(&set.metadata), app_uid, false) == Claim::Ours)
        else {
            continue;
        };
        let digest = partition::template_digest(object);
        let wanted = part.update.partition.unwrap_or(0);
        if let Some(hold) = partition::hold(&set, pods, wanted, &digest) {
            partition::apply_hold(object, &hold);
            holds.push((set, hold));
        }
    }
    holds
}

/// Sets each held StatefulSet's `status.currentRevision` where it is not right yet.
///
/// # Errors
/// When the API refuses the status patch.
pub(crate) async fn set_current_revisions(
    ctx: &Context,
    holds: &[(StatefulSet, Hold)],
) -> Result<()> {
    for (set, hold) in holds {
        let Some(patch) = partition::current_revision_patch(set, hold) else {
            continue;
        };
        let api: Api<StatefulSet> =
            Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
        let params = PatchParams {
            field_manager: Some(MANAGER.to_string()),
            ..Default::default()
        };
        api.patch_status(&set.name_any(), &params, &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!(
                "set the current revision of StatefulSet {}",
                set.name_any()
            )))?;
    }
    Ok(())
}
