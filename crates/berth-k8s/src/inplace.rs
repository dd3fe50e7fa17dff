//! In-place updates of StatefulSet members (`podUpdatePolicy: InPlaceIfPossible | InPlaceOnly`),
//! as pure decisions the operator carries out:
//!
//! - the rendered pod template declares the readiness gate [`READINESS_GATE`] and records
//!   [`ANNOTATION_TEMPLATE_HASH`], a hash of the whole template except container images; a pod
//!   whose hash equals the new template's differs from it in images only, so patching its images
//!   brings it to the new revision;
//! - before the patch the gate is set `False`, so the pod leaves its Services while the kubelet
//!   restarts the changed containers; the patch also moves the pod's revision label and records
//!   the containers' image IDs and restart counts in [`ANNOTATION_IN_PLACE`];
//! - once every changed container runs again (new image ID, a restart, or the new image reported)
//!   and is ready, the gate goes back to `True`;
//! - the gate of a newly created pod has no condition yet, and the kubelet counts a missing
//!   condition as not ready: berth sets it `True` (what OpenKruise does at pod creation).

use std::collections::BTreeMap;

use berth_core::spec::PodUpdatePolicy;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodReadinessGate, PodSpec, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::rollout::REVISION_LABEL;

/// The pod condition that keeps a member out of its Services during an in-place update.
pub const READINESS_GATE: &str = "berth.io/in-place-update-ready";
/// Pod template annotation: hash of the template with container images left out.
pub const ANNOTATION_TEMPLATE_HASH: &str = "berth.io/template-hash";
/// Pod annotation: the in-place update a pod last received ([`InPlaceRecord`] as JSON).
pub const ANNOTATION_IN_PLACE: &str = "berth.io/in-place-update";

/// What the pod's containers looked like before an in-place update.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceRecord {
    /// The revision the update brings the pod to.
    pub revision: String,
    /// Per changed container: its image ID and restart count before the update.
    pub containers: BTreeMap<String, ContainerBefore>,
}

/// One container before an in-place update.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerBefore {
    /// Its image ID as the kubelet reported it.
    #[serde(default)]
    pub image_id: String,
    /// Its restart count.
    #[serde(default)]
    pub restart_count: i32,
}

/// How one member takes the new revision.
#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    /// Patch the pod with this strategic merge patch (after closing its gate).
    InPlace(Value),
    /// Delete the pod; the StatefulSet controller recreates it.
    Recreate,
    /// `InPlaceOnly`, but more than images changed: the member waits.
    Impossible(String),
}

/// Prepares a rendered template for in-place updates: declares the gate and records the hash.
pub fn prepare_template(template: &mut PodTemplateSpec) {
    let spec = template.spec.get_or_insert_with(Default::default);
    let gates = spec.readiness_gates.get_or_insert_with(Vec::new);
    if !gates.iter().any(|g| g.condition_type == READINESS_GATE) {
        gates.push(PodReadinessGate {
            condition_type: READINESS_GATE.to_string(),
        });
    }
    let hash = template_hash(template);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(ANNOTATION_TEMPLATE_HASH.to_string(), hash);
}

/// Hash of everything in the template but container images (and this hash itself).
fn template_hash(template: &PodTemplateSpec) -> String {
    let mut without_images = template.clone();
    if let Some(metadata) = without_images.metadata.as_mut() {
        let annotations = metadata.annotations.take().unwrap_or_default();
        let others: BTreeMap<String, String> = annotations
            .into_iter()
            .filter(|(k, _)| k != ANNOTATION_TEMPLATE_HASH)
            .collect();
        metadata.annotations = (!others.is_empty()).then_some(others);
    }
    if let Some(spec) = without_images.spec.as_mut() {
        for container in &mut spec.containers {
            container.image = None;
        }
        // The restore's init container runs the main image; it is over once the pod started.
        // The agent's run the operator's image and the main one: a new operator, or an image
        // taken in place, reaches them when the pod is next recreated.
        let berth_own = [
            crate::restore::INIT_CONTAINER,
            crate::agent::INSTALL_CONTAINER,
            crate::agent::CONTAINER,
        ];
        let inits = spec.init_containers.iter_mut().flatten();
        for container in inits.filter(|c| berth_own.contains(&c.name.as_str())) {
            container.image = None;
        }
    }
    let text = serde_json::to_string(&without_images).unwrap_or_default();
    berth_core::load::short_digest([text.as_bytes()])
}

/// How `pod` should take the revision `update_revision` whose template is `template`.
pub fn update_method(
    pod: &Pod,
    template: &PodTemplateSpec,
    update_revision: &str,
    policy: PodUpdatePolicy,
) -> Method {
    if policy == PodUpdatePolicy::ReCreate {
        return Method::Recreate;
    }
    match in_place_blocker(pod, template) {
        None => Method::InPlace(in_place_patch(pod, template, update_revision)),
        Some(why) if policy == PodUpdatePolicy::InPlaceOnly => Method::Impossible(why),
        Some(_) => Method::Recreate,
    }
}

/// Why `pod` cannot take `template` in place, if it cannot.
fn in_place_blocker(pod: &Pod, template: &PodTemplateSpec) -> Option<String> {
    if !declares_gate(pod) {
        return Some(format!(
            "the pod predates the readiness gate {READINESS_GATE}"
        ));
    }
    let wanted = annotation(template.metadata.as_ref(), ANNOTATION_TEMPLATE_HASH);
    let has = annotation(Some(&pod.metadata), ANNOTATION_TEMPLATE_HASH);
    if wanted.is_none() || wanted != has {
        return Some("more than container images changed".to_string());
    }
    let names: Vec<&str> = containers(pod).map(|(name, _)| name).collect();
    let template_names: Vec<&str> = template_images(template).map(|(name, _)| name).collect();
    (names != template_names).then(|| "the pod's containers differ from the template's".into())
}

/// The strategic merge patch that brings `pod` to `template`'s images and revision.
fn in_place_patch(pod: &Pod, template: &PodTemplateSpec, update_revision: &str) -> Value {
    let current: BTreeMap<&str, &str> = containers(pod).collect();
    let changed: Vec<(&str, &str)> = template_images(template)
        .filter(|(name, image)| current.get(name) != Some(image))
        .collect();
    let record = InPlaceRecord {
        revision: update_revision.to_string(),
        containers: changed
            .iter()
            .map(|(name, _)| (name.to_string(), before(pod, name)))
            .collect(),
    };
    let record = serde_json::to_string(&record).unwrap_or_default();
    let images: Vec<Value> = changed
        .iter()
        .map(|(name, image)| json!({"name": name, "image": image}))
        .collect();
    json!({
        "metadata": {
            "labels": {REVISION_LABEL: update_revision},
            "annotations": {ANNOTATION_IN_PLACE: record},
        },
        "spec": {"containers": images},
    })
}

fn before(pod: &Pod, container: &str) -> ContainerBefore {
    container_status(pod, container)
        .map(|s| ContainerBefore {
            image_id: s.image_id.clone(),
            restart_count: s.restart_count,
        })
        .unwrap_or_default()
}

/// The status patch that sets the gate condition.
pub fn gate_patch(open: bool, reason: &str, now: &str) -> Value {
    json!({
        "status": {
            "conditions": [{
                "type": READINESS_GATE,
                "status": if open { "True" } else { "False" },
                "reason": reason,
                "lastTransitionTime": now,
            }]
        }
    })
}

/// Whether the pod's template declared the gate.
pub fn declares_gate(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|g| g.iter().any(|g| g.condition_type == READINESS_GATE))
}

/// The gate condition, if set.
fn gate_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == READINESS_GATE)
}

/// Whether the gate lets the pod be ready: no gate, or its condition is `True`.
pub fn gate_open(pod: &Pod) -> bool {
    !declares_gate(pod) || gate_condition(pod).is_some_and(|c| c.status == "True")
}

/// How long a gate may stay closed without the image patch that should follow it, before it is
/// opened again: the operator stopped between the two writes, and the spec may since have gone
/// back to the revision the pod runs, so nothing would ever replace it.
pub const ABANDONED_AFTER_SECONDS: i64 = 30;

/// Why the gate of `pod` should be opened now, if it should: a new pod whose gate has no
/// condition yet, a pod whose in-place update has finished, or one whose gate was closed for an
/// update that never came ([`ABANDONED_AFTER_SECONDS`]).
pub fn gate_to_open(pod: &Pod, now: Timestamp) -> Option<&'static str> {
    if !declares_gate(pod) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let gate = gate_condition(pod);
    match gate.map(|c| c.status.as_str()) {
        None => Some("PodCreated"),
        Some("False") if in_place_finished(pod) => Some("InPlaceUpdated"),
        Some("False") if !updated_in_place(pod) => {
            let closed_at = gate.and_then(|c| c.last_transition_time.as_ref())?;
            let closed_for = now.as_second() - closed_at.0.as_second();
            (closed_for > ABANDONED_AFTER_SECONDS).then_some("InPlaceAbandoned")
        }
        _ => None,
    }
}

/// The in-place update the pod received, if any.
fn record(pod: &Pod) -> Option<InPlaceRecord> {
    annotation(Some(&pod.metadata), ANNOTATION_IN_PLACE)
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// Whether the pod reached its current revision by an in-place update.
pub fn updated_in_place(pod: &Pod) -> bool {
    let revision = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL));
    record(pod).is_some_and(|r| Some(&r.revision) == revision)
}

/// Whether every container the last in-place update changed runs again and is ready.
fn in_place_finished(pod: &Pod) -> bool {
    let Some(record) = record(pod).filter(|_| updated_in_place(pod)) else {
        return false;
    };
    let specified: BTreeMap<&str, &str> = containers(pod).collect();
    record.containers.iter().all(|(name, before)| {
        container_status(pod, name).is_some_and(|s| {
            let restarted = s.image_id != before.image_id
                || s.restart_count > before.restart_count
                || specified.get(name.as_str()) == Some(&s.image.as_str());
            let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
            restarted && running && s.ready
        })
    })
}

fn container_status<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|s| s.name == name)
}

fn containers(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    images(pod.spec.as_ref())
}

fn template_images(template: &PodTemplateSpec) -> impl Iterator<Item = (&str, &str)> {
    images(template.spec.as_ref())
}

/// Each container's name and image.
fn images(spec: Option<&PodSpec>) -> impl Iterator<Item = (&str, &str)> {
    spec.into_iter()
        .flat_map(|s| &s.containers)
        .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default()))
}

fn annotation(
    metadata: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
    key: &str,
) -> Option<String> {
    metadata?.annotations.as_ref()?.get(key).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStatus, EnvVar, PodCondition,
        PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str, env: &str) -> PodTemplateSpec {
        let mut t = PodTemplateSpec {
            metadata: Some(ObjectMeta::default()),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "db".into(),
                    image: Some(image.into()),
                    env: Some(vec![EnvVar {
                        name: "MODE".into(),
                        value: Some(env.into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        prepare_template(&mut t);
        t
    }

    /// A running pod created from `template` at `revision`, as the StatefulSet controller and
    /// the kubelet would leave it.
    fn pod_from(template: &PodTemplateSpec, revision: &str) -> Pod {
        let mut metadata = template.metadata.clone().unwrap();
        metadata.name = Some("db-0".into());
        metadata.labels = Some(BTreeMap::from([(REVISION_LABEL.into(), revision.into())]));
        let spec = template.spec.clone().unwrap();
        let statuses = spec
            .containers
            .iter()
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap(),
                image_id: format!("sha-of-{}", c.image.clone().unwrap()),
                ready: true,
                restart_count: 0,
                state: Some(running()),
                ..Default::default()
            })
            .collect();
        Pod {
            metadata,
            spec: Some(spec),
            status: Some(PodStatus {
                container_statuses: Some(statuses),
                conditions: Some(vec![condition(READINESS_GATE, "True")]),
                ..Default::default()
            }),
        }
    }

    fn running() -> ContainerState {
        ContainerState {
            running: Some(ContainerStateRunning::default()),
            ..Default::default()
        }
    }

    fn condition(type_: &str, status: &str) -> PodCondition {
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            ..Default::default()
        }
    }

    fn set_gate(pod: &mut Pod, status: &str) {
        let conditions = pod.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions.retain(|c| c.type_ != READINESS_GATE);
        conditions.push(condition(READINESS_GATE, status));
    }

    /// Applies the parts of an in-place patch that matter here, as the API server would.
    fn apply_patch(pod: &mut Pod, patch: &Value) {
        let label = patch["metadata"]["labels"][REVISION_LABEL]
            .as_str()
            .unwrap();
        pod.metadata
            .labels
            .get_or_insert_default()
            .insert(REVISION_LABEL.into(), label.into());
        let record = patch["metadata"]["annotations"][ANNOTATION_IN_PLACE]
            .as_str()
            .unwrap();
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(ANNOTATION_IN_PLACE.into(), record.into());
        for c in patch["spec"]["containers"].as_array().unwrap() {
            let spec = pod.spec.as_mut().unwrap();
            let container = spec
                .containers
                .iter_mut()
                .find(|x| x.name == c["name"].as_str().unwrap())
                .unwrap();
            container.image = Some(c["image"].as_str().unwrap().into());
        }
    }

    /// The in-place patch taking `pod` to `image` at revision r2.
    fn image_patch(pod: &Pod, image: &str) -> Value {
        let method = update_method(
            pod,
            &template(image, "a"),
            "r2",
            PodUpdatePolicy::InPlaceIfPossible,
        );
        let Method::InPlace(patch) = method else {
            panic!("expected an in-place update, got {method:?}");
        };
        patch
    }

    #[test]
    fn template_declares_the_gate_once_and_hashes_all_but_images() {
        let mut t = template("redis:7.2", "a");
        prepare_template(&mut t);
        let gates = t.spec.as_ref().unwrap().readiness_gates.as_ref().unwrap();
        assert_eq!(gates.len(), 1);
        assert_eq!(gates[0].condition_type, READINESS_GATE);
        let hash = |t: &PodTemplateSpec| annotation(t.metadata.as_ref(), ANNOTATION_TEMPLATE_HASH);
        assert_eq!(hash(&t), hash(&template("redis:7.4", "a")));
        assert_ne!(hash(&t), hash(&template("redis:7.2", "b")));
    }

    #[test]
    fn image_only_change_is_patched_in_place_with_the_revision_and_a_record() {
        let pod = pod_from(&template("redis:7.2", "a"), "r1");
        let patch = image_patch(&pod, "redis:7.4");
        assert_eq!(
            patch["spec"]["containers"],
            json!([{"name": "db", "image": "redis:7.4"}])
        );
        assert_eq!(patch["metadata"]["labels"][REVISION_LABEL], "r2");
        let record: InPlaceRecord = serde_json::from_str(
            patch["metadata"]["annotations"][ANNOTATION_IN_PLACE]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(record.revision, "r2");
        assert_eq!(record.containers["db"].image_id, "sha-of-redis:7.2");
    }

    #[test]
    fn other_changes_recreate_or_wait_under_in_place_only() {
        let pod = pod_from(&template("redis:7.2", "a"), "r1");
        let changed = template("redis:7.4", "b");
        assert_eq!(
            update_method(&pod, &changed, "r2", PodUpdatePolicy::InPlaceIfPossible),
            Method::Recreate
        );
        assert_eq!(
            update_method(&pod, &changed, "r2", PodUpdatePolicy::InPlaceOnly),
            Method::Impossible("more than container images changed".into())
        );
        let same_images = template("redis:7.4", "a");
        assert_eq!(
            update_method(&pod, &same_images, "r2", PodUpdatePolicy::ReCreate),
            Method::Recreate
        );
    }

    #[test]
    fn a_pod_without_the_gate_is_recreated() {
        let mut pod = pod_from(&template("redis:7.2", "a"), "r1");
        pod.spec.as_mut().unwrap().readiness_gates = None;
        assert_eq!(
            update_method(
                &pod,
                &template("redis:7.4", "a"),
                "r2",
                PodUpdatePolicy::InPlaceIfPossible
            ),
            Method::Recreate
        );
    }

    #[test]
    fn a_new_pod_gets_its_gate_opened() {
        let mut pod = pod_from(&template("redis:7.2", "a"), "r1");
        pod.status.as_mut().unwrap().conditions = Some(Vec::new());
        assert!(!gate_open(&pod));
        assert_eq!(
            gate_to_open(&pod, Timestamp::UNIX_EPOCH),
            Some("PodCreated")
        );
        set_gate(&mut pod, "True");
        assert!(gate_open(&pod));
        assert_eq!(gate_to_open(&pod, Timestamp::UNIX_EPOCH), None);
    }

    #[test]
    fn the_gate_reopens_only_once_the_changed_container_restarted_and_is_ready() {
        let mut pod = pod_from(&template("redis:7.2", "a"), "r1");
        let patch = image_patch(&pod, "redis:7.4");
        set_gate(&mut pod, "False");
        apply_patch(&mut pod, &patch);
        assert!(updated_in_place(&pod));
        assert_eq!(
            gate_to_open(&pod, Timestamp::UNIX_EPOCH),
            None,
            "the kubelet has not restarted it yet"
        );

        let restarted = |pod: &mut Pod, ready: bool| {
            let statuses = pod.status.as_mut().unwrap().container_statuses.as_mut();
            let status = &mut statuses.unwrap()[0];
            status.restart_count = 1;
            status.ready = ready;
        };
        restarted(&mut pod, false);
        assert_eq!(
            gate_to_open(&pod, Timestamp::UNIX_EPOCH),
            None,
            "restarted but not ready"
        );
        restarted(&mut pod, true);
        assert_eq!(
            gate_to_open(&pod, Timestamp::UNIX_EPOCH),
            Some("InPlaceUpdated")
        );
    }

    #[test]
    fn a_gate_closed_for_an_update_that_never_came_reopens_after_a_while() {
        let mut pod = pod_from(&template("redis:7.2", "a"), "r1");
        set_gate(&mut pod, "False");
        let closed = Timestamp::from_second(1_000).unwrap();
        let gate = pod
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .last_mut()
            .unwrap();
        gate.last_transition_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(closed));
        let after = |s: i64| Timestamp::from_second(1_000 + s).unwrap();
        assert_eq!(
            gate_to_open(&pod, after(5)),
            None,
            "the patch may still come"
        );
        assert_eq!(
            gate_to_open(&pod, after(ABANDONED_AFTER_SECONDS + 1)),
            Some("InPlaceAbandoned")
        );

        let patch = image_patch(&pod, "redis:7.4");
        apply_patch(&mut pod, &patch);
        assert_eq!(
            gate_to_open(&pod, after(600)),
            None,
            "an update in progress keeps its gate closed until the container restarted"
        );
    }

    #[test]
    fn a_pod_recreated_at_a_later_revision_is_not_counted_as_in_place() {
        let mut pod = pod_from(&template("redis:7.2", "a"), "r1");
        pod.metadata.annotations.get_or_insert_default().insert(
            ANNOTATION_IN_PLACE.into(),
            r#"{"revision":"r0","containers":{}}"#.into(),
        );
        assert!(!updated_in_place(&pod));
    }
}
