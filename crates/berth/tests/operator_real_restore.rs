//! `restoreFrom` under `berth operator` on the test cluster's real nodes: a backup taken on
//! this machine by the local engine (`berth up` + `berth backup` of the shipped Redis example,
//! 10,000 keys) restores into a new app on the cluster, every member holding exactly those
//! keys, each member held by its `berth-restore` init container until it was restored and
//! released. With `--agent-image`, each member downloads the backup itself (`berth agent
//! transfer`, the example's `restoreInput: Stdin` streaming it into the restore action) from a
//! versitygw in the nodes' network namespace, and a backup of the new app is uploaded by its
//! member's pod: the bytes never cross the API server. Then the backup's data is damaged in the
//! bucket: a new app restored from it fails (`status.restore` Failed naming the checksum, the
//! app Degraded with `RestoreFailed`) and its member's container never starts.
//! And an etcd backup the operator took on the cluster restores into a new 3-member etcd whose
//! members start together: a new cluster of the new app's members, with the keys. That test's
//! operator has no agent image and its versitygw is on 127.0.0.1: the operator carries the
//! bytes (`restoreInput: File`) and pods never talk to S3.
//! Skipped without 2 real nodes, Redis or the S3 server outside CI, failing in CI.

mod local_common;
mod operator_common;

use std::time::Instant;

use berth_testkit::s3::S3Server;
use local_common::backup::{damage, dbsize, example_files, up_with_secret};
use local_common::resp::Redis;
use local_common::{LocalApp, REDIS, require};
use operator_common::real::*;
use operator_common::*;
use serde_json::{Value, json};

const BUCKET: &str = "berth-backups";
const KEYS: u32 = 10_000;
/// The local app's address slot (other local tests use 80-87).
const SLOT: u8 = 88;

/// Takes a backup of the local Redis example holding `KEYS` keys; its URL and sha256.
fn local_backup(server: &S3Server) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, secret) = example_files(server, "redis.yaml", dir.path());
    let local = LocalApp::new("redis");
    let mut up = up_with_secret(&local, &manifest, ("redis-backup", &secret), SLOT, &[]);
    let out = up.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    local_common::wait_until("the local master", REAL_TIMEOUT, || {
        local.roles().contains(&r#""master""#.to_string())
    });
    let mut conn = Redis::connect(&format!("127.{SLOT}.250.1:6379")).unwrap();
    for i in 0..KEYS {
        let (reply, _) = conn
            .call(&["SET", &format!("k:{i}"), &format!("v:{i}")])
            .unwrap();
        assert_eq!(reply, "+OK");
    }
    for ordinal in 1..=3 {
        let addr = format!("127.{SLOT}.1.{ordinal}:6379");
        local_common::wait_until("every local member to hold the keys", REAL_TIMEOUT, || {
            dbsize(&addr) == Some(u64::from(KEYS))
        });
    }
    let out = local.berth(&["backup", "redis"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let listed = local
        .berth(&["backups", "redis", "-o", "json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let sha256 = listed[0]["sha256"].as_str().unwrap().to_string();
    local.down();
    (url, sha256)
}

/// The example as app `name` on the real nodes, restored from `url`.
fn restored_app(ns: &str, server: &S3Server, name: &str, url: &str, replicas: u32) -> String {
    let endpoint = format!("backup.endpoint={}", server.endpoint());
    let replicas = format!("replicas={replicas}");
    let text = real_example("redis", ns, &[&endpoint, &replicas]);
    let mut app: Value = serde_json::from_str(&text).unwrap();
    app["metadata"]["name"] = json!(name);
    app["spec"]["restoreFrom"] = json!({ "url": url });
    let backup = &mut app["spec"]["parts"][0]["state"]["backup"];
    backup["repository"]["region"] = json!(server.region());
    app.to_string()
}

fn credentials(ns: &str, server: &S3Server) -> String {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "redis-backup", "namespace": ns},
        "stringData": {"accessKeyId": server.access_key(), "secretAccessKey": server.secret_key()},
    })
    .to_string()
}

/// Every member of app `name` holds exactly the backup's keys, with their values.
fn assert_keys(cluster: &Cluster, ns: &str, name: &str) {
    for ordinal in 0..3 {
        let member = format!("{name}-redis-{ordinal}");
        let size = sh(
            cluster,
            ns,
            &member,
            "redis-cli -h \"$BERTH_POD_IP\" DBSIZE",
        );
        assert_eq!(size.as_deref(), Some("10000"), "{member}'s keys");
        let script = "for k in 0 1 4999 9999; do redis-cli -h \"$BERTH_POD_IP\" GET k:$k; done";
        let values = sh(cluster, ns, &member, script).unwrap_or_default();
        assert_eq!(
            values.split_whitespace().collect::<Vec<_>>(),
            ["v:0", "v:1", "v:4999", "v:9999"]
        );
    }
}

/// The restore's status once it ended.
fn restore_ended(cluster: &Cluster, ns: &str, name: &str) -> Value {
    wait_until(&format!("{name}'s restore to end"), REAL_TIMEOUT, || {
        let restore = app(cluster, ns, name)["status"]["restore"].clone();
        matches!(restore["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(restore)
    })
}

/// A damaged backup: the restore fails naming the checksum, the app is Degraded, and its
/// member stays in its init container: the app's container never started.
fn damaged_backup_fails(cluster: &Cluster, ns: &str, server: &S3Server, url: &str) {
    damage(server, url);
    apply(cluster, &restored_app(ns, server, "broken", url, 1));
    let restore = restore_ended(cluster, ns, "broken");
    assert_eq!(restore["phase"], "Failed", "{restore}");
    let message = restore["message"].as_str().unwrap_or_default();
    assert!(message.contains("sha256"), "{message}");
    let degraded = wait_phase(cluster, ns, "broken", "Degraded");
    let conditions = degraded["status"]["conditions"].as_array().unwrap().clone();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Degraded" && c["reason"] == "RestoreFailed"),
        "{conditions:?}"
    );
    let pod = cluster.get_json(&["pod", "broken-redis-0", "-n", ns]);
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    let init = inits.iter().find(|c| c["name"] == "berth-restore").unwrap();
    assert!(init["state"]["running"].is_object(), "{init}");
    let main = &pod["status"]["containerStatuses"][0];
    assert!(main["state"]["running"].is_null(), "{main}");
    assert_eq!(main["restartCount"], 0);
    assert!(main["lastState"]["terminated"].is_null(), "{main}");
}

#[test]
fn a_local_backup_restores_into_a_new_app_on_the_cluster() {
    let Some((cluster, ns, server)) = real_nodes_and_pod_s3("real-restore", BUCKET) else {
        return;
    };
    if !require(REDIS) {
        return;
    }
    let (url, sha256) = local_backup(&server);

    let ns = &ns.name;
    let (repository, tag) = operator_image();
    let image = format!("{repository}:{tag}");
    let operator = Operator::start(cluster, ns, &["--agent-image", &image]);
    apply(cluster, &credentials(ns, &server));
    let started = Instant::now();
    let manifest = restored_app(ns, &server, "copy", &url, 3);
    start_on_real_nodes(cluster, ns, "copy", &manifest, 3);
    let took = started.elapsed();
    let restore = restore_ended(cluster, ns, "copy");
    assert_eq!(
        restore["phase"],
        "Succeeded",
        "{restore}\n{}",
        operator.log()
    );
    assert_eq!(restore["restored"], json!([0, 1, 2]));
    assert_eq!(restore["sha256"], sha256.as_str());
    assert_keys(cluster, ns, "copy");
    let restored = step_events(cluster, ns, &["MemberRestored"]);
    assert_eq!(restored.len(), 3, "{restored:?}");
    assert!(
        restored
            .iter()
            .all(|(_, note)| note.contains("the bytes carried by its own pod")),
        "{restored:?}"
    );
    // a restored member's pod, recreated, starts without waiting for a restore
    let before = pod_uids(cluster, ns, "copy");
    cluster.run(
        &["delete", "pod", "copy-redis-1", "-n", ns, "--wait=false"],
        "",
    );
    wait_until("copy-redis-1 recreated and ready", REAL_TIMEOUT, || {
        let pods = member_pods(cluster, ns, "copy");
        let pod = pods
            .iter()
            .find(|p| p["metadata"]["name"] == "copy-redis-1")?;
        let recreated =
            pod["metadata"]["uid"].as_str() != before.get("copy-redis-1").map(String::as_str);
        let conditions = pod["status"]["conditions"].as_array()?;
        let ready = conditions
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (recreated && ready).then_some(())
    });
    wait_members_ready(cluster, ns, "copy", 3);
    assert_eq!(step_events(cluster, ns, &["MemberRestored"]).len(), 3);
    assert_keys(cluster, ns, "copy");
    eprintln!("restored {KEYS} keys into 3 members on the cluster in {took:?}");
    backup_by_the_member(cluster, ns, &server, &operator);

    damaged_backup_fails(cluster, ns, &server, &url);
}

/// A backup of the restored app, uploaded by its member's agent: it succeeds, says so, and its
/// data and manifest are in the bucket.
fn backup_by_the_member(cluster: &Cluster, ns: &str, server: &S3Server, operator: &Operator) {
    let done = backup_ended(cluster, ns, "copy", "of-the-copy");
    let status = &done["status"];
    assert_eq!(status["phase"], "Succeeded", "{done}\n{}", operator.log());
    let started = step_events(cluster, ns, &["BackupStarted"]);
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(
        started[0].1.contains("the bytes carried by its own pod"),
        "{started:?}"
    );
    // the example's snapshot went through the file berth named in the agent's container
    // (`backupOutput: File`), removed once stored
    let member = status["member"].as_str().unwrap();
    let file = [
        "exec",
        "-n",
        ns,
        member,
        "-c",
        "berth-agent",
        "--",
        "ls",
        "/tmp",
    ];
    let out = cluster.run(&file, "");
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(!listed.contains("berth-backup.data"), "{listed}");
    let key = status["key"].as_str().unwrap();
    let data = std::fs::metadata(server.object_file(BUCKET, key)).unwrap();
    assert_eq!(Some(data.len()), status["size"].as_u64());
    let manifest = key.replace("/data", "/manifest.json");
    assert!(server.object_file(BUCKET, &manifest).is_file());
}

/// The etcd example as app `name` on the real nodes, backed up to `server`, restored from
/// `url` when given.
fn etcd_app(ns: &str, server: &S3Server, name: &str, url: Option<&str>) -> String {
    let store = (server.endpoint(), server.region());
    let mut app = real_backup_example("etcd", ns, (&store.0, store.1), name, url);
    let repository = &mut app["spec"]["parts"][0]["state"]["backup"]["repository"];
    repository["credentials"]["secretName"] = json!("redis-backup");
    app.to_string()
}

/// An etcd backup the operator took on the cluster restores into a new app whose members
/// start together (`podManagement: Parallel`): each restores the snapshot as a member of a new
/// cluster of the new app's members, which then serves the keys and takes writes.
#[test]
fn an_etcd_backup_restores_into_a_new_cluster() {
    let Some((cluster, ns, server)) = real_nodes_and_s3("real-restore-etcd", BUCKET) else {
        return;
    };
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &credentials(ns, &server));
    start_on_real_nodes(cluster, ns, "etcd", &etcd_app(ns, &server, "etcd", None), 3);
    let put = "for n in $(seq 1 100); do etcdctl --endpoints=http://$BERTH_POD_IP:2379 put data/$n value-$n >/dev/null || exit 1; done";
    wait_until("the keys written", REAL_TIMEOUT, || {
        sh(cluster, ns, "etcd-0", put)
    });
    let done = backup_ended(cluster, ns, "etcd", "first");
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "{done}\n{}",
        operator.log()
    );
    let url = done["status"]["url"].as_str().unwrap();

    start_on_real_nodes(
        cluster,
        ns,
        "copy",
        &etcd_app(ns, &server, "copy", Some(url)),
        3,
    );
    let restore = restore_ended(cluster, ns, "copy");
    assert_eq!(
        restore["phase"],
        "Succeeded",
        "{restore}\n{}",
        operator.log()
    );
    for ordinal in 0..3 {
        let member = format!("copy-etcd-{ordinal}");
        let values = etcdctl(
            cluster,
            ns,
            &member,
            "get --prefix data/ --print-value-only",
        );
        assert_eq!(
            values.unwrap_or_default().lines().count(),
            100,
            "{member}'s keys"
        );
        // the backup's data, downloaded into the member's volume, went before the member started
        let volume = sh(cluster, ns, &member, "ls -A /var/lib/etcd").unwrap_or_default();
        let files: Vec<&str> = volume.split_whitespace().collect();
        assert!(
            files.contains(&"member-data"),
            "{member}'s volume: {files:?}"
        );
        assert!(
            !files.iter().any(|f| f.starts_with(".berth-restore.")),
            "{member}'s volume: {files:?}"
        );
        let members = etcdctl(cluster, ns, &member, "member list").unwrap_or_default();
        assert_eq!(members.lines().count(), 3, "{members}");
        assert!(
            members.lines().all(|l| l.contains("copy-etcd-")),
            "{members}"
        );
    }
    let put = etcdctl(cluster, ns, "copy-etcd-1", "put after restore");
    assert_eq!(put.as_deref(), Some("OK"));
}
