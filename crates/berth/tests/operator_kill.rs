//! The operator SIGKILLed mid-rollout and mid-scale (kwok nodes, members running locally through
//! kwok's `Exec`): a new operator finishes the work, and no switchover or memberJoin runs twice.
//! Every action appends a line to a file the test counts, so "ran once" means the command ran
//! once, not that one event was published.

mod operator_common;

use std::path::Path;

use operator_common::*;

/// A role probe that takes two seconds, as one against a busy server may: the labels a restarted
/// operator finds stay stale for a while after a switchover, so it must go by what it recorded.
const SLOW_PROBE: &str = "exec: [sh, -c, 'sleep 2; cat role']";

/// Role-aware updates that pause three seconds after each member (it must stay ready that
/// long before the next is touched), so a kill lands between steps, not after the last.
const PAUSED_ROLE_AWARE: &str = "{strategy: RoleAware, minReadySeconds: 3}";

/// Kills `operator` (SIGKILL) and starts a new one on `ns`; the killed one's log is kept.
fn restart(cluster: &Cluster, ns: &str, operator: &mut Operator, logs: &mut String) -> Operator {
    operator.kill();
    logs.push_str(&operator.log());
    logs.push_str("---- operator killed ----\n");
    Operator::start(cluster, ns, &[])
}

/// The lines of `file`, none when it does not exist.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The rollout's steps as the events tell them: each member's first replacement by name, the
/// switchover by its note.
fn rollout_steps(cluster: &Cluster, ns: &str) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for (reason, note) in step_events(cluster, ns, &["RollingUpdate", "Switchover"]) {
        let step = replaced_member(&note).unwrap_or(format!("{reason}: {note}"));
        if !steps.contains(&step) {
            steps.push(step);
        }
    }
    steps
}

/// The role-aware web app with web-1 leading, the slow probe, and a switchover that moves the
/// role files and appends its target to `switchovers.log` in `members`; returns its operator
/// and manifest once every member is labelled.
fn slow_probed_leader_web(cluster: &Cluster, ns: &str, members: &Path) -> (Operator, String) {
    local_members(cluster, ns, members, &["follower", "leader", "follower"]);
    let switchover = format!("{MOVE_ROLE} && echo $BERTH_TARGET_MEMBER >> ../switchovers.log");
    let fast = web_with_role_probe(ns, &switchover);
    let manifest = fast
        .replace("exec: [sh, -c, cat role]", SLOW_PROBE)
        .replace("{strategy: RoleAware}", PAUSED_ROLE_AWARE);
    assert_eq!(manifest.matches(SLOW_PROBE).count(), 1);
    assert_eq!(manifest.matches(PAUSED_ROLE_AWARE).count(), 1);
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &manifest);
    wait_ready(cluster, ns, "web");
    wait_until("the role probes to label every member", TIMEOUT, || {
        (role_labels(cluster, ns) == ["follower", "leader", "follower"]).then_some(())
    });
    (operator, manifest)
}

#[test]
fn a_rollout_killed_at_each_step_completes_with_one_switchover_and_the_leader_last() {
    let Some((cluster, ns)) = setup("op-kill-roll") else {
        return;
    };
    let ns = ns.name.as_str();
    let members = tempfile::tempdir().unwrap();
    let switchovers = members.path().join("switchovers.log");
    let (mut operator, manifest) = slow_probed_leader_web(cluster, ns, members.path());
    let old_revision = app(cluster, ns, "web")["status"]["parts"][0]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    let leader_uid = web_uids(cluster, ns)[1].clone();
    let mut logs = String::new();
    let events = EventStream::watch(cluster, ns);
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );

    // (a) The first follower was just replaced.
    events.await_event("RollingUpdate", "replacing member web-2");
    operator = restart(cluster, ns, &mut operator, &mut logs);
    assert!(
        lines(&switchovers).is_empty(),
        "killed before the switchover"
    );
    // (b) The switchover just ran; the probe has not shown it yet.
    events.await_event("Switchover", "moved leadership from web-1");
    operator = restart(cluster, ns, &mut operator, &mut logs);
    assert_eq!(lines(&switchovers).len(), 1, "killed after one switchover");
    assert_eq!(web_uids(cluster, ns)[1], leader_uid, "the leader waited");
    // (c) The leader is being replaced.
    events.await_event("RollingUpdate", "replacing member web-1");
    let operator = restart(cluster, ns, &mut operator, &mut logs);

    let part = wait_rolled_out(cluster, ns, &old_revision);
    logs.push_str(&operator.log());
    assert_eq!(part["ready"], 3, "{part}");
    let ran = lines(&switchovers);
    assert_eq!(ran.len(), 1, "switchovers ran: {ran:?}\n{logs}");
    assert_eq!(
        rollout_steps(cluster, ns),
        [
            "web-2",
            "web-0",
            &format!(
                "Switchover: moved leadership from web-1 to {} before updating web-1",
                ran[0]
            ),
            "web-1"
        ],
        "followers first, the leader last, after the one switchover\n{logs}"
    );
}

#[test]
fn a_scale_killed_after_the_first_join_runs_each_join_once() {
    let Some((cluster, ns)) = setup("op-kill-join") else {
        return;
    };
    let ns = ns.name.as_str();
    let members = tempfile::tempdir().unwrap();
    local_members(cluster, ns, members.path(), &["-"; 5]);
    let mut operator = Operator::start(cluster, ns, &[]);
    let manifest = example("web", ns).replacen(
        "          headlessService: nginx\n",
        "          headlessService: nginx\n          actions:\n            memberJoin: {exec: [sh, -c, 'echo join $BERTH_TARGET_MEMBER >> ../members.log']}\n",
        1,
    );
    apply(cluster, &manifest);
    wait_ready(cluster, ns, "web");
    let log = members.path().join("members.log");
    let mut logs = String::new();
    let events = EventStream::watch(cluster, ns);

    apply(cluster, &manifest.replace("replicas: 3", "replicas: 5"));
    events.await_event("MemberJoin", "memberJoin for web-3 ran");
    let operator = restart(cluster, ns, &mut operator, &mut logs);
    assert_eq!(lines(&log), ["join web-3"], "the first join ran, alone");

    let grown = wait_until("5 ready members", TIMEOUT, || {
        let a = wait_ready(cluster, ns, "web");
        (a["status"]["parts"][0]["ready"] == 5).then_some(a)
    });
    logs.push_str(&operator.log());
    assert_eq!(grown["status"]["parts"][0]["replicas"], 5);
    assert_eq!(
        lines(&log),
        ["join web-3", "join web-4"],
        "each join ran once\n{logs}"
    );
}
