//! A part: one workload of the app (StatefulSet, Deployment or DaemonSet) and its services.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SchedulingSpec, StateSpec, UpdatePolicy};

/// The Kubernetes workload kind a part becomes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum WorkloadKind {
    /// Members with ordinal identity and per-member volumes.
    #[default]
    StatefulSet,
    /// Interchangeable replicas.
    Deployment,
    /// One member per node, for node-level agents.
    DaemonSet,
}

/// How members are started and stopped relative to each other.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PodManagement {
    /// Member i+1 starts once member i is ready; stops in reverse order.
    #[default]
    OrderedReady,
    /// All members start and stop at once.
    Parallel,
}

/// One workload of the app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.kind) && self.kind == 'DaemonSet' && has(self.replicas))", "message": "a DaemonSet runs one member per node: remove replicas"}
]))]
pub struct PartSpec {
    /// The part's name, e.g. `server`. Its workload is named `<app>-<part>` (`<app>` when the
    /// part is named like the app) and its members `<workload>-<ordinal>`, e.g. `zookeeper-server-0`.
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
    /// The Kubernetes workload the part becomes.
    #[serde(default)]
    pub kind: WorkloadKind,
    /// How many members (1 when unset); not allowed for a DaemonSet, which runs one per node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// Whether members start and stop one after another or all at once.
    #[serde(default)]
    pub pod_management: PodManagement,
    /// The members' pod template, as in any Kubernetes workload: at least one container with
    /// an image. berth adds the labels, volumes, mounts, config files and `BERTH_*` env it
    /// needs. Strings in containers' `command`, `args` and env `value`s are templates.
    pub template: PodTemplateSpec,
    /// The part's five kinds of state.
    #[serde(default)]
    pub state: StateSpec,
    /// Client-facing Services, beyond the headless Service that gives members stable names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// How members are spread over nodes, and their PodDisruptionBudget.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
    /// How members are updated when the part changes.
    #[serde(default)]
    pub update: UpdatePolicy,
    /// Overrides used only by the local engine (`berth up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalSpec>,
}

impl PartSpec {
    /// The number of members asked for (1 when unset).
    pub fn desired_replicas(&self) -> i32 {
        self.replicas.unwrap_or(1)
    }
}

/// The type of a Kubernetes Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    /// A cluster-internal virtual IP.
    #[default]
    ClusterIP,
    /// Exposed on every node's port.
    NodePort,
    /// An external load balancer.
    LoadBalancer,
}

/// A client-facing Service of a part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// Short name; the Service is named `<workload>-<name>`.
    pub name: String,
    /// Names of topology ports to expose; all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// The Kubernetes Service type.
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    /// Select only members currently holding this role (e.g. a write endpoint on the leader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Session affinity for this Service; defaults to the part's session state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<super::SessionState>,
    /// Extra annotations on the Service.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// What the local engine runs instead of the container image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalSpec {
    /// The container this applies to; the first container when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Command (with arguments) replacing the container's `command` and `args`; a template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Debian packages that provide the command, named in the error when it is missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
}
