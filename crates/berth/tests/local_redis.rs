//! End to end: examples/redis.yaml run locally with Debian's redis-server: a master and two
//! replicas, replication of 10,000 keys, a SIGKILLed replica restarted and resynced, data
//! kept across `down`/`up` and across a SIGKILLed supervisor.

mod local_common;

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use local_common::{LocalApp, REDIS, example, output, require, wait_until};

const SLOT: u8 = 61;
const WAIT: Duration = Duration::from_secs(60);

fn address(ordinal: u8) -> String {
    format!("127.{SLOT}.1.{}", ordinal + 1)
}

fn dbsize(ordinal: u8) -> u64 {
    output("redis-cli", &["-h", &address(ordinal), "DBSIZE"])
        .parse()
        .unwrap_or(0)
}

/// Writes keys `from..to` to the master through `redis-cli --pipe`.
fn write_keys(from: u32, to: u32) {
    let mut child = Command::new("redis-cli")
        .args(["-h", &address(0), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli");
    let mut input = String::new();
    for i in from..to {
        let (key, value) = (format!("key:{i}"), format!("value:{i}"));
        input.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        ));
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("errors: 0"), "redis-cli --pipe: {text}");
}

fn all_have(keys: u64) -> bool {
    (0..3).all(|i| dbsize(i) == keys)
}

#[test]
fn redis_replicates_restarts_and_keeps_data() {
    if !require(REDIS) {
        return;
    }
    let app = LocalApp::new("redis");
    app.up(&example("redis.yaml"), SLOT);
    let role = output("redis-cli", &["-h", &address(1), "ROLE"]);
    assert!(role.starts_with("slave"), "redis-1 is a replica: {role}");
    wait_until("roles in berth status", WAIT, || {
        app.roles() == [r#""master""#, r#""slave""#, r#""slave""#]
    });

    write_keys(0, 10_000);
    wait_until("10,000 keys on both replicas", WAIT, || all_have(10_000));

    let old = app.pid("redis-2");
    Command::new("kill")
        .args(["-KILL", &old.to_string()])
        .status()
        .unwrap();
    wait_until("redis-2 restarted and ready", WAIT, || {
        app.members().iter().any(|m| {
            m["name"] == "redis-2" && m["ready"] == true && m["restarts"].as_u64() >= Some(1)
        })
    });
    write_keys(10_000, 11_000);
    wait_until("the restarted replica resynced", WAIT, || all_have(11_000));

    app.down();
    app.up(&example("redis.yaml"), SLOT);
    wait_until("all keys after down and up", WAIT, || all_have(11_000));

    let supervisor = std::fs::read_to_string(app.home.path().join("redis/state.json")).unwrap();
    let supervisor: serde_json::Value = serde_json::from_str(&supervisor).unwrap();
    let pid = supervisor["supervisor_pid"].to_string();
    let members = ["redis-0", "redis-1", "redis-2"];
    let pids: Vec<u32> = members.iter().map(|m| app.pid(m)).collect();
    Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    app.up(&example("redis.yaml"), SLOT);
    wait_until("all keys after a supervisor crash", WAIT, || {
        all_have(11_000)
    });
    // The keeper started a new supervisor, which adopted the members: none restarted.
    let after: Vec<u32> = members.iter().map(|m| app.pid(m)).collect();
    assert_eq!(pids, after);
}
