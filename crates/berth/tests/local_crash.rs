//! End to end: the local engine survives its supervisor's death (examples/redis.yaml, real
//! Redis). SIGKILL of the supervisor in the middle of a RoleAware rollout: its keeper starts a
//! new one, which adopts the running members (restarting none of them for it) and finishes the
//! rollout, each member restarted once; the pending `berth apply` reports success. A client
//! writing through the role-following `write` service all along gets writes through after the
//! kill and loses none that was acknowledged. Then keeper and supervisor are both killed:
//! `berth status` shows the members running, unsupervised (never failed), and `berth up`
//! adopts them without restarting any.

mod local_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use local_common::resp::{Redis, Writes, lost_writes, write_keys};
use local_common::{LocalApp, REDIS, example, require, wait_until};
use serde_json::Value;

const SLOT: u8 = 78;
const WAIT: Duration = Duration::from_secs(60);
const MEMBERS: [&str; 3] = ["redis-0", "redis-1", "redis-2"];

/// The role-following `write` service of the example.
fn write_service() -> String {
    format!("127.{SLOT}.250.1:6379")
}

/// The example with a config change and a short `minReadySeconds` (a rollout long enough to
/// kill its supervisor in the middle of).
fn changed(dir: &Path) -> String {
    let text = std::fs::read_to_string(example("redis.yaml")).unwrap();
    let text = text.replacen(
        "repl-diskless-sync-delay 0\n",
        "repl-diskless-sync-delay 0\n                hz 11\n",
        1,
    );
    let text = text.replacen(
        "      replicas: 3\n",
        "      replicas: 3\n      update: {minReadySeconds: 2}\n",
        1,
    );
    let path = dir.join("changed.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn state(app: &LocalApp) -> Value {
    let text = std::fs::read_to_string(app.home.path().join("redis/state.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn status(app: &LocalApp) -> Value {
    let out = app
        .berth(&["status", "redis", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn events(app: &LocalApp) -> String {
    std::fs::read_to_string(app.home.path().join("redis/events.log")).unwrap_or_default()
}

/// The member whose update was in flight when the supervisor was killed: the last `update`
/// event before the restarted supervisor's first line. The new supervisor updates it again (its
/// recorded revision is still the old one), so its update event may appear twice; the member
/// logs prove it was still started only once on the new revision.
fn interrupted_update(lines: &str) -> &str {
    let before = lines
        .split("supervisor restarted: adopted")
        .next()
        .unwrap_or_default();
    let last = before.rsplit("update ").next().unwrap_or_default();
    last.split(':').next().unwrap_or_default()
}

/// How often the member's log says the supervisor did `what` (`started pid`, `adopted pid`).
fn log_count(app: &LocalApp, member: &str, what: &str) -> usize {
    let log = std::fs::read_to_string(app.home.path().join("redis").join(member).join("log"));
    log.unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("[berth] {member}: {what}")))
        .count()
}

fn kill(pid: u64) {
    let ok = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -KILL {pid}");
}

/// Every acknowledged write is on the master (read back through the write service).
fn assert_none_lost(writes: &Writes) {
    let mut conn = Redis::connect(&write_service()).unwrap();
    let lost = lost_writes(&mut conn, &writes.acked);
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost ({} errors): {:?}",
        lost.len(),
        writes.acked.len(),
        writes.errors,
        &lost[..lost.len().min(20)]
    );
}

#[test]
fn a_killed_supervisor_is_restarted_adopts_its_members_and_finishes_the_rollout() {
    if !require(REDIS) {
        return;
    }
    let app = LocalApp::new("redis");
    let files = tempfile::tempdir().unwrap();
    app.up(&example("redis.yaml"), SLOT);
    wait_until("roles in berth status", WAIT, || {
        app.roles() == [r#""master""#, r#""slave""#, r#""slave""#]
    });
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, progress) = (stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let service = || Redis::connect(&write_service()).ok();
            write_keys(&stop, &progress, Duration::from_millis(5), service)
        })
    };
    let acked_by = |n: usize| progress.load(Ordering::Relaxed) >= n;
    wait_until("50 writes through the write service", WAIT, || acked_by(50));

    let manifest = changed(files.path());
    let apply = Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .args(["apply", &manifest, "--timeout", "120", "--home"])
        .arg(app.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first member restarted", WAIT, || {
        events(&app).contains("update redis-2: restart")
    });
    let killed = state(&app)["supervisor_pid"].as_u64().unwrap();
    kill(killed);
    let at_kill = progress.load(Ordering::Relaxed);

    let output = apply.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the apply failed: {stderr}");
    assert_ne!(state(&app)["supervisor_pid"].as_u64(), Some(killed));
    let lines = events(&app);
    let interrupted = interrupted_update(&lines);
    // 2 or 3: the kill may land between the first member's stop and its start
    assert!(lines.contains("supervisor restarted: adopted "), "{lines}");
    assert!(lines.contains("rollout redis: complete"), "{lines}");
    wait_until("50 more writes after the rollout", WAIT, || {
        acked_by(at_kill + 50)
    });
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().unwrap();
    eprintln!(
        "writes: {} acknowledged, {} errors, longest gap {:?}",
        writes.acked.len(),
        writes.errors,
        writes.longest_gap
    );
    assert_none_lost(&writes);
    for member in MEMBERS {
        // started by `up`, once more on the new revision; adopted at most once (not if it was
        // between stop and start), never restarted for it
        assert_eq!(
            log_count(&app, member, "started pid"),
            2,
            "{member}\n{lines}"
        );
        assert!(log_count(&app, member, "adopted pid") <= 1, "{member}");
        let restarts = lines.matches(&format!("update {member}: restart")).count();
        let most = if member == interrupted { 2 } else { 1 };
        assert!(
            restarts <= most,
            "{member} restarted {restarts} times\n{lines}"
        );
    }

    keeper_and_supervisor_killed_then_up_adopts(&app, Path::new(&manifest));
}

/// Keeper and supervisor both killed: the members run on, shown as unsupervised (not failed),
/// and `berth up` adopts them without restarting any.
fn keeper_and_supervisor_killed_then_up_adopts(app: &LocalApp, manifest: &Path) {
    let before = state(app);
    let pids: Vec<u64> = MEMBERS.iter().map(|m| u64::from(app.pid(m))).collect();
    let adopted: Vec<usize> = MEMBERS
        .iter()
        .map(|m| log_count(app, m, "adopted pid"))
        .collect();
    kill(before["keeper_pid"].as_u64().expect("a keeper"));
    kill(before["supervisor_pid"].as_u64().unwrap());
    wait_until("status shows the app unsupervised", WAIT, || {
        status(app)[0]["phase"] == "Unsupervised"
    });
    let shown = status(app);
    for m in shown[0]["members"].as_array().unwrap() {
        assert!(
            m["pid"].as_u64().is_some(),
            "a member shown as not running: {shown}"
        );
    }
    app.up(manifest, SLOT);
    let after: Vec<u64> = MEMBERS.iter().map(|m| u64::from(app.pid(m))).collect();
    assert_eq!(
        pids, after,
        "berth up restarted members instead of adopting them"
    );
    for (member, before) in MEMBERS.iter().zip(adopted) {
        assert_eq!(log_count(app, member, "started pid"), 2, "{member}");
        assert_eq!(
            log_count(app, member, "adopted pid"),
            before + 1,
            "{member}"
        );
    }
}
