//! End-to-end tests of what the operator's status says while things go wrong or slowly
//! (issue 10): terminating members, revisions mid-rollout, conflicting volume retention,
//! members that never start, and `minReadySeconds` between rollout steps.

mod operator_common;

use operator_common::*;
use serde_json::Value;

/// The member `name` in the app's first part.
fn member(a: &Value, name: &str) -> Value {
    a["status"]["parts"][0]["members"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn a_terminating_member_is_not_ready() {
    let Some((cluster, ns)) = setup("op-terminating") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
    let _hold = Finalizer::hold(cluster, &ns.name, "web-1");
    cluster.ok(
        &["delete", "pod", "web-1", "-n", &ns.name, "--wait=false"],
        "",
    );
    let a = wait_until(
        "web-1 to show as not ready while it terminates",
        TIMEOUT,
        || {
            let a = app(cluster, &ns.name, "web");
            let web1 = member(&a, "web-1");
            (web1["ready"] == false).then_some(a)
        },
    );
    let pod = cluster.get_json(&["pod", "web-1", "-n", &ns.name]);
    assert!(
        pod["metadata"]["deletionTimestamp"].is_string(),
        "web-1 is still held: {}",
        pod["metadata"]
    );
    assert_eq!(a["status"]["summary"]["ready"], "2/3", "{}", a["status"]);
    assert_eq!(a["status"]["parts"][0]["ready"], 2, "{}", a["status"]);
    assert_ne!(a["status"]["phase"], "Ready", "{}", a["status"]);
}

#[test]
fn the_current_revision_stays_old_while_any_member_runs_it() {
    let Some((cluster, ns)) = setup("op-current-rev") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{partition: 1}");
    apply(cluster, &manifest);
    let before = wait_ready(cluster, &ns.name, "web");
    let old = before["status"]["parts"][0]["updateRevision"].clone();
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let part = wait_until("web-2 and web-1 on the new revision", TIMEOUT, || {
        let a = wait_ready(cluster, &ns.name, "web");
        let part = a["status"]["parts"][0].clone();
        let new = &part["updateRevision"];
        let updated = ["web-1", "web-2"]
            .iter()
            .all(|m| &member(&a, m)["revision"] == new);
        (*new != old && updated).then_some(part)
    });
    assert_eq!(part["members"][0]["name"], "web-0");
    assert_eq!(part["members"][0]["revision"], old, "{part}");
    assert_eq!(
        part["currentRevision"], old,
        "web-0 still runs the old revision: {part}"
    );
    assert_ne!(part["currentRevision"], part["updateRevision"], "{part}");
}

/// The web example with a second volume, `scratch`, first, whose claims are deleted.
fn web_with_scratch_volume(ns: &str) -> String {
    example("web", ns).replacen(
        "        persistent:\n          - name: www\n",
        "        persistent:\n          - name: scratch\n            size: 1Gi\n            mountPath: /scratch\n            retention: {whenScaled: Delete, whenDeleted: Delete}\n          - name: www\n            retention: {whenScaled: Retain, whenDeleted: Retain}\n",
        1,
    )
}

#[test]
fn volumes_with_different_retention_policies_are_invalid_and_nothing_is_applied() {
    let Some((cluster, ns)) = setup("op-retention") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_scratch_volume(&ns.name);
    assert!(manifest.contains("name: scratch"), "{manifest}");
    apply(cluster, &manifest);
    let ready = ready_condition(&wait_phase(cluster, &ns.name, "web", "Invalid"));
    let message = ready["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "spec.parts[0].state.persistent[1].retention.whenDeleted: `Retain` differs from \
             `Delete` of volume `scratch` (spec.parts[0].state.persistent[0].retention.whenDeleted); \
             a StatefulSet has one retention policy for all its volumes"
        ),
        "{message}"
    );
    assert!(names_of(cluster, &ns.name, "statefulsets").is_empty());
    assert!(names_of(cluster, &ns.name, "configmaps").is_empty());
}

#[test]
fn a_member_that_cannot_be_scheduled_shows_why() {
    let Some((cluster, ns)) = setup("op-unschedulable") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("zookeeper", &ns.name).replacen(
        "            size: 100G\n",
        "            size: 100G\n            storageClass: e2e-no-such-class\n",
        1,
    );
    apply(cluster, &manifest);
    let a = wait_until(
        "zookeeper-server-0 to show why it is not ready",
        TIMEOUT,
        || {
            let a = app(cluster, &ns.name, "zookeeper");
            (member(&a, "zookeeper-server-0")["reason"] == "Unschedulable").then_some(a)
        },
    );
    let first = member(&a, "zookeeper-server-0");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("unbound immediate PersistentVolumeClaims"),
        "{first}"
    );
    // OrderedReady: the next members wait for the first one.
    assert_eq!(
        member(&a, "zookeeper-server-1")["reason"],
        "NoPod",
        "{}",
        a["status"]
    );
    let ready = ready_condition(&a);
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("zookeeper-server-0 Unschedulable: "),
        "{ready}"
    );
    assert_eq!(a["status"]["summary"]["ready"], "0/3");
}

#[test]
fn the_zookeeper_example_uses_the_default_storage_class_and_becomes_ready() {
    let Some((cluster, ns)) = setup("op-zk-default-class") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("zookeeper", &ns.name);
    assert!(!manifest.contains("storageClass: "), "{manifest}");
    apply(cluster, &manifest);
    let a = wait_ready(cluster, &ns.name, "zookeeper");
    assert_eq!(a["status"]["summary"]["ready"], "3/3");
    let members = a["status"]["parts"][0]["members"].as_array().unwrap();
    assert!(members.iter().all(|m| m["reason"].is_null()), "{members:?}");
}

/// Seconds since the epoch of an RFC 3339 UTC time such as `2026-01-02T03:04:05.678901Z`.
fn epoch_seconds(time: &str) -> f64 {
    let (date, clock) = time.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|p| p.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    // Days from 1970-01-01 (the civil-date algorithm, March-based years).
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d[2] - 719_469;
    let c: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    days as f64 * 86_400.0 + c[0] * 3600.0 + c[1] * 60.0 + c[2]
}

/// The `eventTime`s of the operator's `RollingUpdate` events, in order.
fn rolling_update_times(cluster: &Cluster, ns: &str) -> Vec<f64> {
    let events = cluster.get_json(&["events.events.k8s.io", "-n", ns]);
    let mut times: Vec<f64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "RollingUpdate")
        .map(|e| epoch_seconds(e["eventTime"].as_str().unwrap()))
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

#[test]
fn min_ready_seconds_spaces_the_rollout_steps() {
    assert_eq!(epoch_seconds("1970-01-02T00:00:01.5Z"), 86_401.5);
    assert_eq!(epoch_seconds("2000-03-01T00:00:00Z"), 951_868_800.0);
    let Some((cluster, ns)) = setup("op-min-ready") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{minReadySeconds: 5}");
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    let jsonpath = "jsonpath={.spec.minReadySeconds}";
    let rendered = cluster.ok(
        &["get", "statefulset", "web", "-n", &ns.name, "-o", jsonpath],
        "",
    );
    assert_eq!(rendered, "5");
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let order = replacement_order(cluster, &ns.name, 3);
    assert_eq!(order, ["web-2", "web-1", "web-0"]);
    let times = rolling_update_times(cluster, &ns.name);
    assert_eq!(times.len(), 3, "{times:?}");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= 5.0,
            "steps {:.1}s apart, minReadySeconds is 5: {times:?}",
            pair[1] - pair[0]
        );
    }
}
