//! Scheduling defaults and update policy of a part.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How members of a part are spread over nodes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Spread {
    /// Prefer different nodes (anti-affinity the scheduler may break).
    #[default]
    Preferred,
    /// Require different nodes.
    Required,
    /// No spreading rule.
    None,
}

/// The part's PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisruptionBudget {
    /// Whether to create one; it is only created for parts with more than one member.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Members that may be voluntarily disrupted at once; 1 (quorum-preserving) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

impl Default for DisruptionBudget {
    fn default() -> Self {
        Self {
            enabled: true,
            max_unavailable: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// Placement defaults of a part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SchedulingSpec {
    /// Spreading of members over `topologyKey` domains.
    #[serde(default)]
    pub spread: Spread,
    /// Node label whose values are the failure domains members are spread over, e.g.
    /// `topology.kubernetes.io/zone`.
    #[serde(default = "default_topology_key")]
    pub topology_key: String,
    /// The part's PodDisruptionBudget, limiting voluntary disruptions such as node drains.
    #[serde(default)]
    pub disruption_budget: DisruptionBudget,
}

impl Default for SchedulingSpec {
    fn default() -> Self {
        Self {
            spread: Spread::default(),
            topology_key: default_topology_key(),
            disruption_budget: DisruptionBudget::default(),
        }
    }
}

fn default_topology_key() -> String {
    "kubernetes.io/hostname".to_string()
}

/// Order in which members are updated.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum UpdateStrategy {
    /// `RoleAware` when the part declares roles, `Ordered` otherwise.
    #[default]
    Auto,
    /// Non-voting members, then followers, then a switchover, then the old leader.
    RoleAware,
    /// Highest ordinal first, one at a time (StatefulSet semantics).
    Ordered,
    /// Up to `maxUnavailable` members at once.
    Parallel,
    /// Members are updated only when deleted by someone else.
    OnDelete,
}

/// How a member's pod takes a new revision.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum PodUpdatePolicy {
    /// Delete and recreate the pod.
    #[default]
    ReCreate,
    /// Patch images in place when only images changed, recreate otherwise.
    InPlaceIfPossible,
    /// Only ever patch in place; other changes wait.
    InPlaceOnly,
}

/// What a role-aware rollout does when the switchover before the leader's update fails.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SwitchoverFailurePolicy {
    /// Keep the leader on its revision and retry the switchover (after 30 s, doubling up to 5
    /// minutes); the app is Degraded with the action's exit code and output meanwhile.
    #[default]
    Retry,
    /// Update the leader without a switchover (its clients see it go down).
    UpdateLeader,
}

/// How members are updated when the part changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdatePolicy {
    /// The order in which members take a new revision.
    #[serde(default)]
    pub strategy: UpdateStrategy,
    /// Members with an ordinal below this keep the old revision: `partition: 2` of 3 members
    /// updates only member 2 (a canary). Unset or 0 updates every member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub partition: Option<i32>,
    /// Members that may be down at once during an update (a number or a percentage); 1 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Whether a member's pod is recreated or updated in place.
    #[serde(default)]
    pub pod_update_policy: PodUpdatePolicy,
    /// Seconds a member may stay unready on a new revision before the rollout is Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
    /// Seconds an updated member must have been ready before it counts as available and the
    /// next member is touched (as `minReadySeconds` of upstream workloads); 0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_ready_seconds: Option<i32>,
    /// What happens when the switchover before the leader's update fails.
    #[serde(default)]
    pub on_switchover_failure: SwitchoverFailurePolicy,
}
