//! End to end: scaling examples/etcd.yaml run locally with Debian's etcd-server, through its
//! memberJoin and memberLeave actions: 3 → 5 adds two real members (`etcdctl member list`) that
//! hold the data written before, 5 → 3 removes them (highest first) and the cluster stays
//! healthy, and 3 → 4 again rejoins a member whose data directory belonged to its removed
//! predecessor (moved aside by start.sh). The first three members are never restarted.

mod local_common;

use std::time::Duration;

use local_common::{LocalApp, example, output, require, wait_until};

const SLOT: u8 = 69;
const WAIT: Duration = Duration::from_secs(60);

fn endpoint(ordinal: u8) -> String {
    format!("http://127.{SLOT}.1.{}:2379", ordinal + 1)
}

fn endpoints(ordinals: &[u8]) -> String {
    let list: Vec<String> = ordinals.iter().map(|o| endpoint(*o)).collect();
    format!("--endpoints={}", list.join(","))
}

/// `etcdctl` against the members `ordinals`, with its stdout (empty on failure).
fn etcdctl(ordinals: &[u8], args: &[&str]) -> String {
    let flag = endpoints(ordinals);
    let mut all = vec![flag.as_str()];
    all.extend_from_slice(args);
    output("etcdctl", &all)
}

/// The names of the started members the cluster lists, sorted.
fn started_members() -> Vec<String> {
    let list = etcdctl(&[0, 1, 2], &["member", "list"]);
    let mut names: Vec<String> = list
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            (fields.get(1) == Some(&"started")).then(|| fields[2].to_string())
        })
        .collect();
    names.sort();
    names
}

fn names(count: u8) -> Vec<String> {
    (0..count).map(|i| format!("etcd-{i}")).collect()
}

/// The value of `key` as member `ordinal` has it locally (a serializable read).
fn local_value(ordinal: u8, key: &str) -> String {
    let args = ["get", key, "--print-value-only", "--consistency=s"];
    etcdctl(&[ordinal], &args)
}

/// Whether every member of `ordinals` is healthy (etcdctl 3.4 reports it on stderr, 3.6 on
/// stdout; the test control plane's PATH brings 3.6).
fn healthy(ordinals: &[u8]) -> bool {
    let out = std::process::Command::new("etcdctl")
        .arg(endpoints(ordinals))
        .args(["endpoint", "health"])
        .output()
        .expect("etcdctl");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && report.matches("is healthy").count() == ordinals.len()
}

fn pids(app: &LocalApp, count: u8) -> Vec<u32> {
    names(count).iter().map(|n| app.pid(n)).collect()
}

#[test]
fn etcd_grows_and_shrinks_through_member_join_and_leave() {
    if !require(&[("etcd", "etcd-server"), ("etcdctl", "etcd-client")]) {
        return;
    }
    let app = LocalApp::new("etcd");
    app.up(&example("etcd.yaml"), SLOT);
    wait_until("3 healthy endpoints", WAIT, || healthy(&[0, 1, 2]));
    assert_eq!(etcdctl(&[0, 1, 2], &["put", "greeting", "hello"]), "OK");
    let first_three = pids(&app, 3);

    app.berth(&["scale", "etcd", "etcd", "5"])
        .assert()
        .success();
    wait_until("5 started members", WAIT, || started_members() == names(5));
    wait_until("the key on etcd-4", WAIT, || {
        local_value(4, "greeting") == "hello"
    });
    assert_eq!(pids(&app, 3), first_three, "running members were restarted");

    app.berth(&["scale", "etcd", "etcd", "3"])
        .assert()
        .success();
    assert_eq!(started_members(), names(3));
    wait_until("3 healthy endpoints after scaling down", WAIT, || {
        healthy(&[0, 1, 2])
    });
    assert_eq!(app.members().len(), 3);
    assert_eq!(pids(&app, 3), first_three, "running members were restarted");
    let events = std::fs::read_to_string(app.home.path().join("etcd/events.log")).unwrap();
    let leave = |name: &str| events.find(&format!("leave {name}: done")).unwrap();
    assert!(leave("etcd-4") < leave("etcd-3"), "{events}");

    app.berth(&["scale", "etcd", "etcd", "4"])
        .assert()
        .success();
    wait_until("4 started members after a rejoin", WAIT, || {
        started_members() == names(4)
    });
    wait_until("the key on the rejoined etcd-3", WAIT, || {
        local_value(3, "greeting") == "hello"
    });
    let data = app.home.path().join("etcd/etcd-3/volumes/data");
    let aside = std::fs::read_dir(&data).unwrap().flatten().any(|e| {
        e.file_name()
            .to_string_lossy()
            .starts_with("member-data.removed-")
    });
    assert!(
        aside,
        "the removed member's data is kept aside in {}",
        data.display()
    );
    assert_eq!(pids(&app, 3), first_three, "running members were restarted");
}
