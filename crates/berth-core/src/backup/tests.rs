//! Tests of the backup decisions: the member chosen, ids and URLs, verification, retention and
//! the schedule.

use super::*;
use proptest::prelude::*;

fn member(ordinal: i32, ready: bool, writable: Option<bool>) -> Candidate {
    Candidate {
        ordinal,
        ready,
        writable,
    }
}

fn record(id: &str, succeeded: bool, started_at: i64) -> BackupRecord {
    BackupRecord {
        id: id.into(),
        succeeded,
        started_at,
    }
}

fn every_minute() -> BackupSchedule {
    BackupSchedule {
        cron: "* * * * *".into(),
        time_zone: "UTC".into(),
    }
}

#[test]
fn a_follower_is_preferred_and_the_leader_used_when_alone() {
    let members = [
        member(0, true, Some(true)),
        member(1, false, Some(false)),
        member(2, true, Some(false)),
    ];
    assert_eq!(choose_member(BackupSource::Follower, &members), Ok(2));
    assert_eq!(choose_member(BackupSource::Leader, &members), Ok(0));
    assert_eq!(choose_member(BackupSource::Any, &members), Ok(0));
    let alone = [member(0, true, Some(true)), member(1, false, Some(false))];
    assert_eq!(choose_member(BackupSource::Follower, &alone), Ok(0));
}

#[test]
fn no_ready_member_or_no_leader_is_an_error() {
    let down = [member(0, false, Some(true))];
    assert_eq!(
        choose_member(BackupSource::Any, &down),
        Err(ChoiceError::NoneReady)
    );
    let no_roles = [member(0, true, None), member(1, true, None)];
    assert_eq!(
        choose_member(BackupSource::Leader, &no_roles),
        Err(ChoiceError::NoLeader)
    );
    assert_eq!(choose_member(BackupSource::Follower, &no_roles), Ok(0));
}

#[test]
fn ids_sort_by_time_and_urls_round_trip() {
    assert_eq!(backup_id(1_796_004_300), "20261130T020500Z");
    assert!(backup_id(1_000) < backup_id(2_000));
    let first = backup_id(1_000);
    let second = format!("{first}-2");
    assert_eq!(unique_id(1_000, &[]), first);
    assert_eq!(unique_id(1_000, &[&first]), second);
    assert_eq!(unique_id(1_000, &[&first, &second]), format!("{first}-3"));
    let repo = RepositorySpec {
        endpoint: "http://127.0.0.1:9000".into(),
        bucket: "b".into(),
        prefix: "/team/".into(),
        region: "us-east-1".into(),
        path_style: true,
        credentials: None,
        carrier: Default::default(),
    };
    let dir = format!("{}/{}", part_prefix(&repo, "redis", "redis"), "X");
    assert_eq!(dir, "team/redis/redis/X");
    let at = parse_url(&format!("s3://b/{dir}/manifest.json")).unwrap();
    assert_eq!(at.data_key(), "team/redis/redis/X/data");
    assert_eq!(at.id(), "X");
    assert_eq!(parse_url(&at.url()), Ok(at));
    for bad in ["http://b/k", "s3://b", "s3:///k", "s3://b/"] {
        assert!(parse_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn verification_names_what_differs() {
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id: "X".into(),
        app: "a".into(),
        part: "p".into(),
        member: "a-p-1".into(),
        revision: "r".into(),
        engine: "local".into(),
        started_at: 1,
        finished_at: 2,
        size: 3,
        sha256: "ABC".into(),
    };
    assert_eq!(verify(&manifest, 3, "abc"), Ok(()));
    assert!(matches!(
        verify(&manifest, 4, "abc"),
        Err(VerifyError::Size { .. })
    ));
    assert!(matches!(
        verify(&manifest, 3, "abd"),
        Err(VerifyError::Checksum { .. })
    ));
    let future = Manifest {
        format_version: 2,
        ..manifest
    };
    assert_eq!(
        verify(&future, 3, "abc"),
        Err(VerifyError::Format { found: 2 })
    );
}

#[test]
fn retention_keeps_the_newest_n_and_drops_old_and_failed() {
    let backups = [
        record("a", true, 100),
        record("b", false, 200),
        record("c", true, 300),
        record("d", true, 400),
    ];
    let keep_two = BackupRetention {
        keep_last: Some(2),
        max_age_hours: None,
    };
    assert_eq!(expired(&backups, &keep_two, 500), ["a"]);
    let an_hour = BackupRetention {
        keep_last: None,
        max_age_hours: Some(1),
    };
    assert_eq!(expired(&backups, &an_hour, 4_000), ["a", "b", "c"]);
    assert!(expired(&backups, &BackupRetention::default(), 1 << 40).is_empty());
}

#[test]
fn the_schedule_is_due_once_its_next_time_passed() {
    assert_eq!(next_run(&every_minute(), 59), Ok(Some(60)));
    assert_eq!(due(&every_minute(), Some(60), 0, 119), Ok(false));
    assert_eq!(due(&every_minute(), Some(60), 0, 120), Ok(true));
    assert_eq!(due(&every_minute(), None, 30, 60), Ok(true));
    let berlin = BackupSchedule {
        cron: "0 3 * * *".into(),
        time_zone: "Europe/Berlin".into(),
    };
    // 2026-11-30 00:00 UTC; 03:00 in Berlin (UTC+1) is 02:00 UTC
    assert_eq!(next_run(&berlin, 1_795_996_800), Ok(Some(1_796_004_000)));
    let bad = BackupSchedule {
        cron: "every day".into(),
        time_zone: "Mars/Olympus".into(),
    };
    assert!(matches!(next_run(&bad, 0), Err(ScheduleError::Cron { .. })));
    let bad_zone = BackupSchedule {
        time_zone: "Mars/Olympus".into(),
        ..every_minute()
    };
    assert!(matches!(
        next_run(&bad_zone, 0),
        Err(ScheduleError::TimeZone { .. })
    ));
}

fn records() -> impl Strategy<Value = Vec<BackupRecord>> {
    prop::collection::vec((any::<bool>(), 0i64..100_000), 0..20).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (ok, at))| record(&format!("b{i}"), ok, at))
            .collect()
    })
}

proptest! {
    /// Whatever the policy, the newest successful backup survives, and at least `keepLast`
    /// successful ones do when the age limit allows them.
    #[test]
    fn retention_never_deletes_the_newest_success(
        backups in records(),
        keep in proptest::option::of(1u32..5),
        hours in proptest::option::of(1u32..30),
        now in 0i64..200_000,
    ) {
        let policy = BackupRetention { keep_last: keep, max_age_hours: hours };
        let gone = expired(&backups, &policy, now);
        let newest = backups.iter().filter(|b| b.succeeded)
            .max_by_key(|b| (b.started_at, b.id.clone()));
        if let Some(newest) = newest {
            prop_assert!(!gone.contains(&newest.id));
        }
        let kept = backups.iter().filter(|b| b.succeeded && !gone.contains(&b.id)).count();
        let successes = backups.iter().filter(|b| b.succeeded).count();
        if hours.is_none() {
            prop_assert_eq!(kept, successes.min(keep.map_or(usize::MAX, |k| k as usize)));
        }
    }

    /// The member chosen is always ready, and a writable one only when asked for or alone.
    #[test]
    fn the_chosen_member_is_ready(
        states in prop::collection::vec((any::<bool>(), proptest::option::of(any::<bool>())), 1..6),
    ) {
        let members: Vec<Candidate> = states.iter().enumerate()
            .map(|(i, (ready, writable))| member(i as i32, *ready, *writable)).collect();
        if let Ok(o) = choose_member(BackupSource::Follower, &members) {
            let m = &members[o as usize];
            prop_assert!(m.ready);
            let follower_ready = members.iter().any(|m| m.ready && m.writable != Some(true));
            prop_assert!(m.writable != Some(true) || !follower_ready);
        }
    }
}

#[test]
fn a_backup_this_process_ended_is_left_alone_whatever_a_stale_cache_shows() {
    for stale in [BackupPhase::Running, BackupPhase::Pending] {
        assert_eq!(next(stale, false, true), Next::Nothing, "{stale:?}");
    }
    assert_eq!(next(BackupPhase::Running, true, false), Next::Nothing);
    assert_eq!(next(BackupPhase::Running, false, false), Next::Abandoned);
    assert_eq!(next(BackupPhase::Pending, false, false), Next::Run);
    assert_eq!(next(BackupPhase::Succeeded, false, false), Next::Nothing);
    assert_eq!(next(BackupPhase::Failed, false, false), Next::Nothing);
}

proptest! {
    /// A backup runs at most once: one that ended (by its phase or by this process) or that
    /// this process streams is never run or failed again.
    #[test]
    fn a_backup_that_ended_or_streams_here_is_never_touched(
        seen in prop_oneof![
            Just(BackupPhase::Pending),
            Just(BackupPhase::Running),
            Just(BackupPhase::Succeeded),
            Just(BackupPhase::Failed),
        ],
        streams_here: bool,
        ended_here: bool,
    ) {
        let decided = next(seen, streams_here, ended_here);
        if seen.is_finished() || ended_here || (seen == BackupPhase::Running && streams_here) {
            prop_assert_eq!(decided, Next::Nothing);
        }
        if decided == Next::Run {
            prop_assert!(seen != BackupPhase::Running && !ended_here);
        }
    }
}
