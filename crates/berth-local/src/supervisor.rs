//! The background supervisor of one app: holds the app's lock, stops members a dead supervisor
//! left behind, checks addresses, starts a task per member (see [`crate::member`]), on SIGHUP
//! re-reads the saved inputs and reconciles (`apply`, `scale`), and on SIGTERM or SIGINT stops
//! the members in reverse order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_core::load::{self, ValidatedApp};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::addressing::LocalAddressing;
use crate::decide;
use crate::home::{AppState, Home, Phase, SavedInputs, append_event, write_atomic};
use crate::member::member_task;
use crate::membership;
use crate::os;
use crate::plan::{self, MemberPlan};
use crate::proxy;
use crate::rolling::{self, Outcome};
use crate::shared::Shared;

pub use crate::member::{process_env, write_member_files};

/// Loads the app saved in the home, applies `berth scale` overrides and plans its members.
///
/// # Errors
/// The inputs cannot be read or the app no longer validates or renders.
pub fn load_saved(home: &Home, app: &str) -> Result<(ValidatedApp, Vec<MemberPlan>), String> {
    let validated = saved_app(home, app)?;
    let plans = plan_members(home, &validated, None)?;
    Ok((validated, plans))
}

/// The app saved in the home, with the `berth scale` overrides applied (reads only).
///
/// # Errors
/// The inputs cannot be read or the app no longer validates.
pub fn saved_app(home: &Home, app: &str) -> Result<ValidatedApp, String> {
    let path = home.file(app, "inputs.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let saved: SavedInputs = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut validated = load::load(&saved.into()).map_err(|d| d.to_string())?;
    for (part, replicas) in home.scale_overrides(app) {
        if let Some(p) = validated.app.spec.parts.iter_mut().find(|p| p.name == part) {
            p.replicas = Some(replicas);
        }
    }
    Ok(validated)
}

/// Plans the members of `app` in `home` (taking or keeping its address slot).
///
/// # Errors
/// The slot cannot be recorded or a template fails.
pub fn plan_members(
    home: &Home,
    app: &ValidatedApp,
    slot: Option<u8>,
) -> Result<Vec<MemberPlan>, String> {
    let slot = home.slot(&app.name(), slot)?;
    let addressing = LocalAddressing::new(&app.app, &home.app_dir(&app.name()), slot);
    plan::plan_app(app, &addressing).map_err(|e| e.to_string())
}

/// Runs the supervisor of `app` until SIGTERM; returns at once if another one holds the lock.
///
/// # Errors
/// The app cannot be loaded or the runtime cannot start.
pub fn supervise(home: &Path, app: &str) -> Result<(), String> {
    let home = Home::new(home);
    let Some(_lock) = home.try_lock(app)? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run(&home, app))
}

/// A member's running task and the switch that stops it.
pub(crate) struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The members the supervisor runs, in start order.
pub(crate) struct Members {
    pub(crate) shared: Arc<Shared>,
    pub(crate) plans: Vec<Arc<MemberPlan>>,
    pub(crate) running: BTreeMap<String, Running>,
}

impl Members {
    /// Starts the task of member `name` of the current plans.
    pub(crate) fn start(&mut self, name: &str) {
        let Some(plan) = self.plans.iter().find(|p| p.name == name).cloned() else {
            return;
        };
        let earlier = self
            .plans
            .iter()
            .take_while(|p| p.name != name)
            .filter(|p| p.member.part == plan.member.part)
            .map(|p| p.name.clone())
            .collect();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(member_task(plan, earlier, self.shared.clone(), stopped));
        self.running
            .insert(name.to_string(), Running { stop, task });
    }

    /// The current plan of member `name`.
    pub(crate) fn plan(&self, name: &str) -> Option<Arc<MemberPlan>> {
        self.plans.iter().find(|p| p.name == name).cloned()
    }

    /// Keeps (and publishes) only the plans of members that run: a change interrupted or failed
    /// before starting some new members leaves them to be started by the next reconcile.
    fn forget_unstarted(&mut self) {
        self.plans.retain(|p| self.running.contains_key(&p.name));
        let listed: Vec<MemberPlan> = self.plans.iter().map(|p| (**p).clone()).collect();
        self.shared.set_members(&listed);
    }

    /// Stops member `name` and waits until it is stopped.
    pub(crate) async fn stop(&mut self, name: &str) {
        if let Some(r) = self.running.remove(name) {
            let _ = r.stop.send(true);
            let _ = r.task.await;
        }
    }

    /// Stops every member, last started first.
    async fn stop_all(&mut self) {
        let names: Vec<String> = self.plans.iter().map(|p| p.name.clone()).collect();
        for name in decide::stop_order(&names) {
            self.stop(&name).await;
        }
    }
}

/// The signals the supervisor reacts to.
pub(crate) struct Signals {
    term: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn new() -> Result<Self, String> {
        let on = |kind| signal(kind).map_err(|e| e.to_string());
        Ok(Self {
            term: on(SignalKind::terminate())?,
            interrupt: on(SignalKind::interrupt())?,
            hangup: on(SignalKind::hangup())?,
        })
    }

    /// Waits for the next signal: `true` to stop, `false` to reload.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => true,
            _ = self.interrupt.recv() => true,
            _ = self.hangup.recv() => false,
        }
    }
}

async fn run(home: &Home, app: &str) -> Result<(), String> {
    let mut signals = Signals::new()?;
    if let Some(old) = home.state(app) {
        os::stop_orphans(&old.members);
    }
    let (validated, plans) = match load_saved(home, app) {
        Ok(loaded) => loaded,
        Err(e) => return fail(home, app, e),
    };
    let services = match home.slot(app, None) {
        Ok(slot) => proxy::plan_services(&validated, slot),
        Err(e) => return fail(home, app, e.to_string()),
    };
    let shared = Arc::new(Shared::new(app, home.file(app, "state.json"), &plans));
    if let Err(e) = check_ports(&plans) {
        shared.update(|s| {
            s.phase = Phase::Failed;
            s.error = Some(e.clone());
        });
        return Err(e);
    }
    let mut members = Members {
        shared: shared.clone(),
        plans: plans.into_iter().map(Arc::new).collect(),
        running: BTreeMap::new(),
    };
    let names: Vec<String> = members.plans.iter().map(|p| p.name.clone()).collect();
    names.iter().for_each(|n| members.start(n));
    proxy::start(services, shared.clone());
    while !signals.next().await {
        if reload(home, app, &mut members, &mut signals).await {
            break;
        }
    }
    shared.update(|s| s.phase = Phase::Stopping);
    members.stop_all().await;
    shared.update(|s| s.phase = Phase::Stopped);
    Ok(())
}

/// Re-reads the saved inputs and reconciles: removed members stop (highest first, after their
/// memberLeave action, see [`crate::membership`]), outdated ones are rolled out by the core
/// planner (see [`crate::rolling`]), new ones start (after their memberJoin action). A new
/// `apply` during a rollout or a join starts over with the newest inputs. Returns whether a
/// stop signal arrived.
async fn reload(home: &Home, app: &str, members: &mut Members, signals: &mut Signals) -> bool {
    loop {
        match reload_once(home, app, members, signals).await {
            Outcome::Done => return false,
            Outcome::Stop => return true,
            Outcome::Reload => {}
        }
    }
}

async fn reload_once(
    home: &Home,
    app: &str,
    members: &mut Members,
    signals: &mut Signals,
) -> Outcome {
    let shared = members.shared.clone();
    members.forget_unstarted();
    shared.update(|s| {
        s.phase = Phase::Starting;
        s.error = None;
        s.rollout = None;
        s.applying += 1;
    });
    let (validated, plans) = match load_saved(home, app) {
        Ok(loaded) => loaded,
        Err(e) => return finish_reload(&shared, Some(e)),
    };
    let pairs = |ps: &[Arc<MemberPlan>]| -> Vec<(String, String)> {
        ps.iter()
            .map(|p| (p.name.clone(), p.revision.clone()))
            .collect()
    };
    let plans: Vec<Arc<MemberPlan>> = plans.into_iter().map(Arc::new).collect();
    let todo = decide::reconcile(&pairs(&members.plans), &pairs(&plans));
    let added: Vec<MemberPlan> = plans
        .iter()
        .filter(|p| todo.add.contains(&p.name))
        .map(|p| (**p).clone())
        .collect();
    if let Err(e) = check_ports(&added) {
        return finish_reload(&shared, Some(e));
    }
    let events = home.file(app, "events.log");
    log_apply(&events, &todo);
    let parts = validated.parts();
    if let Err(e) = membership::remove_members(&events, &todo.remove, parts, &plans, members).await
    {
        members.forget_unstarted();
        return finish_reload(&shared, Some(e.to_string()));
    }
    members.plans = plans;
    let listed: Vec<MemberPlan> = members.plans.iter().map(|p| (**p).clone()).collect();
    shared.set_members(&listed);
    let outcome = rolling::roll_out(&events, parts, members, signals).await;
    if outcome != Outcome::Done {
        return outcome;
    }
    match membership::add_members(&events, &todo.add, parts, members, signals).await {
        Ok(Outcome::Done) => finish_reload(&shared, None),
        Ok(interrupted) => interrupted,
        Err(e) => {
            members.forget_unstarted();
            finish_reload(&shared, Some(e.to_string()))
        }
    }
}

/// The apply's first event line: how many members stop, restart and start.
fn log_apply(events: &std::path::Path, todo: &decide::Reconcile) {
    append_event(
        events,
        &format!(
            "apply: {} to stop, {} with a new revision, {} to start",
            todo.remove.len(),
            todo.replace.len(),
            todo.add.len()
        ),
    );
}

fn finish_reload(shared: &Shared, error: Option<String>) -> Outcome {
    shared.update(|s| {
        s.error = error.map(|e| format!("apply failed: {e}"));
        s.reloads += 1;
    });
    Outcome::Done
}

/// Publishes a failure that happened before any member started.
fn fail(home: &Home, app: &str, error: String) -> Result<(), String> {
    let state = AppState {
        app: app.to_string(),
        supervisor_pid: std::process::id(),
        phase: Phase::Failed,
        error: Some(error.clone()),
        ..AppState::default()
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
    write_atomic(&home.file(app, "state.json"), &json)?;
    Err(error)
}

/// Fails when some member's `address:port` is taken.
fn check_ports(plans: &[MemberPlan]) -> Result<(), String> {
    for plan in plans {
        for port in &plan.ports {
            os::check_port_free(plan.ip, *port).map_err(|e| format!("{}: {e}", plan.name))?;
        }
    }
    Ok(())
}
