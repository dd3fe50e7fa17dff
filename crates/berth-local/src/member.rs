//! One member under supervision: waits for its turn to start, writes its files, runs its
//! process in its own process group, probes readiness and role, restarts it with backoff when
//! it exits, and stops it gracefully as Kubernetes does: its `preStop` hook, then its stop
//! signal (`lifecycle.stopSignal`, default SIGTERM) to the group, SIGKILL when the grace
//! period is over. A member whose process an earlier supervisor left running is adopted
//! ([`Adopted`]): probed, watched and stopped like one started here, and started anew (on the
//! current revision) only once it exits.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::sleep;

use crate::decide;
use crate::error::{SecretError, StartError};
use crate::home::write_atomic;
use crate::os;
use crate::plan::{InitPlan, MemberPlan, ProbeAction};
use crate::probe;
use crate::secrets;
use crate::shared::Shared;

/// `PATH` for members when the supervisor has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A member's process that a supervisor which died left running, taken over by this one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adopted {
    /// Its pid (also its process group).
    pub pid: u32,
    /// When it started (clock ticks since boot): with the pid, it identifies the process.
    pub started: Option<u64>,
    /// The revision it runs, as the earlier supervisor published it.
    pub revision: String,
}

/// How often an adopted process (not this supervisor's child: no exit notification) is
/// checked for having exited.
const ADOPTED_POLL: Duration = Duration::from_millis(100);

/// Waits for the member's turn to start, then runs it until told to stop; an adopted member
/// runs already, so it does not wait.
pub async fn member_task(
    plan: Arc<MemberPlan>,
    earlier: Vec<String>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    adopted: Option<Adopted>,
) {
    if adopted.is_none() {
        wait_for_turn(&plan, &earlier, &shared, &mut stop).await;
        if *stop.borrow() {
            return;
        }
    }
    // An adopted process runs already: a stop that came first still stops it (in `run_once`).
    run_member(&plan, &shared, &mut stop, adopted).await;
}

/// Waits until the members before this one allow it to start (or a stop).
async fn wait_for_turn(
    plan: &MemberPlan,
    earlier: &[String],
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) {
    let mut changed = shared.subscribe();
    loop {
        if *stop.borrow() {
            return;
        }
        let before: Vec<bool> = earlier.iter().map(|n| shared.is_ready(n)).collect();
        if decide::may_start(plan.pod_management, &before) {
            break;
        }
        if let Some(name) = earlier.iter().find(|n| !shared.is_ready(n)) {
            let waiting = format!("start order: {name} to be ready");
            shared.member(&plan.name, |m| m.waiting = waiting);
        }
        tokio::select! {
            _ = changed.changed() => {},
            _ = stop.changed() => {},
        }
    }
}

/// Runs a member (first the adopted process, if any), restarting it with backoff whenever it
/// exits, until `stop` turns true.
async fn run_member(
    plan: &MemberPlan,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
    mut adopted: Option<Adopted>,
) {
    let mut streak = 0;
    loop {
        let started = Instant::now();
        let outcome = if let Some(process) = adopted.take() {
            note(
                plan,
                &format!(
                    "adopted pid {} (left running by an earlier supervisor)",
                    process.pid
                ),
            );
            run_once(plan, shared, Process::Adopted(process), stop).await
        } else {
            match write_member_files(plan) {
                Ok(()) => start(plan, shared, stop).await,
                Err(e) => Some(e.to_string()),
            }
        };
        let Some(why) = outcome else {
            return;
        };
        streak = decide::crash_streak(streak, started.elapsed());
        let delay = decide::backoff(streak);
        note(plan, &format!("{why}; restarting in {}s", delay.as_secs()));
        shared.member(&plan.name, |m| {
            m.pid = None;
            m.ready = false;
            m.role.clear();
            m.restarts += 1;
            m.waiting = format!("restart in {}s ({why})", delay.as_secs());
        });
        tokio::select! {
            () = sleep(delay) => {},
            _ = stop.changed() => return,
        }
    }
}

/// Runs the member's init containers, then its process; `None` when it was stopped, else why
/// it exited or could not start (a description, published as what the member waits for).
async fn start(
    plan: &MemberPlan,
    shared: &Shared,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    for init in &plan.inits {
        shared.member(&plan.name, |m| {
            m.waiting = format!("init container {}", init.name);
        });
        let secret_env = match secrets::materialize(plan, &init.secret_env) {
            Ok(env) => env,
            Err(source) => {
                let init = init.name.clone();
                return Some(StartError::InitSecret { init, source }.to_string());
            }
        };
        tokio::select! {
            result = run_init(plan, init, &secret_env) => {
                if let Err(why) = result {
                    return Some(why.to_string());
                }
            }
            _ = stop.changed() => return None,
        }
    }
    match secrets::materialize(plan, &plan.secret_env)
        .map_err(StartError::from)
        .and_then(|env| spawn(plan, &env))
    {
        Ok(child) => run_once(plan, shared, Process::Started(child), stop).await,
        Err(e) => Some(e.to_string()),
    }
}

/// Runs one init container to completion (its own process group, output to the member's log,
/// killed with its group when the member is stopped meanwhile).
async fn run_init(
    plan: &MemberPlan,
    init: &InitPlan,
    secret_env: &[(String, String)],
) -> Result<(), StartError> {
    note(
        plan,
        &format!("init container {}: {}", init.name, init.argv.join(" ")),
    );
    let cannot = |source| StartError::InitSpawn {
        init: init.name.clone(),
        source,
    };
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.dir.join("log"))
        .map_err(cannot)?;
    let mut child = member_command(plan, &init.argv[0])
        .args(&init.argv[1..])
        .env_clear()
        .envs(process_env(plan).into_iter().take(2))
        .envs(init.env.iter().cloned())
        .envs(secret_env.iter().cloned())
        .stdout(log.try_clone().map_err(cannot)?)
        .stderr(log)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(cannot)?;
    let _group = KillGroupOnDrop(child.id());
    let status = child.wait().await.map_err(cannot)?;
    if status.success() {
        note(plan, &format!("init container {}: done", init.name));
        return Ok(());
    }
    Err(StartError::InitFailed {
        init: init.name.clone(),
        status,
    })
}

/// Kills a process group when dropped (an init container abandoned by a stop).
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            os::signal_group(pid, Signal::SIGKILL);
        }
    }
}

/// A member's running process: one this supervisor started, or one it adopted.
enum Process {
    Started(Child),
    Adopted(Adopted),
}

impl Process {
    fn pid(&self) -> u32 {
        match self {
            Self::Started(child) => child.id().unwrap_or_default(),
            Self::Adopted(a) => a.pid,
        }
    }

    /// Waits until the process has exited; says why, as far as can be known.
    async fn exited(&mut self) -> String {
        match self {
            Self::Started(child) => describe_exit(child.wait().await),
            Self::Adopted(a) => {
                while os::is_same_process(a.pid, a.started) {
                    sleep(ADOPTED_POLL).await;
                }
                "exited (adopted from an earlier supervisor: its exit status is unknown)".into()
            }
        }
    }

    /// Publishes the process as the member's: pid, start time, revision.
    fn publish(&self, plan: &MemberPlan, shared: &Shared) {
        let pid = self.pid();
        let (started, revision) = match self {
            Self::Started(_) => (os::start_ticks(pid), plan.revision.clone()),
            Self::Adopted(a) => (a.started, a.revision.clone()),
        };
        shared.member(&plan.name, |m| {
            m.pid = Some(pid);
            m.started = started;
            m.revision = revision;
            m.grace_seconds = plan.grace.as_secs();
            m.stop_signal = Some(plan.stop_signal.as_str().to_string());
            m.waiting = awaited(plan);
        });
    }
}

/// Runs one process of a member; `None` when it was stopped, else why it exited.
async fn run_once(
    plan: &MemberPlan,
    shared: &Shared,
    mut process: Process,
    stop: &mut watch::Receiver<bool>,
) -> Option<String> {
    let pid = process.pid();
    if matches!(process, Process::Started(_)) {
        note(plan, &format!("started pid {pid}: {}", plan.argv.join(" ")));
    }
    process.publish(plan, shared);
    // An adopted member has run for a while: its readiness is probed at once.
    let delay = matches!(process, Process::Started(_));
    let exited = tokio::select! {
        why = process.exited() => Some(why),
        () = probe_loop(plan, shared, delay) => None,
        () = role_loop(plan, shared) => None,
        _ = stop.changed() => None,
    };
    match exited {
        Some(why) => {
            os::signal_group(pid, Signal::SIGKILL);
            Some(why)
        }
        None => {
            stop_process(plan, pid, &mut process).await;
            shared.member(&plan.name, |m| {
                m.pid = None;
                m.ready = false;
                m.role.clear();
                m.waiting = "stopped".to_string();
            });
            None
        }
    }
}

fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => format!("exited ({s})"),
        Err(e) => format!("lost ({e})"),
    }
}

/// Stops a member as Kubernetes stops a container: the preStop hook (within the grace period),
/// then the stop signal to the process group, SIGKILL when the grace period is over (with a
/// one-off 2 s extension when the hook used it all up, as the kubelet gives).
async fn stop_process(plan: &MemberPlan, pid: u32, process: &mut Process) {
    let deadline = Instant::now() + plan.grace;
    if let Some(argv) = &plan.pre_stop {
        run_pre_stop(plan, argv).await;
    }
    let signal = plan.stop_signal;
    note(plan, &format!("stopping ({})", signal.as_str()));
    os::signal_group(pid, signal);
    let left = deadline.saturating_duration_since(Instant::now());
    let left = if left.is_zero() && plan.pre_stop.is_some() {
        PRE_STOP_EXTENSION
    } else {
        left
    };
    if tokio::time::timeout(left, process.exited()).await.is_err() {
        note(plan, "grace period over (SIGKILL)");
    }
    os::signal_group(pid, Signal::SIGKILL);
    process.exited().await;
}

/// The extra time a stop signal gets when the preStop hook used up the grace period.
const PRE_STOP_EXTENSION: Duration = Duration::from_secs(2);

/// Runs the preStop hook with the member's env in its directory, output to its log; a failure
/// is noted and the stop goes on, as on Kubernetes.
async fn run_pre_stop(plan: &MemberPlan, argv: &[String]) {
    note(plan, &format!("preStop: {}", argv.join(" ")));
    let run = async {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(plan.dir.join("log"))?;
        exec_command(plan, &argv[0])
            .args(&argv[1..])
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .status()
            .await
    };
    match tokio::time::timeout(plan.grace, run).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => note(plan, &format!("preStop failed ({status})")),
        Ok(Err(e)) => note(plan, &format!("preStop cannot run: {e}")),
        Err(_) => note(plan, "preStop still running when the grace period ended"),
    }
}

/// What a started member waits for.
fn awaited(plan: &MemberPlan) -> String {
    match plan.probe.as_ref().map(|p| &p.action) {
        None => "process start".to_string(),
        Some(ProbeAction::Exec(argv)) => format!("readiness probe: {}", argv.join(" ")),
        Some(ProbeAction::Tcp(port)) => format!("readiness probe: tcp {}:{port}", plan.ip),
        Some(ProbeAction::Http { port, path }) => {
            format!("readiness probe: http://{}:{port}{path}", plan.ip)
        }
    }
}

/// Probes readiness forever (after the probe's initial delay if `delay`), publishing every
/// change.
async fn probe_loop(plan: &MemberPlan, shared: &Shared, delay: bool) {
    let Some(probe) = &plan.probe else {
        shared.member(&plan.name, |m| {
            m.ready = true;
            m.waiting.clear();
        });
        return std::future::pending().await;
    };
    if delay {
        sleep(probe.initial_delay).await;
    }
    let mut was_ready = false;
    loop {
        let ready = probe::check(probe, plan).await;
        if ready != was_ready {
            let waiting = if ready { String::new() } else { awaited(plan) };
            shared.member(&plan.name, |m| {
                m.ready = ready;
                m.waiting = waiting;
            });
            was_ready = ready;
        }
        // Probe quickly until first ready so that `up` returns promptly.
        let period = if ready {
            probe.period
        } else {
            probe.period.min(Duration::from_millis(500))
        };
        sleep(period).await;
    }
}

/// Runs the role probe forever, publishing every change of role.
async fn role_loop(plan: &MemberPlan, shared: &Shared) {
    let Some((argv, period)) = &plan.role_probe else {
        return std::future::pending().await;
    };
    let mut last = String::new();
    let mut reprobe = shared.reprobe_requests();
    loop {
        let role = probe::role(argv, plan, *period.max(&Duration::from_secs(2))).await;
        if role != last {
            shared.member(&plan.name, |m| m.role = role.clone());
            last = role;
        }
        // Until a role is known (the member is starting), probe again soon rather than after a
        // full period, so roles show up as soon as the member can answer.
        let wait = if last.is_empty() {
            (*period).min(UNKNOWN_ROLE_RETRY)
        } else {
            *period
        };
        tokio::select! {
            () = sleep(wait) => {},
            _ = reprobe.changed() => {},
        }
    }
}

/// How soon an unknown role is probed again.
const UNKNOWN_ROLE_RETRY: Duration = Duration::from_millis(250);

/// Starts a member's process in its own process group, output appended to its log.
fn spawn(plan: &MemberPlan, secret_env: &[(String, String)]) -> Result<Child, StartError> {
    let start = || -> std::io::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(plan.dir.join("log"))?;
        member_command(plan, &plan.argv[0])
            .args(&plan.argv[1..])
            .envs(secret_env.iter().cloned())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
    };
    start().map_err(|source| StartError::Spawn {
        program: plan.argv[0].clone(),
        source,
    })
}

/// A command that runs `program` as part of a member: with the member's environment only, in
/// its directory, stdin closed.
pub fn member_command(plan: &MemberPlan, program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .envs(process_env(plan))
        .current_dir(&plan.dir)
        .stdin(Stdio::null());
    crate::runas::apply(&mut command, plan.run_as);
    command
}

/// A command for one of the member's actions that may run before the member ever started (a
/// restore) or beside it (a backup): as [`member_command`], with the Secrets its container
/// mounts written and its Secret-sourced variables set, as a command run in the container has
/// them on Kubernetes.
///
/// # Errors
/// A Secret with no local source, or one that cannot be read or written.
pub fn action_command(plan: &MemberPlan, program: &str) -> Result<Command, SecretError> {
    let secret_env = secrets::materialize(plan, &plan.secret_env)?;
    let mut command = member_command(plan, program);
    command.envs(secret_env);
    Ok(command)
}

/// A command run in the member's container while it runs (an exec probe, a switchover or
/// membership action, the preStop hook): as [`member_command`], with its Secret-sourced
/// variables, as `kubectl exec` has its container's. A Secret that cannot be read leaves them
/// out (the member's own start reports it).
pub fn exec_command(plan: &MemberPlan, program: &str) -> Command {
    let mut command = member_command(plan, program);
    command.envs(secrets::variables(plan).unwrap_or_default());
    command
}

/// The environment a member's processes get: its env plus `PATH` and `HOME`.
pub fn process_env(plan: &MemberPlan) -> Vec<(String, String)> {
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
    let mut env = vec![
        ("PATH".to_string(), path),
        ("HOME".to_string(), plan.dir.display().to_string()),
    ];
    env.extend(plan.env.iter().cloned());
    env
}

/// Creates a member's directories and writes its config files with their modes.
///
/// # Errors
/// A file or directory that cannot be written (named with the member), or one that cannot be
/// given to the member's user.
pub fn write_member_files(plan: &MemberPlan) -> Result<(), StartError> {
    let err = |p: &Path, source| StartError::File {
        member: plan.name.clone(),
        path: p.to_path_buf(),
        source,
    };
    for dir in &plan.dirs {
        std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    }
    for file in &plan.files {
        write_atomic(&file.path, file.content.as_bytes())?;
        let mode = std::fs::Permissions::from_mode(file.mode);
        std::fs::set_permissions(&file.path, mode).map_err(|e| err(&file.path, e))?;
    }
    Ok(crate::runas::prepare(plan)?)
}

/// Appends a supervisor note to the member's log.
fn note(plan: &MemberPlan, text: &str) {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(plan.dir.join("log"));
    if let Ok(mut log) = log {
        let _ = writeln!(log, "[berth] {}: {text}", plan.name);
    }
}
