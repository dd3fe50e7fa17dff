//! Scaling a part: members that are no longer wanted stop, new members start. When the part
//! declares `memberLeave`, each leaving member (highest ordinal first) is first removed from the
//! group by that action, run in a ready remaining member; when it declares `memberJoin`, each
//! new member (in ordinal order) is first added by that action, run in a ready running member,
//! then started, and the next one waits until it is ready. The member that runs an action is
//! chosen by [`berth_core::membership::action_member`] (the operator's rule too); actions run
//! as switchovers do (see [`crate::rolling`]). Every step goes to `<home>/<app>/events.log`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::rollout;
use berth_core::spec::PartSpec;

use crate::decide;
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

/// Stops the members `names` (in this order: highest ordinal first), each after its memberLeave
/// action when its part declares one. `desired` are the plans after the change.
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
) -> Result<(), String> {
    for name in names {
        let Some(leaving) = members.plan(name) else {
            continue;
        };
        let part = part_of(parts, &leaving);
        let staying = running_in_part(members, desired, &leaving.member.part);
        let declared = part.is_some_and(|p| p.state.topology.member_leave().is_some());
        if declared && !staying.is_empty() {
            let roles = part.map(|p| p.state.topology.roles.as_slice());
            run(events, Kind::Leave, &leaving, &staying, roles, members).await?;
        }
        append_event(events, &format!("stop {name}: no longer wanted"));
        members.stop(name).await;
    }
    Ok(())
}

/// Starts the members `names` (in start order). Those of a part that declares memberJoin and
/// already runs members join one at a time: the action, the start, then readiness before the
/// next one. The others start at once, as at `up` (a part scaled up from zero forms its group).
///
/// # Errors
/// A memberJoin action failed or no ready member can run it; that member and the ones after it
/// are not started.
pub(crate) async fn add_members(
    events: &Path,
    names: &[String],
    parts: &[PartSpec],
    members: &mut Members,
    signals: &mut Signals,
) -> Result<Outcome, String> {
    let populated: BTreeSet<String> = members
        .plans
        .iter()
        .filter(|p| members.running.contains_key(&p.name))
        .map(|p| p.member.part.clone())
        .collect();
    for name in names {
        let Some(joining) = members.plan(name) else {
            continue;
        };
        let part = part_of(parts, &joining);
        let declared = part.is_some_and(|p| p.state.topology.member_join().is_some());
        if !declared || !populated.contains(&joining.member.part) {
            append_event(events, &format!("start {name}: new member"));
            members.start(name);
            continue;
        }
        let current = members.plans.clone();
        let running = running_in_part(members, &current, &joining.member.part);
        let roles = part.map(|p| p.state.topology.roles.as_slice());
        run(events, Kind::Join, &joining, &running, roles, members).await?;
        append_event(events, &format!("start {name}: new member, joined"));
        members.start(name);
        let began = Instant::now();
        if let Some(outcome) = until_ready(name, &members.shared, signals).await {
            return Ok(outcome);
        }
        let secs = began.elapsed().as_secs_f64();
        append_event(events, &format!("join {name}: ready after {secs:.1}s"));
    }
    Ok(Outcome::Done)
}

/// Runs the join or leave action about `target` in a ready member of `candidates`.
async fn run(
    events: &Path,
    kind: Kind,
    target: &MemberPlan,
    candidates: &[Arc<MemberPlan>],
    roles: Option<&[berth_core::spec::RoleSpec]>,
    members: &Members,
) -> Result<(), String> {
    let verb = kind.verb();
    let fail = |why: String| {
        let message = format!("{} of {} failed: {why}", kind.action_name(), target.name);
        append_event(events, &format!("{verb} {}: failed: {why}", target.name));
        Err(message)
    };
    let states = observe(&members.shared, candidates);
    let ordinal = target.member.ordinal;
    let chosen = berth_core::membership::action_member(&states, ordinal, roles.unwrap_or_default());
    let runner = chosen.and_then(|o| candidates.iter().find(|p| p.member.ordinal == o));
    let Some(runner) = runner else {
        return fail(format!(
            "no ready member of part {} to run it",
            target.member.part
        ));
    };
    let Some(action) = kind.action(runner) else {
        return fail(format!(
            "{} has no {} action",
            runner.name,
            kind.action_name()
        ));
    };
    let role = states
        .iter()
        .find(|m| Some(m.ordinal) == chosen)
        .and_then(|m| m.role.clone())
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
    if let Err(why) = run_action(&action.argv, action.timeout, runner, target).await {
        return fail(format!("{why} (in {})", runner.name));
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

fn part_of<'a>(parts: &'a [PartSpec], plan: &MemberPlan) -> Option<&'a PartSpec> {
    parts.iter().find(|p| p.name == plan.member.part)
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
