//! # berth-testkit
//!
//! Support for tests that need a real Kubernetes control plane (see `docs/testing.md`).
//!
//! - [`cluster`]: the cluster of this test run: the one named by `BERTH_TEST_KUBECONFIG`, or one
//!   started with `scripts/testenv build && scripts/testenv up`. Outside CI, `BERTH_SKIP_E2E=1`
//!   skips these tests with a notice; in CI they never skip and fail loudly when no cluster starts.
//! - [`TestNamespace`]: a namespace of its own for every test, deleted when the test ends.
//! - [`wait_until`]: await a condition with a timeout instead of sleeping.
//! - [`real_nodes`]: the cluster's real nodes (`scripts/testenv up --real-nodes N`), for tests
//!   that run real containers; they skip without them outside CI and fail in CI.
//! - [`s3`]: a real S3-compatible server (versitygw over a temporary directory) for backup tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod s3;

/// A running control plane and the kubectl built for it.
#[derive(Debug)]
pub struct Cluster {
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The kubectl binary matching the server's version.
    pub kubectl: PathBuf,
}

/// The repository root: two levels above the running test's package, which `cargo test` names
/// in `CARGO_MANIFEST_DIR` at run time. (The compile-time value is only the fallback: checkouts
/// sharing one `CARGO_TARGET_DIR` share this crate's build, so it may name another checkout.)
pub fn repo_root() -> PathBuf {
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    package
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The cluster of this test run, or `None` when e2e tests are skipped (outside CI only).
///
/// # Panics
/// When the cluster cannot be found or started: the message names the step and its output.
pub fn cluster() -> Option<&'static Cluster> {
    static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
    CLUSTER.get_or_init(find_or_start).as_ref()
}

/// Whether this is a CI run (`CI` set, and not to `false`): there, tests never skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

fn find_or_start() -> Option<Cluster> {
    if !in_ci() && std::env::var("BERTH_SKIP_E2E").as_deref() == Ok("1") {
        eprintln!("NOTICE: BERTH_SKIP_E2E=1: skipping tests that need a Kubernetes control plane");
        return None;
    }
    if let Ok(kubeconfig) = std::env::var("BERTH_TEST_KUBECONFIG") {
        let kubectl = std::env::var("BERTH_TEST_KUBECTL")
            .map(PathBuf::from)
            .unwrap_or_else(|_| testenv_kubectl());
        return Some(Cluster {
            kubeconfig: kubeconfig.into(),
            kubectl,
        });
    }
    testenv(&["build"]);
    testenv(&["up"]);
    eprintln!(
        "NOTICE: started a control plane for this test run; stop it with `scripts/testenv down`"
    );
    let env = testenv(&["env"]);
    let kubeconfig = exported(&env, "KUBECONFIG").expect("scripts/testenv env prints KUBECONFIG");
    let bin =
        exported(&env, "BERTH_TESTENV_BIN").expect("scripts/testenv env prints BERTH_TESTENV_BIN");
    Some(Cluster {
        kubeconfig: kubeconfig.into(),
        kubectl: Path::new(&bin).join("kubectl"),
    })
}

fn testenv_kubectl() -> PathBuf {
    testenv_tool("kubectl")
}

/// The tool `name` (kubectl, helm, ...) that `scripts/testenv build` built.
pub fn testenv_tool(name: &str) -> PathBuf {
    let env = testenv(&["env"]);
    Path::new(
        &exported(&env, "BERTH_TESTENV_BIN").expect("scripts/testenv env prints BERTH_TESTENV_BIN"),
    )
    .join(name)
}

/// Runs `scripts/testenv ARGS` and returns its standard output, panicking with its standard
/// error when it fails.
pub fn testenv(args: &[&str]) -> String {
    let script = repo_root().join("scripts/testenv");
    let output = Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "`scripts/testenv {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of `export NAME=VALUE` in shell output (values without spaces or quotes).
fn exported(env: &str, name: &str) -> Option<String> {
    env.lines().find_map(|l| {
        l.strip_prefix(&format!("export {name}="))
            .map(|v| v.trim_matches('\'').to_string())
    })
}

impl Cluster {
    /// A kubectl command for this cluster.
    pub fn kubectl(&self) -> Command {
        self.kubectl_as(&self.kubeconfig)
    }

    /// kubectl authenticated by another `kubeconfig` (e.g. [`token_kubeconfig`]'s).
    pub fn kubectl_as(&self, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(kubeconfig);
        cmd
    }

    /// Runs kubectl with `args` and `stdin`, returning its output whatever its exit status.
    pub fn run(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(stdin.as_bytes())
            .expect("kubectl reads stdin");
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs kubectl and returns its stdout.
    ///
    /// # Panics
    /// When kubectl fails; the message has its stderr.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&all, "")).expect("kubectl prints JSON")
    }
}

impl Cluster {
    /// Installs (or updates) berth's CRDs (StatefulApp, StatefulAppBackup) from `deploy/crd.yaml` with server-side apply and
    /// waits until the API server serves it. (`kubectl wait` right after a create can fail on a
    /// CRD whose status is not written yet, so this polls.)
    pub fn install_crd(&self) {
        let crd = std::fs::read_to_string(repo_root().join("deploy/crd.yaml"))
            .expect("deploy/crd.yaml exists");
        self.ok(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            &crd,
        );
        let established = r#"jsonpath={.status.conditions[?(@.type=="Established")].status}"#;
        for crd in ["statefulapps.berth.io", "statefulappbackups.berth.io"] {
            wait_until(
                &format!("the CRD {crd} to be established"),
                Duration::from_secs(60),
                || {
                    let out = self.run(&["get", "crd", crd, "-o", established], "");
                    (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
                },
            );
        }
    }
}

/// A kubeconfig for the cluster that authenticates as the operator's ServiceAccount from
/// `deploy/rbac.yaml` (applied first), so tests prove the operator needs no more than that RBAC.
pub fn operator_kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    let rbac = std::fs::read_to_string(repo_root().join("deploy/rbac.yaml"))
        .expect("deploy/rbac.yaml exists");
    cluster.ok(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        &rbac,
    );
    let token = cluster.ok(
        &[
            "create",
            "token",
            "berth-operator",
            "-n",
            "berth-system",
            "--duration=2h",
        ],
        "",
    );
    token_kubeconfig(cluster, &dir.join("operator.kubeconfig"), token.trim())
}

/// Writes at `path` a kubeconfig for the cluster that authenticates with `token` only.
pub fn token_kubeconfig(cluster: &Cluster, path: &Path, token: &str) -> PathBuf {
    let view = |path: &str| {
        cluster.ok(
            &[
                "config",
                "view",
                "--raw",
                "--minify",
                "-o",
                &format!("jsonpath={{{path}}}"),
            ],
            "",
        )
    };
    let server = view(".clusters[0].cluster.server");
    let ca = view(".clusters[0].cluster.certificate-authority-data");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: token\n  user:\n    token: {token}\ncontexts:\n- name: token\n  context: {{cluster: test, user: token}}\ncurrent-context: token\n",
    );
    std::fs::write(path, config).expect("the kubeconfig is written");
    path.to_path_buf()
}

/// The label (and taint key) of real nodes; kwok's nodes do not have it.
pub const REAL_NODE_LABEL: &str = "berth.io/node-kind";

/// A pod on a real node that only waits, for tests that look at the nodes' network from inside
/// a pod (the redis image has bash and coreutils' timeout). Apply it with `-n NAMESPACE`.
pub const PROBE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probe}
spec:
  nodeSelector: {berth.io/node-kind: real}
  tolerations: [{key: berth.io/node-kind, value: real, effect: NoSchedule}]
  terminationGracePeriodSeconds: 1
  containers:
    - {name: probe, image: "berth.local/redis:deb12", imagePullPolicy: Never, command: [sleep, infinity]}
"#;

/// The names of the cluster's real nodes if there are at least `at_least`, else `None`.
///
/// # Panics
/// In CI (`CI` set), when there are fewer: real-node tests never skip there.
pub fn real_nodes(cluster: &Cluster, at_least: usize) -> Option<Vec<String>> {
    let selector = format!("{REAL_NODE_LABEL}=real");
    let nodes = cluster.get_json(&["nodes", "-l", &selector]);
    let names: Vec<String> = nodes["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    if names.len() >= at_least {
        return Some(names);
    }
    assert!(
        !in_ci(),
        "CI needs {at_least} real nodes, the cluster has {}: scripts/testenv up --real-nodes {at_least}",
        names.len()
    );
    eprintln!(
        "NOTICE: skipping: needs {at_least} real nodes (scripts/testenv up --real-nodes {at_least})"
    );
    None
}

/// A namespace of its own for one test; deleted (without waiting) when dropped.
pub struct TestNamespace {
    cluster: &'static Cluster,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates a fresh namespace named after `prefix`.
    pub fn new(cluster: &'static Cluster, prefix: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        cluster.ok(&["create", "namespace", &name], "");
        Self { cluster, name }
    }
}

impl Drop for TestNamespace {
    /// Deletes the namespace without waiting. StatefulApps lose berth's finalizer first: the
    /// test's operator is usually gone by now, and the namespace would otherwise never finish.
    fn drop(&mut self) {
        let names = self
            .cluster
            .run(&["get", "statefulapps", "-n", &self.name, "-o", "name"], "");
        for app in String::from_utf8_lossy(&names.stdout).lines() {
            let patch = r#"{"metadata":{"finalizers":null}}"#;
            let _ = self.cluster.run(
                &["patch", app, "-n", &self.name, "--type=merge", "-p", patch],
                "",
            );
        }
        let _ = self
            .cluster
            .run(&["delete", "namespace", &self.name, "--wait=false"], "");
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what` was awaited.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exported_values() {
        let env = "export KUBECONFIG=/tmp/k\nexport BERTH_TESTENV_BIN='/a/bin'\n";
        assert_eq!(exported(env, "KUBECONFIG").as_deref(), Some("/tmp/k"));
        assert_eq!(
            exported(env, "BERTH_TESTENV_BIN").as_deref(),
            Some("/a/bin")
        );
        assert_eq!(exported(env, "PATH"), None);
    }

    #[test]
    fn wait_until_returns_the_first_value() {
        let mut n = 0;
        assert_eq!(
            wait_until("n to reach 3", Duration::from_secs(5), || {
                n += 1;
                (n >= 3).then_some(n)
            }),
            3
        );
    }

    #[test]
    fn wait_until_fails_naming_what_it_awaited() {
        let result = std::panic::catch_unwind(|| {
            wait_until("the never condition", Duration::from_millis(300), || {
                None::<()>
            })
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("waiting for the never condition"),
            "{message}"
        );
    }
}
