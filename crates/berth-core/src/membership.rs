//! Membership changes when a part scales and declares `memberJoin` / `memberLeave`: a pure
//! function of the members and the wanted size that says how many members to run now and which
//! action to run first. Members join one at a time, each only once every existing member is ready,
//! and leave one at a time from the highest ordinal; the action runs in a ready member that stays
//! (the writable one, i.e. the leader, when there is one). An app's templates see the admitted
//! size, so a joining member is told exactly the members the running ones know (etcd refuses a
//! member whose initial cluster lists members not yet added).
//!
//! Without the action for a direction, the part simply takes the wanted size at once (the peer
//! list follows by re-rendering, and members restart to read it); so does a part scaled from or
//! to zero members.

use crate::rollout::MemberState;
use crate::spec::RoleSpec;

/// An action to run before the size changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Run `memberJoin` in member `run_in` for the new member `ordinal`, then start it.
    Join {
        /// The joining member.
        ordinal: i32,
        /// Where the action runs.
        run_in: i32,
    },
    /// Run `memberLeave` in member `run_in` for member `ordinal`, then stop it.
    Leave {
        /// The leaving member.
        ordinal: i32,
        /// Where the action runs.
        run_in: i32,
    },
}

/// What to do about a part's size now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScalePlan {
    /// The size to run once `change` (if any) has succeeded.
    pub replicas: i32,
    /// The action to run first.
    pub change: Option<Change>,
    /// Why the size does not move now (empty when it does or nothing is to do).
    pub waiting_for: String,
}

/// Which actions a part declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Actions {
    /// `memberJoin` is declared.
    pub join: bool,
    /// `memberLeave` is declared.
    pub leave: bool,
}

/// Plans the next size of a part running `current` members (`members`: their states) that
/// should run `desired`.
pub fn plan(
    current: i32,
    desired: i32,
    members: &[MemberState],
    roles: &[RoleSpec],
    actions: Actions,
) -> ScalePlan {
    // From zero there is nobody to run a join: the first members form the group together. To
    // zero there is nobody left to tell: the group simply stops.
    if desired == current
        || current == 0
        || desired == 0
        || (desired > current && !actions.join)
        || (desired < current && !actions.leave)
    {
        return waiting(desired, String::new());
    }
    if desired > current {
        join_next(current, members, roles)
    } else {
        leave_next(current, members, roles)
    }
}

/// The next member to join a part running `current` members: after every one of them is ready.
fn join_next(current: i32, members: &[MemberState], roles: &[RoleSpec]) -> ScalePlan {
    let present = |o: i32| members.iter().any(|m| m.ordinal == o && m.ready);
    if let Some(missing) = (0..current).find(|o| !present(*o)) {
        return waiting(
            current,
            format!("member {missing} to be ready before member {current} joins"),
        );
    }
    let Some(run_in) = action_member(members, current, roles) else {
        return waiting(current, "a ready member to run memberJoin".into());
    };
    ScalePlan {
        replicas: current + 1,
        change: Some(Change::Join {
            ordinal: current,
            run_in,
        }),
        waiting_for: String::new(),
    }
}

/// The next member to leave a part running `current` members: the highest, its memberLeave run
/// in a ready member that stays.
fn leave_next(current: i32, members: &[MemberState], roles: &[RoleSpec]) -> ScalePlan {
    let leaving = current - 1;
    let staying: Vec<MemberState> = members
        .iter()
        .filter(|m| m.ordinal < leaving)
        .cloned()
        .collect();
    let Some(run_in) = action_member(&staying, leaving, roles) else {
        return waiting(
            current,
            format!("a ready member to run memberLeave for member {leaving}"),
        );
    };
    ScalePlan {
        replicas: leaving,
        change: Some(Change::Leave {
            ordinal: leaving,
            run_in,
        }),
        waiting_for: String::new(),
    }
}

/// Run `current` members, waiting for `why` (empty: nothing to wait for).
fn waiting(current: i32, why: String) -> ScalePlan {
    ScalePlan {
        replicas: current,
        change: None,
        waiting_for: why,
    }
}

/// The member a membership action runs in: a ready member other than `subject`, the writable
/// one (the leader) when there is one, else the lowest ordinal.
pub fn action_member(members: &[MemberState], subject: i32, roles: &[RoleSpec]) -> Option<i32> {
    let writable = |m: &MemberState| {
        roles
            .iter()
            .any(|r| r.writable && Some(r.name.as_str()) == m.role.as_deref())
    };
    let ready: Vec<&MemberState> = members
        .iter()
        .filter(|m| m.ready && m.ordinal != subject)
        .collect();
    ready
        .iter()
        .find(|m| writable(m))
        .or_else(|| ready.iter().min_by_key(|m| m.ordinal))
        .map(|m| m.ordinal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(ordinal: i32, ready: bool, role: &str) -> MemberState {
        MemberState {
            ordinal,
            updated: true,
            ready,
            role: (!role.is_empty()).then(|| role.to_string()),
            unready_seconds: 0,
            ready_seconds: 0,
        }
    }

    fn roles() -> Vec<RoleSpec> {
        serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#)
            .unwrap()
    }

    const BOTH: Actions = Actions {
        join: true,
        leave: true,
    };

    #[test]
    fn without_actions_the_size_changes_at_once() {
        let members = [
            member(0, true, ""),
            member(1, true, ""),
            member(2, true, ""),
        ];
        assert_eq!(plan(3, 5, &members, &[], Actions::default()).replicas, 5);
        assert_eq!(plan(3, 1, &members, &[], Actions::default()).replicas, 1);
        let join_only = Actions {
            join: true,
            leave: false,
        };
        assert_eq!(plan(3, 1, &members, &[], join_only).replicas, 1);
    }

    #[test]
    fn members_join_one_at_a_time_through_the_leader() {
        let members = [
            member(0, true, "follower"),
            member(1, true, "leader"),
            member(2, true, "follower"),
        ];
        let p = plan(3, 5, &members, &roles(), BOTH);
        assert_eq!(p.replicas, 4);
        assert_eq!(
            p.change,
            Some(Change::Join {
                ordinal: 3,
                run_in: 1
            })
        );
    }

    #[test]
    fn a_join_waits_for_every_member_to_be_ready() {
        let members = [
            member(0, true, ""),
            member(1, true, ""),
            member(2, true, ""),
            member(3, false, ""),
        ];
        let p = plan(4, 5, &members, &roles(), BOTH);
        assert_eq!((p.replicas, p.change), (4, None));
        assert_eq!(p.waiting_for, "member 3 to be ready before member 4 joins");
    }

    #[test]
    fn members_leave_from_the_top_through_a_member_that_stays() {
        let members = [
            member(0, true, "follower"),
            member(1, true, "follower"),
            member(2, true, "follower"),
            member(3, true, "follower"),
            member(4, true, "leader"),
        ];
        let p = plan(5, 3, &members, &roles(), BOTH);
        assert_eq!(p.replicas, 4);
        assert_eq!(
            p.change,
            Some(Change::Leave {
                ordinal: 4,
                run_in: 0
            }),
            "the leader is leaving, so the lowest ready member runs the action"
        );
    }

    #[test]
    fn the_action_runs_in_a_ready_member_other_than_its_subject() {
        let members = [
            member(0, true, "follower"),
            member(1, true, "leader"),
            member(2, true, "follower"),
        ];
        assert_eq!(action_member(&members, 3, &roles()), Some(1));
        assert_eq!(
            action_member(&members, 1, &roles()),
            Some(0),
            "not the subject"
        );
        let unready_leader = [member(2, true, "follower"), member(1, false, "leader")];
        assert_eq!(action_member(&unready_leader, 3, &roles()), Some(2));
        assert_eq!(
            action_member(&[member(0, false, "leader")], 1, &roles()),
            None
        );
        assert_eq!(action_member(&[], 0, &roles()), None);
    }

    #[test]
    fn a_leave_needs_a_ready_member_that_stays() {
        let members = [member(0, false, ""), member(1, true, "")];
        let p = plan(2, 1, &members, &roles(), BOTH);
        assert_eq!((p.replicas, p.change), (2, None));
    }
}
