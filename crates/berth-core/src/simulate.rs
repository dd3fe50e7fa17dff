//! A rollout played through without performing it, for previews (`berth plan`): the planner
//! ([`crate::rollout::plan`]) is asked again after each of its steps, as the engines do, with
//! the step's expected outcome applied: an updated member comes back ready on the new revision
//! with its role, a switchover hands the leader's role to its target
//! ([`crate::rollout::switchover_target`]). What the world may do otherwise (a member that never
//! gets ready, a failing switchover, roles changing meanwhile) is not simulated.

use crate::rollout::{self, MemberState, Policy, Step};

/// How long a simulated member has been ready: past any `minReadySeconds`.
pub const SETTLED: u64 = u64::MAX / 4;

/// One action of a simulated rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Bring this member to the new revision.
    Update {
        /// The member.
        ordinal: i32,
        /// Its role when updated.
        role: Option<String>,
    },
    /// Move the leader's role from `from` to `to` first.
    Switchover {
        /// The leader.
        from: i32,
        /// The member taking over.
        to: i32,
    },
    /// The planner asked for a switchover nobody can take: the engines then update the leader
    /// without one.
    NoSwitchover {
        /// The leader.
        from: i32,
    },
}

/// A simulated rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Simulation {
    /// The actions, in order.
    pub actions: Vec<Action>,
    /// What the rollout would wait for and never get (empty when it completes).
    pub waiting_for: String,
    /// The members at the end.
    pub members: Vec<MemberState>,
}

/// Plays the rollout of `members` under `policy` through.
pub fn simulate(members: &[MemberState], policy: &Policy) -> Simulation {
    let mut policy = policy.clone();
    let mut members = members.to_vec();
    let mut actions = Vec::new();
    // Every round acts or lets restarted members get ready; this bounds a rollout.
    for _ in 0..=(2 * members.len() + 2) {
        let planned = rollout::plan(&members, &policy);
        if planned.complete {
            return Simulation {
                actions,
                waiting_for: String::new(),
                members,
            };
        }
        if planned.steps.is_empty() && !settle(&mut members) {
            return Simulation {
                actions,
                waiting_for: planned.waiting_for,
                members,
            };
        }
        for step in planned.steps {
            actions.push(perform(step, &mut members, &mut policy));
        }
    }
    Simulation {
        actions,
        waiting_for: "a rollout that does not converge".to_string(),
        members,
    }
}

/// Lets updated unready members become ready; `false` when there is none.
fn settle(members: &mut [MemberState]) -> bool {
    let mut any = false;
    for m in members.iter_mut().filter(|m| m.updated && !m.ready) {
        (m.ready, m.ready_seconds, m.unready_seconds) = (true, SETTLED, 0);
        any = true;
    }
    any
}

/// One planner step and its expected outcome.
fn perform(step: Step, members: &mut [MemberState], policy: &mut Policy) -> Action {
    match step {
        Step::Update { ordinal } => {
            let mut role = None;
            for m in members.iter_mut().filter(|m| m.ordinal == ordinal) {
                role.clone_from(&m.role);
                m.updated = true;
                (m.ready, m.ready_seconds, m.unready_seconds) = (true, SETTLED, 0);
            }
            Action::Update { ordinal, role }
        }
        Step::Switchover { from } => {
            let Some(to) = rollout::switchover_target(members, from, &policy.roles) else {
                policy.switchover = false;
                return Action::NoSwitchover { from };
            };
            let role_of = |o: i32| members.iter().find(|m| m.ordinal == o)?.role.clone();
            let (role_from, role_to) = (role_of(from), role_of(to));
            for m in members.iter_mut() {
                if m.ordinal == from {
                    m.role.clone_from(&role_to);
                } else if m.ordinal == to {
                    m.role.clone_from(&role_from);
                }
            }
            Action::Switchover { from, to }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{RoleSpec, UpdateStrategy};

    fn member(ordinal: i32, ready: bool, role: &str) -> MemberState {
        MemberState {
            ordinal,
            updated: false,
            ready,
            role: Some(role.to_string()).filter(|r| !r.is_empty()),
            unready_seconds: 0,
            ready_seconds: if ready { SETTLED } else { 0 },
        }
    }

    fn policy(strategy: UpdateStrategy, switchover: bool) -> Policy {
        let roles: Vec<RoleSpec> =
            serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#)
                .unwrap();
        Policy {
            strategy,
            partition: 0,
            max_unavailable: 1,
            roles,
            switchover,
            progress_deadline_seconds: 600,
            min_ready_seconds: 0,
            update_leader_without_switchover: false,
        }
    }

    fn update(ordinal: i32, role: &str) -> Action {
        Action::Update {
            ordinal,
            role: Some(role.to_string()),
        }
    }

    #[test]
    fn role_aware_updates_followers_switches_over_then_updates_the_old_leader() {
        let members = [
            member(0, true, "leader"),
            member(1, true, "follower"),
            member(2, true, "follower"),
        ];
        let s = simulate(&members, &policy(UpdateStrategy::RoleAware, true));
        assert_eq!(
            s.actions,
            [
                update(2, "follower"),
                update(1, "follower"),
                Action::Switchover { from: 0, to: 2 },
                update(0, "follower"),
            ]
        );
        assert!(s.waiting_for.is_empty());
        assert_eq!(s.members[2].role.as_deref(), Some("leader"));
    }

    #[test]
    fn without_a_switchover_the_leader_goes_last() {
        let members = [member(0, true, "follower"), member(1, true, "leader")];
        let s = simulate(&members, &policy(UpdateStrategy::RoleAware, false));
        assert_eq!(s.actions, [update(0, "follower"), update(1, "leader")]);
    }

    #[test]
    fn an_unready_member_below_the_partition_blocks_the_rollout() {
        let members = [
            member(0, false, ""),
            member(1, true, ""),
            member(2, true, ""),
        ];
        let mut p = policy(UpdateStrategy::Ordered, false);
        p.partition = 1;
        let s = simulate(&members, &p);
        assert!(s.actions.is_empty());
        assert_eq!(s.waiting_for, "unavailable members to become ready");
    }
}
