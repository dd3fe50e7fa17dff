//! End to end: backup and restore on the local engine with real Redis (examples/redis.yaml)
//! and a real S3-compatible server (versitygw, started by the test on 127.0.0.1). 10,000 keys
//! are written, `berth backup` streams a replica's snapshot to the bucket with its manifest,
//! 1,000 more keys are written, and a new app started with `--restore-from` holds exactly the
//! first 10,000 keys with their values on every member. A backup whose stored data was
//! damaged, or one that does not exist, fails the restore before any member starts.

mod local_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::s3::S3Server;
use local_common::backup::{damage, dbsize, example_store, up_with_secret};
use local_common::resp::Redis;
use local_common::{LocalApp, REDIS, require, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const FIRST: u32 = 10_000;
const MORE: u32 = 1_000;

/// `berth up` with the backup credentials and more arguments, returning the command's output.
fn up(
    app: &LocalApp,
    manifest: &Path,
    secret: &Path,
    slot: u8,
    more: &[&str],
) -> std::process::Output {
    let secret = ("redis-backup", secret);
    up_with_secret(app, manifest, secret, slot, more)
        .output()
        .unwrap()
}

fn member_addr(slot: u8, ordinal: u8) -> String {
    format!("127.{slot}.1.{}:6379", ordinal + 1)
}

fn write(addr: &str, keys: std::ops::Range<u32>) {
    let mut conn = Redis::connect(addr).unwrap();
    for i in keys {
        let (reply, _) = conn
            .call(&["SET", &format!("k:{i}"), &format!("v:{i}")])
            .unwrap();
        assert_eq!(reply, "+OK", "SET k:{i}");
    }
}

fn backups(app: &LocalApp) -> Vec<Value> {
    let out = app
        .berth(&["backups", "redis", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_backup_restores_into_a_new_app_with_exactly_its_keys() {
    if !require(REDIS) {
        return;
    }
    let Some(store) = example_store("redis.yaml") else {
        return;
    };
    let server = &store.server;
    let (manifest, secret) = (&store.manifest, &store.secret);

    let source = LocalApp::new("redis");
    assert!(up(&source, manifest, secret, 83, &[]).status.success());
    wait_until("a master", WAIT, || {
        source.roles().contains(&r#""master""#.to_string())
    });
    let write_service = "127.83.250.1:6379";
    write(write_service, 0..FIRST);
    for ordinal in 0..3 {
        wait_until("every replica has the keys", WAIT, || {
            dbsize(&member_addr(83, ordinal)) == Some(u64::from(FIRST))
        });
    }
    let out = source.berth(&["backup", "redis"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout.lines().last().unwrap().trim().to_string();
    // the example's snapshot went through the file berth named (`backupOutput: File`), now gone
    assert!(!source.home.path().join("redis/backup.data").exists());
    write(write_service, FIRST..FIRST + MORE);

    let listed = backups(&source);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["phase"], "Succeeded");
    assert_eq!(listed[0]["url"], url.as_str());
    assert_eq!(listed[0]["sha256"].as_str().unwrap().len(), 64);
    assert_ne!(
        listed[0]["member"], "redis-0",
        "taken from the master, not a replica"
    );

    let restored = LocalApp::new("redis");
    let out = up(&restored, manifest, secret, 84, &["--restore-from", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Streamed into the first member (`restoreInput: Stdin`), kept for the other two, then gone.
    let events = std::fs::read_to_string(restored.home.path().join("redis/events.log")).unwrap();
    let line = format!("restored from {url}: ");
    assert!(
        events
            .lines()
            .any(|l| l.contains(&line) && l.contains("3 member(s)")),
        "{events}"
    );
    assert!(!restored.home.path().join("redis/restore.data").exists());
    for ordinal in 0..3 {
        wait_until("a restored member serves the keys", WAIT, || {
            dbsize(&member_addr(84, ordinal)) == Some(u64::from(FIRST))
        });
    }
    let mut conn = Redis::connect(&member_addr(84, 0)).unwrap();
    for i in 0..FIRST {
        let (_, value) = conn.call(&["GET", &format!("k:{i}")]).unwrap();
        assert_eq!(value.as_deref(), Some(format!("v:{i}").as_str()), "k:{i}");
    }
    restored.down();

    refused_restores(server, manifest, secret, &url);
    source.down();
}

/// A damaged backup and a missing one: `berth up` fails naming why, and no member starts.
fn refused_restores(server: &S3Server, manifest: &Path, secret: &Path, url: &str) {
    damage(server, url);
    let missing = format!("{url}-missing");
    for (source, expected) in [(url, "corrupt"), (missing.as_str(), "not found")] {
        let app = LocalApp::new("redis");
        let out = up(&app, manifest, secret, 85, &["--restore-from", source]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        let started = app.home.path().join("redis/redis-0").exists();
        assert!(
            !started,
            "a member's directory exists after a refused restore"
        );
        assert!(app.members().iter().all(|m| m["pid"].is_null()));
    }
}

/// An app of two `sleep` members with a volume whose backup action is `action` (a shell line
/// run in the member's directory), whose repository is `server`'s `bucket`, and with `more`
/// lines in its `backup` (schedule, retention).
fn sleepers(app: &LocalApp, server: &S3Server, bucket: &str, action: &str, more: &str) -> PathBuf {
    let (endpoint, region) = (server.endpoint(), server.region());
    let text = format!(
        r#"apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {{name: sleepers}}
spec:
  parts:
    - name: sleepers
      replicas: 2
      template:
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - name: main
              image: example/none:1
              command: ["/bin/sh", "-c", "exec sleep 100000"]
      state:
        persistent:
          - {{name: data, size: 1Gi, mountPath: /data}}
        backup:
          action: {{exec: ["/bin/sh", "-c", "{action}"], timeoutSeconds: 2}}
          restore: {{exec: ["/bin/sh", "-c", "cat > /dev/null"]}}
          repository:
            endpoint: {endpoint}
            bucket: {bucket}
            region: {region}
            pathStyle: true
            credentials: {{secretName: store}}
{more}"#
    );
    let path = app.home.path().join("sleepers.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `berth backup sleepers`: its exit code and stderr.
fn backup_sleepers(app: &LocalApp) -> (Option<i32>, String) {
    let out = app.berth(&["backup", "sleepers"]).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// The reason the newest listed backup failed.
fn last_failure(app: &LocalApp) -> String {
    let out = app
        .berth(&["backups", "sleepers", "-o", "json"])
        .output()
        .unwrap();
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let last = all.last().expect("a backup record");
    assert_eq!(last["phase"], "Failed", "{last}");
    last["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn failed_backups_are_recorded_with_their_reason_and_leave_no_object() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    server.create_bucket("failing").unwrap();
    let app = LocalApp::new("sleepers");
    let secret = app.home.path().join("store.env");
    let keys = |secret_key: &str| {
        format!(
            "accessKeyId={}\nsecretAccessKey={secret_key}\n",
            server.access_key()
        )
    };
    std::fs::write(&secret, keys(server.secret_key())).unwrap();
    let action = "echo partial; exec 1>&-; echo broken >&2; exit 3";
    let manifest = sleepers(&app, &server, "failing", action, "");
    let secret_arg = format!("store={}", secret.display());
    let up = [
        "up",
        manifest.to_str().unwrap(),
        "--slot",
        "86",
        "--secret",
        &secret_arg,
    ];
    app.berth(&up).assert().success();

    let (code, stderr) = backup_sleepers(&app);
    assert_eq!(code, Some(1), "{stderr}");
    let why = last_failure(&app);
    assert!(
        why.contains("exited with Some(3)") && why.contains("broken"),
        "{why}"
    );

    std::fs::write(&secret, keys("wrong")).unwrap();
    let (code, stderr) = backup_sleepers(&app);
    assert_eq!(code, Some(1), "{stderr}");
    let why = last_failure(&app);
    assert!(
        why.contains("SignatureDoesNotMatch") || why.contains("denied"),
        "{why}"
    );

    let bucket = server.object_file("failing", "");
    let left: Vec<_> = walk(&bucket);
    assert!(left.is_empty(), "objects left by failed backups: {left:?}");
    let running = app.members().iter().filter(|m| !m["pid"].is_null()).count();
    assert_eq!(running, 2, "the app was affected by failed backups");
    app.berth(&["down", "sleepers"]).assert().success();
}

#[test]
fn a_schedule_takes_backups_and_retention_keeps_the_newest_two() {
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    server.create_bucket("scheduled").unwrap();
    let app = LocalApp::new("sleepers");
    let secret = app.home.path().join("store.env");
    let keys = format!(
        "accessKeyId={}\nsecretAccessKey={}\n",
        server.access_key(),
        server.secret_key()
    );
    std::fs::write(&secret, keys).unwrap();
    let more = "          schedule: {cron: '*/2 * * * * *'}\n          retention: {keepLast: 2}\n";
    let manifest = sleepers(
        &app,
        &server,
        "scheduled",
        "echo data of $BERTH_MEMBER",
        more,
    );
    let secret_arg = format!("store={}", secret.display());
    let up = [
        "up",
        manifest.to_str().unwrap(),
        "--slot",
        "87",
        "--secret",
        &secret_arg,
    ];
    app.berth(&up).assert().success();
    let events = app.home.path().join("sleepers/events.log");
    let deleted = || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        text.matches("deleted by retention").count()
    };
    let listed = || {
        let out = app
            .berth(&["backups", "sleepers", "-o", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    };
    let manifests = || {
        let stored = walk(&server.object_file("scheduled", ""));
        stored
            .iter()
            .filter(|p| p.ends_with("manifest.json"))
            .count()
    };
    wait_until("retention deleted two scheduled backups", WAIT, || {
        deleted() >= 2
    });
    wait_until(
        "two backups kept, in the records and the bucket",
        WAIT,
        || {
            let kept = listed();
            kept.len() == 2 && kept.iter().all(|b| b["phase"] == "Succeeded") && manifests() == 2
        },
    );
    app.berth(&["down", "sleepers"]).assert().success();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
