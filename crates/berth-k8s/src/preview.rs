//! What applying a spec to a cluster would do (`berth plan --kubeconfig`), decided without I/O
//! from what the caller read and dry-ran: each object created, changed (a field-level diff of
//! the live object against the API server's server-side dry run of berth's apply) or deleted,
//! and each StatefulSet part's members in the order the operator would take them, with the
//! switchovers, in-place updates and membership actions, through the same planners
//! ([`berth_core::preview::roll`], [`berth_core::preview::scale`]) the operator runs.

use std::collections::BTreeSet;

use berth_core::names;
use berth_core::preview::{self as core_preview, Named, PlannedStep};
use berth_core::rollout::Policy;
use berth_core::spec::PartSpec;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::inplace::{self, Method};
use crate::prune::ObjectKey;

/// What applying the spec would do.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPreview {
    /// The app.
    pub app: String,
    /// Its namespace.
    pub namespace: String,
    /// Every object berth would apply or delete, the StatefulApp first.
    pub objects: Vec<ObjectChange>,
    /// What happens to each member.
    pub members: Vec<MemberOutcome>,
    /// The member steps, in the order the operator would take them.
    pub steps: Vec<PlannedStep>,
    /// Rollouts, waits and refusals the apply would meet.
    pub notes: Vec<String>,
}

/// What happens to one object.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectChange {
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Created, changed, deleted or unchanged.
    pub action: ObjectAction,
    /// The fields that change (for a change).
    pub fields: Vec<FieldChange>,
}

/// What happens to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectAction {
    /// It does not exist and is created.
    Create,
    /// It exists and changes.
    Change,
    /// It exists and stays as it is.
    Unchanged,
    /// berth created it, the spec no longer has it, and it is deleted.
    Delete,
}

/// One field that changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    /// Its path, e.g. `spec.template.spec.containers[redis].image`.
    pub path: String,
    /// Its value now (`null`: absent).
    pub before: Option<Value>,
    /// Its value after the apply (`null`: removed).
    pub after: Option<Value>,
}

/// What happens to one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberOutcome {
    /// The pod's name.
    pub name: String,
    /// What happens to it.
    pub action: MemberAction,
}

/// What happens to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberAction {
    /// Nothing.
    Keep,
    /// Its pod is recreated on the new revision.
    Restart,
    /// Its containers take new images in place.
    InPlace,
    /// Its revision changes but it keeps the old one (partition, OnDelete, a wait).
    Held,
    /// It is new.
    Start,
    /// It is removed.
    Stop,
}

/// Metadata the API server keeps and berth never sets: left out of diffs.
const SERVER_METADATA: [&str; 6] = [
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// Template annotations that change whenever anything in the template does: no reason in
/// themselves.
const DERIVED_ANNOTATIONS: [&str; 2] = [
    crate::partition::TEMPLATE_DIGEST_ANNOTATION,
    inplace::ANNOTATION_TEMPLATE_HASH,
];

/// The change of one object: `live` is what the cluster holds (`None`: nothing), `planned` the
/// server-side dry run of berth's apply (or, for an object to create, what berth would send).
pub fn object_change(key: &ObjectKey, live: Option<&Value>, planned: &Value) -> ObjectChange {
    let (action, fields) = match live {
        None => (ObjectAction::Create, Vec::new()),
        Some(live) => {
            let fields = diff(&comparable(live), &comparable(planned));
            let action = if fields.is_empty() {
                ObjectAction::Unchanged
            } else {
                ObjectAction::Change
            };
            (action, fields)
        }
    };
    ObjectChange {
        api_version: key.api_version.clone(),
        kind: key.kind.clone(),
        name: key.name.clone(),
        action,
        fields,
    }
}

/// An object to delete.
pub fn deletion(key: &ObjectKey) -> ObjectChange {
    ObjectChange {
        api_version: key.api_version.clone(),
        kind: key.kind.clone(),
        name: key.name.clone(),
        action: ObjectAction::Delete,
        fields: Vec::new(),
    }
}

/// `object` without its status and the metadata only the API server writes.
fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            SERVER_METADATA.iter().for_each(|k| {
                metadata.remove(*k);
            });
        }
    }
    object
}

/// The fields that differ between `before` and `after`, by path. Lists whose items all have a
/// `name` are compared by name (containers, env, ports, volumes), other lists item by item when
/// their lengths agree and as a whole otherwise.
pub fn diff(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_at("", before, after, &mut out);
    out
}

fn diff_at(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => diff_maps(path, b, a, out),
        (Value::Array(b), Value::Array(a)) => diff_lists(path, b, a, out),
        _ if before != after => out.push(FieldChange {
            path: path.to_string(),
            before: Some(before.clone()).filter(|v| !v.is_null()),
            after: Some(after.clone()).filter(|v| !v.is_null()),
        }),
        _ => {}
    }
}

fn diff_maps(
    path: &str,
    before: &Map<String, Value>,
    after: &Map<String, Value>,
    out: &mut Vec<FieldChange>,
) {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for key in keys {
        let at = child_path(path, key);
        match (before.get(key), after.get(key)) {
            (Some(b), Some(a)) => diff_at(&at, b, a, out),
            (b, a) => out.push(FieldChange {
                path: at,
                before: b.cloned(),
                after: a.cloned(),
            }),
        }
    }
}

fn diff_lists(path: &str, before: &[Value], after: &[Value], out: &mut Vec<FieldChange>) {
    let named = |items: &[Value]| -> Option<Map<String, Value>> {
        items
            .iter()
            .map(|i| Some((i.get("name")?.as_str()?.to_string(), i.clone())))
            .collect()
    };
    match (named(before), named(after)) {
        (Some(b), Some(a)) if !b.is_empty() || !a.is_empty() => {
            let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let at = format!("{path}[{key}]");
                match (b.get(key), a.get(key)) {
                    (Some(x), Some(y)) => diff_at(&at, x, y, out),
                    (x, y) => out.push(FieldChange {
                        path: at,
                        before: x.cloned(),
                        after: y.cloned(),
                    }),
                }
            }
        }
        _ if before.len() == after.len() => {
            for (i, (b, a)) in before.iter().zip(after).enumerate() {
                diff_at(&format!("{path}[{i}]"), b, a, out);
            }
        }
        _ => out.push(FieldChange {
            path: path.to_string(),
            before: Some(Value::Array(before.to_vec())),
            after: Some(Value::Array(after.to_vec())),
        }),
    }
}

/// `path.key`, or `path["key"]` for keys with dots or slashes (labels, annotations, files).
fn child_path(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[\"{key}\"]"),
    }
}

/// One StatefulSet part as the preview needs it.
#[derive(Clone, Copy, Debug)]
pub struct PartView<'a> {
    /// The part.
    pub part: &'a PartSpec,
    /// Its StatefulSet's name.
    pub workload: &'a str,
    /// The StatefulSet on the cluster (`None`: not created yet).
    pub live: Option<&'a StatefulSet>,
    /// The part's pods.
    pub pods: &'a [Pod],
    /// The pod template after the apply (the dry run's).
    pub template: Option<&'a PodTemplateSpec>,
    /// What changed in the pod template, in a few words each (empty: nothing).
    pub template_changes: &'a [String],
}

/// A part's members and steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartPreview {
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// What happens to each member.
    pub members: Vec<MemberOutcome>,
    /// Waits and refusals.
    pub notes: Vec<String>,
}

/// What the operator would do to the members of a StatefulSet part: members beyond the new size
/// leave from the top (each after memberLeave, if declared), the rest roll to the new template
/// in the planner's order, then new members join (each after memberJoin, if declared).
pub fn part_preview(view: &PartView, now: Timestamp) -> PartPreview {
    let desired = view.part.desired_replicas();
    let mut members = current_members(view, now);
    let mut out = PartPreview::default();
    let fewer = usize::try_from(desired).unwrap_or(0) < members.len();
    if fewer {
        scale(view, &mut members, desired, &mut out);
    }
    roll(view, &mut members, &mut out);
    if !fewer {
        scale(view, &mut members, desired, &mut out);
    }
    out
}

/// The part's size change, as the core plays it through ([`core_preview::scale`]).
fn scale(view: &PartView, members: &mut Vec<Named>, desired: i32, out: &mut PartPreview) {
    let name = |ordinal: i32| names::member_name(view.workload, ordinal);
    let scaled = core_preview::scale(view.part, members, desired, &name);
    for step in &scaled.steps {
        match step {
            PlannedStep::Start { member, .. } => {
                out.members.push(outcome(member, MemberAction::Start))
            }
            PlannedStep::Stop { member, .. } => {
                out.members.push(outcome(member, MemberAction::Stop))
            }
            _ => {}
        }
    }
    out.steps.extend(scaled.steps);
    out.notes.extend(scaled.notes);
    *members = scaled.members;
}

/// The members running now as the planner sees them against the new template.
fn current_members(view: &PartView, now: Timestamp) -> Vec<Named> {
    let Some(set) = view.live else {
        return Vec::new();
    };
    let mut states = crate::rollout::member_states(set, view.pods, now).unwrap_or_default();
    if !view.template_changes.is_empty() {
        states.iter_mut().for_each(|m| m.updated = false);
    }
    states
        .into_iter()
        .map(|m| (names::member_name(view.workload, m.ordinal), m))
        .collect()
}

fn roll(view: &PartView, members: &mut [Named], out: &mut PartPreview) {
    let policy = Policy::for_part(view.part, view.part.desired_replicas());
    let in_place = |member: &str| matches!(method(view, member), Some(Method::InPlace(_)));
    let update = |member: &str| core_preview::Update {
        because: view.template_changes.to_vec(),
        in_place: in_place(member),
    };
    let rolled = core_preview::roll(&view.part.name, &policy, members, &update);
    out.steps.extend(rolled.steps);
    out.notes.extend(rolled.notes);
    for ((name, before), after) in members.iter_mut().zip(&rolled.members) {
        if let (false, Some(Method::Impossible(why))) = (before.updated, method(view, name)) {
            out.notes.push(format!(
                "{name} cannot be updated in place ({why}) and the part allows nothing else: \
                 the operator would report it and leave it on its revision"
            ));
        }
        let action = match (before.updated, after.updated) {
            (true, _) => MemberAction::Keep,
            (false, false) => MemberAction::Held,
            (false, true) if in_place(name) => MemberAction::InPlace,
            (false, true) => MemberAction::Restart,
        };
        out.members.push(outcome(name, action));
        *before = after.clone();
    }
}

/// How member `name` would take the new template (`None`: it has no pod yet).
fn method(view: &PartView, name: &str) -> Option<Method> {
    let pod = view
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))?;
    let template = view.template?;
    Some(inplace::update_method(
        pod,
        template,
        "",
        view.part.update.pod_update_policy,
    ))
}

fn outcome(name: &str, action: MemberAction) -> MemberOutcome {
    MemberOutcome {
        name: name.to_string(),
        action,
    }
}

/// What changed in a StatefulSet's pod template, in a few words each: the field paths under
/// `spec.template` (without annotations derived from the rest); a changed config hash names the
/// changed ConfigMaps' files instead (`config_changes`).
pub fn template_changes(set_change: &ObjectChange, config_changes: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for field in &set_change.fields {
        let Some(path) = field.path.strip_prefix("spec.template.") else {
            continue;
        };
        if DERIVED_ANNOTATIONS.iter().any(|a| path.contains(a)) {
            continue;
        }
        if path.contains(names::ANNOTATION_CONFIG_HASH) && !config_changes.is_empty() {
            out.extend(config_changes.iter().cloned());
        } else {
            out.push(path.to_string());
        }
    }
    out
}

/// The changed files of the ConfigMaps among `objects`, as `ConfigMap <name> <file>`.
pub fn config_changes(objects: &[ObjectChange]) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o.kind == "ConfigMap" && o.action == ObjectAction::Change)
        .flat_map(|o| {
            o.fields.iter().filter_map(move |f| {
                let file = f.path.strip_prefix("data")?;
                let file = file.trim_start_matches('.').trim_start_matches("[\"");
                Some(format!(
                    "ConfigMap {} {}",
                    o.name,
                    file.trim_end_matches("\"]")
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::REVISION_LABEL;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_diff_names_fields_by_path_and_list_items_by_name() {
        let live = json!({
            "metadata": {"name": "web", "resourceVersion": "7", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "redis", "image": "redis:7", "args": ["a", "b"]},
                {"name": "exporter", "image": "exp:1"}
            ]}}},
            "status": {"replicas": 3}
        });
        let planned = json!({
            "metadata": {"name": "web", "resourceVersion": "8", "labels": {"app.kubernetes.io/name": "web2"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "exporter", "image": "exp:1"},
                {"name": "redis", "image": "redis:8", "args": ["a", "b", "c"]}
            ]}}},
            "status": {"replicas": 1}
        });
        let change = object_change(&key("StatefulSet", "web"), Some(&live), &planned);
        assert_eq!(change.action, ObjectAction::Change);
        let paths: Vec<&str> = change.fields.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "metadata.labels[\"app.kubernetes.io/name\"]",
                "spec.template.spec.containers[redis].args",
                "spec.template.spec.containers[redis].image",
            ]
        );
        assert_eq!(change.fields[2].after, Some(json!("redis:8")));
    }

    #[test]
    fn server_fields_and_status_alone_leave_an_object_unchanged_and_absence_means_create() {
        let live = json!({"metadata": {"name": "a", "uid": "1", "generation": 3}, "data": {"x": "1"}, "status": {}});
        let planned =
            json!({"metadata": {"name": "a", "uid": "1", "generation": 4}, "data": {"x": "1"}});
        let k = key("ConfigMap", "a");
        assert_eq!(
            object_change(&k, Some(&live), &planned).action,
            ObjectAction::Unchanged
        );
        assert_eq!(
            object_change(&k, None, &planned).action,
            ObjectAction::Create
        );
    }

    #[test]
    fn a_config_hash_change_is_explained_by_the_changed_files() {
        let configmap = ObjectChange {
            fields: vec![FieldChange {
                path: "data[\"redis.conf\"]".into(),
                before: Some(json!("a")),
                after: Some(json!("b")),
            }],
            ..object_change(&key("ConfigMap", "web-config"), None, &json!({}))
        };
        let configmap = ObjectChange {
            action: ObjectAction::Change,
            ..configmap
        };
        let set = ObjectChange {
            action: ObjectAction::Change,
            fields: [
                "spec.template.metadata.annotations[\"berth.io/config-hash\"]",
                "spec.template.metadata.annotations[\"berth.io/template-digest\"]",
                "spec.replicas",
            ]
            .iter()
            .map(|p| FieldChange {
                path: (*p).into(),
                before: None,
                after: None,
            })
            .collect(),
            ..configmap.clone()
        };
        let files = config_changes(&[configmap]);
        assert_eq!(files, ["ConfigMap web-config redis.conf"]);
        assert_eq!(template_changes(&set, &files), files);
    }

    fn part(yaml: &str) -> PartSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn redis_part(replicas: i32) -> PartSpec {
        part(&format!(
            r"
name: redis
replicas: {replicas}
update: {{strategy: RoleAware}}
template: {{spec: {{containers: [{{name: redis, image: redis}}]}}}}
state:
  topology:
    roles: [{{name: master, writable: true}}, {{name: slave}}]
    roleProbe: {{exec: [probe]}}
    actions:
      switchover: {{exec: [switch]}}
      memberLeave: {{exec: [leave]}}
"
        ))
    }

    fn live_set(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web-redis".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                update_revision: Some("r1".into()),
                ..Default::default()
            }),
        }
    }

    fn pod(ordinal: i32, role: &str) -> Pod {
        let labels = BTreeMap::from([
            (REVISION_LABEL.to_string(), "r1".to_string()),
            (names::LABEL_ROLE.to_string(), role.to_string()),
        ]);
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("web-redis-{ordinal}")),
                labels: Some(labels),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_template_change_rolls_replicas_first_then_switches_over_then_the_master() {
        let spec = redis_part(3);
        let set = live_set(3);
        let pods = [pod(0, "master"), pod(1, "slave"), pod(2, "slave")];
        let changes = ["ConfigMap web-config redis.conf".to_string()];
        let view = PartView {
            part: &spec,
            workload: "web-redis",
            live: Some(&set),
            pods: &pods,
            template: None,
            template_changes: &changes,
        };
        let preview = part_preview(&view, Timestamp::now());
        let order: Vec<String> = preview
            .steps
            .iter()
            .map(|s| match s {
                PlannedStep::Restart { member, .. } => format!("restart {member}"),
                PlannedStep::Switchover { from, to } => format!("switchover {from} {to}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            order,
            [
                "restart web-redis-2",
                "restart web-redis-1",
                "switchover web-redis-0 web-redis-2",
                "restart web-redis-0"
            ]
        );
        assert!(
            preview
                .members
                .iter()
                .all(|m| m.action == MemberAction::Restart)
        );
    }

    #[test]
    fn an_unchanged_template_keeps_every_member_and_scaling_down_leaves_from_the_top() {
        let spec = redis_part(1);
        let set = live_set(3);
        let pods = [pod(0, "master"), pod(1, "slave"), pod(2, "slave")];
        let view = PartView {
            part: &spec,
            workload: "web-redis",
            live: Some(&set),
            pods: &pods,
            template: None,
            template_changes: &[],
        };
        let preview = part_preview(&view, Timestamp::now());
        assert_eq!(
            preview.steps,
            [
                PlannedStep::Stop {
                    member: "web-redis-2".into(),
                    leave_in: Some("web-redis-0".into()),
                },
                PlannedStep::Stop {
                    member: "web-redis-1".into(),
                    leave_in: Some("web-redis-0".into()),
                },
            ]
        );
        let kept = preview.members.iter().find(|m| m.name == "web-redis-0");
        assert_eq!(kept.map(|m| m.action), Some(MemberAction::Keep));
    }

    #[test]
    fn a_new_part_starts_every_member_without_membership_actions() {
        let spec = redis_part(2);
        let view = PartView {
            part: &spec,
            workload: "web-redis",
            live: None,
            pods: &[],
            template: None,
            template_changes: &[],
        };
        let preview = part_preview(&view, Timestamp::now());
        assert_eq!(
            preview.steps,
            [
                PlannedStep::Start {
                    member: "web-redis-0".into(),
                    join_in: None,
                },
                PlannedStep::Start {
                    member: "web-redis-1".into(),
                    join_in: None,
                },
            ]
        );
    }
}
