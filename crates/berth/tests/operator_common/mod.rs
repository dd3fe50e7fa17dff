//! Helpers shared by the operator's end-to-end tests: a `berth operator` process per test,
//! scoped to the test's namespace and authenticated with the ServiceAccount token of
//! `deploy/rbac.yaml`; the examples as resources; waits on the app's status and events.

#![allow(dead_code)]

pub mod real;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use berth_testkit::{
    Cluster, TestNamespace, cluster, operator_kubeconfig, repo_root, wait_until,
};
use serde_json::Value;

pub const TIMEOUT: Duration = Duration::from_secs(120);

/// A running `berth operator`, killed when dropped.
pub struct Operator {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Operator {
    /// An operator watching `namespace`, with `extra` arguments.
    pub fn start(cluster: &Cluster, namespace: &str, extra: &[&str]) -> Self {
        Self::watching(cluster, &[namespace], extra)
    }

    /// An operator watching every namespace of `namespaces`.
    pub fn watching(cluster: &Cluster, namespaces: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = operator_kubeconfig(cluster, dir.path());
        let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
        let scope = namespaces.iter().flat_map(|ns| ["--namespace", ns]);
        let child = Command::new(berth_binary())
            .arg("operator")
            .args(scope)
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--health-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, dir }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and returns how long the process took to exit, or `None` if it still ran
    /// after `limit` (then it is killed).
    pub fn terminate(&mut self, limit: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        while started.elapsed() < limit {
            if self.child.try_wait().unwrap().is_some() {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill();
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `berth` binary the operator runs: `BERTH_TEST_BIN` if set, else the one cargo built for
/// this test. (Checkouts sharing one `CARGO_TARGET_DIR` share that path, so another checkout's
/// build can replace it while a test runs; `BERTH_TEST_BIN` pins a copy.)
pub fn berth_binary() -> std::path::PathBuf {
    std::env::var_os("BERTH_TEST_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_berth").into(), Into::into)
}

/// An example as a resource in `ns`, as shipped (its volumes use the cluster's default
/// StorageClass).
pub fn example(name: &str, ns: &str) -> String {
    let text =
        std::fs::read_to_string(repo_root().join("examples").join(format!("{name}.yaml"))).unwrap();
    text.replacen("metadata:\n", &format!("metadata:\n  namespace: {ns}\n"), 1)
}

pub fn apply(cluster: &Cluster, manifest: &str) {
    cluster.ok(
        &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
        manifest,
    );
}

pub fn app(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster.get_json(&["sapp", name, "-n", ns])
}

pub fn phase(cluster: &Cluster, ns: &str, name: &str) -> String {
    app(cluster, ns, name)["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn wait_ready(cluster: &Cluster, ns: &str, name: &str) -> Value {
    wait_until(&format!("{ns}/{name} to be Ready"), TIMEOUT, || {
        let a = app(cluster, ns, name);
        let generation = a["metadata"]["generation"].clone();
        (a["status"]["phase"] == "Ready" && a["status"]["observedGeneration"] == generation)
            .then_some(a)
    })
}

/// The app once its phase is `phase`, observed at its current generation.
pub fn wait_phase(cluster: &Cluster, ns: &str, name: &str, phase: &str) -> Value {
    wait_until(&format!("{ns}/{name} to be {phase}"), TIMEOUT, || {
        let a = app(cluster, ns, name);
        let generation = a["metadata"]["generation"].clone();
        (a["status"]["phase"] == phase && a["status"]["observedGeneration"] == generation)
            .then_some(a)
    })
}

/// The app's `Ready` condition (`Null` when it has none).
pub fn ready_condition(a: &Value) -> Value {
    condition(a, "Ready")
}

/// The app's condition of type `kind` (`Null` when it has none).
pub fn condition(a: &Value, kind: &str) -> Value {
    a["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

pub fn names_of(cluster: &Cluster, ns: &str, kind: &str) -> BTreeSet<String> {
    let list = cluster.get_json(&[kind, "-n", ns, "-l", "app.kubernetes.io/managed-by=berth"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn count(cluster: &Cluster, ns: &str, kind: &str) -> usize {
    cluster.get_json(&[kind, "-n", ns])["items"]
        .as_array()
        .unwrap()
        .len()
}

pub fn events(cluster: &Cluster, ns: &str) -> String {
    cluster.ok(
        &[
            "get",
            "events",
            "-n",
            ns,
            "-o",
            "custom-columns=TYPE:.type,REASON:.reason,NOTE:.note,MSG:.message",
        ],
        "",
    )
}

pub fn setup(prefix: &str) -> Option<(&'static Cluster, TestNamespace)> {
    let cluster = cluster()?;
    cluster.install_crd();
    let ns = TestNamespace::new(cluster, prefix);
    Some((cluster, ns))
}

/// The image the web StatefulSet's template runs.
pub fn web_image(cluster: &Cluster, ns: &str) -> String {
    let jsonpath = "jsonpath={.spec.template.spec.containers[0].image}";
    cluster.ok(&["get", "statefulset", "web", "-n", ns, "-o", jsonpath], "")
}

/// Pod UIDs of the web members, by ordinal.
pub fn web_uids(cluster: &Cluster, ns: &str) -> Vec<(String, String)> {
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=web"]);
    let mut out: Vec<(String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["metadata"]["uid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The operator's events with one of `reasons`, as (reason, note) in the order their
/// `eventTime` (microseconds) says.
pub fn step_events(cluster: &Cluster, ns: &str, reasons: &[&str]) -> Vec<(String, String)> {
    let events = cluster.get_json(&["events.events.k8s.io", "-n", ns]);
    let mut steps: Vec<(String, String, String)> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| reasons.iter().any(|r| e["reason"] == *r))
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("eventTime"), text("reason"), text("note"))
        })
        .collect();
    steps.sort();
    steps.into_iter().map(|(_, r, n)| (r, n)).collect()
}

/// The members the operator replaced, in the order its `RollingUpdate` events say, once the app
/// is Ready again with `expected` replacements.
pub fn replacement_order(cluster: &Cluster, ns: &str, expected: usize) -> Vec<String> {
    wait_until("the rollout to replace members", TIMEOUT, || {
        let order: Vec<String> = step_events(cluster, ns, &["RollingUpdate"])
            .iter()
            .filter_map(|(_, note)| replaced_member(note))
            .collect();
        (order.len() >= expected && phase(cluster, ns, "web") == "Ready").then_some(order)
    })
}

pub fn replaced_member(note: &str) -> Option<String> {
    let member = note
        .strip_prefix("replacing member ")?
        .split_whitespace()
        .next()?;
    Some(member.to_string())
}

/// The web example in `ns` with the part's `update` policy (inline YAML).
pub fn web_with_update(ns: &str, update: &str) -> String {
    example("web", ns).replacen(
        "      services:\n",
        &format!("      update: {update}\n      services:\n"),
        1,
    )
}

pub fn with_roles(manifest: &str, update: &str) -> String {
    manifest.replacen(
        "          headlessService: nginx\n",
        "          headlessService: nginx\n          roles:\n            - {name: leader, writable: true}\n            - {name: follower}\n",
        1,
    )
    .replacen("      services:\n", &format!("      update: {update}\n      services:\n"), 1)
}

/// Per web member: (name, uid, node, image in spec, image the kubelet reports, gate status).
pub fn web_pods(cluster: &Cluster, ns: &str) -> Vec<[String; 6]> {
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=web"]);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out: Vec<[String; 6]> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let gate = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "berth.io/in-place-update-ready")
                .map_or(String::new(), |c| text(&c["status"]));
            [
                text(&p["metadata"]["name"]),
                text(&p["metadata"]["uid"]),
                text(&p["spec"]["nodeName"]),
                text(&p["spec"]["containers"][0]["image"]),
                text(&p["status"]["containerStatuses"][0]["image"]),
                gate,
            ]
        })
        .collect();
    out.sort();
    out
}

/// The app's first part once it is Ready with every member on the update revision.
pub fn wait_rolled_out(cluster: &Cluster, ns: &str, old_revision: &str) -> Value {
    wait_until("every member on the new revision", TIMEOUT, || {
        let a = wait_ready(cluster, ns, "web");
        let part = a["status"]["parts"][0].clone();
        let members_new = part["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["revision"] == part["updateRevision"]);
        (part["updateRevision"] != old_revision
            && part["currentRevision"] == part["updateRevision"]
            && members_new)
            .then_some(part)
    })
}

/// Makes `kubectl exec` into each web member run locally in its own directory under `root`
/// (kwok's `Exec` resource; kwok pods run nothing), with `role` as the file its role probe reads.
pub fn local_members(cluster: &Cluster, ns: &str, root: &std::path::Path, roles: &[&str]) {
    for (ordinal, role) in roles.iter().enumerate() {
        let member = format!("web-{ordinal}");
        let dir = root.join(&member);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("role"), format!("{role}\n")).unwrap();
        let exec = format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Exec\nmetadata: {{name: {member}, namespace: {ns}}}\nspec:\n  execs:\n  - local: {{workDir: {}}}\n",
            dir.display()
        );
        apply(cluster, &exec);
    }
}

pub fn role_labels(cluster: &Cluster, ns: &str) -> Vec<String> {
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=web"]);
    let mut roles: Vec<(String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            let role = p["metadata"]["labels"]["berth.io/role"]
                .as_str()
                .unwrap_or("-");
            (name, role.to_string())
        })
        .collect();
    roles.sort();
    roles.into_iter().map(|(_, r)| r).collect()
}

/// A finalizer on a pod, removed again when dropped, so the pod (and the test namespace) can go.
pub struct Finalizer {
    cluster: &'static Cluster,
    namespace: String,
    pod: String,
}

impl Finalizer {
    pub const NAME: &'static str = "e2e.berth.io/hold";

    /// Adds the finalizer to `pod`: deleting it then leaves it Terminating until this is dropped.
    pub fn hold(cluster: &'static Cluster, namespace: &str, pod: &str) -> Self {
        let patch = format!(r#"{{"metadata":{{"finalizers":["{}"]}}}}"#, Self::NAME);
        cluster.ok(
            &[
                "patch", "pod", pod, "-n", namespace, "--type", "merge", "-p", &patch,
            ],
            "",
        );
        Self {
            cluster,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        }
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        let _ = self.cluster.run(
            &[
                "patch",
                "pod",
                &self.pod,
                "-n",
                &self.namespace,
                "--type",
                "merge",
                "-p",
                patch,
            ],
            "",
        );
    }
}

/// The web example in `ns` with roles, RoleAware updates, a role probe that reads the file
/// `role` in the member's directory (see [`local_members`]) every second, and `switchover` as the
/// part's switchover action (a shell command).
pub fn web_with_role_probe(ns: &str, switchover: &str) -> String {
    with_roles(&example("web", ns), "{strategy: RoleAware}").replacen(
        "          roles:\n",
        &format!(
            "          roleProbe: {{exec: [sh, -c, cat role], periodSeconds: 1}}\n          actions:\n            switchover:\n              exec: [sh, -c, '{switchover}']\n          roles:\n"
        ),
        1,
    )
}

/// Switches leadership in [`web_with_role_probe`] members: the leader's file says follower, the
/// target's says leader.
pub const MOVE_ROLE: &str = "echo follower > role && echo leader > ../$BERTH_TARGET_MEMBER/role";

/// A role-aware web app in `ns` as [`web_with_role_probe`] makes it (with `switchover`), its
/// members running locally in `members` with web-1 the leader, under an operator of its own;
/// returns once every member is ready and labelled by the probe.
pub fn leader_web(
    cluster: &Cluster,
    ns: &str,
    members: &std::path::Path,
    switchover: &str,
) -> (Operator, String) {
    local_members(cluster, ns, members, &["follower", "leader", "follower"]);
    let operator = Operator::start(cluster, ns, &[]);
    let manifest = web_with_role_probe(ns, switchover);
    apply(cluster, &manifest);
    wait_ready(cluster, ns, "web");
    wait_until("the role probes to label every member", TIMEOUT, || {
        (role_labels(cluster, ns) == ["follower", "leader", "follower"]).then_some(())
    });
    (operator, manifest)
}

/// A namespace's events as they arrive (`kubectl get --watch`), for tests that must act the
/// moment one appears: polling lags a kwok rollout by a whole step. Stops watching when dropped.
pub struct EventStream {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl EventStream {
    /// Watches the events of `ns`, those already there first.
    pub fn watch(cluster: &Cluster, ns: &str) -> Self {
        use std::io::BufRead;
        let mut child = cluster
            .kubectl()
            .args(["get", "events.events.k8s.io", "-n", ns, "--watch", "-o"])
            .arg("jsonpath={.reason} {.note}{\"\\n\"}")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// Returns as soon as an event `reason` arrives whose note starts with `note`; the events
    /// before it are consumed.
    pub fn await_event(&self, reason: &str, note: &str) {
        let wanted = format!("{reason} {note}");
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(&wanted) => return,
                Ok(_) => {}
                Err(e) => panic!("no event `{wanted}...` within {TIMEOUT:?} ({e})"),
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
