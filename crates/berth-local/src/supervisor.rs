//! The background supervisor of one app: holds the app's lock (or shares its keeper's, see
//! [`crate::keeper`]), adopts the members an earlier supervisor left running (and stops those
//! the saved spec no longer has), checks addresses, starts a task per member (see
//! [`crate::member`]), on SIGHUP re-reads the saved inputs and reconciles (`apply`, `scale`),
//! and on SIGTERM or SIGINT stops the members in reverse order. A supervisor that adopted
//! members reconciles at once: it finishes the rollout or scale its predecessor was in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_core::load::{self, ValidatedApp};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::addressing::LocalAddressing;
use crate::decide;
use crate::error::{HomeError, LoadError, SupervisorError};
use crate::home::{AppState, Home, Phase, SavedInputs, append_event, write_atomic};
use crate::member::{Adopted, member_task};
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
pub fn load_saved(home: &Home, app: &str) -> Result<(ValidatedApp, Vec<MemberPlan>), LoadError> {
    let validated = saved_app(home, app)?;
    let plans = plan_members(home, &validated, None)?;
    Ok((validated, plans))
}

/// The app saved in the home, with the `berth scale` overrides applied (reads only).
///
/// # Errors
/// The inputs cannot be read or the app no longer validates.
pub fn saved_app(home: &Home, app: &str) -> Result<ValidatedApp, LoadError> {
    let path = home.file(app, "inputs.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(source) => return Err(LoadError::Read { path, source }),
    };
    let saved: SavedInputs = serde_json::from_str(&text)?;
    let mut validated = load::load(&saved.into())?;
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
) -> Result<Vec<MemberPlan>, LoadError> {
    let slot = home.slot(&app.name(), slot)?;
    let addressing = LocalAddressing::new(&app.app, &home.app_dir(&app.name()), slot);
    Ok(plan::plan_app(app, &addressing)?)
}

/// Runs the supervisor of `app` until SIGTERM; returns at once if another one holds the lock.
/// `kept`: its parent is a keeper ([`crate::keeper`]), which restarts it if it dies.
///
/// # Errors
/// The app cannot be loaded or the runtime cannot start.
pub fn supervise(home: &Path, app: &str, kept: bool) -> Result<(), SupervisorError> {
    let home = Home::new(home);
    let Some(_lock) = home.try_lock(app)? else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SupervisorError::Setup {
            app: app.to_string(),
            what: "the runtime",
            source,
        })?;
    let keeper = kept.then(std::os::unix::process::parent_id);
    runtime.block_on(run(&home, app, keeper))
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
        self.launch(name, None);
    }

    /// Starts the task of member `name`, adopting `adopted` if an earlier supervisor left its
    /// process running.
    fn launch(&mut self, name: &str, adopted: Option<Adopted>) {
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
        if let Some(process) = &adopted {
            // Published before any reconcile looks: it runs the earlier revision, maybe.
            self.shared.member(name, |m| {
                m.pid = Some(process.pid);
                m.started = process.started;
                m.revision.clone_from(&process.revision);
            });
        }
        let shared = self.shared.clone();
        let task = tokio::spawn(member_task(plan, earlier, shared, stopped, adopted));
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
    /// Listens for SIGTERM, SIGINT and SIGHUP (the keeper listens for them too).
    pub(crate) fn new() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
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

/// What an earlier supervisor of the app left: the members whose process still runs (to
/// adopt), the members it had started (members still, even if not running now), and its
/// counters (an `apply` waiting for its outcome compares them).
#[derive(Debug, Default)]
struct Leftover {
    adopt: BTreeMap<String, Adopted>,
    started: BTreeSet<String>,
    /// Each adoptable member's part and ordinal.
    places: BTreeMap<String, (String, i32)>,
    admitted: BTreeMap<String, i32>,
    reloads: u64,
    applying: u64,
}

impl Leftover {
    fn of(old: Option<&AppState>) -> Self {
        let Some(old) = old else {
            return Self::default();
        };
        let adopt = old
            .members
            .iter()
            .filter_map(|m| {
                let pid = m.pid.filter(|pid| os::is_same_process(*pid, m.started))?;
                let adopted = Adopted {
                    pid,
                    started: m.started,
                    revision: m.revision.clone(),
                };
                Some((m.name.clone(), adopted))
            })
            .collect();
        let started = old.members.iter().filter(|m| m.started.is_some());
        let places = old
            .members
            .iter()
            .filter_map(|m| {
                let ordinal = m.name.rsplit('-').next()?.parse().ok()?;
                Some((m.name.clone(), (m.part.clone(), ordinal)))
            })
            .collect();
        Self {
            adopt,
            started: started.map(|m| m.name.clone()).collect(),
            places,
            admitted: old.admitted.clone(),
            reloads: old.reloads,
            applying: old.applying,
        }
    }

    /// Whether `name` is past its part's admitted size: its memberLeave ran.
    fn left_the_group(&self, name: &str) -> bool {
        self.places
            .get(name)
            .is_some_and(|(part, ordinal)| self.admitted.get(part).is_some_and(|a| ordinal >= a))
    }

    /// Whether `plan`'s member is within its part's admitted size: its memberJoin ran (or it
    /// was a member before).
    fn admitted(&self, plan: &MemberPlan) -> bool {
        self.admitted
            .get(&plan.member.part)
            .is_some_and(|a| plan.member.ordinal < *a)
    }

    /// Whether members run that this supervisor takes over (then it resumes, not starts).
    fn resuming(&self) -> bool {
        !self.adopt.is_empty()
    }
}

/// The members to run at start: all of them, or when resuming only those the earlier
/// supervisor had started or admitted (the others join through the reconcile that follows,
/// with their memberJoin action).
fn initial_plans(plans: Vec<MemberPlan>, left: &Leftover) -> Vec<Arc<MemberPlan>> {
    plans
        .into_iter()
        .filter(|p| !left.resuming() || left.started.contains(&p.name) || left.admitted(p))
        .map(Arc::new)
        .collect()
}

/// Stops the members an earlier supervisor left running after their memberLeave ran (it died
/// before stopping them), and forgets them.
fn stop_departed(old: Option<&AppState>, left: &mut Leftover, events: &Path) {
    let Some(old) = old else { return };
    let departed: Vec<_> = old
        .members
        .iter()
        .filter(|m| left.adopt.contains_key(&m.name) && left.left_the_group(&m.name))
        .cloned()
        .collect();
    for m in &departed {
        left.adopt.remove(&m.name);
        let note = format!(
            "stop {}: its memberLeave ran before the supervisor died",
            m.name
        );
        append_event(events, &note);
    }
    os::stop_orphans(&departed);
}

/// The saved app widened to the members an earlier supervisor left running beyond the saved
/// size (it died while scaling down): with their plans, the reconcile that follows removes them
/// the usual way, memberLeave first. `None` when nothing runs beyond the saved size.
fn widened(validated: &ValidatedApp, left: &Leftover) -> Option<ValidatedApp> {
    let mut wide = validated.clone();
    let mut changed = false;
    for part in &mut wide.app.spec.parts {
        let running = left
            .adopt
            .keys()
            .filter_map(|name| left.places.get(name))
            .filter(|(p, _)| *p == part.name)
            .map(|(_, ordinal)| ordinal + 1)
            .max();
        if let Some(size) = running.filter(|size| *size > part.desired_replicas()) {
            part.replicas = Some(size);
            changed = true;
        }
    }
    changed.then_some(wide)
}

/// Stops the members an earlier supervisor left running that the saved spec no longer has (it
/// died while removing them).
fn stop_unplanned(old: Option<&AppState>, plans: &[MemberPlan], events: &Path) {
    let Some(old) = old else { return };
    let unplanned: Vec<_> = old
        .members
        .iter()
        .filter(|m| !plans.iter().any(|p| p.name == m.name))
        .filter(|m| m.pid.is_some_and(|pid| os::is_same_process(pid, m.started)))
        .cloned()
        .collect();
    for m in &unplanned {
        append_event(
            events,
            &format!("stop {}: not in the saved spec any more", m.name),
        );
    }
    os::stop_orphans(&unplanned);
}

async fn run(home: &Home, app: &str, keeper: Option<u32>) -> Result<(), SupervisorError> {
    let mut signals = Signals::new().map_err(|source| SupervisorError::Setup {
        app: app.to_string(),
        what: "a signal handler",
        source,
    })?;
    let (mut members, adopted) = start_members(home, app, keeper)?;
    let shared = members.shared.clone();
    let (schedules_home, schedules_app) = (home.clone(), app.to_string());
    std::thread::spawn(move || crate::backup::run_schedules(&schedules_home, &schedules_app));
    if !adopted.is_empty() {
        let count = adopted.len();
        append_event(
            &home.file(app, "events.log"),
            &format!("supervisor restarted: adopted {count} running member(s); resuming"),
        );
        await_adopted(&members, &adopted).await;
        if reload(home, app, &mut members, &mut signals).await {
            return stop_everything(&shared, &mut members).await;
        }
    }
    while !signals.next().await {
        if reload(home, app, &mut members, &mut signals).await {
            break;
        }
    }
    stop_everything(&shared, &mut members).await
}

/// Loads the saved app, stops what an earlier supervisor left that it no longer has, checks
/// the addresses of the members to start, then starts them (adopting those still running) and
/// the service proxy. Returns the members and the names of the adopted ones.
fn start_members(
    home: &Home,
    app: &str,
    keeper: Option<u32>,
) -> Result<(Members, Vec<String>), SupervisorError> {
    let old = home.state(app);
    let (validated, plans) = match load_saved(home, app) {
        Ok(loaded) => loaded,
        Err(e) => return Err(fail(home, app, e.into())),
    };
    let services = match home.slot(app, None) {
        Ok(slot) => proxy::plan_services(&validated, slot),
        Err(e) => return Err(fail(home, app, e.into())),
    };
    let events = home.file(app, "events.log");
    let mut left = Leftover::of(old.as_ref());
    stop_departed(old.as_ref(), &mut left, &events);
    let plans = match widened(&validated, &left).map(|wide| plan_members(home, &wide, None)) {
        Some(Ok(wide)) => wide,
        Some(Err(e)) => return Err(fail(home, app, e.into())),
        None => plans,
    };
    stop_unplanned(old.as_ref(), &plans, &events);
    left.adopt
        .retain(|name, _| plans.iter().any(|p| p.name == *name));
    let plans = initial_plans(plans, &left);
    let shared = start_shared(home, app, &plans, &left, keeper);
    let unadopted: Vec<MemberPlan> = plans
        .iter()
        .filter(|p| !left.adopt.contains_key(&p.name))
        .map(|p| (**p).clone())
        .collect();
    if let Err(e) = check_ports(&unadopted) {
        shared.update(|s| {
            s.phase = Phase::Failed;
            s.error = Some(e.to_string());
        });
        return Err(e);
    }
    let mut members = Members {
        shared: shared.clone(),
        plans,
        running: BTreeMap::new(),
    };
    let names: Vec<String> = members.plans.iter().map(|p| p.name.clone()).collect();
    let adopted: Vec<String> = left.adopt.keys().cloned().collect();
    for name in &names {
        members.launch(name, left.adopt.remove(name));
    }
    proxy::start(services, shared);
    Ok((members, adopted))
}

/// How long a restarted supervisor waits for the members it adopted to be probed before it
/// resumes: a rollout that acted on members whose readiness and role are not known yet would
/// take a leader for an unready follower and update it without a switchover.
const ADOPTION_SETTLE: Duration = Duration::from_secs(15);

/// Waits (up to [`ADOPTION_SETTLE`]) until every adopted member is known: ready, with its role
/// if its part has a role probe, or gone.
async fn await_adopted(members: &Members, adopted: &[String]) {
    let known = |state: &AppState| {
        adopted.iter().all(|name| {
            let plan = members.plan(name);
            let Some(m) = state.members.iter().find(|m| m.name == *name) else {
                return true;
            };
            let role_known = plan.is_none_or(|p| p.role_probe.is_none()) || !m.role.is_empty();
            m.pid.is_none() || (m.ready && role_known)
        })
    };
    let mut changed = members.shared.subscribe();
    let settled = async {
        while !known(&members.shared.snapshot()) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(ADOPTION_SETTLE, settled).await;
}

/// The published state at start: the members to run, the keeper's pid, and the counters of
/// the earlier supervisor (so an `apply` waiting on them sees this one's outcome).
fn start_shared(
    home: &Home,
    app: &str,
    plans: &[Arc<MemberPlan>],
    left: &Leftover,
    keeper: Option<u32>,
) -> Arc<Shared> {
    let listed: Vec<MemberPlan> = plans.iter().map(|p| (**p).clone()).collect();
    let shared = Arc::new(Shared::new(app, home.file(app, "state.json"), &listed));
    shared.update(|s| {
        s.reloads = left.reloads;
        s.applying = left.applying;
        s.admitted.clone_from(&left.admitted);
        s.keeper_pid = keeper;
    });
    shared
}

async fn stop_everything(shared: &Shared, members: &mut Members) -> Result<(), SupervisorError> {
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
        s.error = None;
        s.rollout = None;
        s.applying += 1;
        s.reconciling = true;
    });
    let (validated, plans) = match load_saved(home, app) {
        Ok(loaded) => loaded,
        Err(e) => return finish_reload(&shared, Some(e.into())),
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
        return finish_reload(&shared, Some(e.into()));
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
            finish_reload(&shared, Some(e.into()))
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

/// Publishes the end of an apply: its error, if any, becomes `state.json`'s `error` text.
fn finish_reload(shared: &Shared, error: Option<SupervisorError>) -> Outcome {
    shared.update(|s| {
        s.error = error.map(|e| format!("apply failed: {e}"));
        s.reloads += 1;
        s.reconciling = false;
    });
    Outcome::Done
}

/// Publishes a failure that happened before any member started; returns it (or why it could
/// not be published).
fn fail(home: &Home, app: &str, error: SupervisorError) -> SupervisorError {
    let state = AppState {
        app: app.to_string(),
        supervisor_pid: std::process::id(),
        phase: Phase::Failed,
        error: Some(error.to_string()),
        ..AppState::default()
    };
    let written = serde_json::to_vec_pretty(&state)
        .map_err(|source| HomeError::Encode {
            what: "the app's state",
            source,
        })
        .and_then(|json| write_atomic(&home.file(app, "state.json"), &json));
    match written {
        Ok(()) => error,
        Err(e) => e.into(),
    }
}

/// Fails when some member's `address:port` is taken.
fn check_ports(plans: &[MemberPlan]) -> Result<(), SupervisorError> {
    for plan in plans {
        for port in &plan.ports {
            os::check_port_free(plan.ip, *port).map_err(|source| SupervisorError::Port {
                member: plan.name.clone(),
                source,
            })?;
        }
    }
    Ok(())
}
