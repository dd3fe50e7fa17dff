//! One part's rollout as both engines run it: a pure function of the policy, the observed
//! members, what must be remembered between decisions (the last switchover: whom it moved
//! leadership from and to, when, how often, and how it failed) and the time, returning what to
//! do now and how the part is doing. The engines observe, call [`decide`], carry out its
//! [`Command`]s, report a switchover's outcome back through [`switchover_ran`], and keep the
//! [`SwitchoverRecord`] where it outlives them (the operator: the app's status; the local engine:
//! its supervisor).
//!
//! Rules it owns on top of the planner ([`crate::rollout::plan`]):
//! - after a switchover the leader is left to the role probe for [`SWITCHOVER_SETTLE_SECONDS`]:
//!   no second switchover, no update of the leader, until the probe shows the move or the time
//!   is up (which counts as a failure);
//! - a failed switchover never updates the leader without one, unless the part says
//!   `onSwitchoverFailure: UpdateLeader`: it is retried with backoff ([`retry_delay`]) while the
//!   part is Degraded with the action's exit code and output;
//! - members unready on the new revision past the progress deadline make the part Degraded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rollout::{self, MemberState, Plan, Policy, Step};
use crate::spec::UpdateStrategy;

/// How long a member may stay unready on a new revision before the part is Degraded, unless the
/// part says otherwise (`update.progressDeadlineSeconds`).
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u64 = 600;

/// How long after a switchover the role probe has to show another leader.
pub const SWITCHOVER_SETTLE_SECONDS: i64 = 30;

/// The longest wait between two attempts of a failing switchover.
const MAX_RETRY_SECONDS: i64 = 300;

/// What is remembered of the last switchover of a part.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverRecord {
    /// The ordinal of the leader it moved leadership away from.
    pub from: i32,
    /// The ordinal of the member meant to take over.
    pub to: i32,
    /// When it last ran (seconds since the Unix epoch).
    pub at: i64,
    /// How often it has run for this leader.
    pub attempts: u32,
    /// How the last attempt failed; absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ActionFailure>,
}

/// How an action failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionFailure {
    /// Its exit code, when it ran to an exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What went wrong: the end of its output, a timeout, or why it could not run.
    pub message: String,
}

impl std::fmt::Display for ActionFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.exit_code {
            Some(code) => write!(f, "exit code {code}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ActionFailure {}

/// Something an engine must do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Bring this member to the new revision.
    Update {
        /// The member.
        ordinal: i32,
    },
    /// Run the part's switchover action in the leader `from`, handing leadership to `to`, then
    /// report the outcome with [`switchover_ran`].
    Switchover {
        /// The leader.
        from: i32,
        /// The member that takes over.
        to: i32,
    },
}

/// What to do now and how the part is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// What to do now, in order.
    pub commands: Vec<Command>,
    /// Every member at or above the partition runs the new revision and is ready.
    pub complete: bool,
    /// Why nothing (more) is done now; empty when commands were given or the part is complete.
    pub waiting_for: String,
    /// Members unready on the new revision past the progress deadline.
    pub stuck: Vec<i32>,
    /// Why the part is Degraded (a stuck member, a failing switchover); `None` when it is not.
    pub degraded: Option<String>,
    /// What to remember of the last switchover from now on.
    pub switchover: Option<SwitchoverRecord>,
    /// The remembered switchover completed: the role probe shows the leader moved.
    pub switchover_completed: bool,
    /// Nothing will change until someone outside berth acts (`OnDelete`: members keep their
    /// revision until deleted): an engine need not wait for this part.
    pub held: bool,
}

/// Decides a part's next rollout steps. `name` turns an ordinal into the member's name for
/// messages; `now` is in seconds since the Unix epoch.
pub fn decide(
    policy: &Policy,
    members: &[MemberState],
    remembered: Option<&SwitchoverRecord>,
    now: i64,
    name: &dyn Fn(i32) -> String,
) -> Decision {
    let record = remembered
        .cloned()
        .filter(|r| still_leads(policy, members, r));
    let completed = remembered.is_some_and(|r| r.failure.is_none()) && record.is_none();
    let record = record.map(|r| settle(r, now, name));
    let mut decision = match &record {
        Some(r) if r.failure.is_some() => after_failure(policy, members, r, now, name),
        Some(r) => wait_for_probe(rollout::plan(members, policy), r, name),
        None => from_plan(rollout::plan(members, policy), members, policy),
    };
    decision.switchover = record;
    decision.switchover_completed = completed;
    decision.held = policy.strategy == UpdateStrategy::OnDelete
        && !decision.complete
        && decision.commands.is_empty();
    if decision.degraded.is_none() && !decision.stuck.is_empty() {
        let stuck: Vec<String> = decision.stuck.iter().map(|o| name(*o)).collect();
        decision.degraded = Some(format!(
            "{} unready on the new revision for more than {}s",
            stuck.join(", "),
            policy.progress_deadline_seconds
        ));
    }
    decision
}

/// What to remember after the switchover `from` → `to` ran at `now` with `result`.
pub fn switchover_ran(
    previous: Option<&SwitchoverRecord>,
    (from, to): (i32, i32),
    now: i64,
    result: Result<(), ActionFailure>,
) -> SwitchoverRecord {
    let attempts = previous
        .filter(|p| p.from == from)
        .map_or(0, |p| p.attempts);
    SwitchoverRecord {
        from,
        to,
        at: now,
        attempts: attempts.saturating_add(1),
        failure: result.err(),
    }
}

/// How long to wait after the `attempts`-th failed attempt before the next: 30 s, doubling, at
/// most 5 minutes.
pub fn retry_delay(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(4);
    (SWITCHOVER_SETTLE_SECONDS << doublings).min(MAX_RETRY_SECONDS)
}

/// Whether the record still matters: its leader is still outdated and the role probe has not
/// shown the move yet (the leader in a role that is not writable, another member in one that
/// is).
fn still_leads(policy: &Policy, members: &[MemberState], record: &SwitchoverRecord) -> bool {
    let writable = |m: &MemberState| {
        m.role
            .as_deref()
            .is_some_and(|role| policy.roles.iter().any(|r| r.name == role && r.writable))
    };
    let Some(leader) = members.iter().find(|m| m.ordinal == record.from) else {
        return false;
    };
    let moved = leader.role.is_some()
        && !writable(leader)
        && members
            .iter()
            .any(|m| m.ordinal != record.from && writable(m));
    !leader.updated && !moved
}

/// A successful switchover whose leader the probe still shows past the settle time failed.
fn settle(record: SwitchoverRecord, now: i64, name: &dyn Fn(i32) -> String) -> SwitchoverRecord {
    let elapsed = now - record.at;
    if record.failure.is_some() || elapsed < SWITCHOVER_SETTLE_SECONDS {
        return record;
    }
    SwitchoverRecord {
        failure: Some(ActionFailure {
            exit_code: None,
            message: format!(
                "the role probe still shows {} as leader {elapsed}s after the switchover",
                name(record.from)
            ),
        }),
        ..record
    }
}

/// The planner's steps as commands, a switchover with its target.
fn from_plan(plan: Plan, members: &[MemberState], policy: &Policy) -> Decision {
    let commands = plan
        .steps
        .iter()
        .filter_map(|step| match *step {
            Step::Update { ordinal } => Some(Command::Update { ordinal }),
            Step::Switchover { from } => rollout::switchover_target(members, from, &policy.roles)
                .map(|to| Command::Switchover { from, to }),
        })
        .collect();
    Decision {
        commands,
        complete: plan.complete,
        waiting_for: plan.waiting_for,
        stuck: plan.stuck,
        ..Decision::default()
    }
}

/// A switchover ran and the probe has not shown its effect yet: nothing touches the leader.
fn wait_for_probe(plan: Plan, record: &SwitchoverRecord, name: &dyn Fn(i32) -> String) -> Decision {
    let commands: Vec<Command> = plan
        .steps
        .iter()
        .filter_map(|step| match *step {
            Step::Update { ordinal } if ordinal != record.from => Some(Command::Update { ordinal }),
            _ => None,
        })
        .collect();
    let waiting_for = if commands.is_empty() {
        format!(
            "the role probe to show the switchover from {} to {}",
            name(record.from),
            name(record.to)
        )
    } else {
        String::new()
    };
    Decision {
        commands,
        waiting_for,
        stuck: plan.stuck,
        ..Decision::default()
    }
}

/// The last switchover failed: update the leader without one if the part allows it, else retry
/// once the backoff has passed, Degraded meanwhile.
fn after_failure(
    policy: &Policy,
    members: &[MemberState],
    record: &SwitchoverRecord,
    now: i64,
    name: &dyn Fn(i32) -> String,
) -> Decision {
    let failure = record.failure.clone().unwrap_or_default();
    if policy.update_leader_without_switchover {
        let without = Policy {
            switchover: false,
            ..policy.clone()
        };
        return from_plan(rollout::plan(members, &without), members, &without);
    }
    let next = record.at + retry_delay(record.attempts);
    let mut decision = if now >= next {
        from_plan(rollout::plan(members, policy), members, policy)
    } else {
        Decision {
            waiting_for: format!("the next switchover attempt in {}s", next - now),
            stuck: rollout::plan(members, policy).stuck,
            ..Decision::default()
        }
    };
    decision.degraded = Some(format!(
        "switchover from {} to {} failed ({} attempt{}): {failure}; the leader keeps its revision \
         until a switchover succeeds (onSwitchoverFailure: UpdateLeader updates it without one)",
        name(record.from),
        name(record.to),
        record.attempts,
        if record.attempts == 1 { "" } else { "s" },
    ));
    decision
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RoleSpec;

    fn member(ordinal: i32, updated: bool, role: &str) -> MemberState {
        MemberState {
            ordinal,
            updated,
            ready: true,
            role: Some(role.to_string()),
            unready_seconds: 0,
            ready_seconds: 1000,
        }
    }

    fn policy(update_leader: bool) -> Policy {
        let roles: Vec<RoleSpec> =
            serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#)
                .unwrap();
        Policy {
            strategy: UpdateStrategy::RoleAware,
            partition: 0,
            max_unavailable: 1,
            roles,
            switchover: true,
            progress_deadline_seconds: 600,
            min_ready_seconds: 0,
            update_leader_without_switchover: update_leader,
        }
    }

    fn name(ordinal: i32) -> String {
        format!("db-{ordinal}")
    }

    /// Leader 0 outdated, followers updated: the planner wants a switchover 0 -> 2.
    fn before_switchover() -> Vec<MemberState> {
        vec![
            member(0, false, "leader"),
            member(1, true, "follower"),
            member(2, true, "follower"),
        ]
    }

    fn failed(at: i64, attempts: u32) -> SwitchoverRecord {
        SwitchoverRecord {
            from: 0,
            to: 2,
            at,
            attempts,
            failure: Some(ActionFailure {
                exit_code: Some(3),
                message: "ERR not a replica".into(),
            }),
        }
    }

    #[test]
    fn the_planners_switchover_comes_with_its_target() {
        let d = decide(&policy(false), &before_switchover(), None, 100, &name);
        assert_eq!(d.commands, [Command::Switchover { from: 0, to: 2 }]);
        assert_eq!(d.degraded, None);
    }

    #[test]
    fn after_a_switchover_nothing_touches_the_leader_until_the_probe_shows_the_move() {
        let ran = switchover_ran(None, (0, 2), 100, Ok(()));
        let d = decide(&policy(false), &before_switchover(), Some(&ran), 110, &name);
        assert!(d.commands.is_empty(), "{d:?}");
        assert!(d.waiting_for.contains("role probe"), "{d:?}");
        assert_eq!(d.switchover, Some(ran.clone()));
        // The probe shows the move: the record is done, the leader is updated.
        let mut moved = before_switchover();
        moved[0].role = Some("follower".into());
        moved[2].role = Some("leader".into());
        // Two members showing the writable role is not a move yet.
        let mut both = before_switchover();
        both[2].role = Some("leader".into());
        let d = decide(&policy(false), &both, Some(&ran), 111, &name);
        assert!(d.commands.is_empty(), "{d:?}");
        let d = decide(&policy(false), &moved, Some(&ran), 111, &name);
        assert_eq!(d.commands, [Command::Update { ordinal: 0 }]);
        assert_eq!(d.switchover, None);
        assert!(d.switchover_completed);
    }

    #[test]
    fn a_failed_switchover_never_updates_the_leader_and_degrades_the_part() {
        let record = failed(100, 1);
        let d = decide(
            &policy(false),
            &before_switchover(),
            Some(&record),
            110,
            &name,
        );
        assert!(d.commands.is_empty(), "{d:?}");
        let message = d.degraded.unwrap();
        assert!(
            message.contains("db-0 to db-2 failed (1 attempt): exit code 3: ERR not a replica"),
            "{message}"
        );
        // Once the backoff passed it is retried, never replaced by an update of the leader.
        let d = decide(
            &policy(false),
            &before_switchover(),
            Some(&record),
            130,
            &name,
        );
        assert_eq!(d.commands, [Command::Switchover { from: 0, to: 2 }]);
        assert!(d.degraded.is_some());
    }

    #[test]
    fn a_part_that_allows_it_updates_the_leader_after_a_failed_switchover() {
        let record = failed(100, 1);
        let d = decide(
            &policy(true),
            &before_switchover(),
            Some(&record),
            101,
            &name,
        );
        assert_eq!(d.commands, [Command::Update { ordinal: 0 }]);
        assert_eq!(d.degraded, None);
    }

    #[test]
    fn a_switchover_the_probe_never_shows_counts_as_failed_after_the_settle_time() {
        let ran = switchover_ran(None, (0, 2), 100, Ok(()));
        let d = decide(&policy(false), &before_switchover(), Some(&ran), 131, &name);
        let message = d.degraded.unwrap();
        assert!(
            message.contains("still shows db-0 as leader 31s after"),
            "{message}"
        );
        assert!(d.switchover.unwrap().failure.is_some());
    }

    #[test]
    fn attempts_count_per_leader_and_retries_back_off_to_five_minutes() {
        let first = switchover_ran(None, (0, 2), 100, Err(ActionFailure::default()));
        let second = switchover_ran(Some(&first), (0, 2), 200, Err(ActionFailure::default()));
        assert_eq!(second.attempts, 2);
        let other = switchover_ran(Some(&second), (1, 2), 300, Ok(()));
        assert_eq!(other.attempts, 1);
        let delays: Vec<i64> = (1..=7).map(retry_delay).collect();
        assert_eq!(delays, [30, 60, 120, 240, 300, 300, 300]);
    }

    #[test]
    fn a_stuck_member_degrades_the_part_by_name() {
        let mut members = before_switchover();
        members[1].ready = false;
        members[1].unready_seconds = 601;
        let d = decide(&policy(false), &members, None, 100, &name);
        assert_eq!(d.stuck, [1]);
        assert_eq!(
            d.degraded.as_deref(),
            Some("db-1 unready on the new revision for more than 600s")
        );
    }

    #[test]
    fn on_delete_holds_the_part_without_commands() {
        let held = Policy {
            strategy: UpdateStrategy::OnDelete,
            ..policy(false)
        };
        let d = decide(&held, &before_switchover(), None, 100, &name);
        assert!(d.held && d.commands.is_empty() && !d.complete, "{d:?}");
        assert!(!decide(&policy(false), &before_switchover(), None, 100, &name).held);
    }
}
