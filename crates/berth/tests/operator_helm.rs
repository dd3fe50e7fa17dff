//! The operator as users install it: an image of the `berth` binary under test (`scripts/testenv
//! operator-image`: the binary on the Debian C runtime it links), installed with `helm install
//! charts/berth` into a namespace of its own (the chart's RBAC, in-cluster configuration and
//! leader election), running as pods on the test cluster's real nodes. The leader holds the
//! Lease, reconciles the shipped Redis example (real-node delivery values) to Ready with one
//! master labelled by its role probe, deletes it, and `helm uninstall` removes the operator and
//! its cluster-scoped RBAC. Skipped without 2 real nodes outside CI, failing in CI.
//!
//! The image is built from `BERTH_TEST_BIN` if set (e.g. a release build), else from the debug
//! binary cargo built for this test.

mod operator_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use berth_testkit::{real_nodes, testenv_tool};
use operator_common::real::*;
use operator_common::*;
use serde_json::{Value, json};

/// The Helm release's name (the chart names its objects `berth-operator` whatever it is).
const RELEASE: &str = "berth";
/// The chart's default replica count: one leader, one standby.
const REPLICAS: usize = 2;
/// The operator pods' label.
const OPERATOR_PODS: &str = "app.kubernetes.io/name=berth";

/// The chart values of this test: the local image (never pulled), cluster-scoped RBAC named
/// after the operator's namespace (the cluster may hold `deploy/rbac.yaml`'s), only the app's
/// namespace watched, and the pods on real nodes.
fn values(image: &(String, String), operator_ns: &str, app_ns: &str) -> Value {
    json!({
        "image": {"repository": image.0, "tag": image.1, "pullPolicy": "Never"},
        "clusterRoleName": format!("berth-operator-{operator_ns}"),
        "watchNamespaces": [app_ns],
        "nodeSelector": {"berth.io/node-kind": "real"},
        "tolerations": [{"key": "berth.io/node-kind", "value": "real", "effect": "NoSchedule"}],
    })
}

/// A Helm release of `charts/berth`, uninstalled when dropped (if the test has not).
struct Release {
    helm: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    installed: bool,
}

impl Release {
    /// `helm install` of the chart into `namespace` with the values in `values`.
    fn install(cluster: &Cluster, namespace: &str, values: &Path) -> Self {
        let mut release = Self {
            helm: testenv_tool("helm"),
            kubeconfig: cluster.kubeconfig.clone(),
            namespace: namespace.to_string(),
            installed: true,
        };
        let values = values.to_str().unwrap();
        let out = release.helm(&["install", RELEASE, "charts/berth", "-f", values]);
        release.installed = out.status.success();
        assert!(release.installed, "helm install failed: {}", text(&out));
        release
    }

    /// Runs helm with `args` in the release's namespace, from the repository root.
    fn helm(&self, args: &[&str]) -> Output {
        Command::new(&self.helm)
            .args(args)
            .args(["--namespace", &self.namespace])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .current_dir(repo_root())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.helm.display()))
    }

    /// `helm uninstall --wait`.
    fn uninstall(&mut self) {
        let out = self.helm(&["uninstall", RELEASE, "--wait", "--timeout", "120s"]);
        self.installed = !out.status.success();
        assert!(!self.installed, "helm uninstall failed: {}", text(&out));
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = self.helm(&["uninstall", RELEASE, "--wait", "--timeout", "60s"]);
        }
    }
}

/// A command's standard output and error.
fn text(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))
}

/// Whether the pod's `Ready` condition is `True`.
fn pod_ready(pod: &Value) -> bool {
    let conditions = pod["status"]["conditions"].as_array();
    conditions
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The operator pods in `ns`, as JSON.
fn operator_pods(cluster: &Cluster, ns: &str) -> Vec<Value> {
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", OPERATOR_PODS]);
    pods["items"].as_array().unwrap().clone()
}

/// Waits until the chart's `REPLICAS` operator pods are Ready, all on real nodes; their names.
fn operator_pods_ready(cluster: &Cluster, ns: &str) -> Vec<String> {
    let pods = wait_until("the operator pods Ready", REAL_TIMEOUT, || {
        let pods = operator_pods(cluster, ns);
        (pods.len() == REPLICAS && pods.iter().all(pod_ready)).then_some(pods)
    });
    let real = real_nodes(cluster, 2).unwrap();
    for pod in &pods {
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        let name = &pod["metadata"]["name"];
        assert!(real.iter().any(|r| r == node), "{name} runs on {node:?}");
    }
    let name = |p: &Value| p["metadata"]["name"].as_str().unwrap().to_string();
    pods.iter().map(name).collect()
}

/// The holder of the operator's leader Lease in `ns`, once one of `pods` holds it. (A pod that
/// cannot reach the API server, or lacks the RBAC for leases, never does.)
fn lease_holder(cluster: &Cluster, ns: &str, pods: &[String]) -> String {
    wait_until("an operator pod holding the leader lease", TIMEOUT, || {
        let out = cluster.run(
            &["get", "lease", "berth-operator", "-n", ns, "-o", "json"],
            "",
        );
        let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
        let holder = lease["spec"]["holderIdentity"].as_str()?.to_string();
        pods.contains(&holder).then_some(holder)
    })
}

/// The `reportingInstance` of every event berth's operator recorded in `ns`.
fn reporting_instances(cluster: &Cluster, ns: &str) -> Vec<String> {
    let events = cluster.get_json(&["events.v1.events.k8s.io", "-n", ns]);
    let items = events["items"].as_array().unwrap();
    items
        .iter()
        .filter(|e| e["reportingController"] == "berth")
        .map(|e| e["reportingInstance"].as_str().unwrap_or("-").to_string())
        .collect()
}

/// Deletes app `name` and waits until it is gone (the operator removes its finalizer).
fn delete_app(cluster: &Cluster, ns: &str, name: &str) {
    cluster.ok(
        &["delete", "statefulapp", name, "-n", ns, "--wait=false"],
        "",
    );
    wait_until("the app deleted", TIMEOUT, || {
        let out = cluster.run(&["get", "statefulapp", name, "-n", ns], "");
        (!out.status.success()).then_some(())
    });
}

/// Waits until the release's pods and its ClusterRole `cluster_role` are gone.
fn assert_uninstalled(cluster: &Cluster, ns: &str, cluster_role: &str) {
    wait_until("the operator pods gone", TIMEOUT, || {
        operator_pods(cluster, ns).is_empty().then_some(())
    });
    let role = cluster.run(&["get", "clusterrole", cluster_role], "");
    assert!(
        !role.status.success(),
        "{cluster_role} outlived the release"
    );
}

#[test]
fn the_operator_installed_with_helm_runs_on_a_real_node_and_reconciles_the_redis_example() {
    let Some((cluster, app_ns)) = setup("helm-app") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let operator_ns = TestNamespace::new(cluster, "helm-operator");
    let (app_ns, operator_ns) = (&app_ns.name, &operator_ns.name);
    let started = Instant::now();
    let image = operator_image();
    let image_after = started.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let values_file = dir.path().join("values.yaml");
    let values = values(&image, operator_ns, app_ns);
    std::fs::write(&values_file, values.to_string()).unwrap();

    let installed = Instant::now();
    let mut release = Release::install(cluster, operator_ns, &values_file);
    let pods = operator_pods_ready(cluster, operator_ns);
    let pods_after = installed.elapsed();
    let leader = lease_holder(cluster, operator_ns, &pods);
    let lease_after = installed.elapsed();

    let manifest = real_example("redis", app_ns, &[]);
    let app_ready = start_on_real_nodes(cluster, app_ns, "redis", &manifest, 3);
    let master = single_master(cluster, app_ns, "redis", 3);
    let reporters = reporting_instances(cluster, app_ns);
    assert!(!reporters.is_empty(), "the operator recorded no event");
    assert!(
        reporters.iter().all(|r| *r == leader),
        "events from {reporters:?}, the leader is {leader}"
    );

    delete_app(cluster, app_ns, "redis");
    let uninstalling = Instant::now();
    release.uninstall();
    assert_uninstalled(
        cluster,
        operator_ns,
        values["clusterRoleName"].as_str().unwrap(),
    );
    eprintln!(
        "helm operator: image {} after {image_after:?}; pods Ready {pods_after:?} and lease held \
         ({leader}) {lease_after:?} after install; Redis Ready in {app_ready:?} ({master} master); \
         uninstalled in {:?}",
        image.1,
        uninstalling.elapsed(),
    );
}
