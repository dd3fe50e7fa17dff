//! The observed state of a `StatefulApp`, written by the operator through the status subresource.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of the app.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatefulAppStatus {
    /// The generation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Progressing, Ready, Degraded or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Short texts for printer columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<StatusSummary>,
    /// Per part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartStatus>,
    /// The extra objects last applied, so ones that leave the spec can be deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_objects: Vec<AppliedObject>,
    /// The restore from `spec.restoreFrom`, while and after the operator performs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

/// An object the operator applied, by identity.
/// Where a restore from a backup (`spec.restoreFrom`) stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RestorePhase {
    /// Members are being restored, one at a time; each starts right after its own restore.
    #[default]
    Running,
    /// Every member the part had when the restore began was restored.
    Succeeded,
    /// The restore failed for good (`message` says why); members not yet restored never start.
    Failed,
    /// `restoreFrom` was added to an app that already ran: nothing is restored.
    Skipped,
}

/// The restore of a new app from a backup, as the operator performs it (`berth_core::restore`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// The backup restored (`spec.restoreFrom.url` when the restore began).
    pub url: String,
    /// The part restored.
    pub part: String,
    /// Running, Succeeded, Failed or Skipped.
    pub phase: RestorePhase,
    /// How many members the part had when the restore began: ordinals below it are restored.
    #[serde(default)]
    pub replicas: i32,
    /// The ordinals restored so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restored: Vec<i32>,
    /// The restored data's size in bytes (checked against the backup's manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The restored data's sha256 (checked against the backup's manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Failed attempts so far (transient failures are retried).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Unix seconds before which a failed attempt is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<i64>,
    /// Unix seconds when the restore ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// Why it failed, is retrying, or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct AppliedObject {
    /// Its `apiVersion`.
    pub api_version: String,
    /// Its `kind`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Short texts shown by `kubectl get sapp`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusSummary {
    /// Part names, comma-separated.
    pub parts: String,
    /// Ready members over desired members, e.g. `3/3`; terminating members are not ready.
    pub ready: String,
}

/// A condition in the usual Kubernetes shape.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Progressing or Degraded.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A human-readable message.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Observed state of one part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartStatus {
    /// The part's name.
    pub name: String,
    /// Members that exist.
    pub replicas: i32,
    /// Members that are ready; a terminating member is not.
    pub ready: i32,
    /// Members on the update revision.
    pub updated: i32,
    /// The oldest revision a member still runs: equal to `updateRevision` once every member
    /// runs that, so `currentRevision == updateRevision` means the rollout is done. While some
    /// members still run another revision (mid-rollout, or below a `partition`), it is theirs
    /// (the one most of them run when there are several; ties broken lexically).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Revision members are being updated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Per member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The last switchover of this part's rollout while it matters (until the role probe shows
    /// the leader moved, or while it keeps failing): kept here so an operator restarted
    /// mid-rollout neither runs it again too early nor forgets that it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<crate::lifecycle::SwitchoverRecord>,
}

/// Observed state of one member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member (pod) name.
    pub name: String,
    /// Whether it is ready: its pod is Ready and not terminating.
    pub ready: bool,
    /// The node it runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Its current role; empty until detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Whether its last update was in place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub updated_in_place: bool,
    /// Why it is not ready (unset while ready): `NoPod` (not created yet), `Terminating`,
    /// `Unschedulable` (with the scheduler's message, e.g. unbound volume claims), a container's
    /// waiting reason such as `ImagePullBackOff`, `ErrImagePull` or `CrashLoopBackOff`, or the
    /// pod's `Ready` condition reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details of `reason`: the scheduler's or kubelet's message, a crash loop's last exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
