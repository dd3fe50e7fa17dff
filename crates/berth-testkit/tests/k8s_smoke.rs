//! Smoke tests on the real control plane (kwok nodes): berth's rendered objects are accepted by
//! the API server, the StatefulSet controller runs the `web` example in order with bound volumes
//! spread over nodes, and the CRD's schema and CEL rules are enforced by the API server.

use std::collections::BTreeSet;
use std::time::Duration;

use berth_core::load::{Inputs, load};
use berth_k8s::render::{render, to_yaml};
use berth_testkit::{Cluster, TestNamespace, cluster, repo_root, wait_until};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(90);

fn example_text(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("examples").join(name)).unwrap()
}

/// `berth render` of an example into `namespace`, as YAML.
fn rendered(name: &str, namespace: &str, sets: &[&str]) -> String {
    let inputs = Inputs {
        app_file: name.to_string(),
        app_text: example_text(name),
        values: vec![],
        sets: sets.iter().map(|s| s.to_string()).collect(),
        namespace: Some(namespace.to_string()),
    };
    to_yaml(&render(&load(&inputs).unwrap()).unwrap()).unwrap()
}

fn apply(cluster: &Cluster, yaml: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "apply",
        "--server-side",
        "--field-manager=berth-test",
        "-f",
        "-",
    ];
    args.extend_from_slice(extra);
    cluster.ok(&args, yaml)
}

fn items(list: &Value) -> Vec<Value> {
    list["items"].as_array().cloned().unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn ready_since(pod: &Value) -> String {
    let conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = conditions
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("a Ready condition");
    ready["lastTransitionTime"].as_str().unwrap().to_string()
}

/// The web pods once exactly `n` exist and all are ready, in ordinal order.
fn wait_for_web_pods(cluster: &Cluster, ns: &str, n: usize) -> Vec<Value> {
    wait_until(&format!("{n} ready web pods in {ns}"), TIMEOUT, || {
        let mut pods =
            items(&cluster.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=web"]));
        pods.sort_by_key(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap()
                .trim_start_matches("web-")
                .parse::<u32>()
                .unwrap()
        });
        (pods.len() == n && pods.iter().all(is_ready)).then_some(pods)
    })
}

#[test]
fn every_example_is_accepted_by_the_api_server() {
    let Some(cluster) = cluster() else { return };
    let ns = TestNamespace::new(cluster, "dry-run");
    for example in [
        "zookeeper.yaml",
        "redis.yaml",
        "web.yaml",
        "etcd.yaml",
        "postgres.yaml",
        "mariadb.yaml",
    ] {
        let out = apply(
            cluster,
            &rendered(example, &ns.name, &[]),
            &["--dry-run=server"],
        );
        assert!(
            out.contains("serverside-applied (server dry run)"),
            "{example}: {out}"
        );
    }
}

#[test]
fn web_members_start_in_order_with_bound_volumes_spread_over_nodes_and_scale() {
    let Some(cluster) = cluster() else { return };
    let ns = TestNamespace::new(cluster, "web");
    apply(cluster, &rendered("web.yaml", &ns.name, &[]), &[]);
    let pods = wait_for_web_pods(cluster, &ns.name, 3);

    for pair in pods.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        let created = later["metadata"]["creationTimestamp"].as_str().unwrap();
        assert!(
            created >= ready_since(earlier).as_str(),
            "{} was created before {} was ready",
            later["metadata"]["name"],
            earlier["metadata"]["name"]
        );
    }
    let nodes: BTreeSet<&str> = pods
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    assert_eq!(nodes.len(), 3, "members share nodes: {nodes:?}");
    wait_until("3 bound www claims", TIMEOUT, || {
        let claims = items(&cluster.get_json(&["pvc", "-n", &ns.name]));
        (claims.len() == 3 && claims.iter().all(|c| c["status"]["phase"] == "Bound")).then_some(())
    });

    apply(
        cluster,
        &rendered("web.yaml", &ns.name, &["replicas=5"]),
        &[],
    );
    wait_for_web_pods(cluster, &ns.name, 5);
    apply(
        cluster,
        &rendered("web.yaml", &ns.name, &["replicas=3"]),
        &[],
    );
    wait_for_web_pods(cluster, &ns.name, 3);
    let claims = items(&cluster.get_json(&["pvc", "-n", &ns.name]));
    assert_eq!(
        claims.len(),
        5,
        "scale-down keeps the claims (retention Retain)"
    );

    cluster.ok(&["delete", "statefulset", "web", "-n", &ns.name], "");
    wait_until("web pods to be gone", TIMEOUT, || {
        items(&cluster.get_json(&["pods", "-n", &ns.name]))
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        items(&cluster.get_json(&["pvc", "-n", &ns.name])).len(),
        5,
        "deleting the workload keeps the claims"
    );
}

fn with_namespace(manifest: &str, ns: &str) -> String {
    manifest.replacen("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"), 1)
}

#[test]
fn the_crd_installs_and_the_api_server_enforces_its_rules() {
    let Some(cluster) = cluster() else { return };
    cluster.install_crd();
    let ns = TestNamespace::new(cluster, "crd");
    for example in [
        "zookeeper.yaml",
        "redis.yaml",
        "web.yaml",
        "etcd.yaml",
        "postgres.yaml",
        "mariadb.yaml",
    ] {
        apply(
            cluster,
            &with_namespace(&example_text(example), &ns.name),
            &[],
        );
    }
    let names: BTreeSet<String> = items(&cluster.get_json(&["sapp", "-n", &ns.name]))
        .iter()
        .map(|a| a["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(
            ["etcd", "mariadb", "postgres", "redis", "web", "zookeeper"].map(String::from)
        )
    );

    let negative = example_text("web.yaml")
        .replacen("  name: web\n", "  name: bad-replicas\n", 1)
        .replace("replicas: 3", "replicas: -1");
    let out = cluster.run(
        &["apply", "--server-side", "-f", "-"],
        &with_namespace(&negative, &ns.name),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("spec.parts[0].replicas"),
        "{stderr}"
    );

    let duplicate = format!(
        "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata:\n  name: dup\nspec:\n  parts:\n{0}{0}",
        "  - name: a\n    template: {spec: {containers: [{name: c, image: i}]}}\n"
    );
    let out = cluster.run(
        &["apply", "--server-side", "-f", "-"],
        &with_namespace(&duplicate, &ns.name),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("duplicate entries for key [name=\"a\"]"),
        "{stderr}"
    );

    let daemon_set = "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata:\n  name: ds\nspec:\n  parts:\n  - name: agent\n    kind: DaemonSet\n    replicas: 2\n    template: {spec: {containers: [{name: c, image: i}]}}\n";
    let out = cluster.run(
        &["apply", "--server-side", "-f", "-"],
        &with_namespace(daemon_set, &ns.name),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("a DaemonSet runs one member per node"),
        "{stderr}"
    );
}
