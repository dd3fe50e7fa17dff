//! End to end: `berth scale` and `berth apply` on a running local Redis: scaling up adds a
//! replica that syncs, scaling down stops the highest ordinal, and a config change restarts
//! every member (highest ordinal first) without losing data. Then, with an app of `sleep`s
//! whose memberJoin/memberLeave actions record what they are told: joins and leaves run one at a
//! time in a staying member with `BERTH_TARGET*` naming the member, running members are not
//! restarted, and a failing memberJoin fails `scale` without starting the new member.

mod local_common;

use std::time::Duration;

use local_common::{LocalApp, REDIS, example, output, require, wait_until};
use predicates::str::contains;

const SLOT: u8 = 67;
const WAIT: Duration = Duration::from_secs(60);

fn cli(ordinal: u8, args: &[&str]) -> String {
    let host = format!("127.{SLOT}.1.{}", ordinal + 1);
    let mut all = vec!["-h", host.as_str()];
    all.extend_from_slice(args);
    output("redis-cli", &all)
}

fn revisions(app: &LocalApp) -> Vec<String> {
    app.members()
        .iter()
        .map(|m| m["revision"].to_string())
        .collect()
}

#[test]
fn scale_and_apply_a_running_app() {
    if !require(REDIS) {
        return;
    }
    let app = LocalApp::new("redis");
    app.up(&example("redis.yaml"), SLOT);
    assert_eq!(cli(0, &["SET", "greeting", "hello"]), "OK");

    app.berth(&["scale", "redis", "redis", "4"])
        .assert()
        .success();
    assert_eq!(app.members().len(), 4);
    wait_until("the new replica synced", WAIT, || {
        cli(3, &["GET", "greeting"]) == "hello"
    });

    app.berth(&["scale", "redis", "redis", "2"])
        .assert()
        .success();
    assert_eq!(app.members().len(), 2);
    assert_eq!(cli(3, &["PING"]), "", "redis-3 is stopped");

    let manifest = app.home.path().join("redis.yaml");
    let text = std::fs::read_to_string(example("redis.yaml")).unwrap();
    std::fs::write(
        &manifest,
        text.replace("appendfsync everysec", "appendfsync always"),
    )
    .unwrap();
    app.berth(&["scale", "redis", "redis", "3"])
        .assert()
        .success();
    let before = revisions(&app);
    app.berth(&["apply", manifest.to_str().unwrap()])
        .assert()
        .success();
    let after = revisions(&app);
    assert!(
        before.iter().zip(&after).all(|(b, a)| b != a),
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        cli(0, &["CONFIG", "GET", "appendfsync"]),
        "appendfsync\nalways"
    );
    wait_until("data kept on every member", WAIT, || {
        (0..3).all(|i| cli(i, &["GET", "greeting"]) == "hello")
    });
}

/// An action (`$0` is `join` or `leave`) that records what it is told in `<home>/<app>/actions`
/// (actions run in their member's directory).
const RECORD: &str = r#"echo \"$0 $BERTH_TARGET_MEMBER $BERTH_TARGET $BERTH_TARGET_ORDINAL in $BERTH_MEMBER\" >> ../actions"#;

/// An app of `replicas` members running `sleep`, whose command lists the members, with a
/// memberJoin action running `join` and a memberLeave action running [`RECORD`].
fn sleepers(app: &LocalApp, replicas: u8, join: &str) -> std::path::PathBuf {
    let name = &app.name;
    let text = format!(
        r#"apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {{name: {name}}}
spec:
  parts:
    - name: {name}
      replicas: {replicas}
      template:
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: main
              image: example/none:1
              command: ["/bin/sh", "-c", "exec sleep 100000", "{{% for m in members %}}{{{{ m.name }}}},{{% endfor %}}"]
      state:
        topology:
          actions:
            memberJoin:
              exec: ["/bin/sh", "-c", "{join}", "join"]
            memberLeave:
              exec: ["/bin/sh", "-c", "{RECORD}", "leave"]
"#
    );
    let path = app.home.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Adds `line` to the part of `manifest` after its `after` line; the new text.
fn add_to_part(manifest: &std::path::Path, after: &str, line: &str) -> String {
    let text = std::fs::read_to_string(manifest).unwrap().replacen(
        &format!("      {after}\n"),
        &format!("      {after}\n      {line}\n"),
        1,
    );
    std::fs::write(manifest, &text).unwrap();
    text
}

fn pids(app: &LocalApp, count: u8) -> Vec<u32> {
    (0..count)
        .map(|i| app.pid(&format!("{}-{i}", app.name)))
        .collect()
}

fn actions(app: &LocalApp) -> Vec<String> {
    let path = app.home.path().join(&app.name).join("actions");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(str::to_string).collect()
}

#[test]
fn scaling_runs_member_join_and_leave_one_member_at_a_time() {
    let app = LocalApp::new("group");
    let manifest = sleepers(&app, 2, RECORD);
    app.up(&manifest, 71);
    let before = pids(&app, 2);

    app.berth(&["scale", "group", "group", "4"])
        .assert()
        .success();
    assert_eq!(
        actions(&app),
        [
            "join group-2 127.71.1.3 2 in group-0",
            "join group-3 127.71.1.4 3 in group-0",
        ]
    );
    assert_eq!(pids(&app, 4)[..2], before, "running members were restarted");

    app.berth(&["scale", "group", "group", "1"])
        .assert()
        .success();
    assert_eq!(
        actions(&app)[2..],
        [
            "leave group-3 127.71.1.4 3 in group-0",
            "leave group-2 127.71.1.3 2 in group-0",
            "leave group-1 127.71.1.2 1 in group-0",
        ]
    );
    assert_eq!(app.members().len(), 1);
    assert_eq!(
        pids(&app, 1),
        before[..1],
        "the staying member was restarted"
    );
}

#[test]
fn a_failing_member_join_fails_scale_and_starts_nothing() {
    let app = LocalApp::new("refuse");
    let manifest = sleepers(&app, 2, "echo cannot add $BERTH_TARGET_MEMBER >&2; exit 3");
    app.up(&manifest, 72);
    let before = pids(&app, 2);

    app.berth(&["scale", "refuse", "refuse", "3"])
        .assert()
        .failure()
        .code(1)
        .stderr(contains("memberJoin of refuse-2 failed"))
        .stderr(contains("cannot add refuse-2"));
    let events = std::fs::read_to_string(app.home.path().join("refuse/events.log")).unwrap();
    assert!(events.contains("join refuse-2: failed"), "{events}");
    assert!(!events.contains("start refuse-2"), "{events}");
    assert_eq!(app.members().len(), 2);
    assert_eq!(pids(&app, 2), before, "running members were restarted");
    assert!(!app.home.path().join("refuse/refuse-2/log").exists());
}

#[test]
fn an_on_delete_part_keeps_its_members_on_apply_and_the_apply_returns() {
    let app = LocalApp::new("held");
    let manifest = sleepers(&app, 2, RECORD);
    let text = add_to_part(&manifest, "replicas: 2", "update: {strategy: OnDelete}");
    app.up(&manifest, 73);
    let before = pids(&app, 2);
    let before_revisions: Vec<String> = app
        .members()
        .iter()
        .map(|m| m["revision"].to_string())
        .collect();

    std::fs::write(&manifest, text.replace("sleep 100000", "sleep 100001")).unwrap();
    app.berth(&["apply", manifest.to_str().unwrap(), "--timeout", "30"])
        .assert()
        .success();
    assert_eq!(pids(&app, 2), before, "OnDelete members were restarted");
    let revisions: Vec<String> = app
        .members()
        .iter()
        .map(|m| m["revision"].to_string())
        .collect();
    assert_eq!(revisions, before_revisions);
    let events = std::fs::read_to_string(app.home.path().join("held/events.log")).unwrap();
    assert!(events.contains("strategy OnDelete"), "{events}");
}

#[test]
fn an_apply_whose_supervisor_and_keeper_die_fails_at_once_and_status_shows_members_unsupervised() {
    let app = LocalApp::new("orphan");
    let manifest = sleepers(&app, 2, RECORD);
    // After the first member restarts, the rollout waits a minute: the supervisor dies then.
    let text = add_to_part(&manifest, "replicas: 2", "update: {minReadySeconds: 60}");
    app.up(&manifest, 74);
    let status = |app: &LocalApp| -> serde_json::Value {
        let out = app
            .berth(&["status", "orphan", "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let supervisor = status(&app)[0]["supervisor_pid"].as_u64().unwrap();
    let keeper = status(&app)[0]["keeper_pid"].as_u64().unwrap();

    std::fs::write(&manifest, text.replace("sleep 100000", "sleep 100001")).unwrap();
    let apply = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args([
            "apply",
            manifest.to_str().unwrap(),
            "--timeout",
            "120",
            "--home",
        ])
        .arg(app.home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let events = app.home.path().join("orphan/events.log");
    wait_until("the first member restarted", WAIT, || {
        std::fs::read_to_string(&events).is_ok_and(|e| e.contains("update orphan-1: restart"))
    });
    // The keeper first: it would start the supervisor again (see local_crash.rs).
    std::process::Command::new("kill")
        .args(["-KILL", &keeper.to_string(), &supervisor.to_string()])
        .status()
        .unwrap();
    let began = std::time::Instant::now();
    let output = apply.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the apply succeeded: {stderr}");
    assert!(
        stderr.contains("the supervisor exited during the apply"),
        "{stderr}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(30),
        "the apply waited {:?} after the supervisor died",
        began.elapsed()
    );
    let after = status(&app);
    assert_eq!(after[0]["phase"], "Unsupervised", "{after}");
    let pids: Vec<u64> = after[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 2, "both members still run: {after}");
    for pid in pids {
        std::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap();
    }
}

#[test]
fn a_scale_down_whose_supervisor_is_killed_runs_each_member_leave_once() {
    let app = LocalApp::new("shrink");
    let manifest = sleepers(&app, 3, RECORD);
    // Each member takes 3 s to stop (its preStop hook): the supervisor is killed then, after
    // the first memberLeave ran and before the member it removed has stopped.
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replacen(
            "image: example/none:1\n",
            "image: example/none:1\n              lifecycle: {preStop: {exec: {command: [sleep, \"3\"]}}}\n",
            1,
        )
        .replacen("terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 10", 1);
    std::fs::write(&manifest, text).unwrap();
    app.up(&manifest, 75);
    let staying = app.pid("shrink-0");
    let state = || -> serde_json::Value {
        let text = std::fs::read_to_string(app.home.path().join("shrink/state.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let scale = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args([
            "scale",
            "shrink",
            "shrink",
            "1",
            "--timeout",
            "60",
            "--home",
        ])
        .arg(app.home.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first memberLeave recorded", WAIT, || {
        state()["admitted"]["shrink"] == 2
    });
    let supervisor = state()["supervisor_pid"].as_u64().unwrap();
    std::process::Command::new("kill")
        .args(["-KILL", &supervisor.to_string()])
        .status()
        .unwrap();

    let output = scale.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the scale failed: {stderr}");
    let leaves: Vec<String> = actions(&app)
        .into_iter()
        .filter(|a| a.starts_with("leave"))
        .collect();
    assert_eq!(
        leaves,
        [
            "leave shrink-2 127.75.1.3 2 in shrink-0",
            "leave shrink-1 127.75.1.2 1 in shrink-0",
        ]
    );
    assert_eq!(app.members().len(), 1);
    assert_eq!(
        app.pid("shrink-0"),
        staying,
        "the staying member was restarted"
    );
}
