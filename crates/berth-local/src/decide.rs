//! The supervisor's decisions as pure functions: in which order members start and stop, how
//! long to wait before restarting a crashed member, and a member's revision.

use std::time::Duration;

use berth_core::rollout;
use berth_core::spec::PodManagement;
use sha2::{Digest, Sha256};

/// First restart delay.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest restart delay.
pub const BACKOFF_CAP: Duration = Duration::from_secs(30);
/// A member that ran this long without crashing starts over with the shortest delay.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(60);

/// The delay before restart number `restarts` (1 for the first restart): 1s doubling to 30s.
pub fn backoff(restarts: u32) -> Duration {
    let doublings = restarts.saturating_sub(1).min(16);
    (BACKOFF_START * 2u32.pow(doublings)).min(BACKOFF_CAP)
}

/// How many recent crashes count for the next delay: none after a long healthy run.
pub fn crash_streak(previous: u32, ran_for: Duration) -> u32 {
    if ran_for >= BACKOFF_RESET_AFTER {
        1
    } else {
        previous + 1
    }
}

/// How the supervisor process ended, as its keeper saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupervisorExit {
    /// It exited with this code (0: stopped as asked; 101: it panicked).
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// What the keeper does when the supervisor has ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeeperStep {
    /// Exit with this code: the supervisor stopped as asked, or gave up with an error it
    /// published (a restart would fail the same way).
    Exit(i32),
    /// Start the supervisor again after this delay: it was killed or panicked, and the members
    /// it left running must be supervised (and reachable through the services) again.
    Restart(Duration),
}

/// The keeper's rule: a supervisor killed by a signal or a panic is started again (at once
/// after a long run, else with the members' backoff, so a crash loop does not spin); one that
/// exited on its own, or was asked to stop, is not.
pub fn after_supervisor(exit: SupervisorExit, stopping: bool, streak: u32) -> KeeperStep {
    const PANIC: i32 = 101;
    match exit {
        _ if stopping => KeeperStep::Exit(0),
        SupervisorExit::Code(PANIC) | SupervisorExit::Signal(_) if streak <= 1 => {
            KeeperStep::Restart(Duration::ZERO)
        }
        SupervisorExit::Code(PANIC) | SupervisorExit::Signal(_) => {
            KeeperStep::Restart(backoff(streak - 1))
        }
        SupervisorExit::Code(code) => KeeperStep::Exit(code),
    }
}

/// Whether member `index` of a part may start, given the readiness of the members before it.
pub fn may_start(policy: PodManagement, ready_before: &[bool]) -> bool {
    match policy {
        PodManagement::Parallel => true,
        PodManagement::OrderedReady => ready_before.iter().all(|r| *r),
    }
}

/// Stop order: the reverse of start order (last part first, highest ordinal first).
pub fn stop_order<T: Clone>(start_order: &[T]) -> Vec<T> {
    start_order.iter().rev().cloned().collect()
}

/// A short hash of what a member runs: its argv, env and rendered files.
pub fn revision(argv: &[String], env: &[(String, String)], files: &[(String, String)]) -> String {
    let mut hasher = Sha256::new();
    let mut add = |s: &str| {
        hasher.update((s.len() as u64).to_le_bytes());
        hasher.update(s.as_bytes());
    };
    argv.iter().for_each(|a| add(a));
    add("\0env");
    env.iter().for_each(|(k, v)| {
        add(k);
        add(v);
    });
    add("\0files");
    files.iter().for_each(|(k, v)| {
        add(k);
        add(v);
    });
    hasher
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What to do when the desired members change (`apply`, `scale`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconcile {
    /// Members no longer wanted, in stop order (reverse start order).
    pub remove: Vec<String>,
    /// Members whose revision changed, in restart order (reverse start order: highest
    /// ordinal first), each restarted after the previous one is ready again.
    pub replace: Vec<String>,
    /// New members, in start order.
    pub add: Vec<String>,
}

/// Compares running members with desired ones, both `(name, revision)` in start order.
pub fn reconcile(running: &[(String, String)], desired: &[(String, String)]) -> Reconcile {
    let find = |list: &[(String, String)], name: &str| {
        list.iter().find(|(n, _)| n == name).map(|(_, r)| r.clone())
    };
    let remove = running
        .iter()
        .rev()
        .filter(|(n, _)| find(desired, n).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    let replace = running
        .iter()
        .rev()
        .filter(|(n, r)| find(desired, n).is_some_and(|new| &new != r))
        .map(|(n, _)| n.clone())
        .collect();
    let add = desired
        .iter()
        .filter(|(n, _)| find(running, n).is_none())
        .map(|(n, _)| n.clone())
        .collect();
    Reconcile {
        remove,
        replace,
        add,
    }
}

/// How long a member found ready when a rollout starts counts as ready already (seconds).
pub const LONG_READY_SECONDS: u64 = 24 * 3600;

/// The planner's view of a member: `wanted` is the revision being rolled out, `seen` what the
/// supervisor published of the member (absent: not started yet), `seconds` how long it has been
/// in its current readiness (ready or not).
pub fn planner_member(
    ordinal: i32,
    wanted: &str,
    seen: Option<&crate::home::MemberState>,
    seconds: u64,
) -> rollout::MemberState {
    let ready = seen.is_some_and(|m| m.ready);
    rollout::MemberState {
        ordinal,
        updated: seen.is_some_and(|m| m.revision == wanted),
        ready,
        role: seen.map(|m| m.role.clone()).filter(|r| !r.is_empty()),
        unready_seconds: if ready { 0 } else { seconds },
        ready_seconds: if ready { seconds } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<berth_core::spec::RoleSpec> {
        serde_json::from_value(serde_json::json!([
            {"name": "master", "writable": true}, {"name": "slave"}
        ]))
        .unwrap()
    }

    fn m(ordinal: i32, updated: bool, ready: bool, role: &str) -> rollout::MemberState {
        rollout::MemberState {
            ordinal,
            updated,
            ready,
            role: Some(role.to_string()).filter(|r| !r.is_empty()),
            unready_seconds: 0,
            ready_seconds: 0,
        }
    }

    #[test]
    fn switchover_picks_a_ready_updated_member() {
        let members = [
            m(0, false, true, "master"),
            m(1, true, true, "slave"),
            m(2, true, false, "slave"),
        ];
        assert_eq!(rollout::switchover_target(&members, 0, &roles()), Some(1));
        assert_eq!(rollout::switchover_target(&members[..1], 0, &roles()), None);
    }

    #[test]
    fn planner_members_come_from_the_published_state() {
        let seen = crate::home::MemberState {
            revision: "new".into(),
            ready: false,
            role: String::new(),
            ..Default::default()
        };
        let s = planner_member(2, "new", Some(&seen), 7);
        assert!(s.updated && !s.ready && s.role.is_none());
        assert_eq!(s.unready_seconds, 7);
        assert!(!planner_member(2, "newer", Some(&seen), 0).updated);
    }

    fn members(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect()
    }

    #[test]
    fn reconcile_restarts_changed_members_highest_ordinal_first() {
        let running = members(&[("a-0", "x"), ("a-1", "x"), ("a-2", "x")]);
        let desired = members(&[("a-0", "y"), ("a-1", "x"), ("a-2", "y")]);
        let r = reconcile(&running, &desired);
        assert_eq!(r.replace, ["a-2", "a-0"]);
        assert!(r.remove.is_empty() && r.add.is_empty());
    }

    #[test]
    fn reconcile_scales_down_from_the_top_and_up_in_order() {
        let running = members(&[("a-0", "x"), ("a-1", "x"), ("a-2", "x")]);
        let r = reconcile(&running, &members(&[("a-0", "x")]));
        assert_eq!(r.remove, ["a-2", "a-1"]);
        let r = reconcile(&members(&[("a-0", "x")]), &running);
        assert_eq!(r.add, ["a-1", "a-2"]);
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let secs: Vec<u64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff(1000), BACKOFF_CAP);
    }

    #[test]
    fn a_killed_or_panicked_supervisor_is_restarted_and_a_stopped_one_is_not() {
        use SupervisorExit::{Code, Signal};
        assert_eq!(
            after_supervisor(Signal(9), false, 1),
            KeeperStep::Restart(Duration::ZERO)
        );
        assert_eq!(
            after_supervisor(Code(101), false, 1),
            KeeperStep::Restart(Duration::ZERO)
        );
        assert_eq!(
            after_supervisor(Signal(9), false, 3),
            KeeperStep::Restart(backoff(2))
        );
        assert_eq!(after_supervisor(Code(0), false, 1), KeeperStep::Exit(0));
        assert_eq!(after_supervisor(Code(1), false, 1), KeeperStep::Exit(1));
        assert_eq!(after_supervisor(Signal(9), true, 1), KeeperStep::Exit(0));
    }

    #[test]
    fn a_long_run_resets_the_streak() {
        assert_eq!(crash_streak(5, Duration::from_secs(2)), 6);
        assert_eq!(crash_streak(5, Duration::from_secs(120)), 1);
    }

    #[test]
    fn ordered_start_waits_for_every_earlier_member() {
        assert!(may_start(PodManagement::OrderedReady, &[]));
        assert!(!may_start(PodManagement::OrderedReady, &[true, false]));
        assert!(may_start(PodManagement::Parallel, &[false]));
        assert_eq!(stop_order(&[0, 1, 2]), [2, 1, 0]);
    }

    #[test]
    fn revision_changes_with_any_input() {
        let a = revision(&["x".into()], &[], &[]);
        assert_ne!(a, revision(&["x".into()], &[("A".into(), "1".into())], &[]));
        assert_ne!(a, revision(&["x".into(), "".into()], &[], &[]));
        assert_eq!(a.len(), 12);
    }
}
