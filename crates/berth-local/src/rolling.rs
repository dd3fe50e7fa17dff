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

use berth_core::rollout::{self, Policy, Step};
use berth_core::spec::PartSpec;
use tokio::sync::watch;

use crate::decide;
use crate::home::{Phase, RolloutState, append_event};
use crate::plan::MemberPlan;
use crate::shared::Shared;
use crate::supervisor::{Members, Signals};

/// How long a member found ready when a rollout starts counts as ready already.
const LONG_READY: Duration = Duration::from_secs(decide::LONG_READY_SECONDS);

/// How long the role probe may take to show a switchover.
const SWITCHOVER_SETTLE: Duration = Duration::from_secs(30);

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
    let replicas = plans.len();
    let mut policy = decide::rollout_policy(part, replicas);
    let strategy = format!("{:?}", policy.strategy);
    if policy.strategy == berth_core::spec::UpdateStrategy::OnDelete {
        append_event(
            events,
            &format!(
                "rollout {}: strategy OnDelete: members keep their revision until restarted",
                part.name
            ),
        );
        return Outcome::Done;
    }
    let outdated = states.iter().filter(|m| !m.updated).count();
    append_event(
        events,
        &format!(
            "rollout {}: started, strategy {strategy}, {outdated} of {replicas} members outdated",
            part.name
        ),
    );
    let began = Instant::now();
    let mut changed = shared.subscribe();
    let mut reported_stuck: Vec<String> = Vec::new();
    let mut restarted: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        let states = observe(&shared, &plans, &mut since);
        report_ready(events, &plans, &states, &mut restarted);
        let planned = rollout::plan(&states, &policy);
        let name_of = |ordinal: i32| {
            plans
                .iter()
                .find(|p| p.member.ordinal == ordinal)
                .map(|p| p.name.clone())
                .unwrap_or_default()
        };
        let stuck: Vec<String> = planned.stuck.iter().map(|o| name_of(*o)).collect();
        if !stuck.is_empty() && stuck != reported_stuck {
            append_event(
                events,
                &format!(
                    "rollout {}: stuck: {} unready on the new revision for more than {}s \
                     (fix the spec and apply again)",
                    part.name,
                    stuck.join(", "),
                    policy.progress_deadline_seconds
                ),
            );
        }
        reported_stuck.clone_from(&stuck);
        let state = RolloutState {
            part: part.name.clone(),
            strategy: strategy.clone(),
            waiting_for: planned.waiting_for.clone(),
            stuck,
        };
        if planned.complete {
            append_event(
                events,
                &format!(
                    "rollout {}: complete in {:.1}s",
                    part.name,
                    began.elapsed().as_secs_f64()
                ),
            );
            shared.update(|s| s.rollout = None);
            return Outcome::Done;
        }
        shared.update(|s| {
            if !state.stuck.is_empty() {
                s.phase = Phase::Degraded;
            }
            s.rollout = Some(state);
        });
        if planned.steps.is_empty() {
            if let Wake::Signal(outcome) = wait(&mut changed, signals, Duration::from_secs(1)).await
            {
                return outcome;
            }
            continue;
        }
        for step in planned.steps {
            match step {
                Step::Update { ordinal } => {
                    let Some(plan) = plans.iter().find(|p| p.member.ordinal == ordinal) else {
                        continue;
                    };
                    let seen = states.iter().find(|m| m.ordinal == ordinal);
                    let role = seen.and_then(|m| m.role.clone()).unwrap_or("-".into());
                    let ready = seen.is_some_and(|m| m.ready);
                    append_event(
                        events,
                        &format!(
                            "update {}: restart on revision {} (role {role}, ready {ready})",
                            plan.name, plan.revision
                        ),
                    );
                    restarted.insert(plan.name.clone(), Instant::now());
                    members.stop(&plan.name).await;
                    members.start(&plan.name);
                    shared.member(&plan.name, |m| m.revision.clone_from(&plan.revision));
                    since.insert(plan.name.clone(), (false, Instant::now()));
                }
                Step::Switchover { from } => {
                    let result =
                        switchover(events, from, &plans, &states, &policy, &shared, signals).await;
                    match result {
                        Ok(()) => {}
                        Err(Some(outcome)) => return outcome,
                        Err(None) => {
                            append_event(
                                events,
                                &format!(
                                    "rollout {}: updating the leader without a switchover",
                                    part.name
                                ),
                            );
                            policy.switchover = false;
                        }
                    }
                }
            }
        }
    }
}

/// Runs the switchover action in leader `from` and waits until the role probe shows another
/// leader. `Err(None)`: it failed (logged); `Err(Some(_))`: a signal interrupted it.
async fn switchover(
    events: &Path,
    from: i32,
    plans: &[Arc<MemberPlan>],
    states: &[rollout::MemberState],
    policy: &Policy,
    shared: &Shared,
    signals: &mut Signals,
) -> Result<(), Option<Outcome>> {
    let fail = |why: String| {
        append_event(events, &format!("switchover failed: {why}"));
        Err(None)
    };
    let by_ordinal = |o: i32| plans.iter().find(|p| p.member.ordinal == o);
    let Some(leader) = by_ordinal(from) else {
        return fail(format!("no member with ordinal {from}"));
    };
    let Some(action) = &leader.switchover else {
        return fail(format!("{} has no switchover action", leader.name));
    };
    let Some(target) = rollout::switchover_target(states, from, &policy.roles).and_then(by_ordinal)
    else {
        return fail("no ready member on the new revision to take over".into());
    };
    append_event(
        events,
        &format!(
            "switchover {} -> {}: running {}",
            leader.name,
            target.name,
            action.argv.join(" ")
        ),
    );
    let began = Instant::now();
    if let Err(why) = run_action(&action.argv, action.timeout, leader, target).await {
        shared.reprobe_roles();
        return fail(why);
    }
    shared.reprobe_roles();
    let mut changed = shared.subscribe();
    let mut since = BTreeMap::new();
    let deadline = began + action.timeout.max(SWITCHOVER_SETTLE);
    loop {
        let now_states = observe(shared, plans, &mut since);
        if let Some(new) = decide::new_leader(&now_states, from, &policy.roles) {
            let name = by_ordinal(new).map(|p| p.name.clone()).unwrap_or_default();
            append_event(
                events,
                &format!(
                    "switchover {} -> {}: done, leader is {name} after {}ms",
                    leader.name,
                    target.name,
                    began.elapsed().as_millis()
                ),
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return fail(format!(
                "the role probe still shows {} as leader after {}s",
                leader.name,
                began.elapsed().as_secs()
            ));
        }
        if let Wake::Signal(outcome) = wait(&mut changed, signals, Duration::from_millis(200)).await
        {
            return Err(Some(outcome));
        }
    }
}

/// Runs an action with the member's env plus the target's `BERTH_TARGET*`
/// (`berth_core::exec::ActionTarget::env`), in the member's directory.
pub(crate) async fn run_action(
    argv: &[String],
    limit: Duration,
    member: &MemberPlan,
    target: &MemberPlan,
) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let run = crate::member::member_command(member, program)
        .args(args)
        .envs(target.as_target().env())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| format!("timed out after {}s", limit.as_secs()))?
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stderr
        .lines()
        .chain(stdout.lines())
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string();
    Err(format!("{} ({last})", output.status))
}
