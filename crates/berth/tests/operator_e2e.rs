//! End-to-end tests of `berth operator` on the real control plane (kwok nodes). Every test runs
//! its own operator process, scoped to its own namespace and authenticated with the
//! ServiceAccount token of `deploy/rbac.yaml`, so the RBAC we ship is the RBAC we test.

mod operator_common;

use std::collections::BTreeSet;
use std::time::Duration;

use operator_common::*;

#[test]
fn each_example_becomes_ready_with_its_objects() {
    let Some((cluster, ns)) = setup("op-examples") else {
        return;
    };
    let operator = Operator::start(cluster, &ns.name, &[]);
    for name in ["zookeeper", "redis", "web", "etcd"] {
        apply(cluster, &example(name, &ns.name));
    }
    for name in ["zookeeper", "redis", "web", "etcd"] {
        let a = wait_ready(cluster, &ns.name, name);
        assert_eq!(
            a["status"]["summary"]["ready"],
            "3/3",
            "{name}: {}\n{}",
            a["status"],
            operator.log()
        );
    }
    let sets = names_of(cluster, &ns.name, "statefulsets");
    assert_eq!(
        sets,
        BTreeSet::from(["etcd", "redis", "web", "zookeeper-server"].map(String::from))
    );
    let services = names_of(cluster, &ns.name, "services");
    for s in [
        "zookeeper-server-headless",
        "zookeeper-server-client",
        "redis-write",
        "nginx",
        "web-http",
        "etcd-client",
    ] {
        assert!(services.contains(s), "missing Service {s}: {services:?}");
    }
    let table = cluster.ok(&["get", "sapp", "-n", &ns.name], "");
    assert!(
        table.contains("PARTS") && table.contains("PHASE") && table.contains("3/3"),
        "{table}"
    );
    let created = events(cluster, &ns.name);
    assert!(
        created.contains("Created") && created.contains("created StatefulSet web"),
        "{created}"
    );
}

#[test]
fn an_image_change_rolls_out_and_status_tracks_revisions() {
    let Some((cluster, ns)) = setup("op-image") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name);
    apply(cluster, &manifest);
    let before = wait_ready(cluster, &ns.name, "web");
    let old_revision = before["status"]["parts"][0]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let after = wait_until("the new revision everywhere", TIMEOUT, || {
        let a = wait_ready(cluster, &ns.name, "web");
        let part = &a["status"]["parts"][0];
        let new = part["updateRevision"].as_str().unwrap().to_string();
        let members_new = part["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["revision"] == part["updateRevision"]);
        (new != old_revision && part["currentRevision"] == part["updateRevision"] && members_new)
            .then_some(a)
    });
    assert_eq!(after["status"]["parts"][0]["updated"], 3);
    let image = web_image(cluster, &ns.name);
    assert_eq!(image, "registry.k8s.io/nginx-slim:0.9");
}

#[test]
fn scaling_rewrites_the_peer_list_and_keeps_claims() {
    let Some((cluster, ns)) = setup("op-scale") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("zookeeper", &ns.name);
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "zookeeper");
    let servers = || {
        let cfg = cluster.ok(
            &[
                "get",
                "configmap",
                "zookeeper-server-config",
                "-n",
                &ns.name,
                "-o",
                "jsonpath={.data.zoo\\.cfg}",
            ],
            "",
        );
        cfg.lines().filter(|l| l.starts_with("server.")).count()
    };
    assert_eq!(servers(), 3);
    apply(
        cluster,
        &manifest.replace("      replicas: 3\n", "      replicas: 5\n"),
    );
    let a = wait_ready(cluster, &ns.name, "zookeeper");
    assert_eq!(a["status"]["summary"]["ready"], "5/5");
    assert_eq!(servers(), 5);
    let members = cluster.ok(
        &[
            "get",
            "configmap",
            "zookeeper-server-topology",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.data.members}",
        ],
        "",
    );
    assert_eq!(members.lines().count(), 5);
    apply(cluster, &manifest);
    wait_until("3 members again", TIMEOUT, || {
        (phase(cluster, &ns.name, "zookeeper") == "Ready" && count(cluster, &ns.name, "pods") == 3)
            .then_some(())
    });
    assert_eq!(servers(), 3);
    assert_eq!(
        count(cluster, &ns.name, "pvc"),
        5,
        "claims of removed members are retained by default"
    );
}

#[test]
fn deleting_the_app_removes_its_objects_and_keeps_claims() {
    let Some((cluster, ns)) = setup("op-delete") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
    assert!(
        app(cluster, &ns.name, "web")["metadata"]["finalizers"]
            .to_string()
            .contains("berth.io/cleanup")
    );
    cluster.ok(
        &["delete", "sapp", "web", "-n", &ns.name, "--wait=false"],
        "",
    );
    wait_until("the app and its objects to be gone", TIMEOUT, || {
        let gone = [
            "statefulsets",
            "services",
            "configmaps",
            "poddisruptionbudgets",
        ]
        .iter()
        .all(|k| names_of(cluster, &ns.name, k).is_empty());
        (gone && count(cluster, &ns.name, "statefulapps") == 0).then_some(())
    });
    assert_eq!(
        count(cluster, &ns.name, "pvc"),
        3,
        "claims are retained by default"
    );
}

#[test]
fn a_restarted_operator_converges_without_duplicate_or_lost_objects() {
    let Some((cluster, ns)) = setup("op-restart") else {
        return;
    };
    let mut first = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name);
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    apply(
        cluster,
        &manifest
            .replace("nginx-slim:0.8", "nginx-slim:0.9")
            .replace("      replicas: 3\n", "      replicas: 4\n"),
    );
    wait_until("the rollout to start", TIMEOUT, || {
        let image = web_image(cluster, &ns.name);
        image.ends_with("0.9").then_some(())
    });
    first.kill();
    let _second = Operator::start(cluster, &ns.name, &[]);
    let a = wait_ready(cluster, &ns.name, "web");
    assert_eq!(a["status"]["summary"]["ready"], "4/4");
    assert_eq!(
        names_of(cluster, &ns.name, "statefulsets"),
        BTreeSet::from(["web".to_string()])
    );
    assert_eq!(
        names_of(cluster, &ns.name, "services"),
        BTreeSet::from(["nginx".to_string(), "web-http".to_string()])
    );
    assert_eq!(
        names_of(cluster, &ns.name, "configmaps"),
        BTreeSet::from(["web-topology".to_string()])
    );
    assert_eq!(
        names_of(cluster, &ns.name, "poddisruptionbudgets"),
        BTreeSet::from(["web".to_string()])
    );
}

#[test]
fn an_invalid_spec_gets_the_condition_and_an_event_and_nothing_is_applied() {
    let Some((cluster, ns)) = setup("op-invalid") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    apply(
        cluster,
        &example("web", &ns.name).replace("ports: [web]", "ports: [admin]"),
    );
    let ready = ready_condition(&wait_phase(cluster, &ns.name, "web", "Invalid"));
    assert_eq!(ready["status"], "False");
    assert_eq!(
        ready["message"],
        "spec.parts[0].services[0].ports[0]: unknown port `admin`; declared ports: web"
    );
    wait_until("the Invalid event", TIMEOUT, || {
        let e = events(cluster, &ns.name);
        (e.contains("Warning") && e.contains("Invalid") && e.contains("unknown port `admin`"))
            .then_some(())
    });
    assert!(names_of(cluster, &ns.name, "statefulsets").is_empty());
    assert!(names_of(cluster, &ns.name, "configmaps").is_empty());
}

#[test]
fn user_fields_survive_and_removed_objects_are_pruned() {
    let Some((cluster, ns)) = setup("op-prune") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name);
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    cluster.ok(
        &[
            "annotate",
            "statefulset",
            "web",
            "-n",
            &ns.name,
            "team.example.com/owner=storage",
        ],
        "",
    );
    let without_http = manifest.replace(
        "      services:\n        - name: http\n          ports: [web]\n",
        "",
    );
    assert_ne!(without_http, manifest);
    apply(
        cluster,
        &without_http.replace("      replicas: 3\n", "      replicas: 2\n"),
    );
    wait_until("web-http to be pruned", TIMEOUT, || {
        (!names_of(cluster, &ns.name, "services").contains("web-http")).then_some(())
    });
    let a = wait_ready(cluster, &ns.name, "web");
    assert_eq!(a["status"]["summary"]["ready"], "2/2");
    let annotation = cluster.ok(
        &[
            "get",
            "statefulset",
            "web",
            "-n",
            &ns.name,
            "-o",
            "jsonpath={.metadata.annotations.team\\.example\\.com/owner}",
        ],
        "",
    );
    assert_eq!(annotation, "storage");
    assert!(events(cluster, &ns.name).contains("Pruned"));
}

#[test]
fn only_the_lease_holder_reconciles_and_a_standby_takes_over() {
    let Some((cluster, ns)) = setup("op-lease") else {
        return;
    };
    let lease = format!("berth-{}", ns.name);
    let args = [
        "--leader-elect",
        "--lease-namespace",
        "berth-system",
        "--lease-name",
        lease.as_str(),
    ];
    let mut a = Operator::start(
        cluster,
        &ns.name,
        &[&args[..], &["--identity", "replica-a"]].concat(),
    );
    let holder = || {
        cluster.ok(
            &[
                "get",
                "lease",
                &lease,
                "-n",
                "berth-system",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            "",
        )
    };
    wait_until("replica-a to lead", TIMEOUT, || {
        (cluster
            .run(&["get", "lease", &lease, "-n", "berth-system"], "")
            .status
            .success()
            && holder() == "replica-a")
            .then_some(())
    });
    let _b = Operator::start(
        cluster,
        &ns.name,
        &[&args[..], &["--identity", "replica-b"]].concat(),
    );
    apply(cluster, &example("web", &ns.name));
    wait_ready(cluster, &ns.name, "web");
    assert_eq!(holder(), "replica-a");
    a.kill();
    wait_until("replica-b to take over", Duration::from_secs(60), || {
        (holder() == "replica-b").then_some(())
    });
    apply(
        cluster,
        &example("web", &ns.name).replace("      replicas: 3\n", "      replicas: 4\n"),
    );
    let app = wait_ready(cluster, &ns.name, "web");
    assert_eq!(app["status"]["summary"]["ready"], "4/4");
}

#[test]
fn role_aware_rollout_replaces_followers_first_and_the_leader_last() {
    let Some((cluster, ns)) = setup("op-roles") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = with_roles(&example("web", &ns.name), "{strategy: RoleAware}");
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    // kwok pods run no role probe: label the roles as a probe would.
    cluster.ok(
        &[
            "label",
            "pod",
            "web-1",
            "-n",
            &ns.name,
            "berth.io/role=leader",
        ],
        "",
    );
    for follower in ["web-0", "web-2"] {
        cluster.ok(
            &[
                "label",
                "pod",
                follower,
                "-n",
                &ns.name,
                "berth.io/role=follower",
            ],
            "",
        );
    }
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let order = replacement_order(cluster, &ns.name, 3);
    assert_eq!(
        order,
        ["web-2", "web-0", "web-1"],
        "followers from the highest ordinal, the leader last"
    );
    let status = wait_ready(cluster, &ns.name, "web");
    assert_eq!(status["status"]["parts"][0]["updated"], 3);
}

#[test]
fn a_partition_keeps_the_lowest_members_on_the_old_revision() {
    let Some((cluster, ns)) = setup("op-partition") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{partition: 2}");
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    let before = web_uids(cluster, &ns.name);
    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let order = replacement_order(cluster, &ns.name, 1);
    assert_eq!(order, ["web-2"]);
    assert_eq!(
        web_uids(cluster, &ns.name)[..2],
        before[..2],
        "members below the partition keep their pods"
    );
    let part = wait_until("the partitioned rollout to settle", TIMEOUT, || {
        let a = app(cluster, &ns.name, "web");
        (a["status"]["parts"][0]["updated"] == 1).then(|| a["status"]["parts"][0].clone())
    });
    assert_ne!(part["currentRevision"], part["updateRevision"]);
}

#[test]
fn an_image_only_change_updates_members_in_place_and_other_changes_recreate_them() {
    let Some((cluster, ns)) = setup("op-inplace") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{podUpdatePolicy: InPlaceIfPossible}");
    apply(cluster, &manifest);
    let first = wait_ready(cluster, &ns.name, "web")["status"]["parts"][0].clone();
    let before = web_pods(cluster, &ns.name);

    let new_image = manifest.replace("nginx-slim:0.8", "nginx-slim:0.9");
    apply(cluster, &new_image);
    let part = wait_rolled_out(cluster, &ns.name, first["updateRevision"].as_str().unwrap());
    for member in part["members"].as_array().unwrap() {
        assert_eq!(member["updatedInPlace"], true, "{member}");
    }
    let after = web_pods(cluster, &ns.name);
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old[..3], new[..3], "name, UID and node are kept");
        assert_eq!(new[3], "registry.k8s.io/nginx-slim:0.9");
        assert_eq!(
            new[4], "registry.k8s.io/nginx-slim:0.9",
            "the container restarted"
        );
        assert_eq!(new[5], "True", "the readiness gate is open again");
    }
    let in_place_events = events(cluster, &ns.name).matches("InPlaceUpdated").count();
    assert!(in_place_events >= 1, "{}", events(cluster, &ns.name));

    // More than images: InPlaceOnly keeps the members waiting...
    let grace = new_image.replace(
        "terminationGracePeriodSeconds: 10",
        "terminationGracePeriodSeconds: 5",
    );
    apply(cluster, &grace.replace("InPlaceIfPossible", "InPlaceOnly"));
    wait_until("an InPlaceImpossible warning", TIMEOUT, || {
        events(cluster, &ns.name)
            .contains("InPlaceImpossible")
            .then_some(())
    });
    assert_eq!(web_pods(cluster, &ns.name), after, "no member was touched");

    wait_until("the status to show the rollout waiting", TIMEOUT, || {
        let part = &app(cluster, &ns.name, "web")["status"]["parts"][0];
        (part["currentRevision"] != part["updateRevision"]).then_some(())
    });

    // ...and InPlaceIfPossible recreates them.
    apply(cluster, &grace);
    let part = wait_rolled_out(cluster, &ns.name, part["updateRevision"].as_str().unwrap());
    for member in part["members"].as_array().unwrap() {
        assert!(member.get("updatedInPlace").is_none(), "{member}");
    }
    let recreated = web_pods(cluster, &ns.name);
    for (old, new) in after.iter().zip(&recreated) {
        assert_ne!(old[1], new[1], "{} was recreated", new[0]);
    }
}

#[test]
fn role_probes_label_members_and_a_switchover_precedes_the_leader_update() {
    let Some((cluster, ns)) = setup("op-switchover") else {
        return;
    };
    let members = tempfile::tempdir().unwrap();
    let (_operator, manifest) = leader_web(cluster, &ns.name, members.path(), MOVE_ROLE);

    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    replacement_order(cluster, &ns.name, 3);
    let steps: Vec<String> = step_events(cluster, &ns.name, &["RollingUpdate", "Switchover"])
        .into_iter()
        .map(|(reason, note)| match replaced_member(&note) {
            Some(member) => member,
            None => format!("{reason}: {note}"),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "web-2",
            "web-0",
            "Switchover: moved leadership from web-1 to web-2 before updating web-1",
            "web-1"
        ]
    );
    let leader_file = std::fs::read_to_string(members.path().join("web-2/role")).unwrap();
    assert_eq!(
        leader_file.trim(),
        "leader",
        "the action ran in web-1's directory"
    );
    wait_until("the probes to follow the switchover", TIMEOUT, || {
        (role_labels(cluster, &ns.name) == ["follower", "follower", "leader"]).then_some(())
    });
}

#[test]
fn a_rollout_stuck_on_a_broken_revision_degrades_and_recovers_when_the_spec_is_fixed() {
    let Some((cluster, ns)) = setup("op-stuck") else {
        return;
    };
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = web_with_update(&ns.name, "{progressDeadlineSeconds: 2}");
    apply(cluster, &manifest);
    let good = wait_ready(cluster, &ns.name, "web");
    let good_uids = web_uids(cluster, &ns.name);
    // A revision no node can run: its first member stays Pending (kubernetes#67250).
    let broken = manifest.replacen(
        "          terminationGracePeriodSeconds: 10\n",
        "          terminationGracePeriodSeconds: 10\n          nodeSelector: {berth.io/no-such-node: \"true\"}\n",
        1,
    );
    apply(cluster, &broken);
    let degraded = wait_until("the app to be Degraded", TIMEOUT, || {
        let a = app(cluster, &ns.name, "web");
        (a["status"]["phase"] == "Degraded").then_some(a)
    });
    let message = degraded["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()["message"]
        .clone();
    assert!(message.as_str().unwrap().contains("web-2"), "{message}");
    assert_eq!(
        web_uids(cluster, &ns.name)[..2],
        good_uids[..2],
        "the rollout stopped at the stuck member"
    );

    apply(cluster, &manifest);
    let fixed = wait_ready(cluster, &ns.name, "web");
    let part = &fixed["status"]["parts"][0];
    assert_eq!(
        part["updateRevision"],
        good["status"]["parts"][0]["updateRevision"]
    );
    assert_eq!(part["currentRevision"], part["updateRevision"]);
    assert_eq!(part["ready"], 3);
}

#[test]
fn scaling_with_membership_actions_adds_and_removes_one_member_at_a_time() {
    let Some((cluster, ns)) = setup("op-members") else {
        return;
    };
    let members = tempfile::tempdir().unwrap();
    local_members(cluster, &ns.name, members.path(), &["-"; 5]);
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name).replacen(
        "          headlessService: nginx\n",
        "          headlessService: nginx\n          actions:\n            memberJoin: {exec: [sh, -c, 'echo join $BERTH_TARGET_MEMBER $BERTH_TARGET >> ../members.log']}\n            memberLeave: {exec: [sh, -c, 'echo leave $BERTH_TARGET_MEMBER >> ../members.log']}\n",
        1,
    );
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    let log = members.path().join("members.log");
    assert!(
        !log.exists(),
        "the first members form the app without joins"
    );

    apply(cluster, &manifest.replace("replicas: 3", "replicas: 5"));
    let grown = wait_until("5 ready members", TIMEOUT, || {
        let a = wait_ready(cluster, &ns.name, "web");
        (a["status"]["parts"][0]["ready"] == 5).then_some(a)
    });
    assert_eq!(grown["status"]["parts"][0]["replicas"], 5);
    let domain = format!("nginx.{}.svc.cluster.local", ns.name);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("join web-3 web-3.{domain}\njoin web-4 web-4.{domain}\n"),
        "each join ran once, in web-0, in ordinal order"
    );
    let joins = step_events(cluster, &ns.name, &["MemberJoin"]);
    assert_eq!(joins.len(), 2, "{joins:?}");

    apply(cluster, &manifest);
    wait_until("3 members again", TIMEOUT, || {
        let a = wait_ready(cluster, &ns.name, "web");
        (a["status"]["parts"][0]["replicas"] == 3 && count(cluster, &ns.name, "pods") == 3)
            .then_some(())
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.ends_with("leave web-4\nleave web-3\n"),
        "members leave from the top: {text}"
    );
}

#[test]
fn a_failing_switchover_keeps_the_leader_on_its_revision_and_degrades_the_app_across_restarts() {
    let Some((cluster, ns)) = setup("op-switchover-fails") else {
        return;
    };
    let members = tempfile::tempdir().unwrap();
    let (mut operator, manifest) = leader_web(
        cluster,
        &ns.name,
        members.path(),
        r#"echo "ERR refusing to fail over" >&2; exit 3"#,
    );
    let leader_uid = web_uids(cluster, &ns.name)[1].clone();

    apply(
        cluster,
        &manifest.replace("nginx-slim:0.8", "nginx-slim:0.9"),
    );
    let degraded = wait_until("the app to be Degraded by the switchover", TIMEOUT, || {
        let a = app(cluster, &ns.name, "web");
        (a["status"]["phase"] == "Degraded").then_some(a)
    });
    let condition = degraded["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap()
        .clone();
    assert_eq!(condition["reason"], "SwitchoverFailed", "{condition}");
    let message = condition["message"].as_str().unwrap();
    assert!(
        message
            .contains("web-1 to web-2 failed (1 attempt): exit code 3: ERR refusing to fail over"),
        "{message}"
    );
    assert_eq!(degraded["status"]["parts"][0]["switchover"]["attempts"], 1);

    // A restarted operator remembers the failure (the part's status keeps it): it neither
    // updates the leader nor runs the switchover again before the backoff (30 s) has passed.
    operator.kill();
    let _operator = Operator::start(cluster, &ns.name, &[]);
    let second = wait_until("the second attempt", Duration::from_secs(90), || {
        let a = app(cluster, &ns.name, "web");
        (a["status"]["parts"][0]["switchover"]["attempts"] == 2).then_some(a)
    });
    assert_eq!(
        second["status"]["phase"], "Degraded",
        "{}",
        second["status"]
    );
    assert_eq!(
        web_uids(cluster, &ns.name)[1],
        leader_uid,
        "the leader was replaced without a switchover"
    );
    let times = event_times(cluster, &ns.name, "SwitchoverFailed");
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(
        times[1] - times[0] >= 29.0,
        "the restarted operator retried after {}s, before the backoff",
        times[1] - times[0]
    );
}

/// The times (seconds since the epoch) of the operator's events with `reason`, in order.
fn event_times(cluster: &berth_testkit::Cluster, ns: &str, reason: &str) -> Vec<f64> {
    let events = cluster.get_json(&["events.events.k8s.io", "-n", ns]);
    let mut times: Vec<f64> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason)
        .filter_map(|e| {
            let t = e["eventTime"].as_str()?;
            let t: k8s_openapi::jiff::Timestamp = t.parse().ok()?;
            Some(t.as_millisecond() as f64 / 1000.0)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

#[test]
fn a_join_that_ran_before_the_operator_died_is_not_run_again() {
    let Some((cluster, ns)) = setup("op-join-once") else {
        return;
    };
    let members = tempfile::tempdir().unwrap();
    local_members(cluster, &ns.name, members.path(), &["-"; 4]);
    let mut operator = Operator::start(cluster, &ns.name, &[]);
    let manifest = example("web", &ns.name).replacen(
        "          headlessService: nginx\n",
        "          headlessService: nginx\n          actions:\n            memberJoin: {exec: [sh, -c, 'echo join $BERTH_TARGET_MEMBER >> ../members.log']}\n",
        1,
    );
    apply(cluster, &manifest);
    wait_ready(cluster, &ns.name, "web");
    let set = cluster.get_json(&["statefulset", "web", "-n", &ns.name]);
    assert_eq!(
        set["metadata"]["annotations"]["berth.io/admitted-replicas"], "3",
        "the operator records the admitted size on the StatefulSet"
    );

    // The operator dies right after web-3's memberJoin succeeded: the join recorded its size,
    // the StatefulSet still runs 3 members.
    operator.kill();
    cluster.ok(
        &[
            "annotate",
            "statefulset",
            "web",
            "-n",
            &ns.name,
            "--overwrite",
            "berth.io/admitted-replicas=4",
        ],
        "",
    );
    apply(cluster, &manifest.replace("replicas: 3", "replicas: 4"));
    let _operator = Operator::start(cluster, &ns.name, &[]);
    wait_until("4 ready members", TIMEOUT, || {
        let a = wait_ready(cluster, &ns.name, "web");
        (a["status"]["parts"][0]["ready"] == 4).then_some(())
    });
    let log = members.path().join("members.log");
    assert!(
        !log.exists(),
        "the join ran again: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
