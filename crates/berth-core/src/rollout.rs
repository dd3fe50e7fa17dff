//! The rollout planner: which members to update next, and when to switch a leader over, as a
//! pure function of the members' observed state and the part's update policy. Both engines
//! perform its steps: the operator deletes (or patches) pods, the local engine restarts processes.
//!
//! Rules, whatever the policy:
//! - members below `partition` keep their revision (canary);
//! - at most `maxUnavailable` members are down at once, counting those already unready;
//! - voting members down never exceed what keeps a majority of the voting members up;
//! - a member that is already unready and outdated may always be replaced: replacing it takes
//!   nothing more down, and it is how a rollout stuck on a broken revision recovers once the spec
//!   is fixed (kubernetes#67250);
//! - an updated member ready for less than `minReadySeconds` is not yet available: it counts as
//!   down.

use crate::spec::{RoleSpec, UpdateStrategy};

/// What the planner knows of one member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberState {
    /// Its ordinal.
    pub ordinal: i32,
    /// Whether it runs the revision being rolled out.
    pub updated: bool,
    /// Whether it is ready.
    pub ready: bool,
    /// Its current role, if detected.
    pub role: Option<String>,
    /// Seconds it has been unready (0 when ready).
    pub unready_seconds: u64,
    /// Seconds it has been ready (0 when unready).
    pub ready_seconds: u64,
}

/// The policy, resolved from the part's spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The update order (never `Auto`: see [`Policy::resolve`]).
    pub strategy: UpdateStrategy,
    /// Members with a lower ordinal are not updated.
    pub partition: i32,
    /// Members that may be down at once.
    pub max_unavailable: i32,
    /// The part's roles.
    pub roles: Vec<RoleSpec>,
    /// Whether the part declares a switchover action.
    pub switchover: bool,
    /// Seconds an updated member may stay unready before the rollout is degraded.
    pub progress_deadline_seconds: u64,
    /// Seconds a member must have been ready to count as available.
    pub min_ready_seconds: u64,
    /// After a failed switchover, update the leader without one (`onSwitchoverFailure:
    /// UpdateLeader`; see [`crate::lifecycle`]).
    pub update_leader_without_switchover: bool,
}

/// One thing to do now.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Move leadership away from this member before it is updated.
    Switchover {
        /// The current leader.
        from: i32,
    },
    /// Bring this member to the new revision (restart, recreate or patch in place).
    Update {
        /// The member.
        ordinal: i32,
    },
}

/// The planner's answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to do now, in order.
    pub steps: Vec<Step>,
    /// Every member at or above the partition runs the new revision and is ready.
    pub complete: bool,
    /// Updated members unready past the progress deadline.
    pub stuck: Vec<i32>,
    /// Why nothing more is done now (empty when steps were planned or the rollout is complete).
    pub waiting_for: String,
}

impl Policy {
    /// The policy of `part` when it should run `replicas` members: both engines pass the part's
    /// wanted size, which `maxUnavailable` percentages resolve against.
    pub fn for_part(part: &crate::spec::PartSpec, replicas: i32) -> Self {
        let topology = &part.state.topology;
        Self::resolve(
            &part.update,
            topology,
            replicas,
            topology.switchover().is_some(),
        )
    }

    /// The policy of a part with `replicas` members.
    pub fn resolve(
        update: &crate::spec::UpdatePolicy,
        topology: &crate::spec::TopologyState,
        replicas: i32,
        switchover: bool,
    ) -> Self {
        let strategy = match update.strategy {
            UpdateStrategy::Auto if !topology.roles.is_empty() => UpdateStrategy::RoleAware,
            UpdateStrategy::Auto => UpdateStrategy::Ordered,
            other => other,
        };
        Self {
            strategy,
            partition: update.partition.unwrap_or(0),
            max_unavailable: absolute(update.max_unavailable.as_ref(), replicas),
            roles: topology.roles.clone(),
            switchover,
            progress_deadline_seconds: update
                .progress_deadline_seconds
                .and_then(|s| u64::try_from(s).ok())
                .unwrap_or(crate::lifecycle::DEFAULT_PROGRESS_DEADLINE_SECONDS),
            min_ready_seconds: update
                .min_ready_seconds
                .map_or(0, |s| u64::try_from(s).unwrap_or(0)),
            update_leader_without_switchover: update.on_switchover_failure
                == crate::spec::SwitchoverFailurePolicy::UpdateLeader,
        }
    }

    fn role(&self, name: Option<&str>) -> Option<&RoleSpec> {
        name.and_then(|n| self.roles.iter().find(|r| r.name == n))
    }

    fn is_voting(&self, member: &MemberState) -> bool {
        self.role(member.role.as_deref()).is_none_or(|r| r.voting)
    }

    fn is_writable(&self, member: &MemberState) -> bool {
        self.role(member.role.as_deref())
            .is_some_and(|r| r.writable)
    }

    /// Role-aware rank: lower goes first. Declared `updateOrder` wins; else non-voting members,
    /// then the rest, then writable ones (the leader) last.
    fn rank(&self, member: &MemberState) -> i32 {
        match self.role(member.role.as_deref()) {
            Some(RoleSpec {
                update_order: Some(order),
                ..
            }) => *order,
            Some(r) if !r.voting => 0,
            Some(r) if r.writable => 2,
            _ => 1,
        }
    }
}

/// `maxUnavailable` as a member count (at least 1).
fn absolute(
    value: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    replicas: i32,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(p)) => {
            let percent: i32 = p.trim_end_matches('%').parse().unwrap_or(0);
            replicas * percent / 100
        }
    };
    n.max(1)
}

/// The members as the planner counts them: an updated one ready for less than
/// `minReadySeconds` is not yet available, so it counts as down (but not as unready for the
/// progress deadline). An outdated one serves already: taking it down costs availability, so it
/// is not one of the unready members that may always be replaced.
fn available(members: &[MemberState], policy: &Policy) -> Vec<MemberState> {
    members
        .iter()
        .map(|m| MemberState {
            ready: m.ready && (!m.updated || m.ready_seconds >= policy.min_ready_seconds),
            ..m.clone()
        })
        .collect()
}

/// Plans the next steps of a rollout.
pub fn plan(members: &[MemberState], policy: &Policy) -> Plan {
    let members = available(members, policy);
    let mut sorted: Vec<&MemberState> = members.iter().collect();
    sorted.sort_by_key(|m| m.ordinal);
    let stuck: Vec<i32> = sorted
        .iter()
        .filter(|m| m.updated && !m.ready && m.unready_seconds > policy.progress_deadline_seconds)
        .map(|m| m.ordinal)
        .collect();
    let outdated: Vec<&MemberState> = sorted
        .iter()
        .copied()
        .filter(|m| m.ordinal >= policy.partition && !m.updated)
        .collect();
    if outdated.is_empty() {
        return finished(&sorted, stuck, policy);
    }
    if policy.strategy == UpdateStrategy::OnDelete {
        return Plan {
            stuck,
            waiting_for: "members to be deleted by hand (OnDelete)".into(),
            ..Plan::default()
        };
    }
    let steps = next_steps(&sorted, &outdated, policy);
    let waiting_for = if steps.is_empty() {
        "unavailable members to become ready".to_string()
    } else {
        String::new()
    };
    Plan {
        steps,
        complete: false,
        stuck,
        waiting_for,
    }
}

/// The plan once no member at or above the partition is outdated: complete when they are all
/// ready.
fn finished(sorted: &[&MemberState], stuck: Vec<i32>, policy: &Policy) -> Plan {
    let complete = sorted
        .iter()
        .filter(|m| m.ordinal >= policy.partition)
        .all(|m| m.ready);
    let waiting_for = if complete {
        String::new()
    } else {
        "updated members to become ready".to_string()
    };
    Plan {
        steps: Vec::new(),
        complete,
        stuck,
        waiting_for,
    }
}

/// The steps to take now among the `outdated` members, in update order, within the budget of
/// members that may be down; the writable member only last, after a switchover if one can run.
fn next_steps(sorted: &[&MemberState], outdated: &[&MemberState], policy: &Policy) -> Vec<Step> {
    let mut budget = Budget::new(sorted, policy);
    let mut steps = Vec::new();
    for member in update_order(outdated, policy) {
        if policy.strategy == UpdateStrategy::RoleAware && policy.is_writable(member) {
            let others_outdated = outdated.iter().any(|m| m.ordinal != member.ordinal);
            if others_outdated || !steps.is_empty() {
                break;
            }
            if policy.switchover && member.ready && has_ready_successor(sorted, member, policy) {
                // Members restarting now would follow the old leader: wait until all serve.
                if sorted
                    .iter()
                    .all(|m| m.ordinal == member.ordinal || m.ready)
                {
                    steps.push(Step::Switchover {
                        from: member.ordinal,
                    });
                }
                break;
            }
        }
        if !budget.take(member, policy) {
            break;
        }
        steps.push(Step::Update {
            ordinal: member.ordinal,
        });
        if policy.strategy != UpdateStrategy::Parallel && member.ready {
            break;
        }
    }
    steps
}

/// Outdated members in the order they should be updated; unready ones first, since replacing
/// them costs no availability.
fn update_order<'a>(outdated: &[&'a MemberState], policy: &Policy) -> Vec<&'a MemberState> {
    let mut order = outdated.to_vec();
    match policy.strategy {
        UpdateStrategy::RoleAware => order.sort_by_key(|m| (m.ready, policy.rank(m), -m.ordinal)),
        _ => order.sort_by_key(|m| (m.ready, -m.ordinal)),
    }
    order
}

/// A member that could take over leadership: ready, voting and already updated.
fn has_ready_successor(members: &[&MemberState], leader: &MemberState, policy: &Policy) -> bool {
    let members: Vec<MemberState> = members.iter().map(|m| (*m).clone()).collect();
    switchover_target(&members, leader.ordinal, &policy.roles).is_some()
}

/// The member a switchover away from `from` should hand leadership to: a ready, voting member
/// already on the new revision; the highest ordinal among them (the first one updated).
pub fn switchover_target(members: &[MemberState], from: i32, roles: &[RoleSpec]) -> Option<i32> {
    let voting = |m: &MemberState| {
        let role = m.role.as_deref();
        roles
            .iter()
            .find(|r| Some(r.name.as_str()) == role)
            .is_none_or(|r| r.voting)
    };
    members
        .iter()
        .filter(|m| m.ordinal != from && m.ready && m.updated && voting(m))
        .map(|m| m.ordinal)
        .max()
}

/// How many more members (and voting members) may go down.
struct Budget {
    down: i32,
    voting_down: i32,
    max_down: i32,
    max_voting_down: i32,
    /// Ordinals in the rollout's sequential mode (Ordered / RoleAware) must wait for any
    /// unavailable member, not just respect the count.
    sequential: bool,
}

impl Budget {
    fn new(members: &[&MemberState], policy: &Policy) -> Self {
        let voting = members.iter().filter(|m| policy.is_voting(m)).count() as i32;
        // With one or two voting members no update keeps a majority up; one at a time is the
        // least bad.
        let max_voting_down = if voting <= 2 {
            1
        } else {
            voting - (voting / 2 + 1)
        };
        Self {
            down: members.iter().filter(|m| !m.ready).count() as i32,
            voting_down: members
                .iter()
                .filter(|m| !m.ready && policy.is_voting(m))
                .count() as i32,
            max_down: if policy.strategy == UpdateStrategy::Parallel {
                policy.max_unavailable
            } else {
                1
            },
            max_voting_down,
            sequential: policy.strategy != UpdateStrategy::Parallel,
        }
    }

    /// Whether `member` may be taken down now; records it when so.
    fn take(&mut self, member: &MemberState, policy: &Policy) -> bool {
        if !member.ready {
            return true;
        }
        let voting = policy.is_voting(member);
        let allowed = self.down < self.max_down
            && (!voting || self.voting_down < self.max_voting_down)
            && !(self.sequential && self.down > 0);
        if allowed {
            self.down += 1;
            if voting {
                self.voting_down += 1;
            }
        }
        allowed
    }
}
