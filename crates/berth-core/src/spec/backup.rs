//! A part's backups (seed 001's last piece of the operator pattern): how one member writes a
//! consistent backup to stdout, how each member of a new app reads it back before its first
//! start, the S3-compatible repository the bytes go to, the schedule and what is kept.
//!
//! The same spec and the same object layout on both engines, so a backup taken on Kubernetes
//! restores with `berth up` on one machine and the other way round. The decisions (which member,
//! which backups expire, when the next run is due, whether a downloaded backup is intact) are
//! in [`crate::backup`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ActionSpec;

/// Backups of a part's persistent state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSpec {
    /// Writes a consistent backup of the member's data to stdout, or with `backupOutput: File`
    /// to the file named in `BERTH_BACKUP_FILE`, e.g. for etcd `[sh, -c, "etcdctl snapshot save
    /// \"$BERTH_BACKUP_FILE\""]`. Rendered and run like the topology actions, in the member
    /// chosen by `from`; exit status 0 means the backup is whole.
    pub action: ActionSpec,
    /// How `action` hands over the backup.
    #[serde(default)]
    pub backup_output: BackupOutput,
    /// Which member runs `action`.
    #[serde(default)]
    pub from: BackupSource,
    /// Reads a backup into a member's volumes before its first start, when the app is created
    /// from a backup (`restoreFrom`): the data comes on stdin (and, with `restoreInput: File`,
    /// is also at the path in `BERTH_RESTORE_FILE`). Runs in every member, with the member's env
    /// and volumes.
    pub restore: ActionSpec,
    /// How `restore` gets the data.
    #[serde(default)]
    pub restore_input: RestoreInput,
    /// Where backups are stored.
    pub repository: RepositorySpec,
    /// When backups are taken without being asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<BackupSchedule>,
    /// Which backups are kept; the newest successful backup is never deleted.
    #[serde(default)]
    pub retention: BackupRetention,
}

/// The member a backup is taken from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupSource {
    /// A ready member without a writable role, so the leader keeps serving writes; the leader
    /// when it is the only ready member.
    #[default]
    #[serde(alias = "follower")]
    Follower,
    /// The ready member holding the writable role.
    #[serde(alias = "leader")]
    Leader,
    /// Any ready member (the lowest ordinal).
    #[serde(alias = "any")]
    Any,
}

/// How the backup action hands over the backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BackupOutput {
    /// Written to stdout, streamed to the store as it comes.
    #[default]
    #[serde(alias = "stdout")]
    Stdout,
    /// Written to the file named in `BERTH_BACKUP_FILE`, stored once the action exited 0 and then
    /// removed (for tools that write a file, such as `redis-cli --rdb FILE` or `etcdctl snapshot
    /// save FILE`: no temporary file of their own, no pipe, no `cat`). Needs the backup's size in
    /// scratch space, outside the member's volumes: the app's directory locally, the member
    /// container's `/tmp` on Kubernetes.
    #[serde(alias = "file")]
    File,
}

/// How the restore action gets a backup's data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RestoreInput {
    /// Downloaded whole into a scratch file first and checked against the manifest; the action
    /// then reads it on stdin and at `BERTH_RESTORE_FILE` (for tools that need a file, such as
    /// `etcdctl snapshot restore`). Needs the backup's size in scratch space.
    #[default]
    #[serde(alias = "file")]
    File,
    /// Streamed from the store into the action's stdin as it downloads, with no scratch file;
    /// checked against the manifest when the stream ends, before the member starts (a mismatch
    /// fails the restore, and what the action wrote is never started on). About twice as fast.
    #[serde(alias = "stdin")]
    Stdin,
}

/// Which process moves a backup's bytes on Kubernetes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Carrier {
    /// berth's binary inside the member's pod (the role agent's sidecar for a backup, the
    /// `berth-restore` init container for a restore), straight between the member and the store:
    /// the pods must reach the endpoint. Needs the operator's agent image (`--agent-image`);
    /// without it, or in a pod without the agent, the operator carries them.
    #[default]
    #[serde(alias = "member")]
    Member,
    /// The operator, through the API server's `pods/exec` stream: only the operator must reach
    /// the endpoint, but every byte crosses the API server.
    #[serde(alias = "operator")]
    Operator,
}

/// An S3-compatible object store.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RepositorySpec {
    /// The service's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// The bucket; it must exist.
    pub bucket: String,
    /// Keys start with `<prefix>/<app>/<part>/`; empty means `<app>/<part>/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The region requests are signed for.
    #[serde(default = "default_region")]
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), as most self-hosted S3 servers need, rather
    /// than virtual-hosted ones (`bucket.endpoint/key`).
    #[serde(default)]
    pub path_style: bool,
    /// The access key: a Secret (on Kubernetes in the app's namespace; locally the source given
    /// with `berth up --secret NAME=PATH`). Without it, anonymous requests. Never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsRef>,
    /// Which process moves the bytes on Kubernetes (the local engine's are always the `berth`
    /// process on the machine).
    #[serde(default)]
    pub carrier: Carrier,
}

fn default_region() -> String {
    "us-east-1".into()
}

/// The Secret and keys holding an S3 access key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsRef {
    /// The Secret's name.
    pub secret_name: String,
    /// The key holding the access key id.
    #[serde(default = "default_access_key_id_key")]
    pub access_key_id_key: String,
    /// The key holding the secret access key.
    #[serde(default = "default_secret_access_key_key")]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "accessKeyId".into()
}

fn default_secret_access_key_key() -> String {
    "secretAccessKey".into()
}

/// A cron schedule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupSchedule {
    /// Five fields (minute hour day-of-month month day-of-week), e.g. `0 3 * * *`, or six with
    /// seconds first (`*/30 * * * * *`).
    pub cron: String,
    /// The IANA time zone the fields are read in, e.g. `Europe/Berlin`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// Which backups are kept. Without either limit, all are kept.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRetention {
    /// Keep the newest N successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,
    /// Delete backups older than this many hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_age_hours: Option<u32>,
}

/// Where a new app's data comes from: a backup in the repository its parts declare.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreSource {
    /// The backup's location, `s3://<bucket>/<key of its directory>` as `berth backups` and the
    /// backup's status show it, e.g. `s3://backups/redis/redis/20261130T020000Z`.
    pub url: String,
}
