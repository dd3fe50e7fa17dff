//! What each member runs locally, computed without I/O from a validated app: its argv (from
//! `local.command` or the container's command and args), its env (the `BERTH_*` variables with
//! local values, then the container's env, templates rendered and `$(VAR)` expanded like
//! Kubernetes does), its rendered config files, directories, readiness probe and stop grace,
//! and its role probe and actions (rendered by the core's `exec`). Exec probes and actions are not
//! `$(VAR)` expanded: Kubernetes expands only a container's command, args and env, and both
//! engines must run the same command (use `$VAR` through a shell).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use berth_core::exec::{ActionTarget, ExecKind};
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::{ActionSpec, PartSpec, PodManagement};
use berth_core::template;
use berth_core::topology::{self, EnvSource, MemberRef};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use nix::sys::signal::Signal;

use crate::addressing::{self, LocalAddressing};
use crate::decide;
use crate::error::PlanError;
use crate::expand::{expand, expand_env, lookup_in};

/// Default `terminationGracePeriodSeconds`, as on Kubernetes.
const DEFAULT_GRACE_SECONDS: i64 = 30;

/// A config file written into a member's directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedFile {
    /// Where it goes on this host.
    pub path: PathBuf,
    /// Its content.
    pub content: String,
    /// Its mode bits.
    pub mode: u32,
}

/// How readiness is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeAction {
    /// A command run with the member's env; exit status 0 means ready.
    Exec(Vec<String>),
    /// A TCP connection to the member's address.
    Tcp(u16),
    /// An HTTP GET to the member's address; a 2xx or 3xx status means ready.
    Http {
        /// The port.
        port: u16,
        /// The request path.
        path: String,
    },
}

/// A readiness probe with its timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    /// What is checked.
    pub action: ProbeAction,
    /// Delay before the first check.
    pub initial_delay: Duration,
    /// Time between checks.
    pub period: Duration,
    /// Time one check may take.
    pub timeout: Duration,
}

/// A topology action rendered for one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionPlan {
    /// The command line.
    pub argv: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// An init container: run to completion before each start of the member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitPlan {
    /// The init container's name.
    pub name: String,
    /// Its command line (templates rendered, `$(VAR)` expanded).
    pub argv: Vec<String>,
    /// Its environment (the `BERTH_*` variables, then its own `env`).
    pub env: Vec<(String, String)>,
    /// Its variables from Secrets (read at start, after `env`).
    pub secret_env: Vec<SecretEnv>,
}

/// A variable from a Secret's key (`env[].valueFrom.secretKeyRef`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretEnv {
    /// The variable's name.
    pub name: String,
    /// The Secret.
    pub secret: String,
    /// Its key.
    pub key: String,
    /// Whether a missing Secret or key leaves the variable out rather than failing.
    pub optional: bool,
}

/// A Secret mounted as a directory of files (`config.secrets`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMount {
    /// The directory on this host (the mapped mount path).
    pub dir: PathBuf,
    /// The Secret.
    pub secret: String,
    /// Whether the member starts without it.
    pub optional: bool,
}

/// A user id and optional group id to run as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    /// `runAsUser`.
    pub uid: u32,
    /// `runAsGroup`; `None`: the user's primary group (from the passwd database, else 0).
    pub gid: Option<u32>,
}

/// Everything needed to run one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberPlan {
    /// The member's identity.
    pub member: MemberRef,
    /// `<app>-<part>-<ordinal>`.
    pub name: String,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// Its directory.
    pub dir: PathBuf,
    /// Directories created before start (volumes, secrets, config).
    pub dirs: Vec<PathBuf>,
    /// Rendered config files.
    pub files: Vec<PlannedFile>,
    /// The pod's init containers, in order.
    pub inits: Vec<InitPlan>,
    /// The command line.
    pub argv: Vec<String>,
    /// The environment (the process gets only this plus `PATH`).
    pub env: Vec<(String, String)>,
    /// Variables from Secrets (read at every start, after `env`; not in the revision).
    pub secret_env: Vec<SecretEnv>,
    /// Secrets mounted as files.
    pub secret_mounts: Vec<SecretMount>,
    /// The readiness probe, if the container has one.
    pub probe: Option<ProbePlan>,
    /// The role probe: a command whose output is the member's role, and its period.
    pub role_probe: Option<(Vec<String>, Duration)>,
    /// The part's switchover action, rendered for this member (run when it is the leader).
    pub switchover: Option<ActionPlan>,
    /// The part's memberJoin action, rendered for this member (run when another one joins).
    pub member_join: Option<ActionPlan>,
    /// The part's memberLeave action, rendered for this member (run when another one leaves).
    pub member_leave: Option<ActionPlan>,
    /// The part's backup action, rendered for this member (`berth backup`, the schedule).
    pub backup: Option<ActionPlan>,
    /// The part's restore action, rendered for this member (before its first start when the
    /// app is created from a backup).
    pub restore: Option<ActionPlan>,
    /// Time between the start of a stop (preStop, then the stop signal) and SIGKILL.
    pub grace: Duration,
    /// The signal that stops the member: the container's `lifecycle.stopSignal`, else SIGTERM.
    pub stop_signal: Signal,
    /// The user (and group) the member's processes run as: `securityContext.runAsUser` and
    /// `runAsGroup` (the container's, else the pod's); honoured when berth runs as root.
    pub run_as: Option<RunAs>,
    /// The container's `lifecycle.preStop.exec` command (templates rendered, not `$(VAR)`
    /// expanded), run before the stop signal.
    pub pre_stop: Option<Vec<String>>,
    /// TCP ports the member binds on its address.
    pub ports: Vec<u16>,
    /// Start policy of its part.
    pub pod_management: PodManagement,
    /// Debian packages that provide its binaries.
    pub packages: Vec<String>,
    /// Hash of argv, env and files; when the part manages membership through actions, of
    /// those rendered as if the member were the part's last one (see [`plan_app`]).
    pub revision: String,
}

impl MemberPlan {
    /// This member as the target of an action run in another one (`BERTH_TARGET*`).
    pub fn as_target(&self) -> ActionTarget {
        ActionTarget {
            address: self.ip.to_string(),
            member: self.name.clone(),
            ordinal: self.member.ordinal,
        }
    }
}

/// Plans every member of every part, in start order.
///
/// Members of a part that declares `memberJoin` or `memberLeave` learn of membership changes
/// through those actions, so their revision must not change with the member list (a scale
/// would otherwise restart every member): it is the revision of the member rendered as if it
/// were the part's last member (members `0..=ordinal`), which changes with the member's own
/// spec only. They still run the rendering with the whole member list.
///
/// # Errors
/// The first member whose spec does not render or cannot run locally, with what and why.
pub fn plan_app(
    app: &ValidatedApp,
    addressing: &LocalAddressing,
) -> Result<Vec<MemberPlan>, PlanError> {
    let mut plans = Vec::new();
    for (index, part) in app.parts().iter().enumerate() {
        for member in topology::members(&app.app, part, part.desired_replicas()) {
            let mut plan = plan_member(app, index, part, &member, addressing)?;
            if part.state.topology.manages_membership()
                && let Some(revision) = revision_as_last_member(app, index, &member, addressing)
            {
                plan.revision = revision;
            }
            plans.push(plan);
        }
    }
    Ok(plans)
}

/// The revision of `member` rendered with the members `0..=ordinal` of its part only; `None`
/// when its templates need more members than that (the full rendering's revision counts then).
fn revision_as_last_member(
    app: &ValidatedApp,
    index: usize,
    member: &MemberRef,
    addressing: &LocalAddressing,
) -> Option<String> {
    let mut truncated = app.clone();
    truncated.app.spec.parts[index].replicas = Some(member.ordinal + 1);
    let part = &truncated.parts()[index];
    let plan = plan_member(&truncated, index, part, member, addressing).ok()?;
    Some(plan.revision)
}

/// Plans `member` of part `index` (`part`).
fn plan_member(
    app: &ValidatedApp,
    index: usize,
    part: &PartSpec,
    member: &MemberRef,
    addressing: &LocalAddressing,
) -> Result<MemberPlan, PlanError> {
    let name = member.name();
    let container = local_container(part).ok_or_else(|| PlanError::NoContainer {
        member: name.clone(),
    })?;
    let context = app.context(index, addressing, Some(member));
    let render = |s: &str| render_for(&name, s, &context);
    let ip = addressing.ip(member);
    let env = member_env(app, part, member, ip, container, &render)?;
    let argv = main_argv(part, container, &env, &render, &name)?;
    let files = planned_files(app, index, member, addressing)?;
    let probe = container
        .readiness_probe
        .as_ref()
        .map(|p| probe_plan(p, container, part, &render))
        .transpose()?
        .flatten();
    let (role_probe, [switchover, member_join, member_leave, backup, restore]) =
        exec_plans(app, index, member, addressing)?;
    let inits = init_plans(app, part, member, ip, &render)?;
    let stop_signal = stop_signal(container, &name)?;
    let (secret_env, secret_mounts) = (
        secret_env(container),
        secret_mounts(part, member, addressing),
    );
    Ok(MemberPlan {
        revision: revision(&argv, &env, &files, &inits, &(&secret_env, &secret_mounts)),
        ip,
        dir: addressing.member_dir(member),
        dirs: addressing::member_dirs(addressing, part, member),
        files,
        inits,
        argv,
        env,
        secret_env,
        secret_mounts,
        probe,
        role_probe,
        switchover,
        member_join,
        member_leave,
        backup,
        restore,
        grace: grace(part),
        stop_signal,
        pre_stop: pre_stop(container, &render)?,
        run_as: run_as(part, container),
        ports: tcp_ports(part),
        pod_management: part.pod_management,
        packages: local_packages(part),
        member: member.clone(),
        name,
    })
}

/// `text` rendered with the member's `context`; a failure names `member`.
fn render_for(
    member: &str,
    text: &str,
    context: &template::TemplateValue,
) -> Result<String, PlanError> {
    template::render(text, context).map_err(|source| PlanError::Template {
        member: member.to_string(),
        source,
    })
}

/// The member's command line: its words rendered and `$(VAR)` expanded with its `env`.
fn main_argv(
    part: &PartSpec,
    container: &Container,
    env: &[(String, String)],
    render: &dyn Fn(&str) -> Result<String, PlanError>,
    name: &str,
) -> Result<Vec<String>, PlanError> {
    let lookup = |n: &str| lookup_in(env, n);
    let argv: Vec<String> = local_words(part, container)
        .iter()
        .map(|w| render(w).map(|r| expand(&r, &lookup)))
        .collect::<Result<_, _>>()?;
    if argv.is_empty() {
        return Err(PlanError::NoCommand {
            member: name.to_string(),
        });
    }
    Ok(argv)
}

/// The member's rendered config files.
fn planned_files(
    app: &ValidatedApp,
    index: usize,
    member: &MemberRef,
    addressing: &LocalAddressing,
) -> Result<Vec<PlannedFile>, PlanError> {
    let files = app
        .config_files(index, addressing, Some(member))
        .map_err(|source| PlanError::ConfigFile {
            member: member.name(),
            source,
        })?;
    Ok(files
        .into_iter()
        .map(|f| PlannedFile {
            path: PathBuf::from(f.path),
            content: f.content,
            mode: u32::try_from(f.mode).unwrap_or(0o644),
        })
        .collect())
}

/// The revision: argv, env and files, plus init containers and Secret references when there
/// are any (so that members without them keep the revisions they had).
fn revision(
    argv: &[String],
    env: &[(String, String)],
    files: &[PlannedFile],
    inits: &[InitPlan],
    secrets: &(&Vec<SecretEnv>, &Vec<SecretMount>),
) -> String {
    let mut pairs: Vec<(String, String)> = files
        .iter()
        .map(|f| (f.path.display().to_string(), f.content.clone()))
        .collect();
    pairs.extend(
        inits
            .iter()
            .map(|i| (format!("\0init {}", i.name), format!("{i:?}"))),
    );
    if !secrets.0.is_empty() || !secrets.1.is_empty() {
        pairs.push(("\0secrets".to_string(), format!("{secrets:?}")));
    }
    decide::revision(argv, env, &pairs)
}

/// The pod's init containers, each with its own command and env (as on Kubernetes, where they
/// share the pod's volumes, user and network but not the main container's env).
fn init_plans(
    app: &ValidatedApp,
    part: &PartSpec,
    member: &MemberRef,
    ip: Ipv4Addr,
    render: &dyn Fn(&str) -> Result<String, PlanError>,
) -> Result<Vec<InitPlan>, PlanError> {
    let spec = part.template.spec.as_ref();
    let containers = spec.and_then(|s| s.init_containers.as_ref());
    let mut inits = Vec::new();
    for container in containers.into_iter().flatten() {
        let env = member_env(app, part, member, ip, container, render)?;
        let lookup = |n: &str| lookup_in(&env, n);
        let argv = container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .map(|w| render(w).map(|r| expand(&r, &lookup)))
            .collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err(PlanError::InitNoCommand {
                member: member.name(),
                container: container.name.clone(),
            });
        }
        inits.push(InitPlan {
            name: container.name.clone(),
            argv,
            env,
            secret_env: secret_env(container),
        });
    }
    Ok(inits)
}

/// The container that runs locally: `local.container`, else the first.
fn local_container(part: &PartSpec) -> Option<&Container> {
    let containers = &part.template.spec.as_ref()?.containers;
    let wanted = part.local.as_ref().and_then(|l| l.container.as_deref());
    match wanted {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers.first(),
    }
}

/// The Debian packages `local.packages` lists (none without a `local` section).
fn local_packages(part: &PartSpec) -> Vec<String> {
    let local = part.local.as_ref();
    local.map(|l| l.packages.clone()).unwrap_or_default()
}

/// The unrendered command line: `local.command`, else the container's command and args.
fn local_words(part: &PartSpec, container: &Container) -> Vec<String> {
    match part.local.as_ref().filter(|l| !l.command.is_empty()) {
        Some(local) => local.command.clone(),
        None => container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
            .cloned()
            .collect(),
    }
}

fn member_env(
    app: &ValidatedApp,
    part: &PartSpec,
    member: &MemberRef,
    ip: Ipv4Addr,
    container: &Container,
    render: &dyn Fn(&str) -> Result<String, PlanError>,
) -> Result<Vec<(String, String)>, PlanError> {
    let workload = names::workload_name(&app.name(), &part.name);
    let headless = names::headless_service_name(&workload, part);
    let mut env: Vec<(String, String)> = topology::member_env(&app.name(), part, &headless)
        .into_iter()
        .map(|(k, source)| (k.to_string(), local_value(source, app, member, ip)))
        .collect();
    for var in container.env.iter().flatten() {
        if let Some(value) = &var.value {
            env.push((var.name.clone(), render(value)?));
        }
    }
    Ok(expand_env(&env))
}

/// The container's variables from Secrets (`valueFrom.secretKeyRef`).
fn secret_env(container: &Container) -> Vec<SecretEnv> {
    let vars = container.env.iter().flatten();
    vars.filter_map(|var| {
        let key = var.value_from.as_ref()?.secret_key_ref.as_ref()?;
        Some(SecretEnv {
            name: var.name.clone(),
            secret: key.name.clone(),
            key: key.key.clone(),
            optional: key.optional.unwrap_or(false),
        })
    })
    .collect()
}

/// The part's `config.secrets` for `member`, each at its mapped directory.
fn secret_mounts(
    part: &PartSpec,
    member: &MemberRef,
    addressing: &LocalAddressing,
) -> Vec<SecretMount> {
    let secrets = part.state.config.secrets.iter();
    secrets
        .filter_map(|s| {
            Some(SecretMount {
                dir: addressing.host_path(member, &s.path)?,
                secret: s.secret_name.clone(),
                optional: s.optional,
            })
        })
        .collect()
}

/// The local value of a standard variable: the member's IP stands for every address.
fn local_value(source: EnvSource, app: &ValidatedApp, member: &MemberRef, ip: Ipv4Addr) -> String {
    match source {
        EnvSource::Literal(v) => v,
        EnvSource::MemberName => member.name(),
        EnvSource::Ordinal => member.ordinal.to_string(),
        EnvSource::Namespace => app.namespace(),
        EnvSource::PodIp | EnvSource::StableAddress { .. } => ip.to_string(),
    }
}

fn probe_plan(
    probe: &Probe,
    container: &Container,
    part: &PartSpec,
    render: &dyn Fn(&str) -> Result<String, PlanError>,
) -> Result<Option<ProbePlan>, PlanError> {
    let port = |p: &IntOrString| resolve_port(p, container, part);
    let action = if let Some(exec) = &probe.exec {
        let words = exec.command.iter().flatten();
        let argv = words.map(|w| render(w)).collect::<Result<Vec<_>, _>>()?;
        Some(ProbeAction::Exec(argv))
    } else if let Some(tcp) = &probe.tcp_socket {
        port(&tcp.port).map(ProbeAction::Tcp)
    } else if let Some(http) = &probe.http_get {
        port(&http.port).map(|port| ProbeAction::Http {
            port,
            path: http.path.clone().unwrap_or_else(|| "/".to_string()),
        })
    } else {
        None
    };
    let secs =
        |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
    Ok(action.map(|action| ProbePlan {
        action,
        initial_delay: secs(probe.initial_delay_seconds, 0),
        period: secs(probe.period_seconds, 10).max(Duration::from_millis(500)),
        timeout: secs(probe.timeout_seconds, 1).max(Duration::from_secs(1)),
    }))
}

/// The role probe and the actions (switchover, memberJoin, memberLeave, backup, restore) of
/// `member`, rendered
/// by the core for it (not `$(VAR)` expanded, as on Kubernetes).
fn exec_plans(
    app: &ValidatedApp,
    index: usize,
    member: &MemberRef,
    addressing: &LocalAddressing,
) -> Result<ExecPlans, PlanError> {
    let command = |kind: ExecKind| {
        let rendered = app.exec_command(index, kind, addressing, Some(member));
        rendered.map_err(|source| PlanError::Exec {
            member: member.name(),
            source,
        })
    };
    let part = &app.parts()[index];
    let action = |kind: ExecKind| {
        let spec = kind.action(&part.state);
        command(kind).map(|argv| action_plan(spec, argv))
    };
    Ok((
        role_probe(part, command(ExecKind::RoleProbe)?),
        [
            action(ExecKind::Switchover)?,
            action(ExecKind::MemberJoin)?,
            action(ExecKind::MemberLeave)?,
            action(ExecKind::Backup)?,
            action(ExecKind::Restore)?,
        ],
    ))
}

/// A member's role probe (argv and period), and its switchover, memberJoin, memberLeave, backup
/// and restore actions.
type ExecPlans = (Option<(Vec<String>, Duration)>, [Option<ActionPlan>; 5]);

/// A topology action with its `argv` (rendered by the core for the member that runs it) and its
/// timeout.
fn action_plan(action: Option<&ActionSpec>, argv: Option<Vec<String>>) -> Option<ActionPlan> {
    let secs = u64::try_from(action?.timeout_seconds).unwrap_or(30).max(1);
    Some(ActionPlan {
        argv: argv?,
        timeout: Duration::from_secs(secs),
    })
}

/// The role probe's `argv` (rendered like an action's) and its period.
fn role_probe(part: &PartSpec, argv: Option<Vec<String>>) -> Option<(Vec<String>, Duration)> {
    let probe = part.state.topology.role_probe.as_ref()?;
    let period = Duration::from_secs(u64::try_from(probe.period_seconds).unwrap_or(2).max(1));
    Some((argv?, period))
}

/// A probe port: a number, or a name among the container's and the part's ports.
fn resolve_port(port: &IntOrString, container: &Container, part: &PartSpec) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .or_else(|| {
                let ports = &part.state.topology.ports;
                ports.iter().find(|p| &p.name == name).map(|p| p.port)
            })
            .and_then(|n| u16::try_from(n).ok()),
    }
}

/// `runAsUser`/`runAsGroup`: each from the container's security context, else the pod's (as
/// on Kubernetes, the container's wins field by field). `None` without a `runAsUser`.
fn run_as(part: &PartSpec, container: &Container) -> Option<RunAs> {
    let pod = part.template.spec.as_ref()?.security_context.as_ref();
    let own = container.security_context.as_ref();
    let uid = own
        .and_then(|c| c.run_as_user)
        .or_else(|| pod.and_then(|p| p.run_as_user))?;
    let gid = own
        .and_then(|c| c.run_as_group)
        .or_else(|| pod.and_then(|p| p.run_as_group));
    Some(RunAs {
        uid: u32::try_from(uid).ok()?,
        gid: gid.and_then(|g| u32::try_from(g).ok()),
    })
}

/// The container's `lifecycle.stopSignal` (e.g. `SIGINT`), else SIGTERM as on Kubernetes
/// (where an image's `STOPSIGNAL` would count too; locally there is no image).
fn stop_signal(container: &Container, member: &str) -> Result<Signal, PlanError> {
    let name = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.stop_signal.as_deref());
    match name {
        None => Ok(Signal::SIGTERM),
        Some(name) => name.parse().map_err(|_| PlanError::StopSignal {
            member: member.to_string(),
            signal: name.to_string(),
        }),
    }
}

/// The container's `lifecycle.preStop.exec` command, templates rendered.
fn pre_stop(
    container: &Container,
    render: &dyn Fn(&str) -> Result<String, PlanError>,
) -> Result<Option<Vec<String>>, PlanError> {
    let hook = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref());
    let Some(exec) = hook.and_then(|h| h.exec.as_ref()) else {
        return Ok(None);
    };
    let words = exec.command.iter().flatten();
    let argv = words.map(|w| render(w)).collect::<Result<Vec<_>, _>>()?;
    Ok((!argv.is_empty()).then_some(argv))
}

fn grace(part: &PartSpec) -> Duration {
    let seconds = part
        .template
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    Duration::from_secs(seconds.max(0) as u64)
}

fn tcp_ports(part: &PartSpec) -> Vec<u16> {
    let ports = &part.state.topology.ports;
    ports
        .iter()
        .filter(|p| p.protocol == berth_core::spec::Protocol::TCP)
        .filter_map(|p| u16::try_from(p.port).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::load::{Inputs, load};
    use std::path::Path;

    const APP: &str = r#"
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: kv}
spec:
  parts:
    - name: kv
      replicas: 2
      template:
        spec:
          containers:
            - name: kv
              image: kv:1
              command: ["kv", "--name=$(BERTH_MEMBER)", "--peer={{ members[0].address }}", "--data={{ volumes.data }}"]
              env:
                - name: GREETING
                  value: "hi-$(BERTH_ORDINAL)"
              readinessProbe:
                tcpSocket: {port: client}
      state:
        persistent:
          - {name: data, size: 1Gi, mountPath: /data}
        topology:
          ports:
            - {name: client, port: 7000}
"#;

    fn plans() -> Vec<MemberPlan> {
        plan_text(APP)
    }

    fn plan_text(text: &str) -> Vec<MemberPlan> {
        try_plan(text).unwrap()
    }

    /// The plans of the app `text`, or why it cannot be planned.
    fn try_plan(text: &str) -> Result<Vec<MemberPlan>, PlanError> {
        let inputs = Inputs {
            app_file: "kv.yaml".into(),
            app_text: text.into(),
            ..Default::default()
        };
        let app = load(&inputs).unwrap();
        let addressing = LocalAddressing::new(&app.app, Path::new("/h/kv"), 20);
        plan_app(&app, &addressing)
    }

    /// `text` with `actions` (YAML lines) under its topology.
    fn with_actions(text: &str, actions: &str) -> String {
        let ports = "            - {name: client, port: 7000}\n";
        text.replace(ports, &format!("{ports}{actions}"))
    }

    /// APP with `replicas` members, a command listing every member, and `actions`.
    fn listing_members(replicas: i32, actions: &str) -> Vec<MemberPlan> {
        let list = "--all={% for m in members %}{{ m.address }},{% endfor %}";
        let text = APP
            .replace("--peer={{ members[0].address }}", list)
            .replace("replicas: 2", &format!("replicas: {replicas}"));
        plan_text(&with_actions(&text, actions))
    }

    fn revisions(plans: &[MemberPlan]) -> Vec<&str> {
        plans.iter().map(|p| p.revision.as_str()).collect()
    }

    const JOIN: &str = "          actions:\n            memberJoin: {exec: [kv, join]}\n";
    const LEAVE: &str = "          actions:\n            memberLeave: {exec: [kv, leave]}\n";

    #[test]
    fn with_membership_actions_the_member_list_does_not_change_revisions() {
        for actions in [JOIN, LEAVE] {
            let three = listing_members(3, actions);
            let five = listing_members(5, actions);
            assert_eq!(revisions(&three), revisions(&five)[..3]);
            assert_ne!(three[0].argv, five[0].argv, "members run the whole list");
            assert!(five[0].argv[2].ends_with("127.20.1.5,"));
        }
        let five = listing_members(5, JOIN);
        assert_eq!(five[4].member_join.as_ref().unwrap().argv, ["kv", "join"]);
        assert!(five[4].member_leave.is_none());
    }

    #[test]
    fn without_membership_actions_the_member_list_changes_revisions() {
        let three = listing_members(3, "");
        let five = listing_members(5, "");
        let all = "--all=127.20.1.1,127.20.1.2,127.20.1.3,127.20.1.4,127.20.1.5,";
        assert_eq!(five[1].argv[2], all);
        let pairs = revisions(&three).into_iter().zip(revisions(&five));
        assert!(pairs.into_iter().all(|(a, b)| a != b));
    }

    #[test]
    fn with_membership_actions_other_changes_still_change_revisions() {
        let before = plan_text(&with_actions(APP, JOIN));
        let changed = APP.replace("hi-$(BERTH_ORDINAL)", "hello-$(BERTH_ORDINAL)");
        let after = plan_text(&with_actions(&changed, JOIN));
        let pairs = revisions(&before).into_iter().zip(revisions(&after));
        assert!(pairs.into_iter().all(|(a, b)| a != b));
    }

    #[test]
    fn command_env_and_probe_use_local_values() {
        let plans = plans();
        let m1 = &plans[1];
        assert_eq!(m1.name, "kv-1");
        assert_eq!(
            m1.argv,
            [
                "kv",
                "--name=kv-1",
                "--peer=127.20.1.1",
                "--data=/h/kv/kv-1/volumes/data"
            ]
        );
        assert_eq!(lookup_in(&m1.env, "GREETING").as_deref(), Some("hi-1"));
        assert_eq!(
            lookup_in(&m1.env, "BERTH_ADDRESS").as_deref(),
            Some("127.20.1.2")
        );
        assert_eq!(
            lookup_in(&m1.env, "BERTH_NAMESPACE").as_deref(),
            Some("default")
        );
        assert_eq!(m1.probe.as_ref().unwrap().action, ProbeAction::Tcp(7000));
        assert_eq!(m1.grace, Duration::from_secs(30));
        assert_ne!(plans[0].revision, m1.revision);
    }

    #[test]
    fn run_as_takes_the_container_fields_over_the_pods() {
        let pod = "        spec:\n          securityContext: {runAsUser: 7, runAsGroup: 8}\n";
        let text = APP.replace("        spec:\n", pod).replace(
            "              image: kv:1\n",
            "              image: kv:1\n              securityContext: {runAsUser: 9}\n",
        );
        assert_eq!(
            plan_text(&text)[0].run_as,
            Some(RunAs {
                uid: 9,
                gid: Some(8)
            })
        );
        assert_eq!(plans()[0].run_as, None);
    }

    #[test]
    fn exec_actions_are_not_var_expanded_as_on_kubernetes() {
        let actions =
            "          actions:\n            memberJoin: {exec: [kv, join, \"$(BERTH_MEMBER)\"]}\n";
        let plans = plan_text(&with_actions(APP, actions));
        assert_eq!(
            plans[1].member_join.as_ref().unwrap().argv,
            ["kv", "join", "$(BERTH_MEMBER)"],
            "Kubernetes runs an exec as written; the local engine must too"
        );
        assert_eq!(
            plans[1].argv[1], "--name=kv-1",
            "the container's command is expanded"
        );
    }

    /// Why `text` cannot be planned.
    fn plan_error(text: &str) -> PlanError {
        try_plan(text).unwrap_err()
    }

    #[test]
    fn a_container_without_a_command_names_the_member_and_the_way_out() {
        let without_command: String = APP
            .lines()
            .filter(|l| !l.trim_start().starts_with("command:"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(without_command.len() < APP.len());
        let error = plan_error(&without_command);
        assert!(
            matches!(&error, PlanError::NoCommand { member } if member == "kv-0"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "kv-0: no command: the image's entrypoint cannot run locally; give the container a \
             command or the part a `local.command`"
        );
    }

    #[test]
    fn an_unknown_stop_signal_names_the_member_the_field_and_the_value() {
        let image = "              image: kv:1\n";
        let text = APP.replace(
            image,
            &format!("{image}              lifecycle: {{stopSignal: SIGNOPE}}\n"),
        );
        let error = plan_error(&text);
        assert!(
            matches!(&error, PlanError::StopSignal { member, signal }
                if member == "kv-0" && signal == "SIGNOPE"),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "kv-0: lifecycle.stopSignal: unknown signal `SIGNOPE` (use a name such as SIGINT)"
        );
    }
}
