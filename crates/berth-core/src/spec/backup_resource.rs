//! The `StatefulAppBackup` custom resource (`berth.io/v1alpha1`): one backup of one app, as
//! objects a user can list. Create one for an on-demand backup; the app's `schedule` creates
//! them too. The operator runs it once (`Pending` → `Running` → `Succeeded` or `Failed`) and
//! never again: a finished backup is a record, and one it finds `Running` after a restart is
//! marked `Failed` (its stream died with the old process).

// The kube derive takes one `printcolumn(...)` per column; clippy reads the repeated keys inside
// them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A backup's phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupPhase {
    /// Waiting to run (another backup of the app is running, or no member is ready yet).
    #[default]
    Pending,
    /// The action is streaming to the repository.
    Running,
    /// Data and manifest are stored.
    Succeeded,
    /// It failed; `status.error` says why. It is not retried.
    Failed,
}

impl BackupPhase {
    /// Whether the backup is over (it is never run again).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

impl std::fmt::Display for BackupPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A backup of a `StatefulApp`'s part, taken by the operator.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "berth.io",
    version = "v1alpha1",
    kind = "StatefulAppBackup",
    namespaced,
    shortname = "sabk",
    category = "berth",
    status = "StatefulAppBackupStatus",
    derive = "PartialEq",
    doc = "A backup of a StatefulApp's part: the part's backup action run once in one member, its output stored in the part's S3 repository with a manifest.",
    printcolumn(
        name = "App",
        type_ = "string",
        json_path = ".spec.app",
        description = "the app backed up"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Succeeded or Failed"
    ),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.size",
        description = "bytes stored"
    ),
    printcolumn(
        name = "Member",
        type_ = "string",
        json_path = ".status.member",
        description = "the member whose action wrote it"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatefulAppBackupSpec {
    /// The `StatefulApp` (in this namespace) to back up.
    #[schemars(length(min = 1, max = 253))]
    pub app: String,
    /// The part to back up; without it, the only part declaring `state.backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

/// What happened to the backup, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatefulAppBackupStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// When the action started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it succeeded or failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    /// The data's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The data's sha256, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where it is, `s3://<bucket>/<key of its directory>`: what `restoreFrom` and
    /// `berth up --restore-from` take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The key of its data object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The member (pod) whose action wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The member's revision when it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Why it failed, or why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
