//! Strict Kubernetes objects: unknown fields and bad quantities in every pod template
//! (`spec.parts[*].template`) and in extra objects of built-in kinds.
//!
//! k8s-openapi's types ignore unknown fields when deserialising, so a typo such as `imagee:`
//! would vanish and the workload would be rendered without an image. berth's own types deny
//! unknown fields through serde; for the Kubernetes types we walk the user's value tree (as
//! written, before deserialisation) against the JSON schema k8s-openapi generates for the type
//! (its `schemars` feature; the same schema the CRD embeds for the pod template). That schema is
//! small and regular: objects list their `properties` (or give `additionalProperties` for maps),
//! lists give `items`, and named types are `$ref`s into `$defs`. So:
//! - a key of an object that is not among its `properties` (and the object is no map) is an
//!   unknown field, reported with its path and the nearest known name;
//! - a value whose schema is the `Quantity` definition must be a Kubernetes quantity, wherever it
//!   appears (requests, limits, `emptyDir.sizeLimit`, claim templates, overhead, ...).
//!
//! Types of scalars are left to deserialisation, which reports them with their path.

use std::sync::OnceLock;

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value};

use crate::diag::Diagnostics;
use crate::quantity;

/// The `$defs` name of `resource.Quantity` in k8s-openapi's schemas.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

/// A type's schema as a JSON tree, definitions at `$defs`.
fn schema_of<T: JsonSchema>() -> Value {
    let root = SchemaGenerator::default().into_root_schema_for::<T>();
    serde_json::to_value(root).expect("a schema is JSON")
}

fn pod_template_schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(schema_of::<k8s_openapi::api::core::v1::PodTemplateSpec>)
}

/// Checks the pod templates and the extra objects of built-in kinds in the spec document `doc`.
pub fn check_kubernetes_objects(doc: &Value) -> Diagnostics {
    let mut problems = Diagnostics::default();
    let parts = doc.pointer("/spec/parts").and_then(Value::as_array);
    for (i, part) in parts.into_iter().flatten().enumerate() {
        if let Some(template) = part.get("template") {
            let schema = pod_template_schema();
            let walker = Walker::new(schema, &mut problems);
            walker.walk(template, schema, &format!("spec.parts[{i}].template"));
        }
    }
    let extras = doc.pointer("/spec/extraObjects").and_then(Value::as_array);
    for (i, object) in extras.into_iter().flatten().enumerate() {
        if let Some(schema) = builtin_schema(object) {
            let walker = Walker::new(&schema, &mut problems);
            walker.walk(object, &schema, &format!("spec.extraObjects[{i}]"));
        }
    }
    problems
}

/// The schema of an extra object's kind, for the built-in kinds people put next to an app.
fn builtin_schema(object: &Value) -> Option<Value> {
    use k8s_openapi::api::{batch, core, networking, policy, rbac};
    let field = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or("");
    let schema = match (field("apiVersion"), field("kind")) {
        ("v1", "ConfigMap") => schema_of::<core::v1::ConfigMap>(),
        ("v1", "Secret") => schema_of::<core::v1::Secret>(),
        ("v1", "Service") => schema_of::<core::v1::Service>(),
        ("v1", "ServiceAccount") => schema_of::<core::v1::ServiceAccount>(),
        ("v1", "PersistentVolumeClaim") => schema_of::<core::v1::PersistentVolumeClaim>(),
        ("batch/v1", "Job") => schema_of::<batch::v1::Job>(),
        ("batch/v1", "CronJob") => schema_of::<batch::v1::CronJob>(),
        ("policy/v1", "PodDisruptionBudget") => schema_of::<policy::v1::PodDisruptionBudget>(),
        ("networking.k8s.io/v1", "NetworkPolicy") => schema_of::<networking::v1::NetworkPolicy>(),
        ("rbac.authorization.k8s.io/v1", "Role") => schema_of::<rbac::v1::Role>(),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => schema_of::<rbac::v1::RoleBinding>(),
        _ => return None,
    };
    Some(schema)
}

/// Walks a value tree along a schema, recording problems.
struct Walker<'a> {
    defs: Option<&'a Map<String, Value>>,
    problems: &'a mut Diagnostics,
}

impl<'a> Walker<'a> {
    fn new(root: &'a Value, problems: &'a mut Diagnostics) -> Self {
        let defs = root.get("$defs").and_then(Value::as_object);
        Self { defs, problems }
    }

    fn walk(mut self, value: &Value, schema: &Value, path: &str) {
        self.visit(value, schema, path);
    }

    fn visit(&mut self, value: &Value, schema: &Value, path: &str) {
        let schema = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.trim_start_matches("#/$defs/");
                if name == QUANTITY {
                    return self.quantity(value, path);
                }
                match self.defs.and_then(|d| d.get(name)) {
                    Some(definition) => definition,
                    None => return,
                }
            }
            None => schema,
        };
        match value {
            Value::Object(map) => self.object(map, schema, path),
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.visit(item, item_schema, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }

    fn object(&mut self, map: &Map<String, Value>, schema: &Value, path: &str) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties").filter(|s| s.is_object());
        for (key, value) in map {
            let child = format!("{path}.{key}");
            match (properties.and_then(|p| p.get(key)), additional) {
                (Some(field), _) | (None, Some(field)) => self.visit(value, field, &child),
                (None, None) => {
                    if let Some(known) = properties {
                        self.problems.push(child, unknown_field(key, known));
                    }
                }
            }
        }
    }

    fn quantity(&mut self, value: &Value, path: &str) {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => return,
            _ => {
                let message = "expected a quantity such as 500m or 100Gi, found a list or mapping";
                return self.problems.push(path, message);
            }
        };
        if let Err(e) = quantity::check(&text) {
            self.problems.push(path, e);
        }
    }
}

/// `unknown field `imagee`; did you mean `image`?`, or the list of known fields.
fn unknown_field(key: &str, known: &Map<String, Value>) -> String {
    let nearest = known
        .keys()
        .map(|k| (edit_distance(&key.to_lowercase(), &k.to_lowercase()), k))
        .min();
    match nearest {
        Some((distance, name)) if distance <= 2 && distance < key.len() => {
            format!("unknown field `{key}`; did you mean `{name}`?")
        }
        _ => {
            let names: Vec<String> = known.keys().map(|k| format!("`{k}`")).collect();
            format!(
                "unknown field `{key}`, expected one of {}",
                names.join(", ")
            )
        }
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(template: Value) -> Vec<String> {
        let doc = json!({"spec": {"parts": [{"template": template}]}});
        check_kubernetes_objects(&doc)
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn known_fields_and_maps_pass() {
        let template = json!({
            "metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
            "spec": {
                "containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": 1, "memory": "1Gi"}},
                                "env": [{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}],
                "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}],
                "nodeSelector": {"disk": "ssd"}
            }
        });
        assert_eq!(problems(template), Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        let template =
            json!({"spec": {"containers": [{"name": "c", "imagee": "i"}], "volumez": []}});
        assert_eq!(
            problems(template),
            [
                "spec.parts[0].template.spec.containers[0].imagee: unknown field `imagee`; did you mean `image`?",
                "spec.parts[0].template.spec.volumez: unknown field `volumez`; did you mean `volumes`?",
            ]
        );
    }

    #[test]
    fn quantities_are_checked_wherever_they_appear() {
        let template = json!({"spec": {
            "initContainers": [{"name": "i", "resources": {"limits": {"memory": "lots"}}}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1GB"}}],
            "containers": [{"name": "c"}]
        }});
        let found = problems(template);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("spec.parts[0].template.spec.initContainers[0].resources.limits.memory: `lots` is not a quantity"));
        assert!(
            found[1]
                .starts_with("spec.parts[0].template.spec.volumes[0].emptyDir.sizeLimit: `1GB`")
        );
    }

    #[test]
    fn extra_objects_of_builtin_kinds_are_strict() {
        let doc = json!({"spec": {"extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dat": {}},
            {"apiVersion": "example.com/v1", "kind": "Thing", "anything": 1}
        ]}});
        let found = check_kubernetes_objects(&doc).to_string();
        assert_eq!(
            found,
            "spec.extraObjects[0].dat: unknown field `dat`; did you mean `data`?"
        );
    }
}
