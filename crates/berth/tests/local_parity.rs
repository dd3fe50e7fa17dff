//! End to end: the local engine runs specs as Kubernetes would, as a new user meets them (issue
//! 13): two berth homes never share an address slot; a stop runs the preStop hook then the
//! container's `lifecycle.stopSignal`; members run as their `securityContext` user; init containers
//! run in order before each start; Secrets come from local sources and are never shown. Needs `sh`
//! and `python3`.

mod local_common;

use std::path::PathBuf;

use local_common::LocalApp;
use predicates::str::contains;

/// A one-member app `name` in `app`'s home from `containers` (YAML under `template.spec`, at
/// its indentation), ready when port 7100 accepts connections unless `containers` says
/// otherwise.
fn write_manifest(app: &LocalApp, name: &str, spec: &str) -> PathBuf {
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
{spec}
      state:
        topology:
          ports:
            - {{name: main, port: 7100}}
"#
    );
    let path = app.home.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A container that listens on port 7100 of its address (with `python3`, always present).
const LISTENER: &str = r#"          terminationGracePeriodSeconds: 5
          containers:
            - name: main
              image: example/none:1
              command: ["python3", "-c", "import socket,os,time; s=socket.socket(); s.bind((os.environ['BERTH_ADDRESS'], 7100)); s.listen(); time.sleep(1000)"]
              readinessProbe:
                tcpSocket: {port: 7100}
                periodSeconds: 1"#;

/// The address slot of `app`'s only member.
fn slot_of(app: &LocalApp) -> String {
    let members = app.members();
    let address = members[0]["address"].as_str().expect("address").to_string();
    address.split('.').nth(1).expect("slot").to_string()
}

#[test]
fn two_homes_never_pick_the_same_slot() {
    let first = LocalApp::new("twin");
    let second = LocalApp::new("twin");
    for app in [&first, &second] {
        let path = write_manifest(app, "twin", LISTENER);
        app.berth(&["up", path.to_str().unwrap()])
            .assert()
            .success();
    }
    assert_ne!(slot_of(&first), slot_of(&second));
}

#[test]
fn a_slot_held_by_another_home_is_a_clear_error() {
    let first = LocalApp::new("held");
    let second = LocalApp::new("held");
    let path = write_manifest(&first, "held", LISTENER);
    first.up(&path, 83);
    let path = write_manifest(&second, "held", LISTENER);
    let home = std::fs::canonicalize(first.home.path()).unwrap();
    second
        .berth(&["up", path.to_str().unwrap(), "--slot", "83"])
        .assert()
        .failure()
        .stderr(contains(format!(
            "address slot 83 (127.83.*.*) is held by app `held` in berth home {}",
            home.display()
        )))
        .stderr(contains("choose another with `--slot"));
}

/// A member that records the signals it gets in `signals`, with a preStop hook that records
/// itself there first, and the stop signal SIGINT.
const STOPPABLE: &str = r#"          terminationGracePeriodSeconds: 10
          containers:
            - name: main
              image: example/none:1
              command: ["sh", "-c", "trap 'echo INT >> signals; exit 0' INT; trap 'echo TERM >> signals; exit 0' TERM; while :; do sleep 0.1; done"]
              lifecycle:
                stopSignal: SIGINT
                preStop:
                  exec:
                    command: ["sh", "-c", "echo preStop $BERTH_MEMBER >> signals"]"#;

#[test]
fn stop_runs_pre_stop_then_the_stop_signal() {
    let app = LocalApp::new("stopper");
    let path = write_manifest(&app, "stopper", STOPPABLE);
    app.up(&path, 84);
    app.down();
    let signals = app.home.path().join("stopper/stopper-0/signals");
    let text = std::fs::read_to_string(&signals).unwrap_or_default();
    assert_eq!(text, "preStop stopper-0\nINT\n", "{}", signals.display());
}

/// A member that records its user and group; the container's `runAsUser` wins over the pod's,
/// the pod's `runAsGroup` applies; its readiness probe records its user too.
const RUN_AS: &str = r#"          terminationGracePeriodSeconds: 5
          securityContext: {runAsUser: 1, runAsGroup: 65534}
          containers:
            - name: main
              image: example/none:1
              securityContext: {runAsUser: 65534}
              command: ["sh", "-c", "echo $(id -u):$(id -g) > whoami; exec sleep 1000"]
              readinessProbe:
                exec:
                  command: ["sh", "-c", "id -u > probe-user; test -s whoami"]
                periodSeconds: 1"#;

#[test]
fn members_run_as_their_security_context_user() {
    let app = LocalApp::new("runas");
    let path = write_manifest(&app, "runas", RUN_AS);
    let root = local_common::output("id", &["-u"]) == "0";
    let up = app
        .berth(&["up", path.to_str().unwrap(), "--slot", "85"])
        .assert()
        .success();
    let dir = app.home.path().join("runas/runas-0");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    if root {
        assert_eq!(read("whoami").trim(), "65534:65534");
        assert_eq!(
            read("probe-user").trim(),
            "65534",
            "probes run as the member's user"
        );
    } else {
        up.stderr(contains("runAsUser 65534 ignored"));
    }
}

/// Two init containers and a main one that each append to `order`.
const INITS: &str = r#"          terminationGracePeriodSeconds: 5
          initContainers:
            - name: first
              image: example/none:1
              command: ["sh", "-c", "echo first $BERTH_MEMBER $GREETING >> order"]
              env: [{name: GREETING, value: "from-first"}]
            - name: second
              image: example/none:1
              command: ["sh", "-c", "echo second >> order"]
          containers:
            - name: main
              image: example/none:1
              command: ["sh", "-c", "echo main >> order; exec sleep 1000"]"#;

#[test]
fn init_containers_run_in_order_before_each_start() {
    let app = LocalApp::new("inits");
    let path = write_manifest(&app, "inits", INITS);
    app.up(&path, 86);
    app.down();
    app.up(&path, 86);
    let order = std::fs::read_to_string(app.home.path().join("inits/inits-0/order"));
    let once = "first inits-0 from-first\nsecond\nmain\n";
    assert_eq!(order.unwrap_or_default(), once.repeat(2));
}

#[test]
fn a_failing_init_container_keeps_the_member_from_starting() {
    let app = LocalApp::new("badinit");
    let spec = INITS.replace("echo second >> order", "echo second cannot go on; exit 3");
    let path = write_manifest(&app, "badinit", &spec);
    app.berth(&[
        "up",
        path.to_str().unwrap(),
        "--slot",
        "87",
        "--timeout",
        "3",
    ])
    .assert()
    .failure()
    .stderr(contains("init container second failed (exit status: 3)"))
    .stderr(contains("second cannot go on"));
    let order = std::fs::read_to_string(app.home.path().join("badinit/badinit-0/order"));
    assert!(
        !order.unwrap_or_default().contains("main"),
        "main must not start"
    );
}

/// A member that gets `PASSWORD` from Secret `pw-env` and Secret `pw-files` mounted at
/// `/etc/auth`, and copies both where the test can see them; ready once its exec probe has
/// `PASSWORD` too, as an exec in its container would on Kubernetes.
const SECRETS: &str = r#"          terminationGracePeriodSeconds: 5
          containers:
            - name: main
              image: example/none:1
              command: ["sh", "-c", "echo \"$PASSWORD\" > seen-env; cat {{ paths['/etc/auth'] }}/password > seen-file; exec sleep 1000"]
              readinessProbe:
                exec:
                  command: ["sh", "-c", "[ -n \"$PASSWORD\" ]"]
                periodSeconds: 1
              env:
                - name: PASSWORD
                  valueFrom:
                    secretKeyRef: {name: pw-env, key: PASSWORD}"#;

/// Every file's text under `dir` (logs, state), to check that no secret leaked there.
fn all_text(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() && name != "secrets" && name != "pw-files" {
            text += &all_text(&path);
        } else if path.is_file() && !name.starts_with("seen-") && !name.ends_with(".env") {
            text += &String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default());
        }
    }
    text
}

#[test]
fn secrets_come_from_local_sources_and_are_never_shown() {
    let app = LocalApp::new("secretive");
    let path = write_manifest(&app, "secretive", SECRETS);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "      state:\n",
        "      state:\n        config:\n          secrets:\n            - {secretName: pw-files, path: /etc/auth}\n",
    );
    std::fs::write(&path, text).unwrap();
    let manifest = path.to_str().unwrap();
    app.berth(&["up", manifest, "--slot", "88"])
        .assert()
        .failure()
        .stderr(contains("pw-env, pw-files"))
        .stderr(contains("--secret pw-env=DIR-or-ENV-FILE"));
    let env_file = app.home.path().join("pw.env");
    std::fs::write(&env_file, "# local password\nPASSWORD=hunter2-env\n").unwrap();
    let dir = app.home.path().join("pw-files");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("password"), "hunter2-file").unwrap();
    let env_arg = format!("pw-env={}", env_file.display());
    let dir_arg = format!("pw-files={}", dir.display());
    let up = app
        .berth(&[
            "up",
            manifest,
            "--slot",
            "88",
            "--secret",
            &env_arg,
            "--secret",
            &dir_arg,
            "--timeout",
            "30",
        ])
        .assert()
        .success();
    let member = app.home.path().join("secretive/secretive-0");
    let read = |name: &str| std::fs::read_to_string(member.join(name)).unwrap_or_default();
    local_common::wait_until(
        "the member to copy its secrets",
        std::time::Duration::from_secs(10),
        || !read("seen-file").is_empty(),
    );
    assert_eq!(read("seen-env").trim(), "hunter2-env");
    assert_eq!(read("seen-file"), "hunter2-file");
    let mounted = member.join("secrets/0-pw-files/password");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&mounted).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let status = app
        .berth(&["status", "secretive", "-o", "json"])
        .output()
        .unwrap();
    let shown = format!(
        "{}{}{}",
        String::from_utf8_lossy(&up.get_output().stdout),
        String::from_utf8_lossy(&status.stdout),
        all_text(app.home.path())
    );
    assert!(!shown.contains("hunter2"), "a secret was shown: {shown}");
}
