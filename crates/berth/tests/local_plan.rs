//! End to end: `berth plan` of a config change to a running examples/redis.yaml prints the
//! members in the order the rollout then really takes (replicas highest first, the switchover,
//! the old master), checked against the events log of the `berth apply` that follows, shows the
//! config diff, and changes nothing in the home. Also: planning an app that does not run fails.

mod local_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use local_common::{LocalApp, REDIS, example, require, wait_until};
use predicates::str::contains;
use serde_json::Value;

const SLOT: u8 = 77;
const WAIT: Duration = Duration::from_secs(60);

/// The example with one more line in its redis.conf.
fn changed_example(dir: &Path) -> String {
    let text = std::fs::read_to_string(example("redis.yaml")).unwrap();
    let text = text.replacen(
        "repl-diskless-sync-delay 0\n",
        "repl-diskless-sync-delay 0\n                hz 11\n",
        1,
    );
    let path = dir.join("redis.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Every file berth writes in the home (not what the members' processes write: their logs and
/// data volumes, nor the state the supervisor publishes), with its content and mtime.
fn berth_files(dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, SystemTime)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !["data", "volumes"].contains(&name.as_str()) {
                berth_files(&path, out);
            }
        } else if !["log", "supervisor.log", "state.json"].contains(&name.as_str()) {
            let meta = entry.metadata().unwrap();
            let content = std::fs::read(&path).unwrap();
            out.insert(path, (content, meta.modified().unwrap()));
        }
    }
}

fn snapshot(app: &LocalApp) -> BTreeMap<PathBuf, (Vec<u8>, SystemTime)> {
    let mut files = BTreeMap::new();
    berth_files(app.home.path(), &mut files);
    files
}

/// The plan's steps as `restart M` / `switchover A -> B` / `start M` / `stop M`.
fn planned(json: &Value) -> Vec<String> {
    json["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| match s["step"].as_str().unwrap() {
            "switchover" => format!(
                "switchover {} -> {}",
                s["from"].as_str().unwrap(),
                s["to"].as_str().unwrap()
            ),
            other => format!("{other} {}", s["member"].as_str().unwrap()),
        })
        .collect()
}

/// The restarts and switchovers the supervisor logged, in order, in the same form.
fn performed(app: &LocalApp, after_line: usize) -> Vec<String> {
    let text = std::fs::read_to_string(app.home.path().join("redis/events.log")).unwrap();
    text.lines()
        .skip(after_line)
        .filter_map(|line| {
            let (_, event) = line.split_once(' ')?;
            if let Some(rest) = event.strip_prefix("stop ") {
                let (member, _) = rest.split_once(": no longer wanted")?;
                Some(format!("stop {member}"))
            } else if let Some(rest) = event.strip_prefix("start ") {
                let (member, _) = rest.split_once(": new member")?;
                Some(format!("start {member}"))
            } else if let Some(rest) = event.strip_prefix("update ") {
                let (member, what) = rest.split_once(": ")?;
                what.starts_with("restart")
                    .then(|| format!("restart {member}"))
            } else {
                let rest = event.strip_prefix("switchover ")?;
                let (pair, what) = rest.split_once(": ")?;
                what.starts_with("running")
                    .then(|| format!("switchover {pair}"))
            }
        })
        .collect()
}

fn event_lines(app: &LocalApp) -> usize {
    let text =
        std::fs::read_to_string(app.home.path().join("redis/events.log")).unwrap_or_default();
    text.lines().count()
}

#[test]
fn plan_shows_the_order_the_rollout_takes_and_changes_nothing() {
    if !require(REDIS) {
        return;
    }
    let app = LocalApp::new("redis");
    let files = tempfile::tempdir().unwrap();
    app.up(&example("redis.yaml"), SLOT);
    wait_until("roles in berth status", WAIT, || {
        app.roles() == [r#""master""#, r#""slave""#, r#""slave""#]
    });
    let changed = changed_example(files.path());
    let before = snapshot(&app);
    assert!(
        before.keys().any(|p| p.ends_with("redis/inputs.json"))
            && before.keys().any(|p| p.ends_with("redis.conf")),
        "the snapshot covers the inputs and the config files: {:?}",
        before.keys()
    );

    let text = app.berth(&["plan", &changed]).output().unwrap();
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8(text.stdout).unwrap();
    let json = app
        .berth(&["plan", &changed, "-o", "json"])
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stderr)
    );
    let json: Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
    assert_eq!(snapshot(&app), before, "berth plan wrote into the home");
    assert_eq!(json["app"], "redis");

    // Replicas highest first, the master's role moved to the first one updated, the old master.
    let steps = planned(&json);
    assert_eq!(
        steps,
        [
            "restart redis-2",
            "restart redis-1",
            "switchover redis-0 -> redis-2",
            "restart redis-0",
        ],
        "{text}"
    );
    let first = &json["steps"][0];
    assert_eq!(first["role"], "slave");
    let because = first["because"][0].as_str().unwrap();
    assert!(
        because.starts_with("file ") && because.ends_with("redis.conf"),
        "{because}"
    );
    assert!(text.contains("+hz 11"), "the config diff is shown:\n{text}");
    assert!(text.contains("switchover"), "{text}");
    let actions: Vec<&str> = json["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["restart"; 3]);

    // The apply takes exactly these steps, in this order.
    let from = event_lines(&app);
    app.berth(&["apply", &changed]).assert().success();
    assert_eq!(performed(&app, from), steps);

    // Applied: nothing left to do.
    app.berth(&["plan", &changed])
        .assert()
        .success()
        .stdout(contains("nothing to do"));

    // Scaled by hand to 4, the spec's 3 members come back with apply: redis-3 stops first,
    // then the others roll out (their member list changes), as planned.
    app.berth(&["scale", "redis", "redis", "4"])
        .assert()
        .success();
    let json = app
        .berth(&["plan", &changed, "-o", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&json.stdout).expect("plan JSON");
    let steps = planned(&json);
    assert_eq!(steps[0], "stop redis-3", "{json:#}");
    assert_eq!(steps.iter().filter(|s| s.starts_with("restart")).count(), 3);
    assert!(
        json["notes"]
            .to_string()
            .contains("`berth scale` set part redis to 4")
    );
    let from = event_lines(&app);
    app.berth(&["apply", &changed]).assert().success();
    assert_eq!(performed(&app, from), steps);
}

#[test]
fn plan_of_an_app_that_does_not_run_fails() {
    let app = LocalApp::new("redis");
    let home = app.home.path().join("nothing-here");
    let manifest = example("redis.yaml");
    let mut command = assert_cmd::Command::cargo_bin("berth").unwrap();
    command
        .args(["plan", manifest.to_str().unwrap(), "--home"])
        .arg(&home)
        .assert()
        .code(1)
        .stderr(contains("redis is not running"));
    assert!(!home.exists(), "berth plan created the home");
}
