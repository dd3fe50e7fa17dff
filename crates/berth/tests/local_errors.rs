//! End to end: how `berth up` fails: a missing program names its Debian package, a taken
//! address:port is reported before anything starts, and a member that never becomes ready
//! fails `up` with its log tail. Needs only `sh` and `sleep`.

mod local_common;

use std::net::TcpListener;

use local_common::LocalApp;
use predicates::str::contains;

/// A one-member app `name` running `command`, ready when its port 7100 accepts connections.
fn manifest(app: &LocalApp, name: &str, command: &str, packages: &str) -> std::path::PathBuf {
    let text = format!(
        r#"apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {{name: {name}}}
spec:
  parts:
    - name: {name}
      replicas: 1
      template:
        spec:
          terminationGracePeriodSeconds: 2
          containers:
            - name: main
              image: example/none:1
              command: {command}
              readinessProbe:
                tcpSocket: {{port: 7100}}
                periodSeconds: 1
      state:
        topology:
          ports:
            - {{name: main, port: 7100}}
      local:
        packages: {packages}
"#
    );
    let path = app.home.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_missing_program_names_its_package() {
    let app = LocalApp::new("missing");
    let path = manifest(&app, "missing", r#"["no-such-server-x", "--x"]"#, "[]");
    app.berth(&["up", path.to_str().unwrap(), "--slot", "64"])
        .assert()
        .failure()
        .stderr(contains("program `no-such-server-x` not found"));
    let path = manifest(
        &app,
        "missing",
        r#"["no-such-server-x"]"#,
        "[no-such-package-x]",
    );
    app.berth(&["up", path.to_str().unwrap(), "--slot", "64"])
        .assert()
        .failure()
        .stderr(contains("apt-get install no-such-package-x"));
}

#[test]
fn a_taken_address_is_a_clear_error() {
    let _taken = TcpListener::bind(("127.65.1.1", 7100)).unwrap();
    let app = LocalApp::new("taken");
    let path = manifest(&app, "taken", r#"["sleep", "1000"]"#, "[]");
    app.berth(&["up", path.to_str().unwrap(), "--slot", "65"])
        .assert()
        .failure()
        .stderr(contains("127.65.1.1:7100 is not available"));
}

#[test]
fn a_member_never_ready_fails_up_with_its_log() {
    let app = LocalApp::new("never");
    let command = r#"["sh", "-c", "echo starting up slowly; exec sleep 1000"]"#;
    let path = manifest(&app, "never", command, "[]");
    app.berth(&[
        "up",
        path.to_str().unwrap(),
        "--slot",
        "66",
        "--timeout",
        "2",
    ])
    .assert()
    .failure()
    .stderr(contains("never-0 not ready after 2s"))
    .stderr(contains("starting up slowly"));
}
