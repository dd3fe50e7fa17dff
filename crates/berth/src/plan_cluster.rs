//! The text of `berth plan --kubeconfig`: a summary line, every object that changes with its
//! fields (multi-line values such as config files as unified diffs), the member steps in order
//! (worded as the local plan's), then the notes.

use berth_k8s::preview::{ClusterPreview, FieldChange, MemberAction, ObjectAction, ObjectChange};
use serde_json::Value;

use crate::plan::steps_and_notes;

/// The cluster plan as text.
pub fn text(preview: &ClusterPreview) -> String {
    let mut out = summary(preview);
    let changed: Vec<&ObjectChange> = preview
        .objects
        .iter()
        .filter(|o| o.action != ObjectAction::Unchanged)
        .collect();
    if !changed.is_empty() {
        out.push_str("\nobjects:\n");
        changed.iter().for_each(|o| out.push_str(&object_text(o)));
    }
    out.push_str(&steps_and_notes(
        &preview.steps,
        &preview.notes,
        "\nno member changes\n",
    ));
    out
}

fn summary(preview: &ClusterPreview) -> String {
    let objects = |a: ObjectAction| preview.objects.iter().filter(|o| o.action == a).count();
    let members = |a: MemberAction| preview.members.iter().filter(|m| m.action == a).count();
    format!(
        "{} (namespace {}): objects: {} to create, {} to change, {} to delete, {} unchanged; \
         members: {} to restart, {} to update in place, {} to start, {} to stop, {} held, {} \
         unchanged\n",
        preview.app,
        preview.namespace,
        objects(ObjectAction::Create),
        objects(ObjectAction::Change),
        objects(ObjectAction::Delete),
        objects(ObjectAction::Unchanged),
        members(MemberAction::Restart),
        members(MemberAction::InPlace),
        members(MemberAction::Start),
        members(MemberAction::Stop),
        members(MemberAction::Held),
        members(MemberAction::Keep),
    )
}

fn object_text(object: &ObjectChange) -> String {
    let action = match object.action {
        ObjectAction::Create => "create",
        ObjectAction::Change => "change",
        ObjectAction::Delete => "delete",
        ObjectAction::Unchanged => "keep",
    };
    let mut out = format!("  {action} {} {}\n", object.kind, object.name);
    object
        .fields
        .iter()
        .for_each(|f| out.push_str(&field_text(f)));
    out
}

/// One changed field: `path: before -> after`, or a unified diff of two multi-line strings.
fn field_text(field: &FieldChange) -> String {
    if let (Some(Value::String(before)), Some(Value::String(after))) = (&field.before, &field.after)
        && (before.contains('\n') || after.contains('\n'))
    {
        let diff = similar::TextDiff::from_lines(before, after)
            .unified_diff()
            .context_radius(2)
            .to_string();
        let indented: String = diff.lines().map(|l| format!("        {l}\n")).collect();
        return format!("      {}:\n{indented}", field.path);
    }
    format!(
        "      {}: {} -> {}\n",
        field.path,
        shown(field.before.as_ref()),
        shown(field.after.as_ref())
    )
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "(absent)".to_string(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::preview::PlannedStep;
    use berth_k8s::preview::MemberOutcome;
    use serde_json::json;

    #[test]
    fn changed_objects_show_their_fields_and_config_files_as_diffs() {
        let preview = ClusterPreview {
            app: "web".into(),
            namespace: "shop".into(),
            objects: vec![ObjectChange {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                name: "web-config".into(),
                action: ObjectAction::Change,
                fields: vec![
                    FieldChange {
                        path: "data[\"redis.conf\"]".into(),
                        before: Some(json!("port 6379\nmaxmemory 1mb\n")),
                        after: Some(json!("port 6379\nmaxmemory 2mb\n")),
                    },
                    FieldChange {
                        path: "metadata.labels.tier".into(),
                        before: None,
                        after: Some(json!("cache")),
                    },
                ],
            }],
            members: vec![MemberOutcome {
                name: "web-redis-0".into(),
                action: MemberAction::Restart,
            }],
            steps: vec![PlannedStep::Restart {
                member: "web-redis-0".into(),
                role: Some("master".into()),
                because: vec!["ConfigMap web-config redis.conf".into()],
                in_place: false,
            }],
            notes: vec!["rollout of part redis: strategy RoleAware".into()],
        };
        let text = text(&preview);
        assert!(
            text.starts_with("web (namespace shop): objects: 0 to create, 1 to change"),
            "{text}"
        );
        assert!(
            text.contains("        -maxmemory 1mb\n        +maxmemory 2mb\n"),
            "{text}"
        );
        assert!(
            text.contains("      metadata.labels.tier: (absent) -> \"cache\"\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "  1. restart web-redis-0 (role master): ConfigMap web-config redis.conf"
            ),
            "{text}"
        );
    }
}
