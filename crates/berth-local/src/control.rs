//! What the command line does with the local engine: `up` (check, save the inputs, start the
//! supervisor, wait for readiness while printing progress), `plan` (a preview of `apply`),
//! `status`, `logs` and `down`. The CLI only reads `state.json`; it controls the supervisor with
//! signals.

use std::collections::BTreeMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_core::load::{Inputs, ValidatedApp};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::addressing::LocalAddressing;
use crate::error::{ControlError, HomeError, LoadError, Missing, Prerequisite, Unready};
use crate::home::{AppState, Home, Phase, SavedInputs, tail, write_atomic};
use crate::os;
use crate::plan::{self, MemberPlan};
use crate::preview::{self, Preview};
use crate::secrets;
use crate::supervisor;

/// How often the CLI looks at the published state.
const POLL: Duration = Duration::from_millis(200);
/// Log lines shown when a member fails to become ready.
const TAIL_LINES: usize = 30;

/// How `up` starts the supervisor.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The `berth` executable and the arguments that make it run the supervisor of an app
    /// (the app's name is appended).
    pub supervisor_command: Vec<String>,
    /// The address slot to use (`None`: keep or pick one).
    pub slot: Option<u8>,
    /// How long members may take to become ready.
    pub timeout: Duration,
    /// Sources of Secrets (`--secret NAME=PATH`), added to those saved by earlier `up`s.
    pub secrets: Vec<(String, PathBuf)>,
    /// `--restore-from`: the backup a new app is restored from (overrides `spec.restoreFrom`).
    pub restore_from: Option<String>,
}

/// Runs `app` in `home` and returns once every member is ready.
///
/// # Errors
/// A missing binary or package, a taken address, or a member not ready in time (with its log).
pub fn up(
    home: &Home,
    inputs: &Inputs,
    app: &ValidatedApp,
    options: &UpOptions,
) -> Result<(), ControlError> {
    let name = app.name();
    let plans = supervisor::plan_members(home, app, options.slot)?;
    preflight(&plans)?;
    save_secret_sources(home, &name, &options.secrets)?;
    check_secrets(home, &name, &plans)?;
    for notice in plans.iter().filter_map(crate::runas::ignored_notice) {
        eprintln!("{notice}");
    }
    save_inputs(home, &name, inputs)?;
    let restore_from = options.restore_from.as_ref();
    let restore_from = restore_from.or(app.app.spec.restore_from.as_ref().map(|r| &r.url));
    if let Some(url) = restore_from
        && !home.supervisor_running(&name)
    {
        crate::backup::restore(home, app, &plans, url)?;
    }
    let pid = if home.supervisor_running(&name) {
        println!(
            "{name}: supervisor already running (run `berth down {name}` first to apply changes)"
        );
        None
    } else {
        Some(start_supervisor(home, &name, &options.supervisor_command)?)
    };
    wait_ready(home, &name, pid, options.timeout)
}

/// Adds `added` to the app's saved Secret sources (paths only, never the data).
fn save_secret_sources(
    home: &Home,
    app: &str,
    added: &[(String, PathBuf)],
) -> Result<(), ControlError> {
    if added.is_empty() {
        return Ok(());
    }
    let mut sources = secrets::sources(&home.app_dir(app));
    sources.extend(added.iter().cloned());
    let json = encode(&sources, "the Secret sources")?;
    Ok(write_atomic(&home.file(app, secrets::SOURCES_FILE), &json)?)
}

/// `value` as pretty JSON.
fn encode(value: &impl serde::Serialize, what: &'static str) -> Result<Vec<u8>, HomeError> {
    serde_json::to_vec_pretty(value).map_err(|source| HomeError::Encode { what, source })
}

/// Fails when a member references a Secret (not optional) that has no local source.
fn check_secrets(home: &Home, app: &str, plans: &[MemberPlan]) -> Result<(), ControlError> {
    let sources = secrets::sources(&home.app_dir(app));
    let mut missing: Vec<String> = plans
        .iter()
        .flat_map(|p| secrets::unsourced(p, &sources))
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ControlError::Unsourced(missing))
}

fn save_inputs(home: &Home, app: &str, inputs: &Inputs) -> Result<(), ControlError> {
    let json = encode(&SavedInputs::from(inputs), "the app's inputs")?;
    write_atomic(&home.file(app, "inputs.json"), &json)?;
    home.clear_scale(app);
    Ok(())
}

/// Hands a changed manifest to the running supervisor, which rolls the members whose revision
/// changed out as the core planner says (role-aware: leader last, after a switchover), and
/// waits until every member is ready.
///
/// # Errors
/// No supervisor runs, a program is missing, or the change fails or is not ready in time.
pub fn apply(
    home: &Home,
    inputs: &Inputs,
    app: &ValidatedApp,
    timeout: Duration,
) -> Result<(), ControlError> {
    let name = app.name();
    let plans = supervisor::plan_members(home, app, None)?;
    preflight(&plans)?;
    check_secrets(home, &name, &plans)?;
    save_inputs(home, &name, inputs)?;
    reload(home, &name, timeout)
}

/// What `apply` of `app` would do to its running members (`berth plan`), computed by
/// [`crate::preview`] from the published state, the saved spec and `app`. Reads the home only.
///
/// # Errors
/// The app does not run here, or a template fails.
pub fn preview(home: &Home, app: &ValidatedApp) -> Result<Preview, ControlError> {
    let name = app.name();
    let state = home
        .state(&name)
        .filter(|_| home.supervisor_running(&name))
        .ok_or_else(|| ControlError::NotRunningIn {
            app: name.clone(),
            home: home.root.clone(),
        })?;
    let slot = home
        .read_slot(&name)
        .ok_or_else(|| ControlError::NoSlot { app: name.clone() })?;
    let app_dir = home.app_dir(&name);
    let wanted = plan::plan_app(app, &LocalAddressing::new(&app.app, &app_dir, slot))?;
    // The saved spec only explains the changes; without it, revisions still do.
    let saved = supervisor::saved_app(home, &name)
        .ok()
        .and_then(|saved| {
            plan::plan_app(&saved, &LocalAddressing::new(&saved.app, &app_dir, slot)).ok()
        })
        .unwrap_or_default();
    let mut preview = preview::preview(&preview::Inputs {
        running: &state.members,
        saved: &saved,
        wanted: &wanted,
        parts: app.parts(),
    });
    preview.app.clone_from(&name);
    for (part, replicas) in home.scale_overrides(&name) {
        let spec = app.parts().iter().find(|p| p.name == part);
        if let Some(spec) = spec.filter(|p| p.desired_replicas() != replicas) {
            preview.notes.push(format!(
                "`berth scale` set part {part} to {replicas} members; apply forgets that and \
                 runs the spec's {}",
                spec.desired_replicas()
            ));
        }
    }
    Ok(preview)
}

/// Sets the replicas of part `part` of the running `app` and waits until every member is ready.
///
/// # Errors
/// No supervisor runs, the part is unknown, or the change fails or is not ready in time.
pub fn scale(
    home: &Home,
    app: &str,
    part: &str,
    replicas: i32,
    timeout: Duration,
) -> Result<(), ControlError> {
    let validated = supervisor::saved_app(home, app).map_err(|e| match e {
        LoadError::Read { .. } => no_app(home, app),
        e => e.into(),
    })?;
    let known = validated.parts().iter().any(|p| p.name == part);
    if !known {
        return Err(ControlError::NoPart {
            app: app.to_string(),
            part: part.to_string(),
        });
    }
    home.set_scale(app, part, replicas)?;
    reload(home, app, timeout)
}

/// Signals the supervisor to reload (SIGHUP) and waits for the outcome.
fn reload(home: &Home, app: &str, timeout: Duration) -> Result<(), ControlError> {
    let state = home
        .state(app)
        .filter(|_| home.supervisor_running(app))
        .ok_or_else(|| ControlError::NotRunning {
            app: app.to_string(),
        })?;
    let before = state.reloads;
    let before_applying = state.applying;
    signal_supervisor(&state, Signal::SIGHUP)?;
    let deadline = Instant::now() + timeout;
    let mut shown = BTreeMap::new();
    loop {
        let degraded = home
            .state(app)
            .filter(|s| s.applying > before_applying && s.reloads == before)
            .and_then(|s| s.rollout)
            .filter(|r| r.degraded.is_some() || !r.stuck.is_empty());
        if let Some(rollout) = degraded {
            let events = home.file(app, "events.log");
            let app = app.to_string();
            return Err(ControlError::Stuck {
                app,
                rollout: Box::new(rollout),
                events,
            });
        }
        if let Some(state) = home.state(app).filter(|s| s.reloads > before) {
            show_progress(&state, &mut shown);
            if let Some(error) = state.error {
                let app = app.to_string();
                return Err(ControlError::Failed { app, error });
            }
            if state.phase == Phase::Ready {
                println!("{app}: {} members ready", state.members.len());
                return Ok(());
            }
        }
        if !home.supervisor_running(app) {
            let log = home.file(app, "supervisor.log");
            return Err(ControlError::ExitedDuringApply {
                app: app.to_string(),
                tail: tail(&log, TAIL_LINES),
                log,
            });
        }
        if Instant::now() > deadline {
            return Err(not_ready_in_time(app, home.state(app).as_ref(), timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// Sends `signal` to the supervisor: through its keeper while that lives (the keeper forwards
/// it, and a supervisor it is restarting reads the saved inputs anyway), else directly.
fn signal_supervisor(state: &AppState, signal: Signal) -> Result<(), ControlError> {
    let target = state
        .keeper_pid
        .filter(|pid| os::alive(*pid))
        .unwrap_or(state.supervisor_pid);
    // A pid beyond i32 names no process: the signal fails with ESRCH.
    let pid = i32::try_from(target).unwrap_or(i32::MAX);
    kill(Pid::from_raw(pid), signal).map_err(ControlError::Signal)
}

/// Fails, naming the Debian packages to install, when a member's program or package is missing.
fn preflight(plans: &[MemberPlan]) -> Result<(), ControlError> {
    let mut problems = Vec::new();
    for plan in plans {
        let programs = std::iter::once(&plan.argv[0]).chain(plan.inits.iter().map(|i| &i.argv[0]));
        for program in programs.filter(|p| os::find_program(p).is_none()) {
            problems.push(Prerequisite {
                member: plan.name.clone(),
                missing: Missing::Program {
                    program: program.clone(),
                    packages: plan.packages.clone(),
                },
            });
        }
        let missing = os::missing_packages(&plan.packages);
        if !missing.is_empty() {
            problems.push(Prerequisite {
                member: plan.name.clone(),
                missing: Missing::Packages(missing),
            });
        }
    }
    // One line per lack: members of a part lack the same.
    problems.dedup_by(|a, b| a.missing == b.missing);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ControlError::Missing(problems))
    }
}

fn start_supervisor(home: &Home, app: &str, command: &[String]) -> Result<u32, ControlError> {
    let (program, args) = command
        .split_first()
        .ok_or(ControlError::NoSupervisorCommand)?;
    let path = home.file(app, "supervisor.log");
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|log| Ok((log.try_clone()?, log)));
    let (out, err) = log.map_err(|source| ControlError::SupervisorLog { path, source })?;
    let child = std::process::Command::new(program)
        .args(args)
        .arg(app)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(ControlError::StartSupervisor)?;
    Ok(child.id())
}

/// Polls the published state until every member is ready, printing what each one awaits.
fn wait_ready(
    home: &Home,
    app: &str,
    pid: Option<u32>,
    timeout: Duration,
) -> Result<(), ControlError> {
    let deadline = Instant::now() + timeout;
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let state = home.state(app).filter(|s| current(home, s, pid));
        if let Some(state) = &state {
            show_progress(state, &mut shown);
            match state.phase {
                Phase::Ready => {
                    println!("{app}: {} members ready", state.members.len());
                    return Ok(());
                }
                Phase::Failed => {
                    return Err(ControlError::Failed {
                        app: app.to_string(),
                        error: state.error.clone().unwrap_or_default(),
                    });
                }
                _ => {}
            }
        }
        let started = pid.is_none_or(os::alive) || home.supervisor_running(app);
        if !started {
            let log = tail(&home.file(app, "supervisor.log"), TAIL_LINES);
            let app = app.to_string();
            return Err(ControlError::SupervisorExited { app, log });
        }
        if Instant::now() > deadline {
            return Err(not_ready_in_time(app, state.as_ref(), timeout));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether `state` comes from the running supervisor: the one run by the keeper `up` started
/// (`pid`), or the one that won the lock when two `up`s raced, never a dead one's leftover.
fn current(home: &Home, state: &AppState, pid: Option<u32>) -> bool {
    let live = os::alive(state.supervisor_pid);
    match pid {
        Some(p) if state.supervisor_pid == p || state.keeper_pid == Some(p) => true,
        Some(p) => live && !os::alive(p) && home.supervisor_running(&state.app),
        None => live,
    }
}

fn show_progress(state: &AppState, shown: &mut BTreeMap<String, String>) {
    for m in &state.members {
        let line = if m.ready {
            format!("ready on {}", m.address)
        } else {
            format!("waiting for {}", m.waiting)
        };
        if shown.get(&m.name) != Some(&line) {
            println!("  {}: {line}", m.name);
            shown.insert(m.name.clone(), line);
        }
    }
}

fn not_ready_in_time(app: &str, state: Option<&AppState>, timeout: Duration) -> ControlError {
    let member = state.and_then(|s| s.members.iter().find(|m| !m.ready));
    ControlError::NotReady {
        app: app.to_string(),
        secs: timeout.as_secs(),
        member: member.map(|m| {
            Box::new(Unready {
                name: m.name.clone(),
                waiting: m.waiting.clone(),
                log: m.log.clone(),
                tail: tail(&m.log, TAIL_LINES),
            })
        }),
    }
}

/// The home has no app `app`.
fn no_app(home: &Home, app: &str) -> ControlError {
    ControlError::NoApp {
        app: app.to_string(),
        home: home.root.clone(),
    }
}

/// The state of `app` (or of every app in the home), corrected when the supervisor is gone.
pub fn status(home: &Home, app: Option<&str>) -> Result<Vec<AppState>, ControlError> {
    let apps = match app {
        Some(a) if home.app_dir(a).is_dir() => vec![a.to_string()],
        Some(a) => return Err(no_app(home, a)),
        None => home.apps(),
    };
    Ok(apps
        .iter()
        .filter_map(|a| home.state(a).map(|s| checked(home, s)))
        .collect())
}

/// Lines shown under the status table: each app's rollout in progress (or stuck) and its
/// role-selecting services with their current target.
pub fn status_notes(states: &[AppState]) -> String {
    let mut out = String::new();
    for s in states {
        if let Some(r) = &s.rollout {
            let what = match (&r.degraded, r.stuck.is_empty(), r.waiting_for.is_empty()) {
                (_, false, _) => format!(
                    "STUCK: {} not ready on the new revision past the progress deadline; fix \
                     the spec and `berth apply` again",
                    r.stuck.join(", ")
                ),
                (Some(why), true, _) => format!("DEGRADED: {why}"),
                (None, true, true) => "in progress".to_string(),
                (None, true, false) => format!("waiting for {}", r.waiting_for),
            };
            out.push_str(&format!(
                "{}: rollout of part {} ({}): {what}\n",
                s.app, r.part, r.strategy
            ));
        }
        for svc in &s.services {
            let target = if svc.target.is_empty() {
                "(no member has the role)"
            } else {
                &svc.target
            };
            out.push_str(&format!(
                "{}: service {} (role {}) on {} -> {target}\n",
                s.app, svc.name, svc.role, svc.address
            ));
        }
    }
    out
}

/// A state whose supervisor is not running: nothing is ready, only live orphans keep a pid.
fn checked(home: &Home, mut state: AppState) -> AppState {
    if home.supervisor_running(&state.app) {
        return state;
    }
    state.services.clear();
    for m in &mut state.members {
        m.ready = false;
        m.pid = m.pid.filter(|p| os::is_same_process(*p, m.started));
        if m.pid.is_some() {
            m.waiting = "unknown: the supervisor is not running".to_string();
        }
    }
    let running = state.members.iter().any(|m| m.pid.is_some());
    if !matches!(state.phase, Phase::Stopped | Phase::Failed) || running {
        (state.phase, state.error) = if running {
            let error = "the supervisor is not running; its members still run, unsupervised";
            (Phase::Unsupervised, Some(error.to_string()))
        } else {
            let error = "the supervisor is not running";
            (Phase::Failed, Some(error.to_string()))
        };
    }
    state
}

/// The log file of `member` (searched in every app of the home).
///
/// # Errors
/// No app in the home has this member.
pub fn log_path(home: &Home, member: &str) -> Result<PathBuf, ControlError> {
    home.apps()
        .into_iter()
        .map(|a| home.app_dir(&a).join(member).join("log"))
        .find(|p| p.is_file())
        .ok_or_else(|| ControlError::NoMember {
            member: member.to_string(),
            home: home.root.clone(),
        })
}

/// Copies a log to stdout; with `follow`, keeps copying what is appended until interrupted.
///
/// # Errors
/// The log cannot be read, or standard output written.
pub fn print_log(path: &Path, follow: bool) -> Result<(), ControlError> {
    let log = |source| ControlError::Log {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(log)?;
    let mut out = std::io::stdout();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        file.read_to_end(&mut buffer).map_err(log)?;
        out.write_all(&buffer)
            .and_then(|()| out.flush())
            .map_err(ControlError::Output)?;
        if !follow {
            return Ok(());
        }
        if file
            .metadata()
            .is_ok_and(|m| m.len() < file.stream_position().unwrap_or(0))
        {
            file.seek(SeekFrom::Start(0)).map_err(log)?;
        }
        std::thread::sleep(POLL);
    }
}

/// Stops `app` (members in reverse order) and with `purge` deletes its directory and data.
///
/// # Errors
/// The app is unknown or its supervisor does not stop in time.
pub fn down(home: &Home, app: &str, purge: bool) -> Result<(), ControlError> {
    if !home.app_dir(app).is_dir() {
        return Err(no_app(home, app));
    }
    let state = home.state(app);
    if home.supervisor_running(app) {
        let state = state.as_ref().ok_or(ControlError::NoState)?;
        stop_supervisor(home, state)?;
    } else if let Some(state) = &state {
        os::stop_orphans(&state.members);
    }
    println!("{app}: stopped");
    if purge {
        let path = home.app_dir(app);
        if let Err(source) = std::fs::remove_dir_all(&path) {
            return Err(ControlError::Purge { path, source });
        }
        println!("{app}: purged {}", path.display());
    }
    Ok(())
}

fn stop_supervisor(home: &Home, state: &AppState) -> Result<(), ControlError> {
    signal_supervisor(state, Signal::SIGTERM)?;
    let grace: u64 = state.members.iter().map(|m| m.grace_seconds).sum();
    let deadline = Instant::now() + Duration::from_secs(grace + 10);
    while home.supervisor_running(&state.app) {
        if Instant::now() > deadline {
            return Err(ControlError::StopTimeout {
                app: state.app.clone(),
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}
