//! The shipped ZooKeeper example (`examples/zookeeper.yaml`) in real containers under
//! `berth operator`, on the test cluster's real nodes: only delivery values change it
//! (`tools/testenv/testdata/real-node-zookeeper.values.yaml`: image, node label and taint, CPU
//! request, the server command Debian's packages need; a zoo.cfg line through `extraConfig` for
//! the rollout). The example's own role probe (`srvr`) labels one leader and two followers, and a
//! znode written before a config change rolls every member survives the rolling restart, read
//! from every member after it. Skipped without 2 real nodes outside CI (see
//! `berth_testkit::real_nodes`), failing in CI.

mod operator_common;

use std::collections::BTreeMap;
use std::time::Instant;

use berth_testkit::real_nodes;
use operator_common::real::*;
use operator_common::*;

const ZNODE: &str = "/berth-e2e";
const DATA: &str = "written-before-the-rollout";
const MEMBERS: [&str; 3] = [
    "zookeeper-server-0",
    "zookeeper-server-1",
    "zookeeper-server-2",
];
/// The zoo.cfg line the rollout adds.
const NEW_LINE: &str = "snapCount=50000";

/// ZooKeeper's own command line client in a member, against its own server, with a small heap:
/// Some(stdout) when it exits 0.
fn zk_cli(cluster: &Cluster, ns: &str, member: &str, command: &str) -> Option<String> {
    let script = format!(
        "java -Xmx64m -XX:+UseSerialGC -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
         org.apache.zookeeper.ZooKeeperMain -server $BERTH_POD_IP:2181 {command} 2>&1"
    );
    sh(cluster, ns, member, &script)
}

/// Creates the znode through `member` (an earlier attempt may have created it already).
fn create_znode(cluster: &Cluster, ns: &str, member: &str) {
    wait_until("the znode created", REAL_TIMEOUT, || {
        let out = zk_cli(cluster, ns, member, &format!("create {ZNODE} {DATA}"))?;
        (out.contains(&format!("Created {ZNODE}")) || out.contains("Node already exists"))
            .then_some(())
    });
}

/// Asserts that `member` serves the znode with its data.
fn assert_znode(cluster: &Cluster, ns: &str, member: &str) {
    let what = format!("{member} to serve {ZNODE}");
    let out = wait_until(&what, REAL_TIMEOUT, || {
        zk_cli(cluster, ns, member, &format!("get {ZNODE}"))
    });
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert!(lines.contains(&DATA), "{member}: get {ZNODE}:\n{out}");
}

/// The mode each member's server reports (`srvr`), by pod name.
fn modes(cluster: &Cluster, ns: &str) -> BTreeMap<String, String> {
    let srvr = "printf srvr | nc $BERTH_POD_IP 2181 | sed -n 's/^Mode: //p'";
    MEMBERS
        .iter()
        .map(|m| (m.to_string(), sh(cluster, ns, m, srvr).unwrap_or_default()))
        .collect()
}

/// The leader, once the role labels name one leader and two followers and every server reports
/// the mode its label says. (Labels alone can be stale: a member whose probe reports nothing
/// keeps its label while it is ready, and an ensemble still forming elects again.)
fn leader_agreed(cluster: &Cluster, ns: &str) -> String {
    wait_until(
        "the servers' modes to match their role labels",
        REAL_TIMEOUT,
        || {
            let leader = single_leader(cluster, ns, "zookeeper", 3);
            (modes(cluster, ns) == roles(cluster, ns, "zookeeper")).then_some(leader)
        },
    )
}

/// The members the rollout replaced, in the order the operator's events say.
fn replaced(cluster: &Cluster, ns: &str) -> Vec<String> {
    step_events(cluster, ns, &["RollingUpdate"])
        .iter()
        .filter_map(|(_, note)| replaced_member(note))
        .collect()
}

#[test]
fn the_zookeeper_example_runs_in_real_pods_with_one_leader_and_a_znode_survives_a_rolling_restart()
{
    let Some((cluster, ns)) = setup("real-zk-op") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    let manifest = real_example("zookeeper", ns, &[]);
    let started = Instant::now();
    let ready_after = start_on_real_nodes(cluster, ns, "zookeeper", &manifest, 3);
    let leader = leader_agreed(cluster, ns);
    let labelled_after = started.elapsed();
    create_znode(cluster, ns, &leader);
    assert_znode(cluster, ns, "zookeeper-server-0");

    let old_uids = pod_uids(cluster, ns, "zookeeper");
    let old_revision = update_revision(cluster, ns, "zookeeper");
    let rollout = Instant::now();
    let extra = format!("extraConfig={NEW_LINE}");
    apply(cluster, &real_example("zookeeper", ns, &[&extra]));
    rolled_out(cluster, ns, "zookeeper", &old_revision);
    let rolled_after = rollout.elapsed();
    let new_leader = leader_agreed(cluster, ns);

    let new_uids = pod_uids(cluster, ns, "zookeeper");
    for (pod, uid) in &old_uids {
        assert_ne!(new_uids.get(pod), Some(uid), "{pod} was restarted");
    }
    for member in MEMBERS {
        let config = sh(cluster, ns, member, "cat /data/conf/zoo.cfg").unwrap_or_default();
        assert!(config.lines().any(|l| l == NEW_LINE), "{member}:\n{config}");
        assert_znode(cluster, ns, member);
    }
    let order = replaced(cluster, ns);
    eprintln!(
        "real ZooKeeper: Ready after {ready_after:?} (leader {leader}, labelled by {labelled_after:?}); \
         rollout {rolled_after:?}, order {order:?}, leader after it {new_leader}"
    );
    assert_eq!(order.len(), 3, "{order:?}\n{}", operator.log());
    assert_eq!(order[2], leader, "the leader is replaced last: {order:?}");
}
