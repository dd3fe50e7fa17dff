//! Every semantic rule of a `StatefulApp`, checked at once: each problem is collected with its
//! field path, never stopping at the first. The same rules serve `berth validate`, the
//! operator's status and the local engine. [`check_kubernetes_objects`] holds the Kubernetes
//! objects inside the spec (pod templates, extra objects) to their schemas.

mod backup;
mod part;
mod state;
mod strict;
mod templates;

use std::collections::BTreeMap;

use crate::diag::Diagnostics;
use crate::names;
use crate::spec::StatefulApp;

pub use strict::check_kubernetes_objects;
pub use templates::{check_templates, container_templates};

/// Replica counts above this are taken as a mistake.
pub const MAX_REPLICAS: i32 = 1000;
/// StatefulSet names longer than this break the `controller-revision-hash` label.
pub const MAX_WORKLOAD_NAME: usize = 52;

/// Collects problems under field paths.
#[derive(Default)]
pub(crate) struct Checker {
    pub problems: Diagnostics,
}

impl Checker {
    /// Records `message` at `path` unless `ok`.
    pub fn require(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.problems.push(path, message);
        }
    }

    /// Reports names used twice in `names` (paired with their own paths).
    pub fn unique<'a>(&mut self, what: &str, items: impl IntoIterator<Item = (String, &'a str)>) {
        let mut seen: BTreeMap<&str, String> = BTreeMap::new();
        for (path, name) in items {
            match seen.get(name) {
                Some(first) => self.problems.push(
                    path,
                    format!("duplicate {what} `{name}` (first used at {first})"),
                ),
                None => {
                    seen.insert(name, path);
                }
            }
        }
    }

    /// Requires an RFC 1123 DNS label of at most `max` characters.
    pub fn dns_label(&mut self, name: &str, max: usize, path: impl Into<String>, what: &str) {
        self.require(
            names::is_dns_label(name, max),
            path,
            format!("`{name}` is not a valid {what}: expected at most {max} lowercase letters, digits and '-', starting and ending with a letter or digit"),
        );
    }

    /// Requires an absolute path without `..`.
    pub fn absolute_path(&mut self, value: &str, path: impl Into<String>) {
        let ok = value.starts_with('/') && !value.split('/').any(|s| s == "..");
        self.require(ok, path, format!("`{value}` is not an absolute path: expected a path starting with / and without `..`"));
    }
}

/// Checks every rule that serde and the schema cannot express.
///
/// # Errors
/// All problems found, each with its field path.
pub fn validate(app: &StatefulApp) -> Result<(), Diagnostics> {
    let mut c = Checker::default();
    check_metadata(app, &mut c);
    c.require(
        !app.spec.parts.is_empty(),
        "spec.parts",
        "an app needs at least one part",
    );
    c.unique(
        "part name",
        app.spec
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("spec.parts[{i}].name"), p.name.as_str())),
    );
    for (i, part) in app.spec.parts.iter().enumerate() {
        part::check_part(part, &format!("spec.parts[{i}]"), &mut c);
    }
    check_generated_names(app, &mut c);
    check_extra_objects(app, &mut c);
    backup::check_restore_from(app, &mut c);
    c.problems.into_result(())
}

fn check_metadata(app: &StatefulApp, c: &mut Checker) {
    match app.metadata.name.as_deref() {
        None | Some("") => c.problems.push("metadata.name", "the app needs a name"),
        Some(name) => c.dns_label(name, 40, "metadata.name", "app name"),
    }
    if let Some(ns) = app.metadata.namespace.as_deref() {
        c.dns_label(ns, 63, "metadata.namespace", "namespace");
    }
}

/// Two parts must not produce objects with the same name.
fn check_generated_names(app: &StatefulApp, c: &mut Checker) {
    let app_name = app.metadata.name.clone().unwrap_or_default();
    let mut services = Vec::new();
    for (i, part) in app.spec.parts.iter().enumerate() {
        let workload = names::workload_name(&app_name, &part.name);
        let at = format!("spec.parts[{i}]");
        c.require(
            workload.len() <= MAX_WORKLOAD_NAME,
            format!("{at}.name"),
            format!("the workload name `{workload}` (app name + part name) is longer than {MAX_WORKLOAD_NAME} characters"),
        );
        services.push((
            format!("{at}.state.topology.headlessService"),
            names::headless_service_name(&workload, part),
        ));
        for (j, s) in part.services.iter().enumerate() {
            services.push((
                format!("{at}.services[{j}].name"),
                names::service_name(&workload, &s.name),
            ));
        }
    }
    c.unique(
        "Service name",
        services.iter().map(|(p, n)| (p.clone(), n.as_str())),
    );
}

fn check_extra_objects(app: &StatefulApp, c: &mut Checker) {
    for (i, object) in app.spec.extra_objects.iter().enumerate() {
        let at = format!("spec.extraObjects[{i}]");
        for field in ["apiVersion", "kind"] {
            let ok = object
                .get(field)
                .and_then(|v| v.as_str())
                .is_some_and(|s| !s.is_empty());
            c.require(
                ok,
                format!("{at}.{field}"),
                format!("an extra object needs `{field}`"),
            );
        }
        let name = object.pointer("/metadata/name").and_then(|v| v.as_str());
        c.require(
            name.is_some_and(names::is_dns_subdomain),
            format!("{at}.metadata.name"),
            "an extra object needs `metadata.name`, a DNS subdomain",
        );
    }
}
