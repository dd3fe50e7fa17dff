//! Scaling a part, as the core's membership plan ([`berth_core::membership::plan`], the
//! operator's too) sequences it: members that are no longer wanted stop, new members start.
//! When the part declares `memberLeave`, each leaving member (highest ordinal first) is first
//! removed from the group by that action, run in a ready remaining member; when it declares
//! `memberJoin`, each new member (in ordinal order) is first added by that action, run in a
//! ready running member, then started, and the next one waits until every member is ready.
//! Actions run as switchovers do (see [`crate::rolling`]). Every step goes to
//! `<home>/<app>/events.log`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::membership::{Actions, Change, ScalePlan};
use berth_core::rollout;
use berth_core::spec::PartSpec;

use crate::decide;
use crate::error::MembershipError;
use crate::home::append_event;
use crate::plan::{ActionPlan, MemberPlan};
use crate::rolling::{Outcome, Wake, run_action, wait};
use crate::shared::Shared;
use crate::supervisor::{Members, Signals};

/// Which action, for messages.
#[derive(Clone, Copy)]
enum Kind {
    Join,
    Leave,
}

impl Kind {
    fn action_name(self) -> &'static str {
        match self {
            Kind::Join => "memberJoin",
            Kind::Leave => "memberLeave",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Kind::Join => "join",
            Kind::Leave => "leave",
        }
    }

    fn action(self, plan: &MemberPlan) -> Option<&ActionPlan> {
        match self {
            Kind::Join => plan.member_join.as_ref(),
            Kind::Leave => plan.member_leave.as_ref(),
        }
    }
}

/// Stops the members `names` no longer wanted: part by part, the core's membership plan
/// ([`berth_core::membership::plan`], the operator's too) says which member leaves next and
/// where its memberLeave runs, or that the rest simply stop. `desired` are the plans after
/// the change.
///
/// # Errors
/// A memberLeave action failed or no ready member can run it; that member and the ones after it
/// keep running.
pub(crate) async fn remove_members(
    events: &Path,
    names: &[String],
    parts: &[PartSpec],
    desired: &[Arc<MemberPlan>],
    members: &mut Members,
) -> Result<(), MembershipError> {
    for part_name in parts_of(names, members) {
        let part = parts.iter().find(|p| p.name == part_name);
        let wanted = desired
            .iter()
            .filter(|p| p.member.part == part_name)
            .count();
        loop {
            let running = running_in_part(members, &members.plans.clone(), &part_name);
            let Some(step) = next_step(part, members, &running, wanted) else {
                break;
            };
            match step.change {
                Some(Change::Leave { ordinal, run_in }) => {
                    // The runner stays: it runs the new spec's action.
                    let staying: Vec<Arc<MemberPlan>> = desired
                        .iter()
                        .filter(|p| p.member.part == part_name)
                        .cloned()
                        .collect();
                    let leaving = by_ordinal(&running, ordinal);
                    let runner =
                        by_ordinal(&staying, run_in).or_else(|| by_ordinal(&running, run_in));
                    let (Some(leaving), Some(runner)) = (leaving, runner) else {
                        break;
                    };
                    run(events, Kind::Leave, &leaving, &runner, members).await?;
                    admit(members, &part_name, ordinal);
                    stop(events, members, &leaving.name).await;
                }
                Some(Change::Join { .. }) => break,
                None if step.replicas < i32::try_from(running.len()).unwrap_or(i32::MAX) => {
                    for leaving in running
                        .iter()
                        .rev()
                        .filter(|p| p.member.ordinal >= step.replicas)
                    {
                        stop(events, members, &leaving.name).await;
                    }
                }
                None => {
                    return Err(MembershipError::Waiting {
                        part: part_name,
                        waiting_for: step.waiting_for,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Starts the members `names` (in start order): part by part, the core's membership plan says
/// which member joins next and where its memberJoin runs (after every running member is ready),
/// or that the rest simply start (a part without memberJoin, or scaled up from zero, forms its
/// group at once, as at `up`).
///
/// # Errors
/// A memberJoin action failed; that member and the ones after it are not started.
pub(crate) async fn add_members(
    events: &Path,
    names: &[String],
    parts: &[PartSpec],
    members: &mut Members,
    signals: &mut Signals,
) -> Result<Outcome, MembershipError> {
    for part_name in parts_of(names, members) {
        let part = parts.iter().find(|p| p.name == part_name);
        let all = members.plans.clone();
        let wanted: Vec<Arc<MemberPlan>> = all
            .iter()
            .filter(|p| p.member.part == part_name)
            .cloned()
            .collect();
        let mut changed = members.shared.subscribe();
        loop {
            let running = running_in_part(members, &all, &part_name);
            let Some(step) = next_step(part, members, &running, wanted.len()) else {
                break;
            };
            match step.change {
                Some(Change::Join { ordinal, run_in }) => {
                    let (joining, runner) =
                        (by_ordinal(&wanted, ordinal), by_ordinal(&running, run_in));
                    let (Some(joining), Some(runner)) = (joining, runner) else {
                        break;
                    };
                    if let Some(outcome) = join(events, &joining, &runner, members, signals).await?
                    {
                        return Ok(outcome);
                    }
                }
                Some(Change::Leave { .. }) => break,
                None if step.replicas > i32::try_from(running.len()).unwrap_or(i32::MAX) => {
                    let new = wanted
                        .iter()
                        .filter(|p| {
                            p.member.ordinal < step.replicas
                                && !members.running.contains_key(&p.name)
                        })
                        .cloned()
                        .collect::<Vec<_>>();
                    for plan in new {
                        append_event(events, &format!("start {}: new member", plan.name));
                        members.start(&plan.name);
                    }
                }
                None => {
                    if let Wake::Signal(outcome) =
                        wait(&mut changed, signals, Duration::from_secs(1)).await
                    {
                        return Ok(outcome);
                    }
                }
            }
        }
    }
    Ok(Outcome::Done)
}

/// Runs `joining`'s memberJoin in `runner`, starts it and waits until it is ready; `Some` when
/// a signal interrupted the wait.
async fn join(
    events: &Path,
    joining: &MemberPlan,
    runner: &MemberPlan,
    members: &mut Members,
    signals: &mut Signals,
) -> Result<Option<Outcome>, MembershipError> {
    run(events, Kind::Join, joining, runner, members).await?;
    admit(members, &joining.member.part, joining.member.ordinal + 1);
    append_event(
        events,
        &format!("start {}: new member, joined", joining.name),
    );
    members.start(&joining.name);
    let began = Instant::now();
    if let Some(outcome) = until_ready(&joining.name, &members.shared, signals).await {
        return Ok(Some(outcome));
    }
    let secs = began.elapsed().as_secs_f64();
    append_event(
        events,
        &format!("join {}: ready after {secs:.1}s", joining.name),
    );
    Ok(None)
}

/// Records that `part`'s group now has `size` members (right after the action that made it
/// so, before the member starts or stops).
fn admit(members: &Members, part: &str, size: i32) {
    members.shared.update(|s| {
        s.admitted.insert(part.to_string(), size);
    });
}

/// The core's next membership step for a part running `running` that should run `wanted`
/// members; `None` once it runs that many.
fn next_step(
    part: Option<&PartSpec>,
    members: &Members,
    running: &[Arc<MemberPlan>],
    wanted: usize,
) -> Option<ScalePlan> {
    let current = i32::try_from(running.len()).unwrap_or(i32::MAX);
    let desired = i32::try_from(wanted).unwrap_or(i32::MAX);
    if current == desired {
        return None;
    }
    let topology = part.map(|p| &p.state.topology);
    let actions = Actions {
        join: topology.is_some_and(|t| t.member_join().is_some()),
        leave: topology.is_some_and(|t| t.member_leave().is_some()),
    };
    let roles = topology.map(|t| t.roles.as_slice()).unwrap_or_default();
    let states = observe(&members.shared, running);
    Some(berth_core::membership::plan(
        current, desired, &states, roles, actions,
    ))
}

/// The parts of members `names`, in the order they first appear.
fn parts_of(names: &[String], members: &Members) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for name in names {
        if let Some(plan) = members
            .plan(name)
            .filter(|p| !parts.contains(&p.member.part))
        {
            parts.push(plan.member.part.clone());
        }
    }
    parts
}

fn by_ordinal(plans: &[Arc<MemberPlan>], ordinal: i32) -> Option<Arc<MemberPlan>> {
    plans.iter().find(|p| p.member.ordinal == ordinal).cloned()
}

async fn stop(events: &Path, members: &mut Members, name: &str) {
    append_event(events, &format!("stop {name}: no longer wanted"));
    members.stop(name).await;
}

/// Runs the join or leave action about `target` in `runner` (where the core's plan says).
async fn run(
    events: &Path,
    kind: Kind,
    target: &MemberPlan,
    runner: &MemberPlan,
    members: &Members,
) -> Result<(), MembershipError> {
    let verb = kind.verb();
    let fail = |error: MembershipError| {
        let why = error.reason();
        append_event(events, &format!("{verb} {}: failed: {why}", target.name));
        Err(error)
    };
    let Some(action) = kind.action(runner) else {
        return fail(MembershipError::NoAction {
            action: kind.action_name(),
            member: target.name.clone(),
            runner: runner.name.clone(),
        });
    };
    let role = members
        .shared
        .snapshot()
        .members
        .iter()
        .find(|m| m.name == runner.name)
        .map(|m| m.role.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or("-".into());
    append_event(
        events,
        &format!(
            "{verb} {}: running {} in {} (role {role}): {}",
            target.name,
            kind.action_name(),
            runner.name,
            action.argv.join(" ")
        ),
    );
    let began = Instant::now();
    if let Err(failure) = run_action(&action.argv, action.timeout, runner, target).await {
        return fail(MembershipError::Failed {
            action: kind.action_name(),
            member: target.name.clone(),
            runner: runner.name.clone(),
            failure,
        });
    }
    let ms = began.elapsed().as_millis();
    append_event(events, &format!("{verb} {}: done in {ms}ms", target.name));
    Ok(())
}

/// The part's members among `plans` that run now, in start order.
fn running_in_part(
    members: &Members,
    plans: &[Arc<MemberPlan>],
    part: &str,
) -> Vec<Arc<MemberPlan>> {
    plans
        .iter()
        .filter(|p| p.member.part == part && members.running.contains_key(&p.name))
        .cloned()
        .collect()
}

/// The readiness and role of `plans` as the supervisor published them.
fn observe(shared: &Shared, plans: &[Arc<MemberPlan>]) -> Vec<rollout::MemberState> {
    let snapshot = shared.snapshot();
    plans
        .iter()
        .map(|p| {
            let seen = snapshot.members.iter().find(|m| m.name == p.name);
            decide::planner_member(p.member.ordinal, &p.revision, seen, 0)
        })
        .collect()
}

/// Waits until member `name` is ready; `Some` when a signal interrupted the wait.
async fn until_ready(name: &str, shared: &Shared, signals: &mut Signals) -> Option<Outcome> {
    let mut changed = shared.subscribe();
    while !shared.is_ready(name) {
        if let Wake::Signal(outcome) = wait(&mut changed, signals, Duration::from_secs(1)).await {
            return Some(outcome);
        }
    }
    None
}
