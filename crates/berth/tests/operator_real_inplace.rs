//! In-place updates and member failures with the shipped etcd example in real containers under
//! `berth operator`, on the test cluster's real nodes (delivery values only:
//! `tools/testenv/testdata/real-node-etcd.values.yaml`, `podUpdatePolicy`, `image`). An image
//! change under `InPlaceIfPossible` (to `berth.local/etcd:deb12-tools`, the same etcd plus one
//! package, so its image ID differs) keeps every pod's UID and data: the kubelet restarts each
//! container on the new image (image ID, restart count) while the pod's in-place readiness gate
//! is closed, as a watch on the pods shows. A pod deleted by hand comes back with its volume's
//! data, and a member whose process is killed (`kill 1`) is restarted and rejoins. Skipped
//! without 2 real nodes outside CI (see `berth_testkit::real_nodes`), failing in CI.

mod operator_common;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::{Child, Stdio};

use berth_testkit::real_nodes;
use operator_common::real::*;
use operator_common::*;

const NEW_IMAGE: &str = "berth.local/etcd:deb12-tools";
const IN_PLACE: &str = "podUpdatePolicy=InPlaceIfPossible";
const MEMBERS: [&str; 3] = ["etcd-0", "etcd-1", "etcd-2"];
const GATE: &str = "berth.io/in-place-update-ready";

/// Writes key `key` = `value` through `member`.
fn put(cluster: &Cluster, ns: &str, member: &str, key: &str, value: &str) {
    wait_until(&format!("{key} written"), REAL_TIMEOUT, || {
        etcdctl(cluster, ns, member, &format!("put {key} {value}"))
    });
}

/// Waits until `member` holds `key` = `value` in its own copy of the data (a serializable read,
/// answered from the member's own store without asking the leader).
fn wait_local_value(cluster: &Cluster, ns: &str, member: &str, key: &str, value: &str) {
    let what = format!("{member} to hold {key}={value} itself");
    wait_until(&what, REAL_TIMEOUT, || {
        let read = etcdctl(
            cluster,
            ns,
            member,
            &format!("get {key} --consistency=s --print-value-only"),
        );
        (read.as_deref() == Some(value)).then_some(())
    });
}

/// A member's container as the kubelet reports it: (image, image ID, restart count).
fn container(pod: &serde_json::Value) -> (String, String, u64) {
    let status = &pod["status"]["containerStatuses"][0];
    let text = |k: &str| status[k].as_str().unwrap_or_default().to_string();
    let restarts = status["restartCount"].as_u64().unwrap_or_default();
    (text("image"), text("imageID"), restarts)
}

/// Every member's container, by pod name.
fn containers(cluster: &Cluster, ns: &str) -> BTreeMap<String, (String, String, u64)> {
    member_pods(cluster, ns, "etcd")
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                container(p),
            )
        })
        .collect()
}

/// A `kubectl get pods --watch` printing, per change of a member's pod, one line:
/// `name|gate status|image ID|container ready`.
fn watch_pods(cluster: &Cluster, ns: &str) -> Child {
    let format = format!(
        "jsonpath={{.metadata.name}}|{{.status.conditions[?(@.type==\"{GATE}\")].status}}|{{.status.containerStatuses[0].imageID}}|{{.status.containerStatuses[0].ready}}{{\"\\n\"}}"
    );
    cluster
        .kubectl()
        .args([
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "app.kubernetes.io/instance=etcd",
            "--watch",
            "-o",
        ])
        .arg(format)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Stops the watch and returns its lines.
fn watched(mut watch: Child) -> String {
    let _ = watch.kill();
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = watch.wait();
    out
}

/// Asserts from the watch's lines that `member`'s gate was closed (`False`) before its container
/// reported a new image ID, stayed closed until then, and opened only after it.
fn assert_gate_closed_across_the_restart(lines: &str, member: &str, old_image_id: &str) {
    let seen: Vec<Vec<&str>> = lines
        .lines()
        .map(|l| l.split('|').collect::<Vec<&str>>())
        .filter(|f| f.len() == 4 && f[0] == member)
        .collect();
    let closed = seen.iter().position(|f| f[1] == "False");
    let closed = closed.unwrap_or_else(|| panic!("{member}'s gate never closed: {seen:?}"));
    let new_image = seen
        .iter()
        .position(|f| !f[2].is_empty() && f[2] != old_image_id);
    let new_image = new_image.unwrap_or_else(|| panic!("{member} never got a new image: {seen:?}"));
    assert!(
        closed < new_image,
        "{member}: gate closed before the restart: {seen:?}"
    );
    assert!(
        seen[closed..=new_image].iter().all(|f| f[1] == "False"),
        "{member}: the gate stays closed until the new image runs: {seen:?}"
    );
    let opened = seen.iter().rposition(|f| f[1] == "True");
    assert!(
        opened > Some(new_image),
        "{member}: the gate opens after the restart: {seen:?}"
    );
}

/// Starts the example with in-place updates on real nodes and writes a key through the leader.
fn start(cluster: &Cluster, ns: &str) -> std::time::Duration {
    let ready_after = start_on_real_nodes(
        cluster,
        ns,
        "etcd",
        &real_example("etcd", ns, &[IN_PLACE]),
        3,
    );
    let leader = single_leader(cluster, ns, "etcd", 3);
    put(cluster, ns, &leader, "before", "the-update");
    for member in MEMBERS {
        wait_local_value(cluster, ns, member, "before", "the-update");
    }
    ready_after
}

#[test]
fn an_image_change_in_place_restarts_each_etcd_container_on_the_new_image_keeping_pod_and_data() {
    let Some((cluster, ns)) = setup("real-inplace-op") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    let ready_after = start(cluster, ns);
    let uids = pod_uids(cluster, ns, "etcd");
    let before = containers(cluster, ns);
    let old_revision = update_revision(cluster, ns, "etcd");

    let watch = watch_pods(cluster, ns);
    let updating = std::time::Instant::now();
    let image = format!("image={NEW_IMAGE}");
    apply(cluster, &real_example("etcd", ns, &[IN_PLACE, &image]));
    let done = rolled_out(cluster, ns, "etcd", &old_revision);
    let updated_after = updating.elapsed();
    let lines = watched(watch);

    assert_eq!(
        pod_uids(cluster, ns, "etcd"),
        uids,
        "the pods are the same\n{}",
        operator.log()
    );
    let after = containers(cluster, ns);
    for member in MEMBERS {
        let (old_image, old_id, old_restarts) = &before[member];
        let (new_image, new_id, new_restarts) = &after[member];
        assert_ne!(old_image, NEW_IMAGE);
        assert_eq!(new_image, NEW_IMAGE, "{member} runs the new image");
        assert_ne!(new_id, old_id, "{member}'s image ID changed");
        assert_eq!(
            *new_restarts,
            old_restarts + 1,
            "{member}'s container restarted once"
        );
        assert_gate_closed_across_the_restart(&lines, member, old_id);
        wait_local_value(cluster, ns, member, "before", "the-update");
    }
    let members = done["status"]["parts"][0]["members"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        members.iter().all(|m| m["updatedInPlace"] == true),
        "{members:?}"
    );
    single_leader(cluster, ns, "etcd", 3);
    eprintln!(
        "real etcd in place: Ready after {ready_after:?}; 3 members updated in place in {updated_after:?}"
    );
}

/// The UID of `member`'s PersistentVolumeClaim (`data-<member>`).
fn claim_uid(cluster: &Cluster, ns: &str, member: &str) -> String {
    let claim = cluster.get_json(&["pvc", &format!("data-{member}"), "-n", ns]);
    claim["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Waits until the cluster, as `member` sees it, has its 3 members started and healthy.
fn wait_healthy(cluster: &Cluster, ns: &str, member: &str) {
    wait_until(
        &format!("3 healthy members as {member} sees them"),
        REAL_TIMEOUT,
        || {
            let health = etcdctl(cluster, ns, member, "endpoint health --cluster 2>&1")?;
            (health.matches("is healthy").count() == 3).then_some(())
        },
    );
}

#[test]
fn a_deleted_etcd_pod_comes_back_with_its_data_and_a_killed_member_restarts_and_rejoins() {
    let Some((cluster, ns)) = setup("real-failures-op") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let ns = &ns.name;
    let _operator = Operator::start(cluster, ns, &[]);
    start(cluster, ns);

    // a pod deleted by hand: a new pod, the same claim, the data it held
    let uids = pod_uids(cluster, ns, "etcd");
    let claim = claim_uid(cluster, ns, "etcd-1");
    let deleted = std::time::Instant::now();
    cluster.ok(&["delete", "pod", "etcd-1", "-n", ns, "--wait=false"], "");
    wait_until("etcd-1 recreated", REAL_TIMEOUT, || {
        let now = pod_uids(cluster, ns, "etcd");
        (now.get("etcd-1").is_some_and(|uid| *uid != uids["etcd-1"])).then_some(())
    });
    wait_members_ready(cluster, ns, "etcd", 3);
    let back_after = deleted.elapsed();
    assert_eq!(
        claim_uid(cluster, ns, "etcd-1"),
        claim,
        "etcd-1 keeps its claim"
    );
    wait_local_value(cluster, ns, "etcd-1", "before", "the-update");
    wait_healthy(cluster, ns, "etcd-0");

    // `kill 1`: etcd is the container's first process (start.sh execs it)
    let restarts = containers(cluster, ns)["etcd-2"].2;
    let killed = std::time::Instant::now();
    cluster.ok(&["exec", "-n", ns, "etcd-2", "--", "kill", "1"], "");
    wait_until("etcd-2's container restarted", REAL_TIMEOUT, || {
        (containers(cluster, ns)["etcd-2"].2 > restarts).then_some(())
    });
    wait_members_ready(cluster, ns, "etcd", 3);
    wait_healthy(cluster, ns, "etcd-2");
    let leader = single_leader(cluster, ns, "etcd", 3);
    put(cluster, ns, &leader, "after", "the-kill");
    wait_local_value(cluster, ns, "etcd-2", "after", "the-kill");
    wait_local_value(cluster, ns, "etcd-2", "before", "the-update");
    let rejoined_after = killed.elapsed();
    assert_eq!(
        pod_uids(cluster, ns, "etcd")["etcd-2"],
        uids["etcd-2"],
        "the same pod"
    );
    eprintln!(
        "real etcd failures: deleted pod back with its data after {back_after:?}; killed member rejoined after {rejoined_after:?}"
    );
}
