//! `berth plan --kubeconfig`: reads what the cluster holds of an app, asks the API server for a
//! server-side dry run of every object the operator would apply (rendered, owned and held as a
//! reconcile does), and hands it all to [`berth_k8s::preview`], which decides what changes and
//! in which order the members would follow. Nothing is written.

use std::collections::BTreeSet;

use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::{StatefulApp, WorkloadKind};
use berth_k8s::ownership;
use berth_k8s::preview::{self, ClusterPreview, ObjectAction, ObjectChange, PartView};
use berth_k8s::prune::{self, ObjectKey};
use berth_k8s::render;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

use crate::apply::{Applier, key_of};
use crate::{Error, Result};

/// A client for the cluster (and context) of the kubeconfig file `path`.
///
/// # Errors
/// When the file cannot be read or names no usable cluster.
pub async fn connect(path: &std::path::Path, context: Option<&str>) -> Result<Client> {
    let failed = |message: String| Error::Kubeconfig {
        path: path.display().to_string(),
        message,
    };
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| failed(e.to_string()))?;
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Client::try_from(config).map_err(|e| failed(e.to_string()))
}

/// What the cluster holds of the app.
struct Live {
    app: Option<StatefulApp>,
    pods: Vec<Pod>,
    sets: Vec<StatefulSet>,
}

/// What applying `app` to the cluster behind `client` would do.
///
/// # Errors
/// When the API cannot be read, or a kind is unknown to it.
pub async fn preview(client: Client, app: &ValidatedApp) -> Result<ClusterPreview> {
    let namespace = app.namespace();
    let applier = Applier::new(client.clone());
    let live = read_live(&client, app).await?;
    let mut out = ClusterPreview {
        app: app.name(),
        namespace: namespace.clone(),
        ..ClusterPreview::default()
    };
    out.objects.push(app_change(app, live.app.as_ref()));
    let objects = rendered(app, &live, &applier).await?;
    for (key, object) in &objects {
        out.objects
            .push(object_change(&applier, &live, key, object, &namespace, &mut out.notes).await?);
    }
    let desired: BTreeSet<ObjectKey> = objects.iter().map(|(k, _)| k.clone()).collect();
    for key in leftovers(&applier, app, &live, &desired).await? {
        out.objects.push(preview::deletion(&key));
    }
    members(app, &live, &objects, &mut out);
    Ok(out)
}

async fn read_live(client: &Client, app: &ValidatedApp) -> Result<Live> {
    let namespace = app.namespace();
    let apps: Api<StatefulApp> = Api::namespaced(client.clone(), &namespace);
    let live_app = apps
        .get_opt(&app.name())
        .await
        .map_err(Error::kube(format!("read StatefulApp {}", app.name())))?;
    let selector = format!("{}={}", names::LABEL_INSTANCE, app.name());
    let params = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &namespace);
    Ok(Live {
        app: live_app,
        pods: pods
            .list(&params)
            .await
            .map_err(Error::kube("list the app's pods"))?
            .items,
        sets: sets
            .list(&params)
            .await
            .map_err(Error::kube("list the app's StatefulSets"))?
            .items,
    })
}

/// The StatefulApp's own change: its spec now against the file's.
fn app_change(app: &ValidatedApp, live: Option<&StatefulApp>) -> ObjectChange {
    let key = ObjectKey {
        api_version: "berth.io/v1alpha1".into(),
        kind: "StatefulApp".into(),
        name: app.name(),
    };
    let spec =
        |a: &StatefulApp| json!({ "spec": serde_json::to_value(&a.spec).unwrap_or_default() });
    let live = live.map(spec);
    preview::object_change(&key, live.as_ref(), &spec(&app.app))
}

/// The objects a reconcile would apply: rendered for the operator (with the role agent when the
/// live StatefulSets have one: the operator's flag is not known here), owned by the live app
/// (an app not created yet owns nothing yet), canary partitions held.
async fn rendered(
    app: &ValidatedApp,
    live: &Live,
    applier: &Applier,
) -> Result<Vec<(ObjectKey, Value)>> {
    let namespace = app.namespace();
    let mut objects = Vec::new();
    let agent_image = live.sets.iter().find_map(berth_k8s::agent::image_of);
    for mut object in render::render_for_operator(app, agent_image.as_deref())
        .map_err(|e| Error::Render(e.to_string()))?
    {
        let key =
            key_of(&object).ok_or_else(|| Error::Render("an object without identity".into()))?;
        if let Some(owner) = &live.app {
            if applier.is_namespaced(&key.api_version, &key.kind).await? {
                crate::reconcile::own(&mut object, owner, &namespace);
            } else {
                crate::reconcile::mark_owner_uid(&mut object, owner);
            }
        }
        objects.push((key, object));
    }
    let uid = live.app.as_ref().and_then(|a| a.uid()).unwrap_or_default();
    let find = |name: &str| live.sets.iter().find(|s| s.name_any() == name).cloned();
    crate::partition::hold_objects(app, &uid, &mut objects, &find, &live.pods);
    Ok(objects)
}

/// One object's change: the live object against the API server's dry run of the apply. An
/// object berth may not take (a user's or another app's) is reported, never dry-run.
async fn object_change(
    applier: &Applier,
    live: &Live,
    key: &ObjectKey,
    object: &Value,
    namespace: &str,
    notes: &mut Vec<String>,
) -> Result<ObjectChange> {
    let existing = applier.get(key, namespace).await?;
    let Some(existing) = existing else {
        return Ok(preview::object_change(key, None, object));
    };
    let uid = live.app.as_ref().and_then(|a| a.uid()).unwrap_or_default();
    let claim = ownership::claim(
        Some(&existing.metadata),
        &uid,
        ownership::wants_adoption(object),
    );
    if let Some(conflict) = ownership::conflict(key, &claim) {
        notes.push(format!(
            "the operator would refuse the app (phase Blocked): {conflict}"
        ));
        return Ok(preview::object_change(key, None, object));
    }
    let existing = serde_json::to_value(&existing).unwrap_or_default();
    match applier.dry_run(object, namespace).await {
        Ok(planned) => {
            let planned = serde_json::to_value(&planned).unwrap_or_default();
            Ok(preview::object_change(key, Some(&existing), &planned))
        }
        Err(e) => {
            notes.push(format!(
                "the API server would reject {} {}: {}",
                key.kind,
                key.name,
                e.user_message()
            ));
            Ok(preview::object_change(key, Some(&existing), &existing))
        }
    }
}

/// Objects the live app owns that the spec no longer renders.
async fn leftovers(
    applier: &Applier,
    app: &ValidatedApp,
    live: &Live,
    desired: &BTreeSet<ObjectKey>,
) -> Result<Vec<ObjectKey>> {
    let Some(owner) = &live.app else {
        return Ok(Vec::new());
    };
    let uid = owner.uid().unwrap_or_default();
    let selector = format!("{}={}", names::LABEL_INSTANCE, app.name());
    let mut owned = Vec::new();
    for (api_version, kind) in prune::OWNED_KINDS {
        for object in applier
            .list(api_version, kind, &app.namespace(), &selector)
            .await?
        {
            if ownership::claim(Some(&object.metadata), &uid, false) == ownership::Claim::Ours {
                owned.push(ObjectKey {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    name: object.name_any(),
                });
            }
        }
    }
    owned.extend(crate::reconcile::previous_extras(owner));
    Ok(prune::leftovers(desired, &owned))
}

/// Each part's members: StatefulSet parts through the planner, other workloads as a note.
fn members(
    app: &ValidatedApp,
    live: &Live,
    objects: &[(ObjectKey, Value)],
    out: &mut ClusterPreview,
) {
    let config = preview::config_changes(&out.objects);
    for part in app.parts() {
        let workload = names::workload_name(&app.name(), &part.name);
        let change = out
            .objects
            .iter()
            .find(|o| o.name == workload && o.kind == format!("{:?}", part.kind))
            .cloned();
        let Some(change) = change else { continue };
        let changes = match change.action {
            ObjectAction::Change => preview::template_changes(&change, &config),
            _ => Vec::new(),
        };
        if part.kind != WorkloadKind::StatefulSet {
            if !changes.is_empty() {
                out.notes.push(format!(
                    "{:?} {workload}: its controller replaces its pods ({})",
                    part.kind,
                    changes.join(", ")
                ));
            }
            continue;
        }
        let template = planned_template(objects, &workload);
        let pods: Vec<Pod> = live
            .pods
            .iter()
            .filter(|p| is_member_of(p, &workload))
            .cloned()
            .collect();
        let view = PartView {
            part,
            workload: &workload,
            live: live.sets.iter().find(|s| s.name_any() == workload),
            pods: &pods,
            template: template.as_ref(),
            template_changes: &changes,
        };
        let part_preview = preview::part_preview(&view, Timestamp::now());
        out.steps.extend(part_preview.steps);
        out.members.extend(part_preview.members);
        out.notes.extend(part_preview.notes);
    }
}

/// The pod template berth would apply for StatefulSet `workload`.
fn planned_template(objects: &[(ObjectKey, Value)], workload: &str) -> Option<PodTemplateSpec> {
    let (_, object) = objects
        .iter()
        .find(|(k, _)| k.kind == "StatefulSet" && k.name == workload)?;
    serde_json::from_value(object.pointer("/spec/template")?.clone()).ok()
}

/// Whether `pod` is a member of StatefulSet `workload` (`<workload>-<ordinal>`).
fn is_member_of(pod: &Pod, workload: &str) -> bool {
    pod.name_any()
        .strip_prefix(workload)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
}
