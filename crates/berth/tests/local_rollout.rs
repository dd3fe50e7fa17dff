//! End to end: `berth apply` of a config change to examples/redis.yaml rolls the members out
//! as the core planner says (RoleAware): replicas first, then a switchover (the example's
//! action), then the old master, with no acknowledged write lost while a client writes
//! throughout. Also: a broken revision gets stuck (Degraded, reported by `apply` and `status`)
//! and a later `apply` of a fixed spec replaces the stuck member; a failing switchover keeps the
//! master on its revision (Degraded with the action's output) until a spec with a working one.

mod local_common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use local_common::resp::{Redis, Writes, lost_writes, write_keys};
use local_common::{LocalApp, REDIS, example, require, wait_until};

const SLOT: u8 = 68;
const WAIT: Duration = Duration::from_secs(60);

fn address(ordinal: u8) -> String {
    format!("127.{SLOT}.1.{}:6379", ordinal + 1)
}

/// The member that says it is master, if exactly one does.
fn find_master() -> Option<String> {
    let masters: Vec<String> = (0..3)
        .map(address)
        .filter(|a| {
            Redis::connect(a)
                .and_then(|mut r| r.call(&["ROLE"]))
                .is_ok_and(|(_, role)| role.as_deref() == Some("master"))
        })
        .collect();
    (masters.len() == 1).then(|| masters[0].clone())
}

/// The example with a config change, and optionally text inserted after `replicas: 3`.
fn variant(dir: &Path, name: &str, conf_line: &str, part_extra: &str) -> String {
    let text = std::fs::read_to_string(example("redis.yaml")).unwrap();
    let text = text.replacen(
        "repl-diskless-sync-delay 0\n",
        &format!("repl-diskless-sync-delay 0\n                {conf_line}\n"),
        1,
    );
    let text = text.replacen(
        "      replicas: 3\n",
        &format!("      replicas: 3\n{part_extra}"),
        1,
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn events(app: &LocalApp) -> Vec<String> {
    let text = std::fs::read_to_string(app.home.path().join("redis/events.log")).unwrap();
    text.lines().map(str::to_string).collect()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no event `{needle}` in:\n{}", lines.join("\n")))
}

#[test]
fn role_aware_rollout_switches_over_and_loses_no_write() {
    if !require(REDIS) {
        return;
    }
    let app = LocalApp::new("redis");
    let files = tempfile::tempdir().unwrap();
    app.up(&example("redis.yaml"), SLOT);
    wait_until("redis-0 is the only master", WAIT, || {
        find_master() == Some(address(0))
    });
    wait_until("roles in berth status", WAIT, || {
        app.roles() == [r#""master""#, r#""slave""#, r#""slave""#]
    });

    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let master = || find_master().and_then(|m| Redis::connect(&m).ok());
            write_keys(&stop, &progress, Duration::from_millis(2), master)
        })
    };
    let acked_by = |n: usize| progress.load(Ordering::Relaxed) >= n;
    wait_until(
        "the writer to get 50 writes through",
        Duration::from_secs(30),
        || acked_by(50),
    );
    let changed = variant(files.path(), "changed.yaml", "hz 11", "");
    app.berth(&["apply", &changed]).assert().success();
    let after_rollout = progress.load(Ordering::Relaxed) + 50;
    wait_until(
        "50 more writes after the rollout",
        Duration::from_secs(30),
        || acked_by(after_rollout),
    );
    stop.store(true, Ordering::Relaxed);
    let Writes { acked, errors, .. } = writer.join().unwrap();
    assert!(acked.len() > 100, "the writer got too few writes through");

    // Replicas first, then the switchover, then the old master.
    let lines = events(&app);
    let update_2 = position(&lines, "update redis-2:");
    let update_1 = position(&lines, "update redis-1:");
    let switchover = position(&lines, "switchover redis-0 -> ");
    let switched = position(&lines, ": done, leader moved after ");
    let update_0 = position(&lines, "update redis-0:");
    assert!(
        update_2 < switchover && update_1 < switchover && switched < update_0,
        "order of events:\n{}",
        lines.join("\n")
    );
    assert!(lines.last().unwrap().contains("rollout redis: complete"));

    // One master, not redis-0, and every acknowledged write is there.
    let master = find_master().expect("one master after the rollout");
    assert_ne!(master, address(0), "the old master now replicates");
    let mut conn = Redis::connect(&master).unwrap();
    let lost = lost_writes(&mut conn, &acked);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost ({errors} errors): {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
    wait_until("berth status shows the new master", WAIT, || {
        app.members().iter().any(|m| {
            m["role"] == "master" && format!("{}:6379", m["address"].as_str().unwrap()) == master
        })
    });
    // The role-selecting `write` service forwards to the new master.
    let master_name = app
        .members()
        .iter()
        .find(|m| format!("{}:6379", m["address"].as_str().unwrap()) == master)
        .map(|m| m["name"].as_str().unwrap().to_string())
        .unwrap();
    let write = format!("127.{SLOT}.250.1:6379");
    wait_until("the write service targets the new master", WAIT, || {
        let out = app
            .berth(&["status", "redis", "-o", "json"])
            .output()
            .unwrap();
        let states: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        states[0]["services"][0]["address"] == write.as_str()
            && states[0]["services"][0]["target"] == master_name.as_str()
    });
    let mut through = Redis::connect(&write).unwrap();
    assert_eq!(through.call(&["SET", "via", "service"]).unwrap().0, "+OK");

    // A broken revision: the first member updated never gets ready; past the progress deadline
    // `apply` fails naming it, status is degraded; a fixed spec then rolls out.
    let deadline = "      update:\n        progressDeadlineSeconds: 3\n";
    let broken = variant(
        files.path(),
        "broken.yaml",
        "no-such-directive yes",
        deadline,
    );
    let out = app
        .berth(&["apply", &broken, "--timeout", "60"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("stuck"),
        "{stderr}"
    );
    let status = app
        .berth(&["status", "redis", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["phase"], "Degraded");
    assert_eq!(status[0]["rollout"]["stuck"].as_array().unwrap().len(), 1);
    let fixed = variant(files.path(), "fixed.yaml", "hz 12", deadline);
    app.berth(&["apply", &fixed]).assert().success();
    let status = app
        .berth(&["status", "redis", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["phase"], "Ready");
    assert!(status[0]["rollout"].is_null());
    wait_until("one master after the fixed rollout", WAIT, || {
        find_master().is_some()
    });
    a_failing_switchover_keeps_the_master_on_its_revision(&app, files.path());
}

/// A switchover action that fails: the replicas roll, the master keeps running its revision (it
/// is never updated without a switchover), `apply` and `status` report the action's output;
/// a spec with a working switchover then finishes the rollout.
fn a_failing_switchover_keeps_the_master_on_its_revision(app: &LocalApp, dir: &Path) {
    let master = app
        .members()
        .iter()
        .find(|m| m["role"] == "master")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .expect("a master");
    let pid = app.pid(&master);
    let failing = std::fs::read_to_string(variant(dir, "failing.yaml", "hz 13", "")).unwrap();
    let failing = failing.replacen(
        r#"exec: ["/bin/sh", "{{ files['switchover.sh'] }}"]"#,
        r#"exec: ["/bin/sh", "-c", "echo 'ERR refusing to fail over' >&2; exit 3"]"#,
        1,
    );
    let failing_path = dir.join("failing.yaml");
    std::fs::write(&failing_path, failing).unwrap();
    let out = app
        .berth(&["apply", failing_path.to_str().unwrap(), "--timeout", "60"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("exit code 3: ERR refusing to fail over"),
        "{stderr}"
    );
    assert_eq!(
        app.pid(&master),
        pid,
        "{master} was restarted without a switchover"
    );
    let status = app
        .berth(&["status", "redis", "-o", "json"])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status[0]["phase"], "Degraded");
    let degraded = status[0]["rollout"]["degraded"]
        .as_str()
        .unwrap_or_default();
    assert!(degraded.contains("ERR refusing to fail over"), "{status}");
    let lines = events(app);
    let failed = position(&lines, "failed: exit code 3");
    let restarted = format!("update {master}: restart on revision");
    assert!(
        !lines[failed..].iter().any(|l| l.contains(&restarted)),
        "{}",
        lines.join("\n")
    );
    let working = variant(dir, "working.yaml", "hz 13", "");
    app.berth(&["apply", &working]).assert().success();
    assert_ne!(app.pid(&master), pid, "{master} runs the new revision");
    wait_until("one master after the switchover", WAIT, || {
        find_master().is_some()
    });
}
