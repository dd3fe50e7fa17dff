//! Golden tests: every example renders to the snapshot committed under `tests/snapshots/`, and
//! the acceptance facts of the ZooKeeper example hold (also with `replicas=5`).

use std::path::{Path, PathBuf};

use berth_core::load::{Inputs, ValidatedApp, load};
use berth_k8s::render::{render, to_yaml};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn load_example(name: &str, sets: &[&str]) -> ValidatedApp {
    let path = examples_dir().join(name);
    let values = examples_dir().join(name.replace(".yaml", ".values.yaml"));
    let values = if values.exists() {
        vec![(
            values.display().to_string(),
            std::fs::read_to_string(&values).unwrap(),
        )]
    } else {
        vec![]
    };
    let inputs = Inputs {
        app_file: format!("examples/{name}"),
        app_text: std::fs::read_to_string(path).unwrap(),
        values,
        sets: sets.iter().map(|s| s.to_string()).collect(),
        namespace: None,
    };
    load(&inputs).unwrap_or_else(|e| panic!("{name} is invalid:\n{e}"))
}

fn rendered(name: &str, sets: &[&str]) -> Vec<Value> {
    render(&load_example(name, sets)).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the render"))
}

#[test]
fn every_example_matches_its_snapshot() {
    for name in [
        "zookeeper.yaml",
        "redis.yaml",
        "web.yaml",
        "etcd.yaml",
        "postgres.yaml",
        "mariadb.yaml",
    ] {
        let yaml = to_yaml(&rendered(name, &[])).unwrap();
        insta::assert_snapshot!(name.replace(".yaml", ""), yaml);
    }
}

#[test]
fn zookeeper_has_the_seed_objects() {
    let objects = rendered("zookeeper.yaml", &[]);
    let sts = find(&objects, "StatefulSet", "zookeeper-server");
    assert_eq!(sts["spec"]["replicas"], 3);
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "100G"
    );
    assert_eq!(
        find(&objects, "Service", "zookeeper-server-headless")["spec"]["clusterIP"],
        "None"
    );
    assert_eq!(
        find(&objects, "Service", "zookeeper-server-client")["spec"]["ports"][0]["port"],
        2181
    );
    let zoo_cfg = find(&objects, "ConfigMap", "zookeeper-server-config")["data"]["zoo.cfg"]
        .as_str()
        .unwrap();
    assert_eq!(zoo_cfg.matches("server.").count(), 3, "{zoo_cfg}");
    assert!(zoo_cfg.contains(
        "server.3=zookeeper-server-2.zookeeper-server-headless.default.svc.cluster.local:2888:3888"
    ));
}

#[test]
fn zookeeper_server_list_follows_replicas() {
    let objects = rendered("zookeeper.yaml", &["replicas=5"]);
    let zoo_cfg = find(&objects, "ConfigMap", "zookeeper-server-config")["data"]["zoo.cfg"]
        .as_str()
        .unwrap();
    assert_eq!(zoo_cfg.matches("server.").count(), 5, "{zoo_cfg}");
    assert_eq!(
        find(&objects, "StatefulSet", "zookeeper-server")["spec"]["replicas"],
        5
    );
}

#[test]
fn a_config_change_changes_the_pod_template_hash() {
    let hash = |sets: &[&str]| {
        let objects = rendered("zookeeper.yaml", sets);
        find(&objects, "StatefulSet", "zookeeper-server")["spec"]["template"]["metadata"]["annotations"]["berth.io/config-hash"].clone()
    };
    assert_ne!(hash(&[]), hash(&["replicas=5"]));
    assert_eq!(hash(&[]), hash(&["image=zookeeper:3.9"]));
}

#[test]
fn redis_replicas_find_the_master_through_member_zero() {
    let objects = rendered("redis.yaml", &[]);
    let start = find(&objects, "ConfigMap", "redis-config")["data"]["start.sh"]
        .as_str()
        .unwrap();
    assert!(
        start.contains("replicaof redis-0.redis-headless.default.svc.cluster.local 6379"),
        "{start}"
    );
    let write = find(&objects, "Service", "redis-write");
    assert_eq!(write["spec"]["selector"]["berth.io/role"], "master");
}

#[test]
fn the_redis_readiness_probe_reaches_the_pod_rendered() {
    let objects = rendered("redis.yaml", &[]);
    let sts = find(&objects, "StatefulSet", "redis");
    let probe = &sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"];
    assert_eq!(
        probe["exec"]["command"][2], "redis-cli -h $BERTH_POD_IP -p 6379 ping | grep -q PONG",
        "{probe}"
    );
}

#[test]
fn web_keeps_the_seed_names_and_sticky_sessions() {
    let objects = rendered("web.yaml", &[]);
    let sts = find(&objects, "StatefulSet", "web");
    assert_eq!(sts["spec"]["serviceName"], "nginx");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "www"
    );
    let http = find(&objects, "Service", "web-http");
    assert_eq!(http["spec"]["sessionAffinity"], "ClientIP");
    assert_eq!(
        http["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
        3600
    );
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "web")["spec"]["maxUnavailable"],
        1
    );
}

#[test]
fn etcd_initial_cluster_lists_every_member() {
    let objects = rendered("etcd.yaml", &[]);
    let command = &find(&objects, "StatefulSet", "etcd")["spec"]["template"]["spec"]["containers"]
        [0]["command"];
    assert_eq!(command[1], "/etc/etcd/start.sh");
    let start = find(&objects, "ConfigMap", "etcd-config")["data"]["start.sh"]
        .as_str()
        .unwrap()
        .to_string();
    let initial = start
        .lines()
        .find_map(|line| line.strip_prefix("cluster="))
        .unwrap();
    assert_eq!(initial.split(',').count(), 3);
    assert!(
        initial.starts_with("etcd-0=http://etcd-0.etcd-headless.default.svc.cluster.local:2380")
    );
}

#[test]
fn init_containers_mount_the_parts_state() {
    let objects = rendered("postgres.yaml", &[]);
    let sts = find(&objects, "StatefulSet", "postgres");
    let init = &sts["spec"]["template"]["spec"]["initContainers"][0];
    let mounts: Vec<&str> = init["volumeMounts"]
        .as_array()
        .expect("the init container has mounts")
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for path in [
        "/var/lib/postgresql/data",
        "/etc/postgres/init-data.sh",
        "/etc/postgres-auth",
    ] {
        assert!(mounts.contains(&path), "{path} not in {mounts:?}");
    }
}
