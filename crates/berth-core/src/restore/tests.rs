//! Tests of the restore decisions: new and existing apps, the steps for waiting members, and
//! how outcomes move the status (retries, failure, success).

use super::*;
use proptest::prelude::*;

const URL: &str = "s3://b/redis/redis/20261130T030000Z";

fn running(replicas: i32) -> RestoreStatus {
    start(URL, "redis", replicas, true)
}

#[test]
fn a_new_app_restores_and_an_existing_one_is_skipped() {
    let new = start(URL, "redis", 3, true);
    assert_eq!(new.phase, RestorePhase::Running);
    assert_eq!(new.replicas, 3);
    let old = start(URL, "redis", 3, false);
    assert_eq!(old.phase, RestorePhase::Skipped);
    assert!(old.message.unwrap().contains("already ran"));
    assert_eq!(
        steps(&start(URL, "redis", 3, false), &[2, 0], 0),
        [Step::Release(0), Step::Release(2)]
    );
}

#[test]
fn only_an_app_no_member_of_which_was_ready_is_new() {
    use crate::spec::{PartStatus, StatefulAppStatus};
    assert!(is_new_app(None));
    let part = |ready| PartStatus {
        name: "redis".into(),
        replicas: 3,
        ready,
        ..PartStatus::default()
    };
    let status = |ready| StatefulAppStatus {
        parts: vec![part(ready)],
        ..StatefulAppStatus::default()
    };
    assert!(
        is_new_app(Some(&StatefulAppStatus::default())),
        "rejected before it applied"
    );
    assert!(is_new_app(Some(&status(0))));
    assert!(!is_new_app(Some(&status(1))));
}

#[test]
fn members_restore_in_order_and_the_restore_succeeds_with_the_last() {
    let status = running(3);
    assert_eq!(
        steps(&status, &[2, 0, 1], 0),
        [Step::Restore(0), Step::Restore(1), Step::Restore(2)]
    );
    let status = restored(&status, 0, 10, "abc", 5);
    assert_eq!(status.phase, RestorePhase::Running);
    // member 0's pod was recreated before it was released: it is released, not restored again
    assert_eq!(
        steps(&status, &[0, 1], 6),
        [Step::Restore(1), Step::Release(0)]
    );
    let status = restored(&status, 1, 10, "abc", 7);
    let status = restored(&status, 2, 10, "abc", 9);
    assert_eq!(status.phase, RestorePhase::Succeeded);
    assert_eq!(status.restored, [0, 1, 2]);
    assert_eq!(status.finished_at, Some(9));
    // a member added later joins without a restore
    assert_eq!(steps(&status, &[3], 10), [Step::Release(3)]);
}

#[test]
fn members_added_during_the_restore_join_without_one() {
    assert_eq!(
        steps(&running(2), &[0, 2], 0),
        [Step::Restore(0), Step::Release(2)]
    );
}

#[test]
fn transient_failures_back_off_then_fail_for_good() {
    let mut status = running(1);
    let broken = Failure::Transient("connection refused".into());
    status = failed(&status, &broken, 100);
    assert_eq!(status.phase, RestorePhase::Running);
    assert_eq!(status.retry_at, Some(102));
    assert!(steps(&status, &[0], 101).is_empty(), "waits for the retry");
    assert_eq!(steps(&status, &[0], 102), [Step::Restore(0)]);
    for _ in 1..MAX_ATTEMPTS {
        status = failed(&status, &broken, 200);
    }
    assert_eq!(status.phase, RestorePhase::Failed);
    assert_eq!(status.attempts, MAX_ATTEMPTS);
    assert!(steps(&status, &[0], 10_000).is_empty());
    assert!(status.message.unwrap().contains("connection refused"));
}

#[test]
fn a_corrupt_backup_fails_at_once_and_no_member_starts() {
    let status = failed(
        &running(3),
        &Failure::Permanent("the data's sha256 is x; its manifest says y".into()),
        100,
    );
    assert_eq!(status.phase, RestorePhase::Failed);
    assert_eq!(status.attempts, 1);
    let message = status.message.clone().unwrap();
    assert!(message.contains("sha256"), "{message}");
    assert!(message.contains("no member started"), "{message}");
    assert!(steps(&status, &[0, 1, 2], 1_000).is_empty());
}

fn phase() -> impl Strategy<Value = RestorePhase> {
    prop_oneof![
        Just(RestorePhase::Running),
        Just(RestorePhase::Succeeded),
        Just(RestorePhase::Failed),
        Just(RestorePhase::Skipped),
    ]
}

proptest! {
    /// Whatever the state: a member is never restored twice, never restored unless the restore
    /// runs, and never released before its own restore while the restore runs; every waiting
    /// member gets at most one step.
    #[test]
    fn steps_never_restore_twice_nor_release_early(
        phase in phase(),
        replicas in 0i32..6,
        restored_mask in 0u8..64,
        waiting in proptest::collection::vec(0i32..8, 0..8),
        retry_at in proptest::option::of(0i64..20),
        now in 0i64..20,
    ) {
        let restored: Vec<i32> = (0..6).filter(|o| restored_mask & (1 << o) != 0).collect();
        let status = RestoreStatus {
            phase,
            replicas,
            restored: restored.clone(),
            retry_at,
            ..running(replicas)
        };
        let out = steps(&status, &waiting, now);
        let mut seen = Vec::new();
        for step in &out {
            let (Step::Restore(o) | Step::Release(o)) = *step;
            prop_assert!(waiting.contains(&o), "{step:?} for a member not waiting");
            prop_assert!(!seen.contains(&o), "two steps for {o}");
            seen.push(o);
            match step {
                Step::Restore(_) => {
                    prop_assert_eq!(phase, RestorePhase::Running);
                    prop_assert!(!restored.contains(&o) && o < replicas);
                    prop_assert!(retry_at.is_none_or(|at| at <= now));
                }
                Step::Release(_) if phase == RestorePhase::Running => {
                    prop_assert!(restored.contains(&o) || o >= replicas);
                }
                Step::Release(_) => prop_assert!(phase != RestorePhase::Failed),
            }
        }
        if phase == RestorePhase::Failed {
            prop_assert!(out.is_empty());
        }
    }

    /// Playing a restore through (each step's outcome fed back) ends `Succeeded` with every
    /// member restored exactly once, or `Failed`; never with a member released unrestored.
    #[test]
    fn a_restore_played_through_ends_restored_or_failed(
        replicas in 1i32..6,
        outcomes in proptest::collection::vec(0u8..4, 1..40),
    ) {
        let mut status = running(replicas);
        let mut waiting: Vec<i32> = (0..replicas).collect();
        let mut restores = vec![0; usize::try_from(replicas).unwrap_or_default()];
        let mut now = 0;
        for outcome in outcomes {
            now += 300;
            let Some(step) = steps(&status, &waiting, now).first().copied() else { break };
            match (step, outcome) {
                (Step::Release(o), _) => waiting.retain(|w| *w != o),
                (Step::Restore(o), 0) => {
                    status = failed(&status, &Failure::Transient("x".into()), now);
                    prop_assert!(!status.restored.contains(&o));
                }
                (Step::Restore(_), 1) if status.attempts == 0 => {
                    status = failed(&status, &Failure::Permanent("x".into()), now);
                }
                (Step::Restore(o), _) => {
                    restores[usize::try_from(o).unwrap_or_default()] += 1;
                    status = restored(&status, o, 1, "h", now);
                    waiting.retain(|w| *w != o);
                }
            }
        }
        prop_assert!(restores.iter().all(|n| *n <= 1));
        if status.phase == RestorePhase::Succeeded {
            prop_assert!(restores.iter().all(|n| *n == 1));
        }
        if status.phase == RestorePhase::Failed {
            prop_assert!(waiting.iter().all(|o| !status.restored.contains(o)));
        }
    }
}

#[test]
fn a_step_that_reached_the_member_never_runs_again() {
    let facts = |may_pass, reached_member| Facts {
        may_pass,
        reached_member,
    };
    assert_eq!(
        Failure::of("store down", facts(true, false)),
        Failure::Transient("store down".into())
    );
    for (may_pass, reached) in [(true, true), (false, false), (false, true)] {
        let failure = Failure::of("x", facts(may_pass, reached));
        assert!(failure.is_permanent(), "{may_pass} {reached}");
        let status = failed(&running(3), &failure, 10);
        assert_eq!(status.phase, RestorePhase::Failed);
        assert_eq!(status.retry_at, None);
    }
}

proptest! {
    /// Whatever the facts and the attempt, a failure that reached the member ends the restore
    /// at once; one that did not and may pass is retried while attempts remain.
    #[test]
    fn a_failure_retries_only_what_may_pass_and_never_reached_the_member(
        may_pass: bool,
        reached_member: bool,
        earlier in 0..MAX_ATTEMPTS,
    ) {
        let mut status = running(3);
        status.attempts = earlier;
        let facts = Facts { may_pass, reached_member };
        let next = failed(&status, &Failure::of("x", facts), 100);
        let retried = next.phase == RestorePhase::Running;
        prop_assert_eq!(retried, may_pass && !reached_member && earlier + 1 < MAX_ATTEMPTS);
        prop_assert_eq!(next.retry_at.is_some(), retried);
    }
}

proptest! {
    /// The local engine downloads a backup once, into the first member, keeps it only when
    /// others follow, and restores every member exactly once, in order, never from a copy
    /// before it was kept.
    #[test]
    fn the_local_engine_downloads_once_and_restores_each_member_once(members in 0usize..50) {
        let steps = local_steps(members);
        prop_assert_eq!(steps.len(), members);
        let mut kept = false;
        for (i, step) in steps.iter().enumerate() {
            match *step {
                LocalStep::Download { member, keep } => {
                    prop_assert_eq!((member, i), (0, 0), "one download, first");
                    prop_assert_eq!(keep, members > 1);
                    kept = keep;
                }
                LocalStep::FromKept { member } => {
                    prop_assert_eq!(member, i);
                    prop_assert!(kept, "a copy read before it was kept");
                }
            }
        }
    }
}
