//! The shipped etcd example (`examples/etcd.yaml`) in real containers under `berth operator`,
//! on the test cluster's real nodes: only delivery values change it
//! (`tools/testenv/testdata/real-node-etcd.values.yaml`: image, node label and taint; `replicas`
//! to scale). Three members form a healthy cluster whose own role probe labels one leader; the
//! example's memberJoin and memberLeave actions scale it 3 → 5 → 3 (as `etcdctl member list`
//! in a member shows), and keys written before the scale are read after it from every member.
//! Skipped without 2 real nodes outside CI (see `berth_testkit::real_nodes`), failing in CI.

mod operator_common;

use std::collections::BTreeSet;
use std::time::Instant;

use berth_testkit::real_nodes;
use operator_common::real::*;
use operator_common::*;

const KEYS: usize = 50;

/// The members `etcdctl member list` in `member` reports as (name, status), once it answers.
fn member_list(cluster: &Cluster, ns: &str, member: &str) -> BTreeSet<(String, String)> {
    let listed = wait_until("etcdctl member list", REAL_TIMEOUT, || {
        etcdctl(cluster, ns, member, "member list")
    });
    listed
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(", ").collect();
            (fields[2].to_string(), fields[1].to_string())
        })
        .collect()
}

/// Members `etcd-0` .. `etcd-<size-1>`, each `started`.
fn started(size: usize) -> BTreeSet<(String, String)> {
    (0..size)
        .map(|i| (format!("etcd-{i}"), "started".to_string()))
        .collect()
}

/// Waits until the member list, as `member` reports it, is exactly `size` started members.
fn wait_member_list(cluster: &Cluster, ns: &str, member: &str, size: usize) {
    let what = format!("{size} started members in {member}'s member list");
    wait_until(&what, REAL_TIMEOUT, || {
        (member_list(cluster, ns, member) == started(size)).then_some(())
    });
}

/// Writes `KEYS` keys `data/<n>` = `value-<n>` through `member`.
fn write_keys(cluster: &Cluster, ns: &str, member: &str) {
    let script = format!(
        "for n in $(seq 1 {KEYS}); do etcdctl --endpoints=http://$BERTH_POD_IP:2379 put data/$n value-$n >/dev/null || exit 1; done"
    );
    wait_until("the keys written", REAL_TIMEOUT, || {
        sh(cluster, ns, member, &script)
    });
}

/// Asserts that `member` serves every key `write_keys` wrote (a linearizable read).
fn assert_keys(cluster: &Cluster, ns: &str, member: &str) {
    let read = wait_until(&format!("{member} to serve the keys"), REAL_TIMEOUT, || {
        etcdctl(cluster, ns, member, "get --prefix data/ --print-value-only")
    });
    let values: BTreeSet<&str> = read.lines().collect();
    let expected: BTreeSet<String> = (1..=KEYS).map(|n| format!("value-{n}")).collect();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(values, expected, "{member} serves the keys written before");
}

/// The operator's membership events (reason and note), in order.
fn membership_events(cluster: &Cluster, ns: &str) -> Vec<String> {
    let reasons = [
        "MemberJoin",
        "MemberJoinFailed",
        "MemberLeave",
        "MemberLeaveFailed",
    ];
    step_events(cluster, ns, &reasons)
        .into_iter()
        .map(|(reason, note)| format!("{reason}: {note}"))
        .collect()
}

/// Scales to `size` with the `replicas` parameter and waits until the cluster has exactly those
/// members, started, and the app is Ready with them.
fn scale(cluster: &Cluster, ns: &str, size: usize) -> std::time::Duration {
    let started_at = Instant::now();
    let replicas = format!("replicas={size}");
    apply(cluster, &real_example("etcd", ns, &[&replicas]));
    wait_members_ready(cluster, ns, "etcd", size);
    wait_member_list(cluster, ns, "etcd-0", size);
    let pods = member_pods(cluster, ns, "etcd").len();
    assert_eq!(pods, size, "pods after scaling to {size}");
    started_at.elapsed()
}

#[test]
fn the_etcd_example_runs_in_real_pods_and_scales_3_5_3_through_its_member_actions_keeping_data() {
    let Some((cluster, ns)) = setup("real-etcd-op") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    let manifest = real_example("etcd", ns, &[]);
    let ready_after = start_on_real_nodes(cluster, ns, "etcd", &manifest, 3);
    wait_member_list(cluster, ns, "etcd-0", 3);
    // etcdctl 3.4 prints the health of each endpoint to stderr
    let health = etcdctl(cluster, ns, "etcd-0", "endpoint health --cluster 2>&1");
    let health = health.unwrap_or_default();
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let leader = single_leader(cluster, ns, "etcd", 3);
    write_keys(cluster, ns, &leader);

    let up_after = scale(cluster, ns, 5);
    assert_keys(cluster, ns, "etcd-3");
    assert_keys(cluster, ns, "etcd-4");
    single_leader(cluster, ns, "etcd", 5);
    let down_after = scale(cluster, ns, 3);
    for member in ["etcd-0", "etcd-1", "etcd-2"] {
        wait_member_list(cluster, ns, member, 3);
        assert_keys(cluster, ns, member);
    }
    single_leader(cluster, ns, "etcd", 3);

    let events = membership_events(cluster, ns);
    let done: Vec<&String> = events.iter().filter(|e| !e.contains("Failed")).collect();
    let order: Vec<String> = done
        .iter()
        .map(|e| e[..e.find(" ran ").unwrap_or(e.len())].to_string())
        .collect();
    let expected = [
        "MemberJoin: memberJoin for etcd-3",
        "MemberJoin: memberJoin for etcd-4",
        "MemberLeave: memberLeave for etcd-4",
        "MemberLeave: memberLeave for etcd-3",
    ];
    assert_eq!(order, expected, "{events:#?}\n{}", operator.log());
    eprintln!(
        "real etcd: 3 members Ready after {ready_after:?}; 3 → 5 in {up_after:?}; 5 → 3 in \
         {down_after:?}; membership events {events:#?}"
    );
}
