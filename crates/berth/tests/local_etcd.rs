//! End to end: examples/etcd.yaml run locally with Debian's etcd-server: three healthy members
//! by `etcdctl endpoint health`, and a key that survives a full `down`/`up`.

mod local_common;

use std::time::Duration;

use local_common::{LocalApp, example, output, require, wait_until};

const SLOT: u8 = 62;
const WAIT: Duration = Duration::from_secs(60);

fn endpoints() -> String {
    (1..=3)
        .map(|i| format!("http://127.{SLOT}.1.{i}:2379"))
        .collect::<Vec<_>>()
        .join(",")
}

fn etcdctl(args: &[&str]) -> std::process::Output {
    let endpoints = format!("--endpoints={}", endpoints());
    std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(endpoints)
        .args(args)
        .output()
        .expect("etcdctl")
}

fn all_healthy() -> bool {
    let out = etcdctl(&["endpoint", "health"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    out.status.success() && text.matches("is healthy").count() == 3
}

#[test]
fn etcd_cluster_is_healthy_and_keeps_data() {
    if !require(&[("etcd", "etcd-server"), ("etcdctl", "etcd-client")]) {
        return;
    }
    let app = LocalApp::new("etcd");
    app.up(&example("etcd.yaml"), SLOT);
    wait_until("3 healthy endpoints", WAIT, all_healthy);
    assert!(etcdctl(&["put", "greeting", "hello"]).status.success());

    app.down();
    app.up(&example("etcd.yaml"), SLOT);
    wait_until("3 healthy endpoints after down and up", WAIT, all_healthy);
    let value = output(
        "etcdctl",
        &[
            &format!("--endpoints={}", endpoints()),
            "get",
            "greeting",
            "--print-value-only",
        ],
    );
    assert_eq!(value, "hello");
}
