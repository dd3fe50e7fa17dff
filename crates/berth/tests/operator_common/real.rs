//! Helpers for the operator's tests on the test cluster's real nodes: a shipped example with
//! its real-node delivery values (`tools/testenv/testdata/real-node-<app>.values.yaml`), commands
//! in members through `kubectl exec`, the members' role labels, and waits on real pods.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_core::load::{Inputs, load};
use berth_testkit::{Cluster, real_nodes, repo_root, wait_until};
use serde_json::Value;

use super::{app, apply};

/// Real pods start in seconds, but sometimes wait ~13 s for their volume (docs/testing.md).
pub const REAL_TIMEOUT: Duration = Duration::from_secs(300);

/// `examples/<name>.yaml` as a resource in `ns`, with the delivery values of
/// `tools/testenv/testdata/real-node-<name>.values.yaml` applied by the core as `berth render`
/// applies them, plus `sets` (`key=value`).
pub fn real_example(name: &str, ns: &str, sets: &[&str]) -> String {
    let read = |path: &str| std::fs::read_to_string(repo_root().join(path)).unwrap();
    let app_file = format!("examples/{name}.yaml");
    let values = format!("tools/testenv/testdata/real-node-{name}.values.yaml");
    let inputs = Inputs {
        app_text: read(&app_file),
        app_file,
        values: vec![(values.clone(), read(&values))],
        sets: sets.iter().map(|s| s.to_string()).collect(),
        namespace: Some(ns.into()),
    };
    let app = load(&inputs).unwrap_or_else(|e| panic!("the {name} example loads: {e:?}"));
    serde_json::to_string(&app.app).unwrap()
}

/// `kubectl exec` of `script` (sh) in the pod's first container: Some(stdout) on success.
pub fn sh(cluster: &Cluster, ns: &str, pod: &str, script: &str) -> Option<String> {
    let out = cluster.run(&["exec", "-n", ns, pod, "--", "sh", "-c", script], "");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `redis-cli ARGS` in a Redis member, against its own server (it listens on its pod IP only).
pub fn member_cli(cluster: &Cluster, ns: &str, member: &str, args: &str) -> Option<String> {
    sh(
        cluster,
        ns,
        member,
        &format!("redis-cli -h \"$BERTH_POD_IP\" {args}"),
    )
}

/// The pods of app `instance`, as JSON.
pub fn member_pods(cluster: &Cluster, ns: &str, instance: &str) -> Vec<Value> {
    let selector = format!("app.kubernetes.io/instance={instance}");
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", &selector]);
    pods["items"].as_array().unwrap().clone()
}

/// Each member's `berth.io/role` label ("-" when it has none), by pod name.
pub fn roles(cluster: &Cluster, ns: &str, instance: &str) -> BTreeMap<String, String> {
    member_pods(cluster, ns, instance)
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            let role = p["metadata"]["labels"]["berth.io/role"].as_str();
            (name, role.unwrap_or("-").to_string())
        })
        .collect()
}

/// The one member labelled `leader`, once `size` members are labelled by the role probe:
/// exactly one `leader`, the rest `follower`.
pub fn single_leader(cluster: &Cluster, ns: &str, instance: &str, size: usize) -> String {
    single_role(cluster, ns, instance, size, ["leader", "follower"])
}

/// The one member labelled `master`, once `size` members are labelled by the role probe (the
/// Redis example's): exactly one `master`, the rest `slave`.
pub fn single_master(cluster: &Cluster, ns: &str, instance: &str, size: usize) -> String {
    single_role(cluster, ns, instance, size, ["master", "slave"])
}

/// The one member labelled `primary`, once `size` members are labelled by the role probe:
/// exactly one `primary`, the rest `replica` (the MariaDB example's roles).
pub fn single_primary(cluster: &Cluster, ns: &str, instance: &str, size: usize) -> String {
    single_role(cluster, ns, instance, size, ["primary", "replica"])
}

/// The one member labelled `one`, once `size` members are labelled: one `one`, the rest `rest`.
fn single_role(
    cluster: &Cluster,
    ns: &str,
    instance: &str,
    size: usize,
    [one, rest]: [&str; 2],
) -> String {
    let what = format!("one {instance} {one} and {} {rest}", size - 1);
    wait_until(&what, REAL_TIMEOUT, || {
        let roles = roles(cluster, ns, instance);
        let ones: Vec<&String> = roles
            .iter()
            .filter(|(_, r)| *r == one)
            .map(|(n, _)| n)
            .collect();
        let others = roles.values().filter(|r| *r == rest).count();
        (roles.len() == size && ones.len() == 1 && others == size - 1).then(|| ones[0].clone())
    })
}

/// Waits until app `name` is Ready with `size`/`size` members at its current generation;
/// returns how long that took.
pub fn wait_members_ready(cluster: &Cluster, ns: &str, name: &str, size: usize) -> Duration {
    let started = Instant::now();
    let ready = format!("{size}/{size}");
    wait_until(
        &format!("{name} Ready with {ready} members"),
        REAL_TIMEOUT,
        || {
            let a = app(cluster, ns, name);
            let observed = a["status"]["observedGeneration"] == a["metadata"]["generation"];
            (observed
                && a["status"]["phase"] == "Ready"
                && a["status"]["summary"]["ready"] == ready)
                .then_some(())
        },
    );
    started.elapsed()
}

/// Asserts that every pod of app `instance` runs on a real node.
pub fn assert_on_real_nodes(cluster: &Cluster, ns: &str, instance: &str) {
    let real = real_nodes(cluster, 2).unwrap();
    for pod in member_pods(cluster, ns, instance) {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let name = &pod["metadata"]["name"];
        assert!(real.iter().any(|r| r == node), "{name} runs on {node:?}");
    }
}

/// Applies `manifest` (a real example) and waits until its `size` members are Ready, all on
/// real nodes; returns how long that took.
pub fn start_on_real_nodes(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    manifest: &str,
    size: usize,
) -> Duration {
    let started = Instant::now();
    apply(cluster, manifest);
    wait_members_ready(cluster, ns, name, size);
    assert_on_real_nodes(cluster, ns, name);
    started.elapsed()
}

/// App `name` once it is Ready with every member on a revision other than `old_revision`.
pub fn rolled_out(cluster: &Cluster, ns: &str, name: &str, old_revision: &str) -> Value {
    wait_until("every member on the new revision", REAL_TIMEOUT, || {
        let a = app(cluster, ns, name);
        let generation = &a["metadata"]["generation"];
        let part = &a["status"]["parts"][0];
        let members_new = part["members"]
            .as_array()?
            .iter()
            .all(|m| m["revision"] == part["updateRevision"]);
        (a["status"]["phase"] == "Ready"
            && &a["status"]["observedGeneration"] == generation
            && part["updateRevision"] != old_revision
            && part["currentRevision"] == part["updateRevision"]
            && members_new)
            .then(|| a.clone())
    })
}

/// The part's update revision as the app's status reports it now.
pub fn update_revision(cluster: &Cluster, ns: &str, name: &str) -> String {
    let a = app(cluster, ns, name);
    let revision = a["status"]["parts"][0]["updateRevision"].as_str();
    revision.unwrap_or_default().to_string()
}

/// Pod UIDs of app `instance`'s members, by pod name.
pub fn pod_uids(cluster: &Cluster, ns: &str, instance: &str) -> BTreeMap<String, String> {
    member_pods(cluster, ns, instance)
        .iter()
        .map(|p| {
            let text = |k: &str| p["metadata"][k].as_str().unwrap().to_string();
            (text("name"), text("uid"))
        })
        .collect()
}

/// The shared test cluster, a test namespace and an S3 server.
pub type WithS3 = (
    &'static Cluster,
    berth_testkit::TestNamespace,
    berth_testkit::s3::S3Server,
);

/// The shared test cluster with 2 real nodes, a namespace, and a versitygw on 127.0.0.1 with
/// `bucket`; `None` (skipped) outside CI when one is missing.
pub fn real_nodes_and_s3(prefix: &str, bucket: &str) -> Option<WithS3> {
    with_bucket(prefix, bucket, berth_testkit::s3::S3Server::start_or_skip)
}

/// The cluster with 2 real nodes, a namespace, and the S3 server `start` gives with `bucket`.
fn with_bucket(
    prefix: &str,
    bucket: &str,
    start: impl FnOnce() -> Option<berth_testkit::s3::S3Server>,
) -> Option<WithS3> {
    let (cluster, ns) = super::setup(prefix)?;
    real_nodes(cluster, 2)?;
    let server = start()?;
    server.create_bucket(bucket).unwrap();
    Some((cluster, ns, server))
}

/// [`real_nodes_and_s3`] with the versitygw in the nodes' network namespace, where both this
/// host and the pods reach it (`S3Server::start_for_pods`).
pub fn real_nodes_and_pod_s3(prefix: &str, bucket: &str) -> Option<WithS3> {
    with_bucket(prefix, bucket, || {
        let started = berth_testkit::s3::S3Server::start_for_pods();
        Some(started.unwrap_or_else(|e| panic!("the S3 server for pods did not start: {e}")))
    })
}

/// Example `example` as app `name` on the real nodes (its real-node values), backed up to the
/// S3 server at `endpoint` in `region`, restored from `url` when given.
pub fn real_backup_example(
    example: &str,
    ns: &str,
    (endpoint, region): (&str, &str),
    name: &str,
    url: Option<&str>,
) -> Value {
    let endpoint = format!("backup.endpoint={endpoint}");
    let text = real_example(example, ns, &[&endpoint]);
    let mut app: Value = serde_json::from_str(&text).unwrap();
    app["metadata"]["name"] = serde_json::json!(name);
    if let Some(url) = url {
        app["spec"]["restoreFrom"] = serde_json::json!({ "url": url });
    }
    let repository = &mut app["spec"]["parts"][0]["state"]["backup"]["repository"];
    repository["region"] = serde_json::json!(region);
    app
}

/// Creates `StatefulAppBackup` `name` of app `app` (an on-demand backup) and returns it once it
/// ended, `Succeeded` or `Failed`.
pub fn backup_ended(cluster: &Cluster, ns: &str, app: &str, name: &str) -> Value {
    let backup = serde_json::json!({
        "apiVersion": "berth.io/v1alpha1", "kind": "StatefulAppBackup",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"app": app},
    });
    apply(cluster, &backup.to_string());
    wait_until(
        &format!("backup {name} of {app} to end"),
        REAL_TIMEOUT,
        || {
            let b = cluster.get_json(&["statefulappbackup", name, "-n", ns]);
            matches!(b["status"]["phase"].as_str(), Some("Succeeded" | "Failed")).then_some(b)
        },
    )
}

/// `etcdctl ARGS` in a member, against its own server (it listens on its pod IP only).
pub fn etcdctl(cluster: &Cluster, ns: &str, member: &str, args: &str) -> Option<String> {
    let script = format!("etcdctl --endpoints=http://$BERTH_POD_IP:2379 {args}");
    sh(cluster, ns, member, &script)
}

/// The operator image of the binary under test, built (unless cached) and imported into the
/// real nodes by `scripts/testenv operator-image`: (repository, tag).
pub fn operator_image() -> (String, String) {
    let binary = super::berth_binary();
    let reference = berth_testkit::testenv(&["operator-image", binary.to_str().unwrap()]);
    let (repository, tag) = reference
        .trim()
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("operator-image printed an image reference: {reference:?}"));
    (repository.to_string(), tag.to_string())
}
