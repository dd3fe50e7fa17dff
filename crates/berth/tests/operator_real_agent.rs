//! The role agent (`berth agent`) in real pods: `berth operator --agent-image` with the
//! operator image of the binary under test, and the shipped Redis example on the real nodes.
//! - Each member's agent labels its role (the label's field manager is `berth-agent`), and
//!   while roles hold no agent writes anything.
//! - A failover made by hand with redis-cli (no operator action) moves the labels, and so does
//!   the switchover of a RoleAware config rollout, whose new pods get their agents.
//! - An agent's token, bound to its pod, may change only that pod's role label (the Role
//!   and the admission policy of `deploy/rbac.yaml`).
//! - A killed agent shows as `Degraded` (`AgentDown`) while the app keeps serving, and the
//!   condition clears once the kubelet has restarted it.
//! - Agents that cannot write a role change (their RoleBinding deleted) take their members
//!   out of the `write` Service (their readiness fails) instead of leaving it on a replica,
//!   until the operator's exec fallback relabels them.
//!
//! Skipped without 2 real nodes outside CI (see `berth_testkit::real_nodes`), failing in CI.

mod operator_common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_testkit::{real_nodes, token_kubeconfig};
use operator_common::real::*;
use operator_common::*;
use serde_json::Value;

/// The example's role probe period.
const PERIOD: Duration = Duration::from_secs(2);

/// How many times each member's agent wrote a role label, from its log.
fn role_writes(cluster: &Cluster, ns: &str) -> BTreeMap<String, usize> {
    member_pods(cluster, ns, "redis")
        .iter()
        .map(|pod| {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let log = cluster.ok(&["logs", "-n", ns, &name, "-c", "berth-agent"], "");
            (name, log.matches("role changed").count())
        })
        .collect()
}

/// The field managers of a pod's `berth.io/role` label.
fn role_label_managers(cluster: &Cluster, ns: &str, pod: &str) -> Vec<String> {
    let out = cluster.ok(
        &[
            "get",
            "pod",
            pod,
            "-n",
            ns,
            "-o",
            "json",
            "--show-managed-fields",
        ],
        "",
    );
    let pod: Value = serde_json::from_str(&out).unwrap();
    pod["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["fieldsV1"]["f:metadata"]["f:labels"]["f:berth.io/role"].is_object())
        .map(|f| f["manager"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The app's Degraded condition.
fn degraded(cluster: &Cluster, ns: &str) -> Value {
    condition(&app(cluster, ns, "redis"), "Degraded")
}

/// Makes `new` the master by hand, as an outside failover tool would: no operator action.
fn fail_over(cluster: &Cluster, ns: &str, new: &str, members: &[String]) {
    assert_eq!(
        member_cli(cluster, ns, new, "REPLICAOF NO ONE").as_deref(),
        Some("OK")
    );
    let pod = cluster.get_json(&["pod", new, "-n", ns]);
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    for member in members.iter().filter(|m| *m != new) {
        let replied = member_cli(cluster, ns, member, &format!("REPLICAOF {ip} 6379"));
        assert_eq!(replied.as_deref(), Some("OK"), "{member} follows {new}");
    }
}

/// `kubectl` as the agent of pod `bound` (a token bound to that pod): whether `args` succeeded,
/// and its stderr.
fn as_agent(cluster: &Cluster, ns: &str, bound: &str, args: &[&str]) -> (bool, String) {
    let token = cluster.ok(
        &[
            "create",
            "token",
            "redis-berth-agent",
            "-n",
            ns,
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            bound,
        ],
        "",
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(cluster, &dir.path().join("agent"), token.trim());
    let out = cluster
        .kubectl_as(&kubeconfig)
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Kills member `pod`'s agent (SIGTERM to its process, PID 1 of its container). The exec's
/// own shell dies with the container (exit 137), so its status says nothing: the caller
/// awaits the restart.
fn kill_agent(cluster: &Cluster, ns: &str, pod: &str) {
    let kill = [
        "exec",
        "-n",
        ns,
        pod,
        "-c",
        "berth-agent",
        "--",
        "sh",
        "-c",
        "kill 1",
    ];
    cluster.run(&kill, "");
}

/// The agent's restart count in `pod`.
fn agent_restarts(cluster: &Cluster, ns: &str, pod: &str) -> i64 {
    let pod = cluster.get_json(&["pod", pod, "-n", ns]);
    pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == "berth-agent")
        .and_then(|c| c["restartCount"].as_i64())
        .unwrap_or(0)
}

/// The Redis example on the real nodes under an operator running role agents (the operator
/// image of the binary under test), Ready with its roles labelled.
struct RedisWithAgents {
    /// Dropped first (fields drop in order): stopped before the namespace goes, so it cannot
    /// put its finalizer back on the app the namespace's drop releases.
    operator: Operator,
    ns: TestNamespace,
    cluster: &'static Cluster,
    /// The member labelled master.
    master: String,
}

impl RedisWithAgents {
    /// `None` where real-node tests skip (outside CI without 2 real nodes).
    fn start(prefix: &str) -> Option<Self> {
        let (cluster, ns) = setup(prefix)?;
        real_nodes(cluster, 2)?;
        let (repository, tag) = operator_image();
        let image = format!("{repository}:{tag}");
        let operator = Operator::start(cluster, &ns.name, &["--agent-image", &image]);
        let app = real_example("redis", &ns.name, &[]);
        start_on_real_nodes(cluster, &ns.name, "redis", &app, 3);
        let master = single_master(cluster, &ns.name, "redis", 3);
        Some(Self {
            operator,
            ns,
            cluster,
            master,
        })
    }
}

#[test]
fn the_redis_examples_agents_label_roles_follow_a_failover_keep_to_their_pod_and_a_dead_one_degrades_the_app()
 {
    let Some(run) = RedisWithAgents::start("real-agent") else {
        return;
    };
    let (cluster, ns, operator, master) =
        (run.cluster, &run.ns.name, &run.operator, run.master.clone());

    // the agents label the roles, and nothing else writes them
    let members: Vec<String> = roles(cluster, ns, "redis").into_keys().collect();
    for member in &members {
        assert_eq!(
            role_label_managers(cluster, ns, member),
            ["berth-agent"],
            "{member}'s role label is the agent's\n{}",
            operator.log()
        );
    }
    let writes = role_writes(cluster, ns);
    assert!(
        writes.values().all(|n| *n == 1),
        "one write each: {writes:?}"
    );
    // while roles hold, no agent writes: an observation window of three probe periods
    std::thread::sleep(3 * PERIOD);
    assert_eq!(
        role_writes(cluster, ns),
        writes,
        "no write while roles hold"
    );

    // a failover made by hand moves the labels
    let new = members.iter().find(|m| **m != master).unwrap().clone();
    let started = Instant::now();
    fail_over(cluster, ns, &new, &members);
    wait_until(
        &format!("{new} labelled master, the others slave"),
        TIMEOUT,
        || {
            let roles = roles(cluster, ns, "redis");
            roles
                .iter()
                .all(|(m, r)| r == if *m == new { "master" } else { "slave" })
                .then_some(())
        },
    );
    eprintln!(
        "failover to {new}: labels moved in {} ms",
        started.elapsed().as_millis()
    );

    // an agent may change its own pod's role label, and nothing else
    let other = members.iter().find(|m| **m != new).unwrap();
    let own = [
        "label",
        "pod",
        new.as_str(),
        "berth.io/role=master",
        "--overwrite",
    ];
    let (ok, err) = as_agent(cluster, ns, &new, &own);
    assert!(ok, "its own role label: {err}");
    for (what, args) in [
        (
            "another pod's role label",
            vec![
                "label",
                "pod",
                other.as_str(),
                "berth.io/role=master",
                "--overwrite",
            ],
        ),
        (
            "another label of its pod",
            vec!["label", "pod", new.as_str(), "team=x"],
        ),
        ("deleting its pod", vec!["delete", "pod", new.as_str()]),
    ] {
        let (ok, err) = as_agent(cluster, ns, &new, &args);
        assert!(!ok, "{what} is refused");
        assert!(
            err.contains("forbidden") || err.contains("denied"),
            "{what}: {err}"
        );
    }

    // a killed agent: Degraded while the app serves; the kubelet restarts it and it clears.
    // The kubelet restarts a container at once after its first exit, and holds it in back-off
    // (10 s) after the second: the outage is looked for then. Once the agent is back it is
    // ready within its one-second readiness period, too short a window to look for it in.
    let victim = members.iter().find(|m| **m != new).unwrap().clone();
    kill_agent(cluster, ns, &victim);
    wait_until("the agent restarted", TIMEOUT, || {
        (agent_restarts(cluster, ns, &victim) >= 1).then_some(())
    });
    kill_agent(cluster, ns, &victim);
    let condition = wait_until("Degraded with AgentDown", TIMEOUT, || {
        let c = degraded(cluster, ns);
        (c["status"] == "True" && c["reason"] == "AgentDown").then_some(c)
    });
    assert!(
        condition["message"].as_str().unwrap().contains(&victim),
        "{condition}"
    );
    let written = member_cli(cluster, ns, &new, "SET during-agent-outage yes");
    assert_eq!(written.as_deref(), Some("OK"), "the master serves");
    wait_until("the agent back and Degraded cleared", REAL_TIMEOUT, || {
        (agent_restarts(cluster, ns, &victim) >= 2 && degraded(cluster, ns)["status"] == "False")
            .then_some(())
    });
    assert_eq!(single_master(cluster, ns, "redis", 3), new);

    // a RoleAware config rollout: new pods get their agents, the switchover moves the master,
    // and the labels follow
    let old_revision = update_revision(cluster, ns, "redis");
    let changed = real_example("redis", ns, &["extraConfig=slowlog-max-len 256"]);
    apply(cluster, &changed);
    rolled_out(cluster, ns, "redis", &old_revision);
    let after = single_master(cluster, ns, "redis", 3);
    assert_ne!(
        after, new,
        "the switchover moved the master off the last member updated"
    );
    let switchovers = step_events(cluster, ns, &["Switchover"]);
    assert_eq!(switchovers.len(), 1, "{switchovers:?}");
    // (the operator labels the switchover's target itself, probing it every 100 ms until it
    // reports the writable role; the agents label the rest)
    for pod in member_pods(cluster, ns, "redis") {
        let statuses = pod["status"]["initContainerStatuses"].as_array().unwrap();
        let agent = statuses
            .iter()
            .find(|c| c["name"] == "berth-agent")
            .unwrap();
        assert_eq!(agent["ready"], true, "{}", pod["metadata"]["name"]);
    }
}

/// Whether `pod`'s `Ready` condition is `True`.
fn pod_ready(cluster: &Cluster, ns: &str, pod: &str) -> bool {
    let pod = cluster.get_json(&["pod", pod, "-n", ns]);
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The ready addresses of the `write` Service's EndpointSlices.
fn write_endpoints(cluster: &Cluster, ns: &str) -> Vec<String> {
    let selector = "kubernetes.io/service-name=redis-write";
    let slices = cluster.get_json(&["endpointslices", "-n", ns, "-l", selector]);
    let mut ready: Vec<String> = slices["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["conditions"]["ready"] == true)
        .filter_map(|e| e["targetRef"]["name"].as_str().map(str::to_string))
        .collect();
    ready.sort();
    ready
}

#[test]
fn agents_that_cannot_write_a_role_change_take_their_members_out_of_the_write_service() {
    let Some(run) = RedisWithAgents::start("real-agent-cut") else {
        return;
    };
    let (cluster, ns, operator, master) =
        (run.cluster, &run.ns.name, &run.operator, run.master.clone());
    wait_until("the write Service on the master", TIMEOUT, || {
        (write_endpoints(cluster, ns) == [master.clone()]).then_some(())
    });

    // the agents lose their right to label, then the master moves
    cluster.ok(
        &["delete", "rolebinding", "redis-berth-agent", "-n", ns],
        "",
    );
    let members: Vec<String> = roles(cluster, ns, "redis").into_keys().collect();
    let new = members.iter().find(|m| **m != master).unwrap().clone();
    fail_over(cluster, ns, &new, &members);

    // the old master (still labelled master) and the new one (still labelled slave) cannot
    // write their change: both leave every Service, so no write reaches a replica
    wait_until("both changed members unready", TIMEOUT, || {
        (!pod_ready(cluster, ns, &master) && !pod_ready(cluster, ns, &new)).then_some(())
    });
    assert_eq!(roles(cluster, ns, "redis")[&master], "master", "unwritten");
    assert!(
        write_endpoints(cluster, ns).is_empty(),
        "no ready writer: {:?}",
        write_endpoints(cluster, ns)
    );

    // past the agents' grace the operator probes those members itself and labels them; the
    // agents then find their labels right and are ready again
    wait_until(
        "the operator's fallback labels the new master",
        REAL_TIMEOUT,
        || (write_endpoints(cluster, ns) == [new.clone()]).then_some(()),
    );
    assert_eq!(roles(cluster, ns, "redis")[&master], "slave");
    // the operator, seeing the agents down, applied the app again: the RoleBinding is back
    wait_until("the agents' RoleBinding back", TIMEOUT, || {
        let out = cluster.run(&["get", "rolebinding", "redis-berth-agent", "-n", ns], "");
        out.status.success().then_some(())
    });
    assert!(
        operator.log().contains("role changed"),
        "the operator labelled: {}",
        operator.log()
    );
}
