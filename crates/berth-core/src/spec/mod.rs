//! The `StatefulApp` custom resource (`berth.io/v1alpha1`): an app as parts plus their state.
//!
//! The types here are plain data. Rules that serde and the schema cannot express live in
//! [`crate::validate`]; defaults that depend on other fields are resolved there and in
//! [`crate::topology`], never by mutating the spec.

// The kube derive takes one `printcolumn(...)` per column; clippy reads the repeated keys inside
// them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod backup;
mod backup_resource;
mod part;
mod policy;
mod state;
mod status;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use backup::*;
pub use backup_resource::*;
pub use part::*;
pub use policy::*;
pub use state::*;
pub use status::*;

/// The API group of berth's resources.
pub const GROUP: &str = "berth.io";
/// The version of the `StatefulApp` API this crate speaks.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "berth.io/v1alpha1";
/// The resource's kind.
pub const KIND: &str = "StatefulApp";

/// A stateful application: parts (workloads) with their five kinds of state, delivery
/// parameters, and extra objects created in order.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "berth.io",
    version = "v1alpha1",
    kind = "StatefulApp",
    namespaced,
    shortname = "sapp",
    category = "berth",
    status = "StatefulAppStatus",
    derive = "PartialEq",
    doc = "A stateful application run by berth: parts with persistent, config, topology, session and connection state.",
    printcolumn(
        name = "Parts",
        type_ = "string",
        json_path = ".status.summary.parts",
        description = "the app's parts"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.summary.ready",
        description = "ready/desired members"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Progressing, Ready, Degraded or Invalid"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulAppSpec {
    /// Delivery parameters: typed keys that set values at paths in this spec, so the people who
    /// deliver the app set `replicas: 5` in a values file (or `--set replicas=5`) instead of
    /// editing the spec. `berth params` lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub params: Vec<ParamSpec>,
    /// The app's workloads, each with its own members and state; part names are unique.
    #[schemars(length(min = 1, max = 16))]
    // A map-keyed list: the API server rejects duplicate part names and merges parts by name.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub parts: Vec<PartSpec>,
    /// Arbitrary Kubernetes objects (each with `apiVersion`, `kind` and `metadata.name`),
    /// rendered and applied in order after the parts' own objects; the operator deletes those
    /// that leave the list. The local engine ignores them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "state::any_objects_schema")]
    pub extra_objects: Vec<serde_json::Value>,
    /// Creates the app from a backup: every member of the parts that declare `state.backup`
    /// runs its `restore` action before its first start; the backup's checksum is verified
    /// first, and no member starts if it does not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreSource>,
}

/// The type of a delivery parameter's value.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum ParamType {
    /// Any text.
    #[default]
    String,
    /// A whole number.
    Int,
    /// A Kubernetes quantity such as `500m` or `100Gi`.
    Quantity,
    /// `true` or `false`.
    Bool,
    /// One of the values listed in `values`.
    Enum,
}

/// A delivery parameter: a key people who deliver software set in a values file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParamSpec {
    /// The key set in values files and with `--set`, e.g. `image` or `resourceRequest.cpu`.
    pub key: String,
    /// Where the value goes: a field path into this resource, with list indexes, e.g.
    /// `spec.parts[0].replicas` or `spec.parts[0].template.spec.containers[0].image`.
    pub path: String,
    /// The value's type; values of another type are rejected naming the values file and line.
    #[serde(default, rename = "type")]
    pub kind: ParamType,
    /// The value used when none is given; without it, the value already at `path` is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "state::any_value_schema")]
    pub default: Option<serde_json::Value>,
    /// Whether a value must be given (in a values file or with `--set`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// What the parameter means, for the people who set it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The allowed values of an `enum` parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}
