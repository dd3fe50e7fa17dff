//! The operator runs the shipped examples' own role probes and actions rendered (issue 10,
//! defect 2): the Redis example's probe says `-p {{ ports.redis }}`, which must reach the member
//! as `-p 6379`, and its switchover `{{ files['switchover.sh'] }}`, `/etc/redis/switchover.sh`.
//! kwok runs `kubectl exec` locally, so each Redis member's exec sees `BERTH_POD_IP` set to its
//! own loopback address, where a real `redis-server` listens (one master, two replicas): the
//! pods' `berth.io/role` labels can only come from the example's probe, rendered, talking to them.

mod operator_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use operator_common::*;

/// Long enough for three probe periods and a reconcile, short enough to fail in about a minute.
const LABELS_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a rollout of the example may take to reach its switchover.
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The loopback address of Redis member `ordinal` (127.77/16 is used by no other test).
fn member_ip(ordinal: usize) -> String {
    format!("127.77.0.{}", ordinal + 1)
}

/// Whether `program` exists; when it does not, the test fails under `CI=true` and is skipped
/// with a notice elsewhere.
fn require(program: &str, package: &str) -> bool {
    if Path::new(program).exists() {
        return true;
    }
    let message = format!("missing: {program} (Debian package {package})");
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

/// Redis servers on the members' addresses, killed when dropped (also when the test fails).
struct RedisServers {
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl RedisServers {
    /// A master on member 0's address and a replica of it on each other member's.
    fn start(members: usize) -> Self {
        let mut servers = Self {
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        for ordinal in 0..members {
            let data = servers.dir.path().join(format!("redis-{ordinal}"));
            std::fs::create_dir_all(&data).unwrap();
            let mut command = Command::new("/usr/bin/redis-server");
            command.args(["--bind", &member_ip(ordinal), "--port", "6379"]);
            command.args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
            command.arg("--dir").arg(&data);
            if ordinal > 0 {
                command.args(["--replicaof", &member_ip(0), "6379"]);
            }
            let child = command.stdout(Stdio::null()).spawn().unwrap();
            servers.children.push(child);
        }
        for ordinal in 0..members {
            wait_until(
                &format!("redis on {}", member_ip(ordinal)),
                Duration::from_secs(10),
                || {
                    let ping = Command::new("/usr/bin/redis-cli")
                        .args(["-h", &member_ip(ordinal), "-p", "6379", "ping"])
                        .output()
                        .ok()?;
                    String::from_utf8_lossy(&ping.stdout)
                        .contains("PONG")
                        .then_some(())
                },
            );
        }
        servers
    }
}

impl Drop for RedisServers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// kwok `Exec` objects: `kubectl exec` into `redis-<n>` runs locally with `BERTH_POD_IP` set
/// to member n's address, as the pod's own IP would be.
fn redis_execs(cluster: &Cluster, ns: &str, members: usize) {
    for ordinal in 0..members {
        let exec = format!(
            "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Exec\nmetadata: {{name: redis-{ordinal}, namespace: {ns}}}\nspec:\n  execs:\n  - local:\n      envs: [{{name: BERTH_POD_IP, value: \"{}\"}}]\n",
            member_ip(ordinal)
        );
        apply(cluster, &exec);
    }
}

/// The `berth.io/role` label of each pod of app `instance`, by pod name (`-` when none).
fn role_labels_of(cluster: &Cluster, ns: &str, instance: &str) -> Vec<(String, String)> {
    let selector = format!("app.kubernetes.io/instance={instance}");
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", &selector]);
    let mut roles: Vec<(String, String)> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let role = p["metadata"]["labels"]["berth.io/role"].as_str();
            let name = p["metadata"]["name"].as_str().unwrap();
            (name.to_string(), role.unwrap_or("-").to_string())
        })
        .collect();
    roles.sort();
    roles
}

#[test]
fn the_redis_example_probe_and_switchover_run_rendered() {
    if !require("/usr/bin/redis-server", "redis-server")
        || !require("/usr/bin/redis-cli", "redis-tools")
    {
        return;
    }
    let Some((cluster, ns)) = setup("op-redis-probe") else {
        return;
    };
    let _redis = RedisServers::start(3);
    redis_execs(cluster, &ns.name, 3);
    let operator = Operator::start(cluster, &ns.name, &[]);
    apply(cluster, &example("redis", &ns.name));
    wait_ready(cluster, &ns.name, "redis");
    let expected: Vec<(String, String)> = [("redis-0", "master"), ("redis-1", "slave")]
        .into_iter()
        .chain([("redis-2", "slave")])
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .collect();
    // Waits for the labels, or for the deadline, to show the labels and the log on a failure.
    let deadline = Instant::now() + LABELS_TIMEOUT;
    let what = "the example's role probe to label master and replicas";
    let labelled = wait_until(what, LABELS_TIMEOUT + Duration::from_secs(5), || {
        let roles = role_labels_of(cluster, &ns.name, "redis");
        (roles == expected || Instant::now() > deadline).then_some(roles)
    });
    assert_eq!(labelled, expected, "operator log:\n{}", operator.log());

    // A new image: the replicas are replaced, then the master's switchover runs, rendered, with
    // its target in BERTH_TARGET*. (Its script is a file of the Redis image, absent on this
    // host, so it fails here: the command the operator ran is the point.)
    apply(
        cluster,
        &example("redis", &ns.name).replace("redis:7.0.15", "redis:7.0.16"),
    );
    let line = wait_until("the operator to run the switchover", ACTION_TIMEOUT, || {
        let log = operator.log();
        let line = log.lines().find(|l| l.contains("running an action"));
        line.map(str::to_string)
    });
    assert!(
        line.contains("\"/bin/sh\", \"/etc/redis/switchover.sh\""),
        "{line}"
    );
    let domain = format!(".redis-headless.{}.svc.cluster.local", ns.name);
    assert!(line.contains("\"env\", \"BERTH_TARGET=redis-"), "{line}");
    assert!(line.contains(&domain), "{line}");
    assert!(line.contains("\"BERTH_TARGET_MEMBER=redis-"), "{line}");
}
