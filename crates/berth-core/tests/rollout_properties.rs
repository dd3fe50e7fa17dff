//! Property tests of the rollout planner: every plan respects maxUnavailable, quorum and the
//! partition; role-aware plans update the leader last, after a switchover when one is declared;
//! the plan is a pure function; and a simulated rollout always completes.

use berth_core::rollout::{MemberState, Plan, Policy, Step, plan};
use berth_core::spec::{RoleSpec, UpdateStrategy};
use proptest::prelude::*;

fn roles() -> Vec<RoleSpec> {
    let role = |name: &str, writable, voting| RoleSpec {
        name: name.into(),
        writable,
        voting,
        update_order: None,
    };
    vec![
        role("leader", true, true),
        role("follower", false, true),
        role("observer", false, false),
    ]
}

fn is_leader(m: &MemberState) -> bool {
    m.role.as_deref() == Some("leader")
}

fn is_voting(m: &MemberState) -> bool {
    m.role.as_deref() != Some("observer")
}

prop_compose! {
    fn members()(n in 1usize..8)(
        updated in prop::collection::vec(any::<bool>(), n),
        ready in prop::collection::vec(prop::bool::weighted(0.8), n),
        observers in prop::collection::vec(prop::bool::weighted(0.2), n),
        leader in 0..n,
        has_leader in any::<bool>(),
    ) -> Vec<MemberState> {
        (0..updated.len()).map(|i| MemberState {
            ordinal: i as i32,
            updated: updated[i],
            ready: ready[i],
            role: Some(if has_leader && i == leader { "leader" } else if observers[i] { "observer" } else { "follower" }.to_string()),
            unready_seconds: if ready[i] { 0 } else { 30 },
            ready_seconds: if ready[i] { 3600 } else { 0 },
        }).collect()
    }
}

prop_compose! {
    fn policy(n: usize)(
        strategy in prop::sample::select(vec![UpdateStrategy::RoleAware, UpdateStrategy::Ordered, UpdateStrategy::Parallel]),
        partition in 0..=(n as i32),
        max_unavailable in 1..=(n as i32).max(1),
        switchover in any::<bool>(),
    ) -> Policy {
        Policy { strategy, partition, max_unavailable, roles: roles(), switchover, progress_deadline_seconds: 600, min_ready_seconds: 0, update_leader_without_switchover: false }
    }
}

fn updates(p: &Plan) -> Vec<i32> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Step::Update { ordinal } => Some(*ordinal),
            _ => None,
        })
        .collect()
}

fn allowed_down(policy: &Policy) -> usize {
    if policy.strategy == UpdateStrategy::Parallel {
        policy.max_unavailable as usize
    } else {
        1
    }
}

fn max_voting_down(members: &[MemberState]) -> usize {
    let voting = members.iter().filter(|m| is_voting(m)).count();
    if voting <= 2 {
        1
    } else {
        voting - (voting / 2 + 1)
    }
}

fn case() -> impl Strategy<Value = (Vec<MemberState>, Policy)> {
    members().prop_flat_map(|m| {
        let n = m.len();
        (Just(m), policy(n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_plan_is_a_pure_function((members, policy) in case()) {
        prop_assert_eq!(plan(&members, &policy), plan(&members, &policy));
    }

    #[test]
    fn only_outdated_members_at_or_above_the_partition_are_updated_once((members, policy) in case()) {
        let p = plan(&members, &policy);
        let ups = updates(&p);
        for o in &ups {
            let m = &members[*o as usize];
            prop_assert!(m.ordinal >= policy.partition, "updated {} below partition {}", o, policy.partition);
            prop_assert!(!m.updated);
        }
        let mut dedup = ups.clone();
        dedup.dedup();
        prop_assert_eq!(dedup.len(), ups.len());
    }

    #[test]
    fn never_more_than_max_unavailable_down((members, policy) in case()) {
        let p = plan(&members, &policy);
        let down_before = members.iter().filter(|m| !m.ready).count();
        let taken_down = updates(&p).iter().filter(|o| members[**o as usize].ready).count();
        prop_assert!(taken_down == 0 || down_before + taken_down <= allowed_down(&policy),
            "{down_before} down + {taken_down} taken > {}", allowed_down(&policy));
    }

    #[test]
    fn voting_members_down_keep_a_majority((members, policy) in case()) {
        let p = plan(&members, &policy);
        let before = members.iter().filter(|m| !m.ready && is_voting(m)).count();
        let taken = updates(&p).iter().filter(|o| { let m = &members[**o as usize]; m.ready && is_voting(m) }).count();
        prop_assert!(taken == 0 || before + taken <= max_voting_down(&members));
    }

    #[test]
    fn role_aware_updates_the_leader_last_and_after_a_switchover((members, policy) in case()) {
        let policy = Policy { strategy: UpdateStrategy::RoleAware, ..policy };
        let p = plan(&members, &policy);
        for o in updates(&p) {
            let m = &members[o as usize];
            if is_leader(m) {
                let others_outdated = members.iter().any(|x| x.ordinal != o && x.ordinal >= policy.partition && !x.updated);
                prop_assert!(!others_outdated, "leader {} updated while others are outdated", o);
                let successor = members.iter().any(|x| x.ordinal != o && x.ready && x.updated && is_voting(x));
                prop_assert!(!(policy.switchover && m.ready && successor), "leader {} updated without a switchover", o);
            }
        }
        if let Some(Step::Switchover { from }) = p.steps.first() {
            prop_assert!(is_leader(&members[*from as usize]));
            prop_assert_eq!(p.steps.len(), 1);
        }
    }

    #[test]
    fn a_switchover_waits_until_every_other_member_serves((members, policy) in case()) {
        let policy = Policy { strategy: UpdateStrategy::RoleAware, ..policy };
        let p = plan(&members, &policy);
        if let Some(Step::Switchover { from }) = p.steps.first() {
            let serving = |m: &MemberState| m.ready && (!m.updated || m.ready_seconds >= policy.min_ready_seconds);
            let others_serve = members.iter().all(|m| m.ordinal == *from || serving(m));
            prop_assert!(others_serve, "switchover from {} while a member restarts: {:?}", from, members);
        }
    }

    #[test]
    fn a_simulated_rollout_completes_with_the_leader_last((members, policy) in case()) {
        let mut members = members;
        for m in &mut members { m.ready = true; m.unready_seconds = 0; }
        let mut leader_updated_at = None;
        let mut history = Vec::new();
        for round in 0..100 {
            let p = plan(&members, &policy);
            if p.complete { break; }
            prop_assert!(!p.steps.is_empty() || members.iter().any(|m| !m.ready), "stalled: {p:?} {members:?}");
            for m in &mut members { m.ready = true; }
            for step in &p.steps {
                history.push(step.clone());
                match step {
                    Step::Update { ordinal } => {
                        let m = &mut members[*ordinal as usize];
                        if is_leader(m) { leader_updated_at = Some(round); }
                        m.updated = true;
                        m.ready = false;
                    }
                    Step::Switchover { from } => {
                        let to = members.iter().position(|m| m.ordinal != *from && m.updated && is_voting(m)).expect("a successor");
                        members[*from as usize].role = Some("follower".into());
                        members[to].role = Some("leader".into());
                    }
                }
            }
            prop_assert!(round < 99, "did not complete: {history:?}");
        }
        let outdated = members.iter().filter(|m| m.ordinal >= policy.partition && !m.updated).count();
        prop_assert_eq!(outdated, 0);
        if policy.strategy == UpdateStrategy::RoleAware && leader_updated_at.is_some() {
            let last_update = history.iter().rev().find(|s| matches!(s, Step::Update { .. }));
            let last_is_update = matches!(last_update, Some(Step::Update { .. }));
            prop_assert!(last_is_update, "the last step is not an update");
        }
    }
}

fn member(ordinal: i32, updated: bool, ready: bool, role: &str) -> MemberState {
    MemberState {
        ordinal,
        updated,
        ready,
        role: Some(role.into()),
        unready_seconds: if ready { 0 } else { 900 },
        ready_seconds: if ready { 3600 } else { 0 },
    }
}

#[test]
fn role_aware_goes_observer_then_followers_then_switchover() {
    let policy = Policy {
        strategy: UpdateStrategy::RoleAware,
        partition: 0,
        max_unavailable: 1,
        roles: roles(),
        switchover: true,
        progress_deadline_seconds: 600,
        min_ready_seconds: 0,
        update_leader_without_switchover: false,
    };
    let members = vec![
        member(0, false, true, "leader"),
        member(1, false, true, "follower"),
        member(2, false, true, "follower"),
        member(3, false, true, "observer"),
    ];
    assert_eq!(
        plan(&members, &policy).steps,
        vec![Step::Update { ordinal: 3 }]
    );
    let members = vec![
        member(0, false, true, "leader"),
        member(1, false, true, "follower"),
        member(2, false, true, "follower"),
        member(3, true, true, "observer"),
    ];
    assert_eq!(
        plan(&members, &policy).steps,
        vec![Step::Update { ordinal: 2 }]
    );
    let members = vec![
        member(0, false, true, "leader"),
        member(1, true, true, "follower"),
        member(2, true, true, "follower"),
        member(3, true, true, "observer"),
    ];
    assert_eq!(
        plan(&members, &policy).steps,
        vec![Step::Switchover { from: 0 }]
    );
    let members = vec![
        member(0, false, true, "follower"),
        member(1, true, true, "leader"),
        member(2, true, true, "follower"),
        member(3, true, true, "observer"),
    ];
    assert_eq!(
        plan(&members, &policy).steps,
        vec![Step::Update { ordinal: 0 }]
    );
}

#[test]
fn ordered_goes_from_the_highest_ordinal_one_at_a_time() {
    let policy = Policy {
        strategy: UpdateStrategy::Ordered,
        partition: 1,
        max_unavailable: 3,
        roles: vec![],
        switchover: false,
        progress_deadline_seconds: 600,
        min_ready_seconds: 0,
        update_leader_without_switchover: false,
    };
    let members: Vec<_> = (0..4)
        .map(|i| MemberState {
            ordinal: i,
            updated: false,
            ready: true,
            role: None,
            unready_seconds: 0,
            ready_seconds: 3600,
        })
        .collect();
    assert_eq!(
        plan(&members, &policy).steps,
        vec![Step::Update { ordinal: 3 }]
    );
}

#[test]
fn a_stuck_member_is_reported_and_replaced_once_the_spec_is_fixed() {
    let policy = Policy {
        strategy: UpdateStrategy::Ordered,
        partition: 0,
        max_unavailable: 1,
        roles: vec![],
        switchover: false,
        progress_deadline_seconds: 600,
        min_ready_seconds: 0,
        update_leader_without_switchover: false,
    };
    let broken = vec![
        member(0, false, true, "x"),
        member(1, false, true, "x"),
        member(2, true, false, "x"),
    ];
    let p = plan(&broken, &policy);
    assert_eq!(p.stuck, vec![2]);
    assert!(
        p.steps.is_empty(),
        "nothing more goes down while member 2 is broken: {p:?}"
    );
    // The spec is fixed: a new revision; member 2 is now outdated and unready, and is replaced.
    let fixed = vec![
        member(0, false, true, "x"),
        member(1, false, true, "x"),
        member(2, false, false, "x"),
    ];
    assert_eq!(
        plan(&fixed, &policy).steps,
        vec![Step::Update { ordinal: 2 }]
    );
}

fn ordered(min_ready_seconds: u64) -> Policy {
    Policy {
        strategy: UpdateStrategy::Ordered,
        partition: 0,
        max_unavailable: 1,
        roles: vec![],
        switchover: false,
        progress_deadline_seconds: 600,
        min_ready_seconds,
        update_leader_without_switchover: false,
    }
}

#[test]
fn the_next_member_waits_until_the_updated_one_has_been_ready_min_ready_seconds() {
    let members = |ready_seconds: u64| {
        let mut m: Vec<MemberState> = (0..3)
            .map(|i| MemberState {
                ordinal: i,
                updated: i == 2,
                ready: true,
                role: None,
                unready_seconds: 0,
                ready_seconds: 3600,
            })
            .collect();
        m[2].ready_seconds = ready_seconds;
        m
    };
    let young = plan(&members(2), &ordered(5));
    assert!(young.steps.is_empty(), "{young:?}");
    assert!(!young.complete && young.stuck.is_empty());
    assert_eq!(updates(&plan(&members(5), &ordered(5))), [1]);
    assert_eq!(updates(&plan(&members(0), &ordered(0))), [1], "0: no wait");
}

proptest! {
    /// An updated member ready for less than minReadySeconds counts exactly like an unready one
    /// (that has not been unready long enough to be stuck).
    #[test]
    fn a_member_ready_too_briefly_counts_as_unavailable(
        (members, policy) in case(),
        young in any::<prop::sample::Index>(),
        min_ready in 1u64..60,
    ) {
        let mut members = members;
        let i = young.index(members.len());
        let policy = Policy { min_ready_seconds: min_ready, ..policy };
        members[i].updated = true;
        let mut briefly = members.clone();
        briefly[i].ready = true;
        briefly[i].unready_seconds = 0;
        briefly[i].ready_seconds = min_ready - 1;
        members[i].ready = false;
        members[i].unready_seconds = 0;
        members[i].ready_seconds = 0;
        prop_assert_eq!(plan(&briefly, &policy), plan(&members, &policy));
    }
}

#[test]
fn a_parts_policy_resolves_max_unavailable_against_the_size_it_is_given() {
    let part: berth_core::spec::PartSpec = serde_json::from_value(serde_json::json!({
        "name": "db",
        "replicas": 10,
        "update": {"strategy": "Parallel", "maxUnavailable": "30%"},
        "template": {"spec": {"containers": [{"name": "db", "image": "db"}]}}
    }))
    .unwrap();
    assert_eq!(Policy::for_part(&part, 10).max_unavailable, 3);
    assert_eq!(Policy::for_part(&part, 4).max_unavailable, 1);
}
