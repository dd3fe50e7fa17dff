//! Real nodes of the test cluster (`scripts/testenv up --real-nodes 2`): a Redis pod with a
//! volume runs in a real container and is found by DNS from another node, and its volume's
//! directory goes with its claim; pods that do not tolerate real nodes stay on kwok's; and the
//! nodes' networks reach the apiserver but nothing the test environment did not create.
//! Skipped without real nodes outside CI (see `berth_testkit::real_nodes`).

use std::net::{IpAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use berth_testkit::{
    Cluster, REAL_NODE_LABEL, TestNamespace, cluster, real_nodes, repo_root, wait_until,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

fn testdata(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tools/testenv/testdata").join(name)).unwrap()
}

fn pod(cluster: &Cluster, ns: &str, name: &str) -> Option<Value> {
    let out = cluster.run(&["get", "pod", name, "-n", ns, "-o", "json"], "");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"))
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Waits until pod `name` is Ready and returns it.
fn ready_pod(cluster: &Cluster, ns: &str, name: &str) -> Value {
    wait_until(&format!("pod {ns}/{name} Ready"), TIMEOUT, || {
        pod(cluster, ns, name).filter(is_ready)
    })
}

/// `kubectl exec` into the pod's only container: Some(stdout) on success.
fn exec(cluster: &Cluster, ns: &str, pod: &str, command: &[&str]) -> Option<String> {
    let mut args = vec!["exec", "-n", ns, pod, "--"];
    args.extend_from_slice(command);
    let out = cluster.run(&args, "");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether a TCP connection from the pod to `ip:port` succeeds within 3 s.
fn pod_connects(cluster: &Cluster, ns: &str, pod: &str, ip: &str, port: u16) -> bool {
    let script = format!("exec 3<>/dev/tcp/{ip}/{port}");
    exec(cluster, ns, pod, &["timeout", "3", "bash", "-c", &script]).is_some()
}

fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn redis_on_a_real_node_is_found_by_dns_from_another_and_its_volume_goes_with_its_claim() {
    let Some(cluster) = cluster() else { return };
    let Some(real) = real_nodes(cluster, 2) else {
        return;
    };
    let ns = TestNamespace::new(cluster, "real-redis");
    cluster.ok(
        &["apply", "-n", &ns.name, "-f", "-"],
        &testdata("real-node-redis.yaml"),
    );
    cluster.ok(
        &["apply", "-n", &ns.name, "-f", "-"],
        &testdata("real-node-redis-client.yaml"),
    );

    let redis = ready_pod(cluster, &ns.name, "redis-0");
    assert!(
        real.contains(&node_of(&redis)),
        "redis-0 runs on {}",
        node_of(&redis)
    );
    let pvc = cluster.get_json(&["pvc", "data-redis-0", "-n", &ns.name]);
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert_eq!(
        exec(cluster, &ns.name, "redis-0", &["redis-cli", "ping"]).as_deref(),
        Some("PONG")
    );

    let client = ready_pod(cluster, &ns.name, "redis-client");
    assert_ne!(
        node_of(&client),
        node_of(&redis),
        "the client runs on another node"
    );
    let set = [
        "redis-cli",
        "-h",
        "redis-0.redis",
        "set",
        "greeting",
        "hello",
    ];
    wait_until("the client reaches redis-0.redis by name", TIMEOUT, || {
        exec(cluster, &ns.name, "redis-client", &set).filter(|out| out == "OK")
    });

    // the data is on the volume: a new pod for redis-0 reads it back
    let uid = redis["metadata"]["uid"].clone();
    cluster.ok(&["delete", "pod", "redis-0", "-n", &ns.name], "");
    wait_until("a new redis-0 Ready", TIMEOUT, || {
        pod(cluster, &ns.name, "redis-0").filter(|p| p["metadata"]["uid"] != uid && is_ready(p))
    });
    let get = ["redis-cli", "-h", "redis-0.redis", "get", "greeting"];
    let value = wait_until("the new redis-0 answers the client", TIMEOUT, || {
        exec(cluster, &ns.name, "redis-client", &get).filter(|out| !out.is_empty())
    });
    assert_eq!(value, "hello");

    // the claim deleted, its PV goes (the class says Delete) and so does the directory the node
    // wrote into (scripts/testenv's volume-reaper; kwok's provisioner leaves it behind)
    let pv = pvc["spec"]["volumeName"].as_str().unwrap().to_string();
    let dir = run_dir(cluster).join("volumes").join(&pv);
    assert!(dir.is_dir(), "{} holds the volume", dir.display());
    cluster.ok(&["delete", "statefulset", "redis", "-n", &ns.name], "");
    cluster.ok(&["delete", "pvc", "data-redis-0", "-n", &ns.name], "");
    wait_until(&format!("{} removed", dir.display()), TIMEOUT, || {
        (!dir.exists()).then_some(())
    });
}

#[test]
fn pods_without_the_toleration_never_land_on_real_nodes() {
    let Some(cluster) = cluster() else { return };
    let Some(real) = real_nodes(cluster, 1) else {
        return;
    };
    for node in &real {
        let taints = cluster.get_json(&["node", node])["spec"]["taints"].clone();
        let tainted = taints.as_array().into_iter().flatten().any(|t| {
            t["key"] == REAL_NODE_LABEL && t["value"] == "real" && t["effect"] == "NoSchedule"
        });
        assert!(
            tainted,
            "{node} has the NoSchedule taint {REAL_NODE_LABEL}=real: {taints}"
        );
    }
    let ns = TestNamespace::new(cluster, "real-taint");
    cluster.ok(
        &[
            "create",
            "deployment",
            "plain",
            "-n",
            &ns.name,
            "--image=plain:1",
            "--replicas=8",
        ],
        "",
    );
    let nodes = wait_until("8 pods scheduled", TIMEOUT, || {
        let pods = cluster.get_json(&["pods", "-n", &ns.name]);
        let nodes: Vec<String> = pods["items"].as_array()?.iter().map(node_of).collect();
        (nodes.len() == 8 && nodes.iter().all(|n| !n.is_empty())).then_some(nodes)
    });
    for node in nodes {
        assert!(
            !real.contains(&node),
            "a pod without the toleration runs on {node}"
        );
    }
}

/// The instance's /16 from a real node's InternalIP (10.X.255.N): its firewall chain is
/// BERTH-TESTENV-(X-200), and the host's end of the link is 10.X.255.1.
fn instance_network(cluster: &Cluster, node: &str) -> (u8, String) {
    let addresses = cluster.get_json(&["node", node])["status"]["addresses"].clone();
    let ip = addresses
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("a real node has an InternalIP")
        .to_string();
    let second: u8 = ip.split('.').nth(1).unwrap().parse().unwrap();
    (second - 200, format!("10.{second}.255.1"))
}

/// The host's IPv4 addresses on links the test environment did not create (not lo, not bt*).
fn foreign_host_addresses() -> Vec<IpAddr> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let (link, addr) = (fields.get(1)?, fields.get(3)?);
            let foreign = *link != "lo" && !link.starts_with("bt");
            foreign
                .then(|| addr.split('/').next()?.parse().ok())
                .flatten()
        })
        .collect()
}

fn iptables(args: &[&str]) -> String {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .expect("iptables runs");
    assert!(
        out.status.success(),
        "iptables {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn pods_reach_the_apiserver_and_nothing_outside_the_test_links() {
    let Some(cluster) = cluster() else { return };
    let Some(real) = real_nodes(cluster, 1) else {
        return;
    };
    let (id, host_link_ip) = instance_network(cluster, &real[0]);
    let chain = format!("BERTH-TESTENV-{id}");
    assert!(
        iptables(&["-S", &chain]).contains("-j DROP"),
        "{chain} drops"
    );
    assert!(
        iptables(&["-S", "FORWARD"]).contains(&format!("-j {chain}")),
        "FORWARD jumps to {chain}"
    );
    assert!(
        iptables(&["-S", "OUTPUT"]).contains(&format!("-j {chain}")),
        "OUTPUT jumps to {chain}"
    );
    assert!(
        !iptables(&["-t", "nat", "-S"]).contains("MASQUERADE"),
        "the host masquerades nothing"
    );

    let ns = TestNamespace::new(cluster, "real-net");
    cluster.ok(
        &["apply", "-n", &ns.name, "-f", "-"],
        berth_testkit::PROBE_POD,
    );
    ready_pod(cluster, &ns.name, "probe");

    // the apiserver, through the `kubernetes` Service and on the link
    assert!(
        pod_connects(cluster, &ns.name, "probe", "10.96.0.1", 443),
        "kubernetes Service"
    );
    // a host listener on every address: the host itself reaches it, the pod does not
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut targets: Vec<String> = foreign_host_addresses()
        .iter()
        .map(|a| a.to_string())
        .collect();
    targets.push(host_link_ip);
    for ip in targets {
        assert!(
            std::net::TcpStream::connect((ip.as_str(), port)).is_ok(),
            "the host reaches {ip}:{port}"
        );
        assert!(
            !pod_connects(cluster, &ns.name, "probe", &ip, port),
            "a pod reaches the host's {ip}:{port}, outside the test links"
        );
    }
}

/// The run directory of the cluster (`<run dir>/kubeconfig` is its kubeconfig).
fn run_dir(cluster: &Cluster) -> std::path::PathBuf {
    cluster
        .kubeconfig
        .parent()
        .expect("the kubeconfig is in the run directory")
        .to_path_buf()
}

#[test]
fn each_real_node_keeps_its_pods_logs_in_its_own_directory_and_its_config_is_strict() {
    let Some(cluster) = cluster() else { return };
    let Some(real) = real_nodes(cluster, 1) else {
        return;
    };
    let run = run_dir(cluster);
    // a misspelt field is ignored with a warning (as `podLogsDirectory` was: every kubelet then
    // used /var/log/pods and deleted the other nodes' pods' logs as orphans)
    for n in 1..=real.len() {
        let log = std::fs::read_to_string(run.join(format!("kubelet-n{n}.log"))).unwrap();
        let lenient = log.lines().find(|l| l.contains("strict decoding"));
        assert!(lenient.is_none(), "kubelet-n{n}: {}", lenient.unwrap());
    }
    let ns = TestNamespace::new(cluster, "real-logs");
    cluster.ok(
        &["apply", "-n", &ns.name, "-f", "-"],
        berth_testkit::PROBE_POD,
    );
    let probe = ready_pod(cluster, &ns.name, "probe");
    let node = node_of(&probe);
    let n = node.strip_prefix("real-node-").expect("a real node's name");
    let uid = probe["metadata"]["uid"].as_str().unwrap();
    let dir = run
        .join(format!("nodes/n{n}/pod-logs"))
        .join(format!("{}_probe_{uid}", ns.name));
    assert!(dir.is_dir(), "{} holds the pod's logs", dir.display());
}
