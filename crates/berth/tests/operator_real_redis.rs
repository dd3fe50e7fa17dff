//! The shipped Redis example (`examples/redis.yaml`) in real containers under `berth operator`,
//! on the test cluster's real nodes: only delivery values change it
//! (`tools/testenv/testdata/real-node-redis.values.yaml`: image, node label and taint; a
//! config line through `extraConfig` for the rollout). Its own role probe labels the members,
//! 10,000 keys written through the `write` Service reach every replica, and a config change
//! rolls out RoleAware (replicas, switchover, old master last) under a client writing through
//! the `write` Service, losing no acknowledged write. Skipped without 2 real nodes outside CI
//! (see `berth_testkit::real_nodes`), failing in CI.

mod operator_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use berth_testkit::real_nodes;
use operator_common::real::*;
use operator_common::*;
use serde_json::json;

const KEYS: usize = 10_000;
const IMAGE: &str = "berth.local/redis:deb12";

/// A pod in `ns` on a real node running `script` with bash, in the Redis image (it has
/// redis-cli); `privileged` lets it set its own network namespace's sysctls.
fn helper_pod(ns: &str, name: &str, script: &str, privileged: bool) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "nodeSelector": {"berth.io/node-kind": "real"},
            "tolerations": [{"key": "berth.io/node-kind", "value": "real", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": "Never",
            "containers": [{
                "name": name,
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "command": ["bash", "-c", script],
                "securityContext": {"privileged": privileged},
            }],
        },
    })
    .to_string()
}

/// The keys with `prefix` a member holds.
fn keys(cluster: &Cluster, ns: &str, member: &str, prefix: &str) -> Option<BTreeSet<String>> {
    let listed = member_cli(
        cluster,
        ns,
        member,
        &format!("--scan --pattern '{prefix}*'"),
    )?;
    Some(listed.lines().map(str::to_string).collect())
}

/// The role the member's own server reports (`ROLE`'s first line).
fn server_role(cluster: &Cluster, ns: &str, member: &str) -> String {
    let role = member_cli(cluster, ns, member, "ROLE").unwrap_or_default();
    role.lines().next().unwrap_or_default().to_string()
}

/// The rollout's steps as the operator's events tell them: a replaced member's name, or
/// `Switchover: <note>`.
fn rollout_steps(cluster: &Cluster, ns: &str) -> Vec<String> {
    step_events(cluster, ns, &["RollingUpdate", "Switchover"])
        .into_iter()
        .map(|(reason, note)| match replaced_member(&note) {
            Some(member) => member,
            None => format!("{reason}: {note}"),
        })
        .collect()
}

/// The client of `tools/testenv/testdata/redis-writer.sh` (shared with `bench/real-rollout.sh`):
/// in its own (privileged) pod it writes `w:<n>` through the `write` Service about every 5 ms on
/// one connection, reconnecting after any reply but `+OK`, and prints `ack <n> <unix time>` or
/// `err <n> <unix time> <reply>` per write, `stopped` once /tmp/stop exists, into /tmp/writes.
const WRITER: &str = include_str!("../../../tools/testenv/testdata/redis-writer.sh");

/// What the writer saw.
#[derive(Debug)]
struct Writes {
    /// Keys written and acknowledged.
    acked: BTreeSet<String>,
    /// Writes that failed or were refused.
    failed: usize,
    /// The longest time between two acknowledged writes (or from the last one to the end).
    longest_gap: Duration,
    /// From the first write to the last.
    span: Duration,
    /// Each run of failed writes: how long from the acknowledged write before it to the one
    /// after, how many failed, and the first failure's reply.
    outages: Vec<String>,
}

/// A run of failed writes being read.
struct Outage {
    since: f64,
    failed: usize,
    reply: String,
}

impl Writes {
    /// Parses the writer's output.
    fn parse(log: &str) -> Self {
        let (mut acked, mut failed, mut outages) = (BTreeSet::new(), 0, Vec::new());
        let (mut first, mut last_ack, mut end, mut gap) = (None, None, 0.0, 0.0_f64);
        let mut outage: Option<Outage> = None;
        for line in log.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let [kind @ ("ack" | "err"), n, at, ref reply @ ..] = words[..] else {
                continue;
            };
            let at: f64 = at.parse().unwrap();
            let since = last_ack.unwrap_or(*first.get_or_insert(at));
            end = at;
            if kind == "err" {
                failed += 1;
                let run = outage.get_or_insert_with(|| Outage {
                    since,
                    failed: 0,
                    reply: reply.join(" "),
                });
                run.failed += 1;
                continue;
            }
            acked.insert(format!("w:{n}"));
            gap = gap.max(at - since);
            last_ack = Some(at);
            if let Some(run) = outage.take() {
                outages.push(run.describe(at));
            }
        }
        if let Some(run) = outage.take() {
            outages.push(run.describe(end));
        }
        gap = gap.max(end - last_ack.unwrap_or(end));
        Self {
            acked,
            failed,
            longest_gap: Duration::from_secs_f64(gap),
            span: Duration::from_secs_f64(end - first.unwrap_or(end)),
            outages,
        }
    }
}

impl Writes {
    /// One line for the test's output.
    fn summary(&self) -> String {
        let total = self.acked.len() + self.failed;
        format!(
            "{} acknowledged, {} failed over {:?} ({:.0} writes/s), longest gap between acknowledged writes {:?}, outages {:?}",
            self.acked.len(),
            self.failed,
            self.span,
            total as f64 / self.span.as_secs_f64(),
            self.longest_gap,
            self.outages
        )
    }
}

impl Outage {
    fn describe(&self, until: f64) -> String {
        let reply = if self.reply.is_empty() {
            "no reply"
        } else {
            &self.reply
        };
        format!(
            "{:.0} ms, {} failed ({reply})",
            (until - self.since) * 1000.0,
            self.failed
        )
    }
}

/// Starts the writer pod and waits until it has acknowledged writes.
fn start_writer(cluster: &Cluster, ns: &str) {
    apply(cluster, &helper_pod(ns, "writer", WRITER, true));
    wait_until(
        "the writer's first acknowledged write",
        REAL_TIMEOUT,
        || {
            let log = sh(cluster, ns, "writer", "cat /tmp/writes")?;
            assert!(!log.contains("cannot"), "the writer failed: {log}");
            log.contains("ack ").then_some(())
        },
    );
}

/// Stops the writer, once its latest write was acknowledged, and returns what it saw.
fn stop_writer(cluster: &Cluster, ns: &str) -> Writes {
    wait_until(
        "the writer's latest write acknowledged",
        REAL_TIMEOUT,
        || {
            let log = sh(cluster, ns, "writer", "tail -n 1 /tmp/writes")?;
            log.starts_with("ack ").then_some(())
        },
    );
    cluster.ok(
        &["exec", "-n", ns, "writer", "--", "touch", "/tmp/stop"],
        "",
    );
    let log = wait_until("the writer to stop", Duration::from_secs(30), || {
        sh(cluster, ns, "writer", "cat /tmp/writes").filter(|log| log.ends_with("stopped"))
    });
    Writes::parse(&log)
}

const MEMBERS: [&str; 3] = ["redis-0", "redis-1", "redis-2"];

/// Writes `KEYS` keys through the write Service from the client pod (kube-proxy routes by the
/// role label); returns how long until every member held them.
fn write_keys_to_every_member(cluster: &Cluster, ns: &str) -> Duration {
    let written = Instant::now();
    let script =
        format!("seq 1 {KEYS} | sed 's/.*/SET key:& &/' | redis-cli -h redis-write --pipe");
    let piped = wait_until("the write Service to take the keys", REAL_TIMEOUT, || {
        sh(cluster, ns, "client", &script)
    });
    let all_written = format!("errors: 0, replies: {KEYS}");
    assert!(piped.contains(&all_written), "{piped}");
    for member in MEMBERS {
        wait_until(
            &format!("{member} to hold {KEYS} keys"),
            REAL_TIMEOUT,
            || {
                let size = member_cli(cluster, ns, member, "DBSIZE")?;
                (size == KEYS.to_string()).then_some(())
            },
        );
    }
    written.elapsed()
}

/// The rollout's steps are: the two replicas (either order), the switchover from the old
/// master to the new one, the old master.
fn assert_role_aware_order(steps: &[String], old_master: &str, new_master: &str, log: &str) {
    assert_eq!(steps.len(), 4, "{steps:?}\n{log}");
    let replicas: BTreeSet<&str> = MEMBERS.into_iter().filter(|m| *m != old_master).collect();
    let first: BTreeSet<&str> = steps[..2].iter().map(String::as_str).collect();
    assert_eq!(first, replicas, "replicas first: {steps:?}");
    let switchover = format!(
        "Switchover: moved leadership from {old_master} to {new_master} before updating {old_master}"
    );
    assert_eq!(steps[2], switchover, "{steps:?}");
    assert_eq!(steps[3], old_master, "the old master last: {steps:?}");
}

/// Every member runs the new config line and still holds the `KEYS` keys.
fn assert_new_config_and_keys_everywhere(cluster: &Cluster, ns: &str) {
    for member in MEMBERS {
        let config = member_cli(cluster, ns, member, "CONFIG GET slowlog-max-len");
        let expected = Some("slowlog-max-len\n256");
        assert_eq!(config.as_deref(), expected, "{member} runs the new config");
        let held = wait_until(&format!("{member} to hold the keys"), REAL_TIMEOUT, || {
            keys(cluster, ns, member, "key:").filter(|k| k.len() >= KEYS)
        });
        assert_eq!(held.len(), KEYS, "{member}");
    }
}

#[test]
fn the_redis_example_runs_in_real_pods_and_a_config_rollout_moves_the_master_losing_no_write() {
    let Some((cluster, ns)) = setup("real-redis-op") else {
        return;
    };
    if real_nodes(cluster, 2).is_none() {
        return;
    }
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &helper_pod(ns, "client", "sleep infinity", false));
    let ready_after = start_on_real_nodes(cluster, ns, "redis", &real_example("redis", ns, &[]), 3);
    // the example's own probe, run by the operator through pods/exec, labels the members
    let old_master = single_master(cluster, ns, "redis", 3);
    assert_eq!(old_master, "redis-0", "member 0 starts as the master");
    assert_eq!(server_role(cluster, ns, &old_master), "master");
    let replicated_after = write_keys_to_every_member(cluster, ns);

    // a config change rolls out RoleAware under a writing client
    let before = app(cluster, ns, "redis");
    let old_revision = before["status"]["parts"][0]["updateRevision"].clone();
    start_writer(cluster, ns);
    let rollout = Instant::now();
    let changed = real_example("redis", ns, &["extraConfig=slowlog-max-len 256"]);
    apply(cluster, &changed);
    rolled_out(cluster, ns, "redis", old_revision.as_str().unwrap());
    let rolled_after = rollout.elapsed();
    let new_master = single_master(cluster, ns, "redis", 3);
    let writes = stop_writer(cluster, ns);

    let steps = rollout_steps(cluster, ns);
    assert_role_aware_order(&steps, &old_master, &new_master, &operator.log());
    assert_ne!(new_master, old_master);
    assert_eq!(server_role(cluster, ns, &new_master), "master");
    assert_new_config_and_keys_everywhere(cluster, ns);
    let on_master = keys(cluster, ns, &new_master, "w:").unwrap();
    let lost: Vec<&String> = writes.acked.difference(&on_master).collect();
    eprintln!(
        "real Redis: Ready after {ready_after:?}; {KEYS} keys on every member after {replicated_after:?}; \
         rollout {rolled_after:?}; writer: {}; {} lost",
        writes.summary(),
        lost.len(),
    );
    assert!(writes.acked.len() > 100, "the writer wrote: {writes:?}");
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[test]
fn the_writers_log_gives_acknowledged_keys_gaps_and_outages() {
    let log = "ack 1 100.000\nerr 2 100.010 -READONLY You can't write\nerr 3 100.020\n\
               ack 4 100.500\nack 5 100.510\nerr 6 100.520\nstopped\n";
    let writes = Writes::parse(log);
    assert_eq!(
        writes.acked,
        BTreeSet::from(["w:1", "w:4", "w:5"].map(String::from))
    );
    assert_eq!(writes.failed, 3);
    assert_eq!(writes.longest_gap.as_millis(), 500);
    assert_eq!(writes.span.as_millis(), 520);
    assert_eq!(
        writes.outages,
        [
            "500 ms, 2 failed (-READONLY You can't write)",
            "10 ms, 1 failed (no reply)"
        ]
    );
}
