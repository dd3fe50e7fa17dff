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
