//! Canaries under the operator: members below a part's `update.partition` must keep the old
//! revision even when their pods are recreated (a node lost, a pod deleted by hand).
//!
//! Under the operator StatefulSets use `OnDelete`, so berth decides the order of updates; but
//! the StatefulSet controller recreates any missing `OnDelete` pod at the *update* revision,
//! which would silently move a member below the partition to the new revision. And its
//! `status.currentRevision` never advances under `OnDelete`, so it may name a revision older
//! than the one the members run.
//!
//! So once every member at or above the partition runs the update revision (berth's part of
//! the rollout is done), the part is **held**: berth sets the StatefulSet's
//! `status.currentRevision` to the revision the members below the partition run, then hands it
//! `RollingUpdate` with the same partition. The controller then recreates members below the
//! partition at that revision and members above it at the update revision, and has nothing to
//! roll itself. Any change of the pod template (detected by [`TEMPLATE_DIGEST_ANNOTATION`] on
//! the StatefulSet) or of the partition ends the hold, so berth again rolls members in its own
//! order under `OnDelete`.

use std::collections::BTreeMap;

use berth_core::names;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use crate::rollout::REVISION_LABEL;

/// StatefulSet annotation: digest of the pod template berth last applied, so a held part can
/// tell that the StatefulSet's update revision is still the rendered template's.
pub const TEMPLATE_DIGEST_ANNOTATION: &str = "berth.io/template-digest";

/// A part whose partition holds members on an older revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The members below it keep `old_revision`.
    pub partition: i32,
    /// The revision the members below the partition run.
    pub old_revision: String,
}

/// Records the digest of a rendered StatefulSet's pod template on the object itself.
pub fn mark_template_digest(stateful_set: &mut Value) {
    let digest = template_digest(stateful_set);
    if let Some(metadata) = stateful_set
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(TEMPLATE_DIGEST_ANNOTATION.into(), digest.into());
        }
    }
}

/// Digest of a rendered StatefulSet's `spec.template`.
pub fn template_digest(stateful_set: &Value) -> String {
    let template = stateful_set
        .pointer("/spec/template")
        .map(Value::to_string)
        .unwrap_or_default();
    berth_core::load::short_digest([template.as_bytes()])
}

/// Whether `set`, about to be applied with a template of digest `digest`, is held at
/// `partition`, given its members' `pods`.
pub fn hold(set: &StatefulSet, pods: &[Pod], partition: i32, digest: &str) -> Option<Hold> {
    let status = set.status.as_ref()?;
    let update = status.update_revision.as_deref()?;
    let applied = set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATE_DIGEST_ANNOTATION));
    // The update revision is the applied template's once the controller has observed it, or
    // while the part is held already (a hold changes the strategy, not the template).
    let caught_up = status.observed_generation >= set.metadata.generation;
    let held = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("RollingUpdate");
    if partition <= 0 || applied.map(String::as_str) != Some(digest) || !(caught_up || held) {
        return None;
    }
    let name = set.metadata.name.as_deref()?;
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let revision_of = |ordinal: i32| {
        let member = names::member_name(name, ordinal);
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(&member))?;
        pod.metadata.labels.as_ref()?.get(REVISION_LABEL).cloned()
    };
    let above_done = (partition..replicas).all(|o| revision_of(o).as_deref() == Some(update));
    let old_revision = most_common((0..partition.min(replicas)).filter_map(revision_of), update)?;
    above_done.then_some(Hold {
        partition,
        old_revision,
    })
}

/// The revision most of `revisions` name, other than `update` (ties: the smallest).
fn most_common(revisions: impl Iterator<Item = String>, update: &str) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for revision in revisions.filter(|r| r != update) {
        *counts.entry(revision).or_default() += 1;
    }
    let most = counts.values().copied().max()?;
    counts.into_iter().find(|(_, n)| *n == most).map(|(r, _)| r)
}

/// The rendered StatefulSet with the controller's own partitioned `RollingUpdate`.
pub fn apply_hold(stateful_set: &mut Value, hold: &Hold) {
    if let Some(spec) = stateful_set.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(
            "updateStrategy".into(),
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": hold.partition}}),
        );
    }
}

/// The status patch that makes the StatefulSet controller recreate members below the
/// partition at the old revision; `None` when its status says so already.
pub fn current_revision_patch(set: &StatefulSet, hold: &Hold) -> Option<Value> {
    let current = set.status.as_ref()?.current_revision.as_deref();
    (current != Some(hold.old_revision.as_str()))
        .then(|| json!({"status": {"currentRevision": hold.old_revision}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn set(digest: &str) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(4),
                annotations: Some(BTreeMap::from([(
                    TEMPLATE_DIGEST_ANNOTATION.to_string(),
                    digest.to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(3),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                observed_generation: Some(4),
                current_revision: Some("web-ancient".into()),
                update_revision: Some("web-new".into()),
                ..Default::default()
            }),
        }
    }

    fn pods(revisions: &[&str]) -> Vec<Pod> {
        revisions
            .iter()
            .enumerate()
            .map(|(i, r)| Pod {
                metadata: ObjectMeta {
                    name: Some(format!("web-{i}")),
                    labels: Some(BTreeMap::from([(
                        REVISION_LABEL.to_string(),
                        r.to_string(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_part_is_held_once_every_member_above_the_partition_is_updated() {
        let held = hold(&set("d"), &pods(&["web-old", "web-old", "web-new"]), 2, "d");
        let expected = Hold {
            partition: 2,
            old_revision: "web-old".into(),
        };
        assert_eq!(held, Some(expected.clone()));
        assert_eq!(
            current_revision_patch(&set("d"), &expected),
            Some(json!({"status": {"currentRevision": "web-old"}}))
        );
    }

    #[test]
    fn berth_keeps_rolling_while_members_above_the_partition_wait() {
        let rolling = pods(&["web-old", "web-old", "web-old"]);
        assert_eq!(hold(&set("d"), &rolling, 2, "d"), None);
        let missing = pods(&["web-old", "web-old"]);
        assert_eq!(hold(&set("d"), &missing, 2, "d"), None);
    }

    #[test]
    fn a_new_template_or_no_partition_ends_the_hold() {
        let done = pods(&["web-old", "web-old", "web-new"]);
        assert_eq!(hold(&set("d"), &done, 2, "other"), None, "a new template");
        assert_eq!(hold(&set("d"), &done, 0, "d"), None, "no partition");
        let all_new = pods(&["web-new", "web-new", "web-new"]);
        assert_eq!(hold(&set("d"), &all_new, 2, "d"), None, "nothing held back");
    }

    #[test]
    fn the_hold_hands_the_partition_to_the_controller() {
        let mut object = json!({"metadata": {}, "spec": {"updateStrategy": {"type": "OnDelete"}, "template": {}}});
        mark_template_digest(&mut object);
        assert_eq!(
            object["metadata"]["annotations"][TEMPLATE_DIGEST_ANNOTATION],
            template_digest(&object)
        );
        apply_hold(
            &mut object,
            &Hold {
                partition: 2,
                old_revision: "r".into(),
            },
        );
        assert_eq!(
            object["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
        );
    }
}
