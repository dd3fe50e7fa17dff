//! The pipeline from files to a [`ValidatedApp`]: parse → check resource header → resolve and
//! apply delivery parameters → deserialise (and hold Kubernetes objects to their schemas) →
//! validate rules → validate templates.
//! Every step reports problems with file, line and field path.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::diag::{Diagnostic, Diagnostics};
use crate::params::{self, GivenValue};
use crate::source::SourceDoc;
use crate::spec::{API_VERSION, KIND, ParamSpec, PartSpec, StatefulApp};
use crate::template::{self, TemplateContext, TemplateError};
use crate::topology::{self, Addressing, MemberRef};
use crate::validate;

/// What `berth validate`, `render` and `up` read.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// The app manifest's file name, for diagnostics.
    pub app_file: String,
    /// The app manifest's text.
    pub app_text: String,
    /// Values files (name, text), applied in order.
    pub values: Vec<(String, String)>,
    /// `--set key=value` arguments, applied last.
    pub sets: Vec<String>,
    /// Overrides `metadata.namespace` (`berth render -n`).
    pub namespace: Option<String>,
}

/// An app that passed every check, with its delivery parameters applied.
#[derive(Clone, Debug)]
pub struct ValidatedApp {
    /// The resource, parameters applied.
    pub app: StatefulApp,
    /// Effective parameter values by key.
    pub params: BTreeMap<String, Value>,
}

/// A config file rendered for a part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedFile {
    /// Its key (file name).
    pub name: String,
    /// Its path in the containers.
    pub path: String,
    /// The rendered content.
    pub content: String,
    /// Its file mode.
    pub mode: i32,
    /// Containers that get it (all when empty).
    pub containers: Vec<String>,
}

impl ValidatedApp {
    /// The app's name.
    pub fn name(&self) -> String {
        topology::app_name(&self.app)
    }

    /// The app's namespace (`default` when unset).
    pub fn namespace(&self) -> String {
        topology::app_namespace(&self.app)
    }

    /// The app's parts.
    pub fn parts(&self) -> &[PartSpec] {
        &self.app.spec.parts
    }

    /// Template variables of part `index` for `viewer` under `addressing`.
    pub fn context(
        &self,
        index: usize,
        addressing: &dyn Addressing,
        viewer: Option<&MemberRef>,
    ) -> minijinja::Value {
        TemplateContext::for_part(&self.app, &self.params, index, addressing, viewer).to_value()
    }

    /// Renders the config files of part `index`.
    ///
    /// # Errors
    /// The first template that fails (only possible with an engine whose addressing differs
    /// from the one validation used).
    pub fn config_files(
        &self,
        index: usize,
        addressing: &dyn Addressing,
        viewer: Option<&MemberRef>,
    ) -> Result<Vec<RenderedFile>, TemplateError> {
        let context = self.context(index, addressing, viewer);
        let render_one = |f: &crate::spec::ConfigFile| {
            Ok(RenderedFile {
                name: f.name.clone(),
                path: addressing.container_path(viewer, &f.path),
                content: template::render(&f.content, &context)?,
                mode: f.mode_bits().unwrap_or(0o644),
                containers: f.containers.clone(),
            })
        };
        self.parts()[index]
            .state
            .config
            .files
            .iter()
            .map(render_one)
            .collect()
    }
}

/// A short, stable hash of rendered config files; a change of any file changes it.
pub fn config_hash(files: &[RenderedFile]) -> String {
    let mut sorted: Vec<&RenderedFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mode_texts: Vec<String> = sorted.iter().map(|f| f.mode.to_string()).collect();
    let chunks = sorted.iter().zip(&mode_texts).flat_map(|(f, mode)| {
        [
            f.name.as_bytes(),
            f.path.as_bytes(),
            f.content.as_bytes(),
            mode.as_bytes(),
        ]
    });
    short_digest(chunks)
}

/// A short (16 hex digits), stable digest of a sequence of byte strings; each chunk is
/// length-prefixed, so moving bytes between chunks changes the digest.
pub fn short_digest<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update((chunk.len() as u64).to_le_bytes());
        hasher.update(chunk);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs the whole pipeline.
///
/// # Errors
/// Every problem found, located in the file it came from.
pub fn load(inputs: &Inputs) -> Result<ValidatedApp, Diagnostics> {
    let mut doc = SourceDoc::parse(&inputs.app_file, &inputs.app_text)?;
    doc.locate(check_header(&doc.value)).into_result(())?;
    let definitions = read_params(&doc)?;
    doc.locate(params::check_definitions(&definitions, &doc.value))
        .into_result(())?;
    let given = given_values(inputs)?;
    let values = params::resolve(&definitions, &given, &doc.value).map_err(|d| doc.locate(d))?;
    let origins = params::origins(&definitions, &given, &doc);
    let applied = params::apply(&definitions, &values, &mut doc.value);
    doc.locate(applied).into_result(())?;
    if let Some(namespace) = &inputs.namespace {
        doc.value["metadata"]["namespace"] = Value::String(namespace.clone());
    }
    // Problems with a value a parameter wrote are reported where the value was given.
    let locate = |d: Diagnostics| doc.locate(params::locate_by_origin(&origins, d));
    let mut problems = validate::check_kubernetes_objects(&doc.value);
    let app: StatefulApp = match deserialize_at(&doc.value, "") {
        Ok(app) => app,
        Err(e) => {
            problems.extend(e);
            return Err(locate(problems));
        }
    };
    if let Err(e) = validate::validate(&app) {
        problems.extend(e);
    }
    locate(problems).into_result(())?;
    validate::check_templates(&app, &values).map_err(locate)?;
    Ok(ValidatedApp {
        app,
        params: values,
    })
}

/// Reads only the parameter definitions of an app (for `berth params`).
///
/// # Errors
/// Problems with the file or its `spec.params`.
pub fn load_param_definitions(
    file: &str,
    text: &str,
) -> Result<(Vec<ParamSpec>, Value), Diagnostics> {
    let doc = SourceDoc::parse(file, text)?;
    doc.locate(check_header(&doc.value)).into_result(())?;
    let definitions = read_params(&doc)?;
    doc.locate(params::check_definitions(&definitions, &doc.value))
        .into_result(())?;
    Ok((definitions, doc.value))
}

fn check_header(value: &Value) -> Diagnostics {
    let mut problems = Diagnostics::default();
    if !value.is_object() {
        problems.push(
            "",
            format!(
                "expected a {KIND} resource (a mapping with apiVersion, kind, metadata and spec)"
            ),
        );
        return problems;
    }
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or("");
    if field("apiVersion") != API_VERSION {
        problems.push(
            "apiVersion",
            format!("expected `{API_VERSION}`, found `{}`", field("apiVersion")),
        );
    }
    if field("kind") != KIND {
        problems.push(
            "kind",
            format!("expected `{KIND}`, found `{}`", field("kind")),
        );
    }
    if !value.get("spec").is_some_and(Value::is_object) {
        problems.push("spec", "expected a mapping with at least `parts`");
    }
    problems
}

fn read_params(doc: &SourceDoc) -> Result<Vec<ParamSpec>, Diagnostics> {
    let Some(raw) = doc.value.pointer("/spec/params") else {
        return Ok(Vec::new());
    };
    deserialize_at(raw, "spec.params").map_err(|d| doc.locate(d))
}

fn given_values(inputs: &Inputs) -> Result<Vec<GivenValue>, Diagnostics> {
    let mut given = Vec::new();
    let mut problems = Diagnostics::default();
    for (file, text) in &inputs.values {
        match params::parse_values_file(file, text) {
            Ok(values) => given.extend(values),
            Err(d) => problems.extend(d),
        }
    }
    match params::parse_set_args(&inputs.sets) {
        Ok(values) => given.extend(values),
        Err(d) => problems.extend(d),
    }
    problems.into_result(given)
}

/// Deserialises `value` (found at `prefix`), naming the field path of the first error in the
/// spec's words; the diagnostic is not located yet.
fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: &Value,
    prefix: &str,
) -> Result<T, Diagnostics> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, ".") => String::new(),
            (true, _) => inner.clone(),
            (false, ".") => prefix.to_string(),
            (false, _) if inner.starts_with('[') => format!("{prefix}{inner}"),
            (false, _) => format!("{prefix}.{inner}"),
        };
        Diagnostics::one(Diagnostic::at(
            path,
            plain_words(&e.into_inner().to_string()),
        ))
    })
}

/// serde's `invalid type: string "x", expected i32` in the spec's words:
/// `expected a whole number, found "x"`. Other messages are kept.
fn plain_words(message: &str) -> String {
    let body = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "));
    let Some((found, expected)) = body.and_then(|b| b.rsplit_once(", expected ")) else {
        return message.to_string();
    };
    format!(
        "expected {}, found {}",
        expected_words(expected),
        found_words(found)
    )
}

fn expected_words(expected: &str) -> String {
    let words = match expected {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize" => {
            "a whole number"
        }
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a sequence" => "a list",
        "a map" => "a mapping",
        "IntOrString" => "a number or a string",
        other if other.starts_with("struct ") || other.starts_with(char::is_uppercase) => {
            "a mapping"
        }
        other => other,
    };
    words.to_string()
}

fn found_words(found: &str) -> String {
    let quoted = |s: &str| s.trim_matches('`').to_string();
    if let Some(text) = found.strip_prefix("string ") {
        return text.to_string();
    }
    for kind in ["integer ", "floating point ", "boolean "] {
        if let Some(value) = found.strip_prefix(kind) {
            return quoted(value);
        }
    }
    match found {
        "map" => "a mapping".to_string(),
        "sequence" => "a list".to_string(),
        "null" | "unit value" => "nothing (null)".to_string(),
        other => other.to_string(),
    }
}
