//! Property tests of the membership planner (scaling with memberJoin/memberLeave): with an
//! action declared the size moves one member at a time towards the wanted size; a join needs
//! every current member ready; an action never runs in its own subject, in an unready member, or
//! (for a leave) in a member that is leaving; without actions, from zero or to zero the wanted
//! size comes at once; and a simulated scale always reaches the wanted size.

use berth_core::membership::{Actions, Change, ScalePlan, plan};
use berth_core::rollout::MemberState;
use berth_core::spec::RoleSpec;
use proptest::prelude::*;

fn roles() -> Vec<RoleSpec> {
    serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#).unwrap()
}

fn group(ready: &[bool], leader: usize) -> Vec<MemberState> {
    ready
        .iter()
        .enumerate()
        .map(|(i, r)| MemberState {
            ordinal: i32::try_from(i).unwrap(),
            updated: true,
            ready: *r,
            role: Some(if i == leader { "leader" } else { "follower" }.to_string()),
            unready_seconds: 0,
            ready_seconds: 0,
        })
        .collect()
}

prop_compose! {
    fn scene()(current in 0usize..7, desired in 0i32..7)(
        ready in prop::collection::vec(prop::bool::weighted(0.8), current),
        leader in 0..current.max(1),
        desired in Just(desired),
        join in any::<bool>(),
        leave in any::<bool>(),
    ) -> (Vec<MemberState>, i32, Actions) {
        (group(&ready, leader), desired, Actions { join, leave })
    }
}

fn size(members: &[MemberState]) -> i32 {
    i32::try_from(members.len()).unwrap()
}

fn ready_member(members: &[MemberState], ordinal: i32) -> bool {
    members.iter().any(|m| m.ordinal == ordinal && m.ready)
}

proptest! {
    #[test]
    fn the_size_moves_by_one_with_actions_and_at_once_without(
        (members, desired, actions) in scene()
    ) {
        let current = size(&members);
        let p: ScalePlan = plan(current, desired, &members, &roles(), actions);
        let managed = current > 0
            && desired > 0
            && ((desired > current && actions.join) || (desired < current && actions.leave));
        if managed {
            prop_assert!((p.replicas - current).abs() <= 1);
            prop_assert!((p.replicas - desired).abs() <= (current - desired).abs());
            prop_assert_eq!(p.change.is_some(), p.replicas != current);
        } else {
            prop_assert_eq!(p.replicas, desired);
            prop_assert_eq!(p.change, None);
        }
    }

    #[test]
    fn actions_run_in_a_ready_member_that_is_not_their_subject(
        (members, desired, actions) in scene()
    ) {
        let current = size(&members);
        match plan(current, desired, &members, &roles(), actions).change {
            Some(Change::Join { ordinal, run_in }) => {
                prop_assert_eq!(ordinal, current);
                prop_assert!((0..current).all(|o| ready_member(&members, o)), "a join waits for every member");
                prop_assert!(ready_member(&members, run_in) && run_in != ordinal);
            }
            Some(Change::Leave { ordinal, run_in }) => {
                prop_assert_eq!(ordinal, current - 1, "members leave from the top");
                prop_assert!(ready_member(&members, run_in) && run_in < ordinal);
            }
            None => {}
        }
    }

    #[test]
    fn a_simulated_scale_reaches_the_wanted_size((members, desired, actions) in scene()) {
        // Every member that runs becomes ready; each step either admits a size or waits on
        // members that then become ready.
        let mut members: Vec<MemberState> = members.into_iter().map(|m| MemberState { ready: true, ..m }).collect();
        for _ in 0..20 {
            let current = size(&members);
            if current == desired {
                break;
            }
            let p = plan(current, desired, &members, &roles(), actions);
            members = group(&vec![true; usize::try_from(p.replicas).unwrap()], 0);
        }
        prop_assert_eq!(size(&members), desired);
    }
}
