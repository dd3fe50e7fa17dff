//! The role agent on Kubernetes, the pure half: what the operator adds to a part's pods and
//! objects so that each member's role probe runs inside its own pod (`berth agent run`), and
//! how the operator reads whether an agent is running.
//!
//! For every StatefulSet part with a role probe or backups, when the operator was given an agent
//! image (`berth operator --agent-image`, its own image under Helm):
//! - an init container [`INSTALL_CONTAINER`] runs the agent image and copies the `berth` binary
//!   into an `emptyDir` at [`DIR`] (`berth agent install`);
//! - a native sidecar [`CONTAINER`] (an init container with `restartPolicy: Always`) runs
//!   that binary in the member's own image, env and mounts, so the probe finds the same tools,
//!   files and network as in the member. It writes the pod's role label only when the role
//!   changes, and fails its readiness (so the member leaves every Service) when a change it
//!   must make cannot be written (`berth_core::agent::unready`);
//! - the agent authenticates with a projected ServiceAccount token bound to the pod, mounted
//!   into its container only. Pods whose template names no ServiceAccount run as
//!   [`account_name`] with `automountServiceAccountToken: false`, so the member's own
//!   containers get no credentials;
//! - a Role (`get`, `list`, `watch`, `patch` on the part members' pods by name) and a
//!   RoleBinding to the pods' ServiceAccounts. The chart's ValidatingAdmissionPolicy narrows
//!   this to the pod the token is bound to, and to the role label and term annotation
//!   (`charts/berth/templates/agent-policy.yaml`).
//!
//! - in a part without a role probe, the sidecar only waits, so the operator can have it take
//!   backups in the pod (`berth agent transfer`, [`transfer_container`]); it gets no token, and
//!   the app no Role for it.
//!
//! `berth render` never adds any of this: its output is for clusters without the operator.

use std::collections::BTreeSet;

use berth_core::agent::Labelled;
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::{Carrier, PartSpec, RepositorySpec, WorkloadKind};
use k8s_openapi::api::core::v1::{
    ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile,
    EmptyDirVolumeSource, ExecAction, KeyToPath, ObjectFieldSelector, Pod, PodTemplateSpec, Probe,
    ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The init container that copies the agent binary in.
pub const INSTALL_CONTAINER: &str = "berth-agent-install";
/// The sidecar running the agent.
pub const CONTAINER: &str = "berth-agent";
/// Where the agent binary lives in the pod (an `emptyDir`).
pub const DIR: &str = "/berth-agent";
/// The agent binary.
pub const BINARY: &str = "/berth-agent/berth";
/// The pod-name variable the agent reads.
pub const ENV_POD: &str = "BERTH_AGENT_POD";
/// The namespace variable the agent reads.
pub const ENV_NAMESPACE: &str = "BERTH_AGENT_NAMESPACE";
/// The emptyDir holding the binary.
const VOLUME: &str = "berth-agent";
/// The projected token volume, mounted in the agent's container only.
const TOKEN_VOLUME: &str = "berth-agent-token";
/// Where Kubernetes clients look for the in-cluster token, CA and namespace.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token's lifetime; the kubelet renews it at 80 %.
const TOKEN_SECONDS: i64 = 3607;

/// The ServiceAccount berth creates for an app's agents, `<app>-berth-agent`.
pub fn account_name(app: &str) -> String {
    format!("{app}-berth-agent")
}

/// Whether part `part` gets an agent: a StatefulSet (stable member names the Role can list)
/// with a role probe, or with backups (the agent's binary takes them in the pod,
/// [`transfer_container`]).
pub fn wanted(part: &PartSpec) -> bool {
    part.kind == WorkloadKind::StatefulSet
        && (part.state.topology.role_probe.is_some() || part.state.backup.is_some())
}

/// Whether part `part`'s agent labels its pods: it has a role probe. Only these agents get a
/// token, the ServiceAccount and the Role; the others only serve backup transfers.
fn labels(part: &PartSpec) -> bool {
    wanted(part) && part.state.topology.role_probe.is_some()
}

/// What the sidecar runs: the rendered probe, its period and the part's writable roles.
pub struct Sidecar<'a> {
    /// The agent image (the operator's).
    pub image: &'a str,
    /// The role probe, rendered as the operator would exec it; empty for a part without one
    /// (the agent then only serves backup transfers and needs no credentials).
    pub probe: &'a [String],
    /// Seconds between probes.
    pub period_seconds: i32,
    /// The part's writable roles.
    pub writable: Vec<String>,
}

/// Adds the install container, the sidecar, their volumes and the agent's ServiceAccount
/// (unless the template names one) to a part's pod template.
pub fn add_to_template(template: &mut PodTemplateSpec, app: &str, sidecar: &Sidecar) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let Some(main) = spec.containers.first() else {
        return;
    };
    let agent = agent_container(main, sidecar);
    let install = install_container(sidecar.image);
    let inits = spec.init_containers.get_or_insert_with(Vec::new);
    inits.push(install);
    inits.push(agent);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(Volume {
        name: VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    if sidecar.probe.is_empty() {
        return;
    }
    volumes.push(token_volume());
    if spec.service_account_name.is_none() {
        spec.service_account_name = Some(account_name(app));
        spec.automount_service_account_token.get_or_insert(false);
    }
}

fn install_container(image: &str) -> Container {
    Container {
        name: INSTALL_CONTAINER.to_string(),
        image: Some(image.to_string()),
        args: Some(vec!["agent".into(), "install".into(), BINARY.into()]),
        volume_mounts: Some(vec![mount(VOLUME, DIR, false)]),
        ..Default::default()
    }
}

fn agent_container(main: &Container, sidecar: &Sidecar) -> Container {
    let mut command = vec![
        BINARY.to_string(),
        "agent".into(),
        "run".into(),
        "--period".into(),
        sidecar.period_seconds.to_string(),
    ];
    for role in &sidecar.writable {
        command.extend(["--writable".to_string(), role.clone()]);
    }
    if !sidecar.probe.is_empty() {
        command.push("--".into());
        command.extend(sidecar.probe.iter().cloned());
    }
    let mut env = main.env.clone().unwrap_or_default();
    env.push(crate::pod::field_env(ENV_POD, "metadata.name"));
    env.push(crate::pod::field_env(ENV_NAMESPACE, "metadata.namespace"));
    let mut mounts: Vec<VolumeMount> = main
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| m.mount_path != TOKEN_DIR)
        .cloned()
        .collect();
    mounts.push(binary_mount());
    if !sidecar.probe.is_empty() {
        mounts.push(mount(TOKEN_VOLUME, TOKEN_DIR, true));
    }
    Container {
        name: CONTAINER.to_string(),
        image: main.image.clone(),
        image_pull_policy: main.image_pull_policy.clone(),
        command: Some(command),
        env: Some(env),
        env_from: main.env_from.clone(),
        volume_mounts: Some(mounts),
        security_context: main.security_context.clone(),
        working_dir: main.working_dir.clone(),
        restart_policy: Some("Always".to_string()),
        readiness_probe: Some(readiness()),
        ..Default::default()
    }
}

/// The sidecar's readiness, checked every second (3 s to answer, for a loaded node):
/// `berth agent ready` fails while the agent must be unready (it keeps that in [`DIR`]).
fn readiness() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![BINARY.into(), "agent".into(), "ready".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(1),
        success_threshold: Some(1),
        timeout_seconds: Some(3),
        ..Default::default()
    }
}

/// The agent's binary volume at [`DIR`], for another container of the pod to run it.
pub fn binary_mount() -> VolumeMount {
    mount(VOLUME, DIR, false)
}

/// Whether member `pod` runs the agent's sidecar, so the operator can have it take a backup
/// itself (`berth agent transfer` in [`CONTAINER`]).
pub fn carries(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let inits = spec.and_then(|s| s.init_containers.as_ref());
    inits.into_iter().flatten().any(|c| c.name == CONTAINER)
}

/// What a member's pod may be asked to move itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Take a backup (in the agent's sidecar).
    Backup,
    /// Restore one (in the `berth-restore` init container).
    Restore,
}

/// The container of member `pod` that moves a backup's bytes itself (`berth agent transfer`),
/// or `None` when the operator carries them: the repository's `carrier` is `Operator`, or the
/// pod has no agent binary in that container (the operator runs without `--agent-image`, or
/// the part has no role probe).
pub fn transfer_container(
    repository: &RepositorySpec,
    pod: &Pod,
    transfer: Transfer,
) -> Option<&'static str> {
    if repository.carrier != Carrier::Member {
        return None;
    }
    match transfer {
        Transfer::Backup => carries(pod).then_some(CONTAINER),
        Transfer::Restore => crate::restore::carries(pod).then_some(crate::restore::INIT_CONTAINER),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_string(),
        mount_path: path.to_string(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// What the kubelet mounts for an automounted token (token, cluster CA, namespace), as a
/// volume of its own so that only the agent's container gets it.
fn token_volume() -> Volume {
    let token = VolumeProjection {
        service_account_token: Some(ServiceAccountTokenProjection {
            path: "token".into(),
            expiration_seconds: Some(TOKEN_SECONDS),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ca = VolumeProjection {
        config_map: Some(ConfigMapProjection {
            name: "kube-root-ca.crt".into(),
            items: Some(vec![KeyToPath {
                key: "ca.crt".into(),
                path: "ca.crt".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let namespace = VolumeProjection {
        downward_api: Some(DownwardAPIProjection {
            items: Some(vec![DownwardAPIVolumeFile {
                path: "namespace".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.namespace".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    };
    Volume {
        name: TOKEN_VOLUME.to_string(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![token, ca, namespace]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The objects an app's agents need besides their pods.
#[derive(Debug, Default)]
pub struct Objects {
    /// `<app>-berth-agent`, when a part's pods run as it.
    pub account: Option<ServiceAccount>,
    /// Reading, watching and labelling the agent parts' member pods.
    pub role: Option<Role>,
    /// The Role, granted to every ServiceAccount the agent parts' pods run as.
    pub binding: Option<RoleBinding>,
}

/// The app's agent objects; none when no part gets an agent.
pub fn objects(app: &ValidatedApp) -> Objects {
    let name = app.name();
    let parts: Vec<&PartSpec> = app.parts().iter().filter(|p| labels(p)).collect();
    if parts.is_empty() {
        return Objects::default();
    }
    let accounts: BTreeSet<String> = parts
        .iter()
        .map(|p| {
            p.template
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| account_name(&name))
        })
        .collect();
    let meta = ObjectMeta {
        name: Some(account_name(&name)),
        namespace: Some(app.namespace()),
        labels: Some(names::app_labels(&name)),
        ..Default::default()
    };
    let account = accounts
        .contains(&account_name(&name))
        .then(|| ServiceAccount {
            metadata: meta.clone(),
            automount_service_account_token: Some(false),
            ..Default::default()
        });
    let role = Role {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            resource_names: Some(member_pods(&name, &parts)),
            verbs: ["get", "list", "watch", "patch"].map(String::from).to_vec(),
            ..Default::default()
        }]),
    };
    let subjects = accounts
        .into_iter()
        .map(|account| Subject {
            kind: "ServiceAccount".into(),
            name: account,
            namespace: Some(app.namespace()),
            ..Default::default()
        })
        .collect();
    let binding = RoleBinding {
        metadata: meta,
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: account_name(&name),
        },
        subjects: Some(subjects),
    };
    Objects {
        account,
        role: Some(role),
        binding: Some(binding),
    }
}

/// The names of the members of `parts`, at their desired sizes.
fn member_pods(app: &str, parts: &[&PartSpec]) -> Vec<String> {
    parts
        .iter()
        .flat_map(|p| {
            let workload = names::workload_name(app, &p.name);
            (0..p.desired_replicas()).map(move |i| names::member_name(&workload, i))
        })
        .collect()
}

/// The agent image a StatefulSet's pods were given (its install container's image), for
/// previews that must render as the operator does without knowing its flags.
pub fn image_of(set: &k8s_openapi::api::apps::v1::StatefulSet) -> Option<String> {
    let template = set.spec.as_ref()?.template.spec.as_ref()?;
    template
        .init_containers
        .as_ref()?
        .iter()
        .find(|c| c.name == INSTALL_CONTAINER)?
        .image
        .clone()
}

/// How a member's agent is doing, from its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentState {
    /// The pod has no agent (none rendered, or rendered before the operator had an image).
    Absent,
    /// The agent runs and is ready: it owns the member's role label.
    Running,
    /// The pod has an agent that is not running or not ready (starting, restarting, dead, or
    /// unable to write its label).
    Down,
}

/// The state of `pod`'s agent, from its init container statuses.
pub fn state(pod: &Pod) -> AgentState {
    let declared = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == CONTAINER));
    if !declared {
        return AgentState::Absent;
    }
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|s| s.iter().find(|c| c.name == CONTAINER))
        .is_some_and(|c| c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if ready {
        AgentState::Running
    } else {
        AgentState::Down
    }
}

/// How long a running agent may stay unready before it counts as down: long enough for its
/// first probe and label write after a start.
pub const START_GRACE_SECONDS: i64 = 30;

/// Why `pod`'s agent counts as down for the app's Degraded condition, if it does: it has
/// died (it restarted and is not back), or it runs unready past [`START_GRACE_SECONDS`].
/// An agent starting for the first time, or a pod not running, says nothing.
pub fn trouble(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> Option<String> {
    if state(pod) != AgentState::Down
        || pod.metadata.deletion_timestamp.is_some()
        || pod.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running")
    {
        return None;
    }
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let state = status.state.as_ref();
    let started = state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref());
    let why = match started {
        None if status.restart_count > 0 => format!("restarted {} times", status.restart_count),
        None => return None,
        Some(at) if now.as_second() - at.0.as_second() > START_GRACE_SECONDS => {
            "running but not ready (it cannot write its role label)".to_string()
        }
        Some(_) if status.restart_count > 0 => {
            format!("restarted {} times", status.restart_count)
        }
        Some(_) => return None,
    };
    Some(format!(
        "{}: role agent {why}",
        pod.metadata.name.as_deref().unwrap_or_default()
    ))
}

/// The role label and term a pod carries (`berth.io/role`, `berth.io/role-term`).
pub fn labelled(pod: &Pod) -> Labelled {
    let label = |map: &Option<std::collections::BTreeMap<String, String>>, key: &str| {
        map.as_ref().and_then(|m| m.get(key)).cloned()
    };
    Labelled {
        role: label(&pod.metadata.labels, names::LABEL_ROLE),
        term: label(&pod.metadata.annotations, names::ANNOTATION_ROLE_TERM)
            .and_then(|t| t.parse().ok()),
    }
}

/// The merge patch that makes a pod carry `wanted` (a `None` removes the label or term).
pub fn label_patch(wanted: &Labelled) -> serde_json::Value {
    serde_json::json!({"metadata": {
        "labels": {names::LABEL_ROLE: wanted.role},
        "annotations": {names::ANNOTATION_ROLE_TERM: wanted.term.map(|t| t.to_string())},
    }})
}

/// Whether an app must apply its objects again although none changed: one of its agents is
/// in [`trouble`]. Its agents' ServiceAccount, Role and RoleBinding are not in the operator's
/// caches, so a deleted one comes back only through an apply. `pods` (the app's) is read only
/// for an app with agent parts.
pub fn must_reapply(
    app: &ValidatedApp,
    pods: impl FnOnce() -> Vec<Pod>,
    now: k8s_openapi::jiff::Timestamp,
) -> bool {
    app.parts().iter().any(wanted) && pods().iter().any(|p| trouble(p, now).is_some())
}

/// Whether `pod`'s agent labels its role: it has one and it is not down ([`trouble`]). An
/// agent starting is given its grace; the operator probes the other members itself.
pub fn owns_role(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> bool {
    state(pod) != AgentState::Absent && trouble(pod, now).is_none()
}

#[cfg(test)]
mod tests;
