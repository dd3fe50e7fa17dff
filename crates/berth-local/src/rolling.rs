//! Rollouts on `apply`, driven by the core planner ([`berth_core::rollout::plan`]), the same one
//! the operator uses: the supervisor builds each member's state from what it publishes (revision,
//! readiness, role from the role probe, how long unready), performs the planned steps (`Update`:
//! restart the member on the new revision; `Switchover`: run the part's switchover action in the
//! leader, then wait until the role probe shows another leader) and plans again after every
//! change, until the part is complete. Every action goes to `<home>/<app>/events.log`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::lifecycle::{self, ActionFailure, Command, Decision, SwitchoverRecord};
use berth_core::rollout::{self, Policy};
use berth_core::spec::PartSpec;
use tokio::sync::watch;

use crate::decide;
use crate::home::{RolloutState, append_event};
use crate::plan::MemberPlan;
use crate::shared::Shared;
use crate::supervisor::{Members, Signals};

/// How long a member found ready when a rollout starts counts as ready already.
const LONG_READY: Duration = Duration::from_secs(decide::LONG_READY_SECONDS);

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every part is complete.
    Done,
    /// A stop signal arrived.
    Stop,
    /// A new `apply`/`scale` arrived: start over with the new inputs.
    Reload,
}

/// What woke a wait.
pub(crate) enum Wake {
    Changed,
    Tick,
    Signal(Outcome),
}

/// Waits for a change of the published state, a signal, or `limit`.
pub(crate) async fn wait(
    changed: &mut watch::Receiver<()>,
    signals: &mut Signals,
    limit: Duration,
) -> Wake {
    tokio::select! {
        _ = changed.changed() => Wake::Changed,
        () = tokio::time::sleep(limit) => Wake::Tick,
        stop = signals.next() => Wake::Signal(if stop { Outcome::Stop } else { Outcome::Reload }),
    }
}

/// Rolls out every part whose running members are outdated, one part after the other.
pub(crate) async fn roll_out(
    events: &Path,
    parts: &[PartSpec],
    members: &mut Members,
    signals: &mut Signals,
) -> Outcome {
    for part in parts {
        let outcome = roll_part(events, part, members, signals).await;
        if outcome != Outcome::Done {
            return outcome;
        }
    }
    Outcome::Done
}

/// The planner's view of `plans` now; `since` records each member's readiness and since when it
/// has had it (for the progress deadline and `minReadySeconds`).
fn observe(
    shared: &Shared,
    plans: &[Arc<MemberPlan>],
    since: &mut BTreeMap<String, (bool, Instant)>,
) -> Vec<rollout::MemberState> {
    let snapshot = shared.snapshot();
    let now = Instant::now();
    plans
        .iter()
        .map(|p| {
            let seen = snapshot.members.iter().find(|m| m.name == p.name);
            let ready = seen.is_some_and(|m| m.ready);
            // A member already ready when first seen has been for long: it is available.
            let first = if ready {
                now.checked_sub(LONG_READY).unwrap_or(now)
            } else {
                now
            };
            let entry = since.entry(p.name.clone()).or_insert((ready, first));
            if entry.0 != ready {
                *entry = (ready, now);
            }
            let secs = now.duration_since(entry.1).as_secs();
            decide::planner_member(p.member.ordinal, &p.revision, seen, secs)
        })
        .collect()
}

/// Logs each restarted member's restart-to-ready time once it is ready on the new revision
/// (what a rollout's duration is compared with in `docs/benchmarks.md`).
fn report_ready(
    events: &Path,
    plans: &[Arc<MemberPlan>],
    states: &[rollout::MemberState],
    restarted: &mut BTreeMap<String, Instant>,
) {
    for (plan, state) in plans.iter().zip(states) {
        if !(state.ready && state.updated) {
            continue;
        }
        if let Some(at) = restarted.remove(&plan.name) {
            let ms = at.elapsed().as_millis();
            append_event(events, &format!("update {}: ready after {ms}ms", plan.name));
        }
    }
}

async fn roll_part(
    events: &Path,
    part: &PartSpec,
    members: &mut Members,
    signals: &mut Signals,
) -> Outcome {
    let shared = members.shared.clone();
    let plans: Vec<Arc<MemberPlan>> = members
        .plans
        .iter()
        .filter(|p| p.member.part == part.name && members.running.contains_key(&p.name))
        .cloned()
        .collect();
    let mut since = BTreeMap::new();
    let states = observe(&shared, &plans, &mut since);
    if states.iter().all(|m| m.updated) {
        return Outcome::Done;
    }
    let policy = part_policy(part, members);
    let mut rollout = PartRollout::new(events, part, &plans, &policy);
    rollout.log_start(&states);
    let mut changed = shared.subscribe();
    let mut published: Option<RolloutState> = None;
    loop {
        let states = observe(&shared, &plans, &mut since);
        report_ready(events, &plans, &states, &mut rollout.restarted);
        let decision = rollout.decide(&states);
        if decision.held || decision.complete {
            if decision.complete {
                let secs = rollout.began.elapsed().as_secs_f64();
                rollout.log(&format!("complete in {secs:.1}s"));
            }
            shared.update(|s| s.rollout = None);
            return Outcome::Done;
        }
        // Publish only a change: every publication wakes this loop again, and a loop that
        // wakes itself spins while the role probe reports a switchover.
        let state = rollout.state(&decision);
        if published.as_ref() != Some(&state) {
            published = Some(state.clone());
            shared.update(|s| s.rollout = Some(state));
        }
        if decision.commands.is_empty() {
            if let Wake::Signal(outcome) = wait(&mut changed, signals, Duration::from_secs(1)).await
            {
                return outcome;
            }
            continue;
        }
        for command in decision.commands {
            rollout.execute(command, members, &states, &mut since).await;
        }
    }
}

/// The part's rollout policy; `maxUnavailable` resolves against its wanted size, as on
/// Kubernetes.
fn part_policy(part: &PartSpec, members: &Members) -> Policy {
    let wanted = members
        .plans
        .iter()
        .filter(|p| p.member.part == part.name)
        .count();
    Policy::for_part(part, i32::try_from(wanted).unwrap_or(i32::MAX))
}

/// One part's rollout in progress: its members, policy, and what the core's lifecycle must be
/// told again at every decision (the last switchover).
struct PartRollout<'a> {
    events: &'a Path,
    part: &'a PartSpec,
    plans: &'a [Arc<MemberPlan>],
    policy: &'a Policy,
    began: Instant,
    switchover: Option<SwitchoverRecord>,
    switchover_began: Instant,
    reported: Option<String>,
    restarted: BTreeMap<String, Instant>,
}

impl<'a> PartRollout<'a> {
    fn new(
        events: &'a Path,
        part: &'a PartSpec,
        plans: &'a [Arc<MemberPlan>],
        policy: &'a Policy,
    ) -> Self {
        Self {
            events,
            part,
            plans,
            policy,
            began: Instant::now(),
            switchover: None,
            switchover_began: Instant::now(),
            reported: None,
            restarted: BTreeMap::new(),
        }
    }

    fn log(&self, what: &str) {
        append_event(self.events, &format!("rollout {}: {what}", self.part.name));
    }

    fn event(&self, what: &str) {
        append_event(self.events, what);
    }

    fn log_start(&self, states: &[rollout::MemberState]) {
        let outdated = states.iter().filter(|m| !m.updated).count();
        self.log(&format!(
            "started, strategy {:?}, {outdated} of {} members outdated",
            self.policy.strategy,
            self.plans.len()
        ));
        if self.policy.strategy == berth_core::spec::UpdateStrategy::OnDelete {
            self.log("strategy OnDelete: members keep their revision until restarted");
        }
    }

    fn name(&self, ordinal: i32) -> String {
        self.plans
            .iter()
            .find(|p| p.member.ordinal == ordinal)
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    /// The core's decision now; logs a completed switchover and each new reason to be Degraded.
    fn decide(&mut self, states: &[rollout::MemberState]) -> Decision {
        let now = unix_now();
        let name = |o: i32| self.name(o);
        let decision = lifecycle::decide(self.policy, states, self.switchover.as_ref(), now, &name);
        if let (true, Some(done)) = (decision.switchover_completed, &self.switchover) {
            self.event(&format!(
                "switchover {} -> {}: done, leader moved after {}ms",
                self.name(done.from),
                self.name(done.to),
                self.switchover_began.elapsed().as_millis()
            ));
        }
        self.switchover.clone_from(&decision.switchover);
        if decision.degraded != self.reported {
            if let Some(why) = &decision.degraded {
                self.log(&format!("degraded: {why}"));
            }
            self.reported.clone_from(&decision.degraded);
        }
        decision
    }

    fn state(&self, decision: &Decision) -> RolloutState {
        RolloutState {
            part: self.part.name.clone(),
            strategy: format!("{:?}", self.policy.strategy),
            waiting_for: decision.waiting_for.clone(),
            stuck: decision.stuck.iter().map(|o| self.name(*o)).collect(),
            degraded: decision.degraded.clone(),
        }
    }

    /// Carries out one of the lifecycle's commands.
    async fn execute(
        &mut self,
        command: Command,
        members: &mut Members,
        states: &[rollout::MemberState],
        since: &mut BTreeMap<String, (bool, Instant)>,
    ) {
        match command {
            Command::Update { ordinal } => {
                let plans = self.plans;
                if let Some(plan) = plans.iter().find(|p| p.member.ordinal == ordinal) {
                    self.restarted.insert(plan.name.clone(), Instant::now());
                    restart(self.events, members, plan, states).await;
                    since.insert(plan.name.clone(), (false, Instant::now()));
                }
            }
            Command::Switchover { from, to } => {
                let result = self.switchover(from, to).await;
                members.shared.reprobe_roles();
                self.switchover_ran(from, to, result);
            }
        }
    }

    /// Runs the switchover action in leader `from` with `to` as its target.
    async fn switchover(&mut self, from: i32, to: i32) -> Result<(), ActionFailure> {
        let by_ordinal = |o: i32| self.plans.iter().find(|p| p.member.ordinal == o);
        let (Some(leader), Some(target)) = (by_ordinal(from), by_ordinal(to)) else {
            return Err(failure(format!("no member with ordinal {from} or {to}")));
        };
        let Some(action) = &leader.switchover else {
            return Err(failure(format!("{} has no switchover action", leader.name)));
        };
        self.event(&format!(
            "switchover {} -> {}: running {}",
            leader.name,
            target.name,
            action.argv.join(" ")
        ));
        self.switchover_began = Instant::now();
        run_action(&action.argv, action.timeout, leader, target).await
    }

    fn switchover_ran(&mut self, from: i32, to: i32, result: Result<(), ActionFailure>) {
        if let Err(why) = &result {
            self.event(&format!(
                "switchover {} -> {} failed: {why}",
                self.name(from),
                self.name(to)
            ));
        }
        let record =
            lifecycle::switchover_ran(self.switchover.as_ref(), (from, to), unix_now(), result);
        self.switchover = Some(record);
    }
}

/// Restarts member `plan` on its new revision.
async fn restart(
    events: &Path,
    members: &mut Members,
    plan: &MemberPlan,
    states: &[rollout::MemberState],
) {
    let seen = states.iter().find(|m| m.ordinal == plan.member.ordinal);
    let role = seen.and_then(|m| m.role.clone()).unwrap_or("-".into());
    let ready = seen.is_some_and(|m| m.ready);
    append_event(
        events,
        &format!(
            "update {}: restart on revision {} (role {role}, ready {ready})",
            plan.name, plan.revision
        ),
    );
    members.stop(&plan.name).await;
    members.start(&plan.name);
    members
        .shared
        .member(&plan.name, |m| m.revision.clone_from(&plan.revision));
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn failure(message: String) -> ActionFailure {
    ActionFailure {
        exit_code: None,
        message,
    }
}

/// Runs an action with the member's env plus the target's `BERTH_TARGET*`
/// (`berth_core::exec::ActionTarget::env`), in the member's directory.
pub(crate) async fn run_action(
    argv: &[String],
    limit: Duration,
    member: &MemberPlan,
    target: &MemberPlan,
) -> Result<(), ActionFailure> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| failure("empty command".into()))?;
    let run = crate::member::exec_command(member, program)
        .args(args)
        .envs(target.as_target().env())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| failure(format!("timed out after {}s", limit.as_secs())))?
        .map_err(|e| failure(format!("cannot run {program}: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(ActionFailure {
        exit_code: output.status.code(),
        message: berth_core::exec::output_tail(&output.stderr, &output.stdout),
    })
}
