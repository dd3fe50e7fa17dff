//! End to end: `berth scale` and `berth apply` on a running local Redis: scaling up adds a
//! replica that syncs, scaling down stops the highest ordinal, and a config change restarts
//! every member (highest ordinal first) without losing data.

mod local_common;

use std::time::Duration;

use local_common::{LocalApp, REDIS, example, output, require, wait_until};

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
