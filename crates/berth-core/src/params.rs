//! Delivery parameters (seed 000's "params" map): typed keys, each pointing at a path in the
//! spec, set from values files and `--set key=value`, checked with the key and line of every
//! bad value, then written into the spec document before it is deserialised.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::quantity;
use crate::source::SourceDoc;
use crate::spec::{ParamSpec, ParamType};

/// A value given for a key, and where it was given.
#[derive(Clone, Debug, PartialEq)]
pub struct GivenValue {
    /// The parameter key.
    pub key: String,
    /// The value as written: typed for YAML, a string for `--set`.
    pub value: Value,
    /// `true` for `--set` text, which is parsed by the parameter's type.
    pub from_text: bool,
    /// The file (or `--set`) it came from.
    pub origin: String,
    /// Its line in that file.
    pub line: Option<usize>,
}

impl GivenValue {
    fn problem(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::at(self.key.clone(), message).in_file(&self.origin, self.line)
    }
}

/// Where the value written at a parameter's path came from: a values file's line, a `--set`
/// argument, or the parameter's declared default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The parameter's path, canonical (`spec.parts[0].replicas`).
    pub path: String,
    /// The file, or `--set key=value`.
    pub file: String,
    /// The line in that file.
    pub line: Option<usize>,
}

/// The origin of every value [`apply`] writes that was not already in the spec: the last value
/// given for the key, else the declared default.
pub fn origins(params: &[ParamSpec], given: &[GivenValue], doc: &SourceDoc) -> Vec<Origin> {
    let mut out = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let Ok(path) = FieldPath::parse(&p.path) else {
            continue;
        };
        let path = path.to_string();
        let (file, line) = match given.iter().rev().find(|g| g.key == p.key) {
            Some(g) if g.from_text => (format!("--set {}={}", g.key, text_of(&g.value)), None),
            Some(g) => (g.origin.clone(), g.line),
            None if p.default.is_some() => {
                let line = doc.line_of(&format!("spec.params[{i}].default"));
                (doc.file.clone(), line)
            }
            None => continue,
        };
        out.push(Origin { path, file, line });
    }
    out
}

/// Gives every unlocated diagnostic at or under a parameter's path the place its value came
/// from (the most specific path; the later parameter when two write the same path).
pub fn locate_by_origin(origins: &[Origin], mut diagnostics: Diagnostics) -> Diagnostics {
    for d in diagnostics.0.iter_mut().filter(|d| d.file.is_none()) {
        let under = |o: &&Origin| {
            d.path == o.path
                || d.path
                    .strip_prefix(o.path.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        };
        let best = origins
            .iter()
            .filter(under)
            .enumerate()
            .max_by_key(|(i, o)| (o.path.len(), *i));
        if let Some((_, o)) = best {
            d.file = Some(o.file.clone());
            d.line = o.line;
        }
    }
    diagnostics
}

fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

/// Reads a values file: a mapping of keys to values; nested mappings make dotted keys.
///
/// # Errors
/// Diagnostics for malformed YAML or a document that is not a mapping.
pub fn parse_values_file(file: &str, text: &str) -> Result<Vec<GivenValue>, Diagnostics> {
    let doc = SourceDoc::parse(file, text)?;
    let mut out = Vec::new();
    match &doc.value {
        Value::Object(_) => flatten(&doc, &doc.value, "", &mut out),
        Value::Null => {}
        _ => {
            return Err(Diagnostics::one(
                Diagnostic::at(
                    "",
                    "a values file must be a mapping of parameter keys to values",
                )
                .in_file(file, Some(1)),
            ));
        }
    }
    Ok(out)
}

fn flatten(doc: &SourceDoc, node: &Value, prefix: &str, out: &mut Vec<GivenValue>) {
    let Value::Object(map) = node else { return };
    for (key, value) in map {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if value.is_object() {
            flatten(doc, value, &full, out);
        } else {
            let line = doc.line_of(&full);
            out.push(GivenValue {
                key: full,
                value: value.clone(),
                from_text: false,
                origin: doc.file.clone(),
                line,
            });
        }
    }
}

/// Reads `--set key=value` arguments.
///
/// # Errors
/// A diagnostic for an argument without `=`.
pub fn parse_set_args(args: &[String]) -> Result<Vec<GivenValue>, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut out = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((key, value)) if !key.is_empty() => out.push(GivenValue {
                key: key.to_string(),
                value: Value::String(value.to_string()),
                from_text: true,
                origin: "--set".to_string(),
                line: None,
            }),
            _ => problems.0.push(
                Diagnostic::at("", format!("`{arg}` must have the form key=value"))
                    .in_file("--set", None),
            ),
        }
    }
    problems.into_result(out)
}

/// Checks the parameter definitions themselves against the spec document.
pub fn check_definitions(params: &[ParamSpec], doc: &Value) -> Diagnostics {
    let mut problems = Diagnostics::default();
    let mut seen = BTreeMap::new();
    for (i, p) in params.iter().enumerate() {
        let at = |field: &str| format!("spec.params[{i}].{field}");
        if p.key.is_empty() || p.key.starts_with('.') || p.key.ends_with('.') {
            problems.push(at("key"), format!("`{}` is not a usable key: expected words joined by dots, e.g. resourceRequest.cpu", p.key));
        }
        if let Some(first) = seen.insert(p.key.clone(), i) {
            problems.push(
                at("key"),
                format!(
                    "duplicate parameter key `{}` (also spec.params[{first}])",
                    p.key
                ),
            );
        }
        match FieldPath::parse(&p.path) {
            Err(e) => problems.push(at("path"), e),
            Ok(path) => check_target(&path, doc, &mut problems, &at("path")),
        }
        if p.kind == ParamType::Enum && p.values.is_empty() {
            problems.push(
                at("values"),
                "an enum parameter needs the list of allowed values",
            );
        }
        if let Some(default) = &p.default
            && let Err(e) = coerce(p, default, false)
        {
            problems.push(at("default"), e);
        }
    }
    problems
}

/// A path must lead into `spec`, and everything but its last step must already exist.
fn check_target(path: &FieldPath, doc: &Value, problems: &mut Diagnostics, at: &str) {
    use crate::path::Segment;
    if path.0.first() != Some(&Segment::Key("spec".to_string())) {
        problems.push(
            at,
            format!("`{path}` points outside the spec: a parameter path starts with `spec.`"),
        );
        return;
    }
    if path.0.get(1) == Some(&Segment::Key("params".to_string())) {
        problems.push(
            at,
            format!("`{path}` points into the parameter definitions themselves"),
        );
        return;
    }
    let mut scratch = doc.clone();
    if let Err(e) = path.set(&mut scratch, Value::Null) {
        problems.push(at, format!("`{path}` points nowhere: {e}"));
    }
}

/// Effective parameter values: given values (later ones win), else the default, else the value
/// at the path. Also reports unknown keys, bad values and missing required ones.
///
/// # Errors
/// Every problem, each with the key and where the value was given.
pub fn resolve(
    params: &[ParamSpec],
    given: &[GivenValue],
    doc: &Value,
) -> Result<BTreeMap<String, Value>, Diagnostics> {
    let mut problems = Diagnostics::default();
    let by_key: BTreeMap<&str, &ParamSpec> = params.iter().map(|p| (p.key.as_str(), p)).collect();
    let mut chosen: BTreeMap<String, Value> = BTreeMap::new();
    for g in given {
        let Some(spec) = by_key.get(g.key.as_str()) else {
            problems.0.push(g.problem(format!(
                "unknown parameter `{}`; known parameters: {}",
                g.key,
                known_keys(params)
            )));
            continue;
        };
        match coerce(spec, &g.value, g.from_text) {
            Ok(v) => {
                chosen.insert(g.key.clone(), v);
            }
            Err(e) => problems.0.push(g.problem(e)),
        }
    }
    for (i, p) in params.iter().enumerate() {
        if chosen.contains_key(&p.key) {
            continue;
        }
        if p.required {
            problems.push(
                format!("spec.params[{i}]"),
                format!(
                    "parameter `{}` is required: give it in a values file or with --set {}=...",
                    p.key, p.key
                ),
            );
        } else if let Some(v) = default_value(p, doc) {
            chosen.insert(p.key.clone(), v);
        }
    }
    problems.into_result(chosen)
}

/// The default shown and used for `param`: its `default`, else the value now at its path.
pub fn default_value(param: &ParamSpec, doc: &Value) -> Option<Value> {
    let declared = param
        .default
        .as_ref()
        .and_then(|d| coerce(param, d, false).ok());
    declared.or_else(|| FieldPath::parse(&param.path).ok()?.get(doc).cloned())
}

fn known_keys(params: &[ParamSpec]) -> String {
    if params.is_empty() {
        return "(this app declares none)".to_string();
    }
    params
        .iter()
        .map(|p| p.key.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes every effective value into the document at its parameter's path.
pub fn apply(
    params: &[ParamSpec],
    values: &BTreeMap<String, Value>,
    doc: &mut Value,
) -> Diagnostics {
    let mut problems = Diagnostics::default();
    for (i, p) in params.iter().enumerate() {
        let (Some(value), Ok(path)) = (values.get(&p.key), FieldPath::parse(&p.path)) else {
            continue;
        };
        if let Err(e) = path.set(doc, value.clone()) {
            problems.push(
                format!("spec.params[{i}].path"),
                format!("`{path}` points nowhere: {e}"),
            );
        }
    }
    problems
}

/// Converts a given value to the parameter's type.
///
/// # Errors
/// A message saying what the type expects and what was found.
pub fn coerce(param: &ParamSpec, value: &Value, from_text: bool) -> Result<Value, String> {
    let text = scalar_text(value);
    let found = || describe(value);
    match param.kind {
        ParamType::String => text
            .map(Value::String)
            .ok_or_else(|| format!("expected a string, found {}", found())),
        ParamType::Int => int_value(value, from_text)
            .ok_or_else(|| format!("expected a whole number, found {}", found())),
        ParamType::Bool => bool_value(value, from_text)
            .ok_or_else(|| format!("expected true or false, found {}", found())),
        ParamType::Quantity => {
            let text = text.ok_or_else(|| {
                format!(
                    "expected a quantity such as 500m or 100Gi, found {}",
                    found()
                )
            })?;
            quantity::check(&text)?;
            Ok(Value::String(text))
        }
        ParamType::Enum => match text {
            Some(t) if param.values.contains(&t) => Ok(Value::String(t)),
            _ => Err(format!(
                "expected one of {}, found {}",
                param.values.join(", "),
                found()
            )),
        },
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn int_value(value: &Value, from_text: bool) -> Option<Value> {
    match value {
        Value::Number(n) if n.is_i64() => Some(value.clone()),
        Value::String(s) if from_text => s.trim().parse::<i64>().ok().map(Value::from),
        _ => None,
    }
}

fn bool_value(value: &Value, from_text: bool) -> Option<Value> {
    match value {
        Value::Bool(_) => Some(value.clone()),
        Value::String(s) if from_text => s.parse::<bool>().ok().map(Value::Bool),
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing (null)".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(key: &str, kind: ParamType) -> ParamSpec {
        ParamSpec {
            key: key.into(),
            path: "spec.parts[0].replicas".into(),
            kind,
            default: None,
            required: false,
            description: String::new(),
            values: vec!["a".into(), "b".into()],
        }
    }

    #[test]
    fn values_files_flatten_nested_keys_with_lines() {
        let given =
            parse_values_file("v.yaml", "image: zk:3.8\nresourceRequest:\n  cpu: 500m\n").unwrap();
        assert_eq!(given[1].key, "resourceRequest.cpu");
        assert_eq!(given[1].line, Some(3));
    }

    #[test]
    fn coercion_follows_the_type() {
        assert_eq!(
            coerce(&param("n", ParamType::Int), &json!("5"), true).unwrap(),
            json!(5)
        );
        assert!(coerce(&param("n", ParamType::Int), &json!("5"), false).is_err());
        assert_eq!(
            coerce(&param("q", ParamType::Quantity), &json!(2), false).unwrap(),
            json!("2")
        );
        assert!(coerce(&param("q", ParamType::Quantity), &json!("2GB"), false).is_err());
        assert_eq!(
            coerce(&param("b", ParamType::Bool), &json!("true"), true).unwrap(),
            json!(true)
        );
        assert!(coerce(&param("e", ParamType::Enum), &json!("c"), false).is_err());
        assert_eq!(
            coerce(&param("s", ParamType::String), &json!(3.8), false).unwrap(),
            json!("3.8")
        );
    }

    #[test]
    fn later_values_win_and_defaults_come_from_the_spec() {
        let doc = json!({"spec": {"parts": [{"replicas": 3}]}});
        let params = vec![param("replicas", ParamType::Int)];
        assert_eq!(resolve(&params, &[], &doc).unwrap()["replicas"], json!(3));
        let given = parse_set_args(&["replicas=4".into(), "replicas=5".into()]).unwrap();
        assert_eq!(
            resolve(&params, &given, &doc).unwrap()["replicas"],
            json!(5)
        );
    }

    #[test]
    fn unknown_keys_name_the_file_and_line() {
        let doc = json!({"spec": {"parts": [{"replicas": 3}]}});
        let given = parse_values_file("v.yaml", "replicas: 3\nreplica: 4\n").unwrap();
        let err = resolve(&[param("replicas", ParamType::Int)], &given, &doc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "v.yaml:2: replica: unknown parameter `replica`; known parameters: replicas"
        );
    }
}
