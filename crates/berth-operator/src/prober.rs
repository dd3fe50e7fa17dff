//! Role probes on Kubernetes: every part with a `roleProbe` gets its command (rendered by the
//! core, like every command the operator execs: `berth_k8s::roles::exec_command`) run in each
//! running member's first container (the `pods/exec` API) every `periodSeconds`; the first line it
//! prints becomes the pod label `berth.io/role` (`berth_k8s::roles`). Role Services select that
//! label, and the rollout planner reads it. Reconciles register what to probe; one loop per scope
//! runs the probes, a bounded number at a time, so a slow member never holds up a reconcile.
//!
//! Members whose role agent runs (`berth agent`, see [`crate::agent`]) label themselves and
//! are not probed from here; the operator's exec path is their fallback while an agent is
//! down. The same loop removes the label of a writer from an older term than another's
//! (`berth_core::agent::stale_writers`), whichever wrote it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::agent::{Labelled, MemberLabel};
use berth_core::exec::{ActionTarget, ExecKind};
use berth_core::lifecycle::ActionFailure;
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::RoleSpec;
use berth_k8s::agent;
use berth_k8s::roles;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::io::AsyncReadExt;

use crate::MANAGER;

/// Probes running at once per scope.
const CONCURRENCY: usize = 16;
/// How often the loop looks for due probes.
const TICK: Duration = Duration::from_millis(500);
/// A probe taking longer than this reports nothing.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to probe in one part's members.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeTarget {
    namespace: String,
    selector: BTreeMap<String, String>,
    command: Vec<String>,
    period: Duration,
    /// The part's roles when at most one member may hold a writable one (empty otherwise):
    /// what [`berth_core::agent::stale_writers`] judges.
    exclusive: Vec<RoleSpec>,
}

/// The probes of every app in a scope, and when each member was last probed.
#[derive(Default)]
pub struct Prober {
    targets: Mutex<HashMap<String, Vec<Arc<ProbeTarget>>>>,
    last_run: Mutex<HashMap<String, Instant>>,
}

/// The scope's pods by namespace and part (instance and component labels), read from the cache
/// once per tick: each target then finds its members without a pass over every pod (at 1,000
/// apps a pass per target cost a million pod visits, and a clone of each member, twice a
/// second).
struct PodsByPart(HashMap<(String, String, String), Vec<Arc<Pod>>>);

impl PodsByPart {
    fn index(pods: &Store<Pod>) -> Self {
        let mut by_part: HashMap<_, Vec<Arc<Pod>>> = HashMap::new();
        for pod in pods.state() {
            let labels = pod.labels();
            let (Some(instance), Some(component)) = (
                labels.get(names::LABEL_INSTANCE),
                labels.get(names::LABEL_COMPONENT),
            ) else {
                continue;
            };
            let key = (
                pod.namespace().unwrap_or_default(),
                instance.clone(),
                component.clone(),
            );
            by_part.entry(key).or_default().push(pod);
        }
        Self(by_part)
    }

    /// The members of `target`'s part.
    fn members(&self, target: &ProbeTarget) -> &[Arc<Pod>] {
        let label = |key: &str| target.selector.get(key).cloned().unwrap_or_default();
        let key = (
            target.namespace.clone(),
            label(names::LABEL_INSTANCE),
            label(names::LABEL_COMPONENT),
        );
        self.0.get(&key).map_or(&[], Vec::as_slice)
    }
}

impl Prober {
    /// Records the probes of an app (none when it declares none).
    pub fn register(&self, app_key: &str, app: &ValidatedApp) {
        let targets: Vec<Arc<ProbeTarget>> = probe_targets(app).into_iter().map(Arc::new).collect();
        let mut all = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if targets.is_empty() {
            all.remove(app_key);
        } else {
            all.insert(app_key.to_string(), targets);
        }
    }

    /// Stops probing an app's members.
    pub fn forget(&self, app_key: &str) {
        self.targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(app_key);
    }

    /// Every registered probe target.
    fn targets(&self) -> Vec<Arc<ProbeTarget>> {
        let all = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        all.values().flatten().cloned().collect()
    }

    /// Pods due for a probe now, with the command to run; marks them as probed.
    fn due(&self, pods: &PodsByPart, now: Instant) -> Vec<(Arc<Pod>, Arc<ProbeTarget>)> {
        let mut last_run = self.last_run.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        let timestamp = k8s_openapi::jiff::Timestamp::now();
        for target in self.targets() {
            for pod in pods.members(&target) {
                // A member whose agent runs (or starts) labels itself; the operator probes
                // the others, and those whose agent is down.
                if !roles::probe_due(pod) || agent::owns_role(pod, timestamp) {
                    continue;
                }
                let key = format!("{}/{}", target.namespace, pod.name_any());
                if last_run.get(&key).is_none_or(|t| now - *t >= target.period) {
                    last_run.insert(key, now);
                    due.push((pod.clone(), target.clone()));
                }
            }
        }
        due
    }

    /// Members labelled with a writable role from an older term than another member's, in
    /// every part whose writable role is exclusive, with the label each must carry instead.
    fn stale_writers(&self, pods: &PodsByPart) -> Vec<(Arc<Pod>, Labelled)> {
        let mut out = Vec::new();
        for target in self.targets() {
            if target.exclusive.is_empty() {
                continue;
            }
            let members = pods.members(&target);
            let labels: Vec<MemberLabel> = members
                .iter()
                .map(|pod| MemberLabel {
                    name: pod.name_any(),
                    label: agent::labelled(pod),
                })
                .collect();
            let stale = berth_core::agent::stale_writers(&target.exclusive, &labels);
            out.extend(members.iter().filter_map(|pod| {
                let wanted = stale.iter().find(|s| s.name == pod.name_any())?;
                Some((pod.clone(), wanted.label.clone()))
            }));
        }
        out
    }
}

fn probe_targets(app: &ValidatedApp) -> Vec<ProbeTarget> {
    app.parts()
        .iter()
        .enumerate()
        .filter_map(|(index, part)| {
            let probe = part.state.topology.role_probe.as_ref()?;
            Some(ProbeTarget {
                namespace: app.namespace(),
                selector: names::selector_labels(&app.name(), &part.name),
                command: rendered(app, index, ExecKind::RoleProbe)?,
                period: Duration::from_secs(u64::try_from(probe.period_seconds).unwrap_or(2)),
                exclusive: if part.state.topology.multiple_writers {
                    Vec::new()
                } else {
                    part.state.topology.roles.clone()
                },
            })
        })
        .collect()
}

/// Part `index`'s `kind` command as it runs in its pods (rendered by the core); `None` when
/// the part declares none, or when it does not render (logged; validation makes that rare).
pub fn rendered(app: &ValidatedApp, index: usize, kind: ExecKind) -> Option<Vec<String>> {
    match roles::exec_command(app, index, kind) {
        Ok(command) => command,
        Err(e) => {
            tracing::warn!(app = %app.name(), namespace = %app.namespace(), error = %e, "cannot render a command");
            None
        }
    }
}

/// Runs the scope's probes until the process ends.
pub async fn run(client: Client, prober: std::sync::Arc<Prober>, pods: Store<Pod>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let by_part = PodsByPart::index(&pods);
        for (pod, wanted) in prober.stale_writers(&by_part) {
            unlabel_stale_writer(&client, &pod, &wanted).await;
        }
        let due = prober.due(&by_part, Instant::now());
        drop(by_part);
        futures::stream::iter(due)
            .for_each_concurrent(CONCURRENCY, |(pod, target)| {
                let client = client.clone();
                async move {
                    probe(&client, &pod, target.command.clone()).await;
                }
            })
            .await;
    }
}

/// Removes the role label of a member labelled writable in an older term than another (its
/// agent could not relabel it, or its report is stale) and gives it the newest term, so its
/// own older reports cannot label it again.
async fn unlabel_stale_writer(client: &Client, pod: &Pod, wanted: &Labelled) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    let patch = agent::label_patch(wanted);
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => {
            tracing::warn!(pod = %name, namespace = %namespace, "removed the role of a writer from an older term")
        }
        Err(e) => {
            tracing::warn!(pod = %name, namespace = %namespace, error = %e, "could not remove a stale writer's role")
        }
    }
}

/// Probes one member and moves its role label if the result says so; the role it reported.
pub async fn probe(client: &Client, pod: &Pod, command: Vec<String>) -> Option<String> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let output = tokio::time::timeout(PROBE_TIMEOUT, exec(client, pod, command))
        .await
        .ok()
        .flatten();
    let report = output
        .as_deref()
        .and_then(berth_core::topology::report_from_probe_output);
    let role = report.as_ref().map(|r| r.role.clone());
    let Some(patch) = roles::role_label_patch(pod, report.as_ref()) else {
        return role;
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    match api.patch(&name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => tracing::info!(pod = %name, namespace = %namespace, role = ?role, "role changed"),
        Err(e) => {
            tracing::warn!(pod = %name, namespace = %namespace, error = %e, "could not label the role")
        }
    }
    role
}

/// Runs part `index`'s action `kind` (switchover, memberJoin, memberLeave), rendered, in `pod`
/// with `target` in `BERTH_TARGET*`, within the action's timeout; how it failed, if it did.
pub async fn run_action(
    client: &Client,
    pod: &Pod,
    app: &ValidatedApp,
    index: usize,
    kind: ExecKind,
    target: &ActionTarget,
) -> Result<(), ActionFailure> {
    let action = kind.action(&app.parts()[index].state);
    let (Some(action), Some(command)) = (action, rendered(app, index, kind)) else {
        return Err(failure(format!(
            "the part declares no such action ({kind:?})"
        )));
    };
    let command = roles::action_command(&command, target);
    tracing::info!(pod = %pod.name_any(), command = ?command, "running an action");
    let limit = Duration::from_secs(u64::try_from(action.timeout_seconds).unwrap_or(30));
    let ran = tokio::time::timeout(limit, exec_outcome(client, pod, command, true))
        .await
        .map_err(|_| failure(format!("timed out after {}s", limit.as_secs())))?;
    ran.map(|_| ())
}

/// Runs `command` in the pod's first container; its stdout when it exits 0.
pub async fn exec(client: &Client, pod: &Pod, command: Vec<String>) -> Option<String> {
    exec_outcome(client, pod, command, false).await.ok()
}

/// Runs `command` in the pod's first container: its stdout when it exits 0, else its exit code
/// and the end of its stderr (when `with_stderr`) or stdout.
async fn exec_outcome(
    client: &Client,
    pod: &Pod,
    command: Vec<String>,
    with_stderr: bool,
) -> Result<String, ActionFailure> {
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .ok_or_else(|| failure("the pod has no container".into()))?;
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(with_stderr);
    let mut process = api
        .exec(&pod.name_any(), command, &params)
        .await
        .map_err(|e| failure(format!("cannot exec in {}: {e}", pod.name_any())))?;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let out = process.stdout().map(|mut s| async move {
        let _ = s.read_to_end(&mut stdout).await;
        stdout
    });
    let err = process.stderr().map(|mut s| async move {
        let _ = s.read_to_end(&mut stderr).await;
        stderr
    });
    let (stdout, stderr) = tokio::join!(
        async {
            match out {
                Some(f) => f.await,
                None => Vec::new(),
            }
        },
        async {
            match err {
                Some(f) => f.await,
                None => Vec::new(),
            }
        }
    );
    let status = match process.take_status() {
        Some(status) => status.await,
        None => None,
    };
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => {
            Ok(String::from_utf8_lossy(&stdout).into_owned())
        }
        other => Err(ActionFailure {
            exit_code: other.as_ref().and_then(exit_code),
            message: berth_core::exec::output_tail(&stderr, &stdout),
        }),
    }
}

/// The exit code in an exec's failure status: the `ExitCode` cause a kubelet sends with
/// `NonZeroExitCode`, else a message ending in `exit status N` (what kwok sends).
pub(crate) fn exit_code(
    status: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
) -> Option<i32> {
    let cause = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref()?.parse().ok());
    cause.or_else(|| {
        let message = status.message.as_deref()?;
        let (_, code) = message.rsplit_once("exit status ")?;
        code.trim().parse().ok()
    })
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        exit_code: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::load::{Inputs, load};

    #[test]
    fn the_redis_example_registers_its_probe_rendered() {
        let inputs = Inputs {
            app_file: "redis.yaml".into(),
            app_text: include_str!("../../../examples/redis.yaml").into(),
            ..Default::default()
        };
        let targets = probe_targets(&load(&inputs).unwrap());
        let command = &targets[0].command;
        assert_eq!(command[..2], ["/bin/sh", "-c"]);
        assert!(
            command[2].starts_with("redis-cli -h $BERTH_POD_IP -p 6379 info replication"),
            "{command:?}"
        );
        assert_eq!(targets[0].period, Duration::from_secs(2));
    }

    #[test]
    fn a_target_finds_its_part_members_in_the_index() {
        use kube::runtime::watcher::Event;
        let (store, mut writer) = kube::runtime::reflector::store::<Pod>();
        let pod = |ns: &str, name: &str, app: &str, part: &str| {
            let mut pod = Pod::default();
            pod.metadata.namespace = Some(ns.into());
            pod.metadata.name = Some(name.into());
            pod.metadata.labels = Some(names::selector_labels(app, part));
            pod
        };
        for p in [
            pod("a", "redis-0", "redis", "redis"),
            pod("a", "redis-1", "redis", "redis"),
            pod("b", "redis-0", "redis", "redis"),
            pod("a", "web-0", "web", "web"),
        ] {
            writer.apply_watcher_event(&Event::Apply(p));
        }
        let inputs = Inputs {
            app_file: "redis.yaml".into(),
            app_text: include_str!("../../../examples/redis.yaml").into(),
            namespace: Some("a".into()),
            ..Default::default()
        };
        let target = probe_targets(&load(&inputs).unwrap()).remove(0);
        let index = PodsByPart::index(&store);
        let mut members: Vec<String> = index
            .members(&target)
            .iter()
            .map(|p| p.name_any())
            .collect();
        members.sort();
        assert_eq!(members, ["redis-0", "redis-1"]);
    }

    #[test]
    fn exit_codes_come_from_the_kubelets_cause_or_the_message() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};
        let kubelet = Status {
            details: Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some("3".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(exit_code(&kubelet), Some(3));
        let kwok = Status {
            message: Some("exit status 42".into()),
            ..Default::default()
        };
        assert_eq!(exit_code(&kwok), Some(42));
        assert_eq!(exit_code(&Status::default()), None);
    }
}
