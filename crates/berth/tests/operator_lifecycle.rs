//! End-to-end tests of how the operator lives beside a cluster's other users, on the real
//! control plane (kwok nodes): started while apps already exist, stopped by SIGTERM, and
//! sharing namespaces with objects it did not create and with other apps.

mod operator_common;

use std::time::Duration;

use operator_common::*;
use serde_json::Value;

/// The web example renamed `name`, with one member and its own headless Service, so that
/// many such apps fit in one namespace.
fn small_web(name: &str, ns: &str) -> String {
    example("web", ns)
        .replace("  name: web\n", &format!("  name: {name}\n"))
        .replace(
            "headlessService: nginx",
            &format!("headlessService: {name}-peers"),
        )
        .replace("      replicas: 3\n", "      replicas: 1\n")
}

/// Apps `app-0..count` spread over `namespaces`, in order.
fn spread(count: usize, namespaces: &[&str]) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                namespaces[i % namespaces.len()].to_string(),
                format!("app-{i}"),
            )
        })
        .collect()
}

/// Defect: a started operator awaited its caches in every reconcile, and kube's
/// `Store::wait_until_ready` wakes only the last of several waiters: with many apps, one per
/// namespace was reconciled and the rest stayed stale forever; SIGTERM then never ended it.
#[test]
fn an_operator_started_while_apps_exist_reconciles_every_one_and_stops_on_sigterm() {
    let Some((cluster, first)) = setup("op-start") else {
        return;
    };
    let (second, third) = (
        TestNamespace::new(cluster, "op-start"),
        TestNamespace::new(cluster, "op-start"),
    );
    let namespaces = [first.name.as_str(), &second.name, &third.name];
    let apps = spread(20, &namespaces);
    let mut operator = Operator::watching(cluster, &namespaces, &[]);
    for (ns, name) in &apps {
        apply(cluster, &small_web(name, ns));
    }
    for (ns, name) in &apps {
        wait_ready(cluster, ns, name);
    }
    operator.kill();

    // Changed while no operator runs: each app must be reconciled by the next one.
    for (ns, name) in &apps {
        apply(
            cluster,
            &small_web(name, ns).replace("      replicas: 1\n", "      replicas: 2\n"),
        );
    }
    let mut operator = Operator::watching(cluster, &namespaces, &[]);
    for (ns, name) in &apps {
        let a = wait_ready(cluster, ns, name);
        assert_eq!(a["status"]["summary"]["ready"], "2/2", "{ns}/{name}");
    }
    let stopped = operator.terminate(Duration::from_secs(30));
    assert!(
        stopped.is_some(),
        "SIGTERM did not end the operator within 30 s:\n{}",
        operator.log()
    );
}

/// The web example with `objects` (YAML list items, indented for `spec:`) as extra objects.
fn web_with_extras(ns: &str, objects: &str) -> String {
    example("web", ns).replacen(
        "  parts:\n",
        &format!("  extraObjects:\n{objects}  parts:\n"),
        1,
    )
}

/// The app once its phase is `Blocked`, with the Ready condition's reason and message.
fn wait_blocked(cluster: &Cluster, ns: &str, name: &str) -> (String, String) {
    let ready = ready_condition(&wait_phase(cluster, ns, name, "Blocked"));
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    (text("reason"), text("message"))
}

/// `kubectl get KIND NAME -o json` in `ns`, or `None` when it does not exist.
fn object(cluster: &Cluster, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let out = cluster.run(&["get", kind, name, "-n", ns, "-o", "json"], "");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

const USER_DATA: &str = "    - apiVersion: v1\n      kind: ConfigMap\n      metadata: {name: user-data}\n      data: {owner: berth}\n";

/// Defect: an extra object named like one the user already had was taken over (berth's owner
/// reference) and deleted when it left the spec.
#[test]
fn an_existing_object_is_neither_taken_over_nor_deleted_unless_the_spec_adopts_it() {
    let Some((cluster, ns)) = setup("op-adopt") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    cluster.ok(
        &[
            "create",
            "configmap",
            "user-data",
            "-n",
            &ns.name,
            "--from-literal=owner=user",
        ],
        "",
    );
    apply(cluster, &web_with_extras(&ns.name, USER_DATA));
    let (reason, message) = wait_blocked(cluster, &ns.name, "web");
    assert_eq!(reason, "Conflict");
    assert!(
        message.starts_with("ConfigMap user-data exists and was not created by berth"),
        "{message}"
    );
    assert!(
        object(cluster, &ns.name, "statefulset", "web").is_none(),
        "nothing else of the app was applied"
    );
    let kept = object(cluster, &ns.name, "configmap", "user-data").unwrap();
    assert_eq!(kept["data"]["owner"], "user");
    assert!(kept["metadata"]["ownerReferences"].is_null(), "{kept}");
    assert!(events(cluster, &ns.name).contains("Conflict"));

    // Without the object the app comes up, and the user's ConfigMap stays.
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
    let kept = object(cluster, &ns.name, "configmap", "user-data").unwrap();
    assert_eq!(kept["data"]["owner"], "user");

    // Adopted on request: then it is the app's, and leaves with it.
    let adopt = USER_DATA.replace(
        "metadata: {name: user-data}",
        "metadata: {name: user-data, annotations: {berth.io/adopt: \"true\"}}",
    );
    apply(cluster, &web_with_extras(&ns.name, &adopt));
    wait_until("the ConfigMap to be adopted", TIMEOUT, || {
        let cm = object(cluster, &ns.name, "configmap", "user-data")?;
        (cm["data"]["owner"] == "berth"
            && cm["metadata"]["ownerReferences"][0]["kind"] == "StatefulApp")
            .then_some(())
    });
    apply(cluster, &example("web", &ns.name));
    wait_until("the adopted ConfigMap to be pruned", TIMEOUT, || {
        object(cluster, &ns.name, "configmap", "user-data")
            .is_none()
            .then_some(())
    });
}

/// Defect: failures of the apply itself (RBAC, an unknown kind, an object the API server
/// rejects) left no status and no event, after part of the objects had been applied.
#[test]
fn objects_the_api_server_refuses_block_the_app_with_its_message_and_nothing_is_applied() {
    let Some((cluster, ns)) = setup("op-applyfail") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let refused = [
        (
            web_with_extras(
                &ns.name,
                "    - apiVersion: v1\n      kind: Secret\n      metadata: {name: password}\n      stringData: {password: x}\n",
            ),
            "forbidden",
        ),
        (
            web_with_extras(
                &ns.name,
                "    - apiVersion: widgets.example.com/v1\n      kind: Widget\n      metadata: {name: w}\n",
            ),
            "Widget",
        ),
        (
            example("web", &ns.name).replace("- name: nginx\n", "- name: Nginx_Bad\n"),
            "Nginx_Bad",
        ),
    ];
    for (manifest, expected) in &refused {
        apply(cluster, manifest);
        let (reason, message) = wait_blocked(cluster, &ns.name, "web");
        assert_eq!(reason, "ApplyFailed", "{message}");
        assert!(message.contains(expected), "{expected}: {message}");
        for kind in ["statefulsets", "services", "configmaps"] {
            assert!(
                names_of(cluster, &ns.name, kind).is_empty(),
                "{kind}: {message}"
            );
        }
    }
    wait_until("ApplyFailed warnings", TIMEOUT, || {
        let e = events(cluster, &ns.name);
        (e.contains("Warning") && e.contains("ApplyFailed")).then_some(())
    });
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
}

/// Defect: two apps naming the same headless Service took it from each other, back and forth.
#[test]
fn a_second_app_claiming_an_object_of_the_first_gets_a_conflict_and_changes_nothing() {
    let Some((cluster, ns)) = setup("op-claims") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
    let before = object(cluster, &ns.name, "service", "nginx").unwrap();

    let blog = example("web", &ns.name)
        .replace("  name: web\n", "  name: blog\n")
        .replace("\n    - name: web\n", "\n    - name: blog\n");
    apply(cluster, &blog);
    let (reason, message) = wait_blocked(cluster, &ns.name, "blog");
    assert_eq!(reason, "Conflict");
    assert_eq!(
        message,
        "Service nginx belongs to app web; rename it in one of the two apps"
    );
    let after = object(cluster, &ns.name, "service", "nginx").unwrap();
    assert_eq!(
        after["metadata"]["ownerReferences"],
        before["metadata"]["ownerReferences"]
    );
    assert_eq!(after["spec"]["selector"], before["spec"]["selector"]);
    assert!(object(cluster, &ns.name, "statefulset", "blog").is_none());
    assert_eq!(phase(cluster, &ns.name, "web"), "Ready");
}

/// Defect: members were found by the `managed-by` label; a pod without it vanished from the
/// status and the next rollout waited for it forever.
#[test]
fn a_member_whose_managed_by_label_was_removed_stays_a_member() {
    let Some((cluster, ns)) = setup("op-members-label") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name);
    apply(cluster, &manifest);
    let first = wait_ready(cluster, &ns.name, "web")["status"]["parts"][0].clone();
    cluster.ok(
        &[
            "label",
            "pod",
            "web-1",
            "-n",
            &ns.name,
            "app.kubernetes.io/managed-by-",
        ],
        "",
    );
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let part = wait_rolled_out(cluster, &ns.name, first["updateRevision"].as_str().unwrap());
    let members: Vec<&str> = part["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["web-0", "web-1", "web-2"]);
}

/// The revision label of pod `name`, with its UID.
fn pod_revision(cluster: &Cluster, ns: &str, name: &str) -> Option<(String, String)> {
    let pod = object(cluster, ns, "pod", name)?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Some((
        text(&pod["metadata"]["labels"]["controller-revision-hash"]),
        text(&pod["metadata"]["uid"]),
    ))
}

/// Defect: under `OnDelete` the StatefulSet controller recreates any deleted pod at the update
/// revision, so a member below a canary partition came back on the new revision.
#[test]
fn a_member_below_the_partition_comes_back_on_the_old_revision() {
    let Some((cluster, ns)) = setup("op-canary") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{partition: 2}");
    apply(cluster, &manifest);
    let old = wait_ready(cluster, &ns.name, "web")["status"]["parts"][0]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    wait_until(
        "web-2 on the new revision and the app Ready",
        TIMEOUT,
        || {
            let a = wait_ready(cluster, &ns.name, "web");
            (a["status"]["parts"][0]["updated"] == 1).then_some(())
        },
    );
    let strategy = || {
        let jsonpath = "jsonpath={.spec.updateStrategy.type}";
        cluster.ok(
            &["get", "statefulset", "web", "-n", &ns.name, "-o", jsonpath],
            "",
        )
    };
    wait_until("berth to hold the partition", TIMEOUT, || {
        (strategy() == "RollingUpdate").then_some(())
    });

    let (_, uid) = pod_revision(cluster, &ns.name, "web-0").unwrap();
    cluster.ok(
        &["delete", "pod", "web-0", "-n", &ns.name, "--wait=false"],
        "",
    );
    let revision = wait_until("web-0 to be recreated", TIMEOUT, || {
        let (revision, new_uid) = pod_revision(cluster, &ns.name, "web-0")?;
        (new_uid != uid && !revision.is_empty()).then_some(revision)
    });
    assert_eq!(
        revision, old,
        "web-0 is below the partition: it keeps the old revision"
    );
    let a = wait_ready(cluster, &ns.name, "web");
    assert_eq!(a["status"]["parts"][0]["updated"], 1, "{}", a["status"]);

    // Without the partition berth rolls the rest itself again.
    apply(
        cluster,
        &web_with_update(&ns.name, "{partition: 0}").replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    wait_rolled_out(cluster, &ns.name, &old);
    assert_eq!(strategy(), "OnDelete");
}
