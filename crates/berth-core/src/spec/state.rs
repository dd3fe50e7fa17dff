//! The five kinds of state of seed 000: persistent, config, topology, session and connection.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A part's state, each kind declared on its own.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StateSpec {
    /// Per-member volumes that survive restarts and rescheduling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub persistent: Vec<VolumeSpec>,
    /// Backups of the persistent state to an S3-compatible store, and how a new app restores one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<super::BackupSpec>,
    /// Config files (templates) and Secret references.
    #[serde(default)]
    pub config: ConfigState,
    /// Ports, stable member identities and roles.
    #[serde(default)]
    pub topology: TopologyState,
    /// Client session affinity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionState>,
    /// Long-lived connections that need per-member endpoints.
    #[serde(default)]
    pub connection: ConnectionState,
}

// ---------------------------------------------------------------- persistent

/// What happens to a member's volume claims when it goes away.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RetentionAction {
    /// Keep the claim and its data.
    #[default]
    Retain,
    /// Delete the claim (and, by its reclaim policy, the data).
    Delete,
}

/// Retention of volume claims when the part is scaled down and when the app is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// What happens to a member's claims when it is removed by scaling down.
    #[serde(default)]
    pub when_scaled: RetentionAction,
    /// What happens to every member's claims when the app is deleted.
    #[serde(default)]
    pub when_deleted: RetentionAction,
}

/// A mount of a volume (or a sub-path of it) into containers.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountSpec {
    /// Absolute path in the container.
    pub path: String,
    /// Sub-directory of the volume mounted there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    /// Containers that get the mount; every container when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// A per-member persistent volume.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Volume name, unique in the part, e.g. `data`; each member's claim is
    /// `<name>-<member>`.
    pub name: String,
    /// Requested size of each member's volume, a quantity such as `100G` or `1Gi`.
    pub size: String,
    /// Storage class; the cluster default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Access modes; `ReadWriteOnce` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_modes: Vec<String>,
    /// Shorthand for one mount of the whole volume at this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
    /// Mounts of the volume or its sub-paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
    /// What happens to the claims on scale-down and deletion (retained by default). A
    /// StatefulSet has one retention policy for all its claims: every volume of a part must have
    /// the same one.
    #[serde(default)]
    pub retention: Retention,
}

impl ConfigFile {
    /// The file mode as a number, if `mode` is a valid octal string.
    pub fn mode_bits(&self) -> Option<i32> {
        match &self.mode {
            None => Some(0o644),
            Some(text) if (3..=4).contains(&text.len()) => i32::from_str_radix(text, 8).ok(),
            Some(_) => None,
        }
    }
}

impl StateSpec {
    /// The retention policy of the part's volume claims. A StatefulSet has one policy for all
    /// its claims, so the volumes must agree: `Err(i)` names the first volume whose policy
    /// differs from volume 0's. No volumes: the default.
    pub fn claim_retention(&self) -> Result<Retention, usize> {
        let Some(first) = self.persistent.first() else {
            return Ok(Retention::default());
        };
        match self
            .persistent
            .iter()
            .position(|v| v.retention != first.retention)
        {
            Some(i) => Err(i),
            None => Ok(first.retention),
        }
    }
}

impl VolumeSpec {
    /// Every mount of this volume, the `mountPath` shorthand first.
    pub fn all_mounts(&self) -> Vec<MountSpec> {
        let shorthand = self.mount_path.iter().map(|path| MountSpec {
            path: path.clone(),
            sub_path: None,
            containers: Vec::new(),
            read_only: false,
        });
        shorthand.chain(self.mounts.iter().cloned()).collect()
    }
}

// ---------------------------------------------------------------- config

/// Config files and secrets of a part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigState {
    /// Files whose content is a template, rendered into one ConfigMap shared by all members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ConfigFile>,
    /// Existing Secrets mounted into the members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
}

/// A config file: a template rendered once and mounted at a path in every member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigFile {
    /// Key of the file in the ConfigMap, e.g. `zoo.cfg`.
    pub name: String,
    /// Absolute path of the file in the containers.
    pub path: String,
    /// The content, a template (see `docs/templates.md`), e.g.
    /// `"{% for m in members %}server.{{ m.ordinal + 1 }}={{ m.host }}:2888:3888\n{% endfor %}"`.
    pub content: String,
    /// File mode as an octal string, e.g. `"0755"` for scripts; `"0644"` when unset. A string,
    /// because YAML 1.1 and 1.2 read an unquoted 0755 differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^0?[0-7]{3}$"))]
    pub mode: Option<String>,
    /// Containers that get the file; every container when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
}

/// A reference to an existing Secret, mounted as a directory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// The Secret's name in the app's namespace.
    pub secret_name: String,
    /// Absolute directory in the containers where its keys appear as files.
    pub path: String,
    /// Start members even when the Secret does not exist.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// Containers that get the Secret; every container when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
}

// ---------------------------------------------------------------- topology

/// Network protocol of a port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum Protocol {
    /// TCP.
    #[default]
    TCP,
    /// UDP.
    UDP,
    /// SCTP.
    SCTP,
}

/// A named port every member listens on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    /// Port name (an IANA service name: at most 15 characters), e.g. `client`; Services and
    /// connection endpoints refer to ports by name.
    pub name: String,
    /// The port number members listen on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The port's network protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A role members can hold, such as `leader` or `follower`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleSpec {
    /// Role name as the role probe reports it.
    pub name: String,
    /// Whether holders take writes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
    /// Whether holders count for quorum.
    #[serde(default = "default_true")]
    pub voting: bool,
    /// Position in role-aware updates: lower goes first; when unset, non-voting roles go
    /// first and writable roles last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_order: Option<i32>,
}

fn default_true() -> bool {
    true
}

/// How the current role of a member is found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleProbe {
    /// Command run in each member whose first output line names its role, one of `roles`, e.g.
    /// `[sh, -c, "redis-cli -p 6379 role | head -1"]`. A template. The role may be followed by
    /// a term, a whole number that grows with every election (`leader 7`): then a report from
    /// an older term never overwrites a newer one, and of two members labelled with a
    /// writable role the one from the older term loses its label.
    pub exec: Vec<String>,
    /// Seconds between probes.
    #[serde(default = "default_probe_period")]
    #[schemars(range(min = 1, max = 3600))]
    pub period_seconds: i32,
}

fn default_probe_period() -> i32 {
    2
}

/// Members' identities, ports and roles.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologyState {
    /// Ports every member listens on; published on the headless Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortSpec>,
    /// Name of the headless Service giving members stable DNS names; `<workload>-headless` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headless_service: Option<String>,
    /// Roles members can hold; with roles (and a role probe), updates are role-aware and
    /// Services can select a role. At most one of them may be `writable` unless
    /// `multipleWriters` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleSpec>,
    /// Allows more than one `writable` role (for multi-primary systems whose members take
    /// writes under different role names). Without it, two writable roles are taken as a
    /// mistake: switchovers and role-aware updates assume one leader role.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multiple_writers: bool,
    /// How a member's role is detected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_probe: Option<RoleProbe>,
    /// Commands berth runs in members to change the topology (switchover, membership).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<TopologyActions>,
}

/// A command berth runs in a member.
///
/// The words are templates, rendered like the role probe's (`crate::exec`: once for all
/// members on Kubernetes, for the member that runs it locally); `$(VAR)` is not expanded (as in
/// any Kubernetes exec), so use `$VAR` through a shell. The process gets the member's env
/// (`BERTH_*`) plus `BERTH_TARGET` (the address of the member the action is about),
/// `BERTH_TARGET_MEMBER` (its name) and `BERTH_TARGET_ORDINAL`. Exit status 0 means done.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionSpec {
    /// The command and its arguments, e.g. `[sh, -c, "redis-cli -h $BERTH_TARGET replicaof no one"]`.
    pub exec: Vec<String>,
    /// Seconds the command may run before it is killed and the action counts as failed.
    #[serde(default = "default_action_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
}

fn default_action_timeout() -> i32 {
    30
}

/// Actions of a part's topology.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopologyActions {
    /// Moves the writable role away from the member it runs in (the current leader) to
    /// `BERTH_TARGET`, a ready member already on the new revision. Role-aware rollouts run it
    /// before updating the leader, then wait until the role probe shows the move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover: Option<ActionSpec>,
    /// Adds `BERTH_TARGET` (a new member, not started yet) to the group. When the part scales
    /// up, members are added one at a time in ordinal order: the action runs in a ready
    /// existing member (the writable role's holder, else the lowest ordinal), then the new
    /// member starts, and the next one waits until it is ready. If the action fails, the new
    /// member is not started. Declaring `memberJoin` or `memberLeave` means members learn of
    /// membership changes through these actions: on the local engine a changed member list
    /// alone (in templates) does not restart running members; on Kubernetes the pod template
    /// carries the member list, so running members roll to it, one at a time. Run by both
    /// engines (the operator through `pods/exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_join: Option<ActionSpec>,
    /// Removes `BERTH_TARGET` (a member about to stop) from the group. When the part scales
    /// down, members leave one at a time, highest ordinal first: the action runs in a ready
    /// remaining member (chosen as for `memberJoin`), then the leaving member stops. If the
    /// action fails, the member keeps running. Its data is kept as the retention policy says.
    /// Run by both engines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_leave: Option<ActionSpec>,
}

impl TopologyState {
    /// The switchover action, if declared.
    pub fn switchover(&self) -> Option<&ActionSpec> {
        self.actions.as_ref().and_then(|a| a.switchover.as_ref())
    }

    /// The memberJoin action, if declared.
    pub fn member_join(&self) -> Option<&ActionSpec> {
        self.actions.as_ref().and_then(|a| a.member_join.as_ref())
    }

    /// The memberLeave action, if declared.
    pub fn member_leave(&self) -> Option<&ActionSpec> {
        self.actions.as_ref().and_then(|a| a.member_leave.as_ref())
    }

    /// Whether members learn of membership changes through actions (`memberJoin` or
    /// `memberLeave`) rather than from a restart with the new member list.
    pub fn manages_membership(&self) -> bool {
        self.member_join().is_some() || self.member_leave().is_some()
    }
}

impl TopologyState {
    /// The declared port names.
    pub fn port_names(&self) -> Vec<&str> {
        self.ports.iter().map(|p| p.name.as_str()).collect()
    }

    /// The declared role names.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.iter().map(|r| r.name.as_str()).collect()
    }

    /// Whether role `role` is writable; `None` when the part declares no such role.
    pub fn is_writable(&self, role: &str) -> Option<bool> {
        self.roles
            .iter()
            .find(|r| r.name == role)
            .map(|r| r.writable)
    }
}

// ---------------------------------------------------------------- session

/// Session affinity of client Services.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Affinity {
    /// Any member may serve any request.
    #[default]
    None,
    /// Requests from one client IP go to the same member.
    ClientIP,
}

/// Client session state kept by sticking clients to members.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionState {
    /// Whether clients stick to a member.
    #[serde(default)]
    pub affinity: Affinity,
    /// How long a client sticks to its member (1 to 86400 seconds; 10800 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub timeout_seconds: Option<i32>,
}

// ---------------------------------------------------------------- connection

/// Protocol of a long-lived endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum EndpointProtocol {
    /// Plain long-lived TCP connections.
    #[default]
    Tcp,
    /// gRPC over HTTP/2.
    Grpc,
}

/// A port whose clients keep long-lived connections.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointSpec {
    /// Name of a topology port.
    pub port: String,
    /// The protocol clients speak on the port.
    #[serde(default)]
    pub protocol: EndpointProtocol,
    /// Clients must balance over members themselves (a Service would pin each connection to one member).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_side_balancing: bool,
}

/// Connection state: endpoints published per member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionState {
    /// Long-lived endpoints; their per-member addresses are published for clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointSpec>,
}

// ---------------------------------------------------------------- schema helpers

/// Schema of a list of arbitrary Kubernetes objects.
pub(crate) fn any_objects_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// Schema of any JSON value.
pub(crate) fn any_value_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}
