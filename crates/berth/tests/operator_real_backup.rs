//! Backups under `berth operator` on the test cluster's real nodes, with the shipped Redis
//! example (`examples/redis.yaml`, real-node delivery values, `backup.endpoint` pointed at a
//! versitygw the test starts on 127.0.0.1: the operator runs on the host and carries the bytes;
//! pods never talk to S3). Keys are written through the `write` Service, a `StatefulAppBackup`
//! streams a replica's snapshot into the bucket with its manifest, and `berth up
//! --restore-from` restores that backup on this machine with the same keys: the cross-engine
//! acceptance item. Wrong credentials fail a backup with the reason and leave the app alone; a
//! schedule every minute with `keepLast: 2` keeps two. Skipped without 2 real nodes or the S3
//! server outside CI, failing in CI.

mod local_common;
mod operator_common;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_testkit::s3::S3Server;
use local_common::backup::{dbsize, example_files, up_with_secret};
use local_common::resp::Redis;
use local_common::{LocalApp, REDIS, require};
use operator_common::real::*;
use operator_common::*;
use serde_json::{Value, json};

const BUCKET: &str = "berth-backups";
const KEYS: usize = 2_000;
const IMAGE: &str = "berth.local/redis:deb12";
/// The local app's address slot (other local tests use 80-85).
const SLOT: u8 = 87;

/// The example on the real nodes with its repository at `server`, and `extra` changes to its
/// backup section (JSON merged into `state.backup`).
fn backed_up_redis(ns: &str, server: &S3Server, extra: &Value) -> String {
    let endpoint = format!("backup.endpoint={}", server.endpoint());
    let text = real_example("redis", ns, &[&endpoint]);
    let mut app: Value = serde_json::from_str(&text).unwrap();
    let backup = &mut app["spec"]["parts"][0]["state"]["backup"];
    backup["repository"]["region"] = json!(server.region());
    for (k, v) in extra.as_object().into_iter().flatten() {
        backup[k] = v.clone();
    }
    app.to_string()
}

/// The Secret the example's repository names, with `secret` as the secret access key.
fn credentials(ns: &str, server: &S3Server, secret: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "redis-backup", "namespace": ns},
        "stringData": {"accessKeyId": server.access_key(), "secretAccessKey": secret},
    })
    .to_string()
}

/// A pod with redis-cli on a real node, to write through the `write` Service.
fn client_pod(ns: &str) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": ns},
        "spec": {
            "nodeSelector": {"berth.io/node-kind": "real"},
            "tolerations": [{"key": "berth.io/node-kind", "value": "real", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "client", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["sleep", "infinity"]}],
        },
    })
    .to_string()
}

fn write_keys(cluster: &Cluster, ns: &str) {
    let script =
        format!("seq 1 {KEYS} | sed 's/.*/SET key:& value:&/' | redis-cli -h redis-write --pipe");
    let piped = wait_until("the write Service to take the keys", REAL_TIMEOUT, || {
        sh(cluster, ns, "client", &script)
    });
    assert!(
        piped.contains(&format!("errors: 0, replies: {KEYS}")),
        "{piped}"
    );
    for member in ["redis-0", "redis-1", "redis-2"] {
        wait_until(&format!("{member} to hold the keys"), REAL_TIMEOUT, || {
            let size = sh(cluster, ns, member, "redis-cli -h \"$BERTH_POD_IP\" DBSIZE")?;
            (size == KEYS.to_string()).then_some(())
        });
    }
}

fn request_backup(cluster: &Cluster, ns: &str, name: &str) {
    let backup = json!({
        "apiVersion": "berth.io/v1alpha1", "kind": "StatefulAppBackup",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"app": "redis"},
    });
    apply(cluster, &backup.to_string());
}

fn backup(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster.get_json(&["statefulappbackup", name, "-n", ns])
}

/// The backup once it succeeded or failed.
fn finished(cluster: &Cluster, ns: &str, name: &str) -> Value {
    wait_until(&format!("backup {name} to finish"), REAL_TIMEOUT, || {
        let b = backup(cluster, ns, name);
        let phase = b["status"]["phase"].as_str().unwrap_or_default();
        matches!(phase, "Succeeded" | "Failed").then_some(b)
    })
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    printed
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Asserts that the succeeded backup's data and manifest are in the bucket as its status says.
fn assert_stored(server: &S3Server, status: &Value) {
    let key = text(&status["key"]);
    let data = server.object_file(BUCKET, key);
    assert!(data.is_file(), "no object {key}");
    assert_eq!(
        std::fs::metadata(&data).unwrap().len(),
        status["size"].as_u64().unwrap()
    );
    assert_eq!(
        sha256(&data),
        text(&status["sha256"]),
        "the stored data's sha256"
    );
    let manifest_key = key.replace("/data", "/manifest.json");
    let manifest = std::fs::read_to_string(server.object_file(BUCKET, &manifest_key)).unwrap();
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(manifest["engine"], "kubernetes");
    assert_eq!(manifest["sha256"], status["sha256"]);
    assert_eq!(manifest["member"], status["member"]);
    assert_eq!(manifest["size"], status["size"]);
}

/// `berth up --restore-from url` on this machine: every member serves exactly the keys.
fn restore_locally(server: &S3Server, url: &str) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, secret) = example_files(server, "redis.yaml", dir.path());
    let local = LocalApp::new("redis");
    let started = Instant::now();
    let secret = ("redis-backup", secret.as_path());
    let restore = ["--restore-from", url];
    let out = up_with_secret(&local, &manifest, secret, SLOT, &restore)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ordinal in 1..=3 {
        let addr = format!("127.{SLOT}.1.{ordinal}:6379");
        local_common::wait_until("a restored member to serve the keys", REAL_TIMEOUT, || {
            dbsize(&addr) == Some(KEYS as u64)
        });
    }
    let took = started.elapsed();
    let mut conn = Redis::connect(&format!("127.{SLOT}.1.1:6379")).unwrap();
    for i in 1..=KEYS {
        let (_, value) = conn.call(&["GET", &format!("key:{i}")]).unwrap();
        assert_eq!(
            value.as_deref(),
            Some(format!("value:{i}").as_str()),
            "key:{i}"
        );
    }
    local.down();
    took
}

/// A backup with a wrong secret key fails with the server's reason; the app stays Ready.
fn wrong_credentials_fail(cluster: &Cluster, ns: &str, server: &S3Server) {
    apply(cluster, &credentials(ns, server, "not-the-secret-key"));
    request_backup(cluster, ns, "wrong-key");
    let failed = finished(cluster, ns, "wrong-key");
    let status = &failed["status"];
    assert_eq!(status["phase"], "Failed", "{failed}");
    let error = text(&status["error"]);
    assert!(
        error.contains("SignatureDoesNotMatch") || error.contains("403"),
        "{error}"
    );
    assert!(
        !error.contains("not-the-secret-key"),
        "the secret leaked: {error}"
    );
    eprintln!("wrong credentials: {error}");
    wait_members_ready(cluster, ns, "redis", 3);
    apply(cluster, &credentials(ns, server, server.secret_key()));
}

/// The part's backup directories in the bucket that hold data.
fn stored_backups(server: &S3Server) -> usize {
    let dir = server.object_file(BUCKET, "redis/redis");
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries.filter(|e| e.path().join("data").is_file()).count()
}

/// Succeeded backups by name, and how many the schedule created.
fn succeeded(cluster: &Cluster, ns: &str) -> (Vec<String>, usize) {
    let list = cluster.get_json(&["statefulappbackups", "-n", ns]);
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let scheduled = items
        .iter()
        .filter(|b| b["metadata"]["labels"]["berth.io/scheduled"] == "true");
    let names = items
        .iter()
        .filter(|b| b["status"]["phase"] == "Succeeded")
        .map(|b| text(&b["metadata"]["name"]).to_string())
        .collect();
    (names, scheduled.count())
}

/// A schedule every minute with `keepLast: 2`: scheduled backups succeed, and the oldest
/// successful ones are deleted, objects and resources, so two stay.
fn schedule_keeps_two(cluster: &Cluster, ns: &str, server: &S3Server) -> Duration {
    let started = Instant::now();
    let every_minute = json!({"schedule": {"cron": "* * * * *"}, "retention": {"keepLast": 2}});
    apply(cluster, &backed_up_redis(ns, server, &every_minute));
    wait_until(
        "two scheduled backups kept, the first expired",
        Duration::from_secs(300),
        || {
            let (names, scheduled) = succeeded(cluster, ns);
            let kept = names.len() == 2 && !names.contains(&"first".to_string());
            (kept && scheduled >= 2 && stored_backups(server) == 2).then_some(())
        },
    );
    started.elapsed()
}

#[test]
fn an_operator_backup_lands_in_s3_and_restores_with_berth_up() {
    let Some((cluster, ns, server)) = real_nodes_and_s3("real-backup", BUCKET) else {
        return;
    };
    if !require(REDIS) {
        return;
    }
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &credentials(ns, &server, server.secret_key()));
    apply(cluster, &client_pod(ns));
    let manifest = backed_up_redis(ns, &server, &json!({}));
    start_on_real_nodes(cluster, ns, "redis", &manifest, 3);
    let master = single_master(cluster, ns, "redis", 3);
    write_keys(cluster, ns);

    let started = Instant::now();
    request_backup(cluster, ns, "first");
    let done = finished(cluster, ns, "first");
    let took = started.elapsed();
    let status = &done["status"];
    assert_eq!(status["phase"], "Succeeded", "{done}\n{}", operator.log());
    assert_ne!(
        status["member"].as_str(),
        Some(master.as_str()),
        "taken from a replica"
    );
    assert_stored(&server, status);
    let events = step_events(cluster, ns, &["BackupStarted", "BackupSucceeded"]);
    assert_eq!(events.len(), 2, "{events:?}");
    let url = text(&status["url"]).to_string();
    let restored = restore_locally(&server, &url);
    eprintln!(
        "backup of {KEYS} keys: {} bytes in {took:?} from {}; restored with berth up in {restored:?}",
        status["size"], status["member"]
    );

    wrong_credentials_fail(cluster, ns, &server);
    let kept_after = schedule_keeps_two(cluster, ns, &server);
    eprintln!("schedule every minute with keepLast 2: two kept after {kept_after:?}");
    assert_eq!(phase(cluster, ns, "redis"), "Ready");
    assert!(
        !operator.log().contains(server.secret_key()),
        "the secret key was logged"
    );
}
