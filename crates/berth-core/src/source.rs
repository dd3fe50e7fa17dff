//! Reading YAML input into a JSON value tree while remembering the line of every field path.
//!
//! The spec is then deserialised from the tree, and any diagnostic can be pointed back to the
//! line its field path came from.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use serde_json::{Map, Number, Value};

use crate::diag::{Diagnostic, Diagnostics};

/// A parsed YAML document: its value tree and where each field path starts.
#[derive(Clone, Debug)]
pub struct SourceDoc {
    /// The file name as the user gave it, used in diagnostics.
    pub file: String,
    /// The document as a JSON value tree.
    pub value: Value,
    lines: BTreeMap<String, usize>,
}

impl SourceDoc {
    /// Parses `text` (the content of `file`), which must hold exactly one YAML document.
    ///
    /// # Errors
    /// A diagnostic naming the file and line for malformed YAML, aliases, non-string keys or
    /// more or fewer than one document.
    pub fn parse(file: &str, text: &str) -> Result<Self, Diagnostics> {
        let fail = |line: Option<usize>, message: String| {
            Diagnostics::one(Diagnostic::at("", message).in_file(file, line))
        };
        let mut docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
            fail(
                Some(e.marker().line()),
                format!("malformed YAML: {}", e.info()),
            )
        })?;
        if docs.len() != 1 {
            return Err(fail(
                None,
                format!("expected exactly one YAML document, found {}", docs.len()),
            ));
        }
        let root = docs.remove(0);
        let mut lines = BTreeMap::new();
        let value = to_json(&root, String::new(), &mut lines)
            .map_err(|(line, message)| fail(Some(line), message))?;
        Ok(Self {
            file: file.to_string(),
            value,
            lines,
        })
    }

    /// The line where `path` starts, or where its nearest recorded ancestor starts.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = parent_path(path)?;
        }
    }

    /// Gives every unlocated diagnostic this file and the line of its path.
    pub fn locate(&self, diagnostics: Diagnostics) -> Diagnostics {
        diagnostics.locate(&self.file, |path| self.line_of(path))
    }
}

/// `a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ``; `None` for the root.
fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

type Located<T> = Result<T, (usize, String)>;

fn to_json(
    node: &MarkedYamlOwned,
    path: String,
    lines: &mut BTreeMap<String, usize>,
) -> Located<Value> {
    let line = node.span.start.line();
    lines.entry(path.clone()).or_insert(line);
    match &node.data {
        YamlDataOwned::Value(scalar) => Ok(scalar_to_json(scalar)),
        YamlDataOwned::Representation(text, _, _) => Ok(Value::String(text.clone())),
        YamlDataOwned::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(item, format!("{path}[{i}]"), lines)?);
            }
            Ok(Value::Array(out))
        }
        YamlDataOwned::Mapping(entries) => {
            let mut out = Map::new();
            for (key, item) in entries {
                let name = key_name(key)?;
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                lines.insert(child.clone(), key.span.start.line());
                out.insert(name, to_json(item, child, lines)?);
            }
            Ok(Value::Object(out))
        }
        YamlDataOwned::Tagged(_, inner) => to_json(inner, path, lines),
        YamlDataOwned::Alias(_) => Err((
            line,
            "YAML aliases are not supported; write the value out".into(),
        )),
        YamlDataOwned::BadValue => Err((line, "malformed YAML value".into())),
    }
}

fn key_name(key: &MarkedYamlOwned) -> Located<String> {
    match &key.data {
        YamlDataOwned::Value(ScalarOwned::String(s)) => Ok(s.clone()),
        YamlDataOwned::Value(ScalarOwned::Integer(i)) => Ok(i.to_string()),
        YamlDataOwned::Value(ScalarOwned::Boolean(b)) => Ok(b.to_string()),
        YamlDataOwned::Representation(s, _, _) => Ok(s.clone()),
        _ => Err((
            key.span.start.line(),
            "mapping keys must be plain strings".into(),
        )),
    }
}

fn scalar_to_json(scalar: &ScalarOwned) -> Value {
    match scalar {
        ScalarOwned::Null => Value::Null,
        ScalarOwned::Boolean(b) => Value::Bool(*b),
        ScalarOwned::Integer(i) => Value::Number((*i).into()),
        ScalarOwned::FloatingPoint(f) => Number::from_f64(f.into_inner())
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        ScalarOwned::String(s) => Value::String(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_the_line_of_nested_fields() {
        let doc =
            SourceDoc::parse("a.yaml", "spec:\n  parts:\n  - name: x\n    replicas: 3\n").unwrap();
        assert_eq!(doc.line_of("spec.parts[0].replicas"), Some(4));
        assert_eq!(doc.line_of("spec.parts[0].name"), Some(3));
        assert_eq!(doc.line_of("spec.parts[0].missing"), Some(3));
        assert_eq!(doc.value["spec"]["parts"][0]["replicas"], 3);
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let err = SourceDoc::parse("bad.yaml", "a: 1\nb: [1, 2\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("bad.yaml:"), "{text}");
        assert!(text.contains("malformed YAML"), "{text}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = SourceDoc::parse("d.yaml", "a: 1\na: 2\n").unwrap_err();
        assert!(err.to_string().contains("malformed YAML"), "{err}");
    }

    #[test]
    fn quantities_and_versions_stay_strings() {
        let doc = SourceDoc::parse("q.yaml", "size: 100G\ntag: \"3.8\"\nn: 1.5\n").unwrap();
        assert_eq!(doc.value["size"], "100G");
        assert_eq!(doc.value["tag"], "3.8");
        assert_eq!(doc.value["n"], 1.5);
    }
}
