//! The MariaDB example under `berth operator` on the test cluster's real nodes, with the image
//! built from Debian's packages (`berth.local/mariadb:deb12`): a primary and a GTID replica,
//! labelled by the operator from the role probe; rows written on the primary reach the replica.
//! A `StatefulAppBackup` dumps the replica (`from: Follower`), the operator carrying the bytes
//! (no agent image, versitygw on 127.0.0.1), and a new app with `restoreFrom` it holds exactly
//! those rows on both members: the primary loaded the dump in its `berth-restore` init
//! container, before it first started, and the replica replicated that load. Then a config
//! change to the first app rolls out role-aware: the replica first, the example's switchover
//! (run by the operator through `pods/exec`) makes it the primary, the old primary restarts as
//! its replica, and a row written on the new primary reaches it.
//!
//! The test cluster's volumes are hostPath directories, which ignore `fsGroup`: the test
//! creates each member's claim first and gives its directory to the members' user (999), as a
//! volume that honours `fsGroup` would be. Skipped without 2 real nodes, MariaDB's image or the
//! S3 server outside CI, failing in CI.

mod local_common;
mod operator_common;

use berth_testkit::Cluster;
use berth_testkit::s3::S3Server;
use operator_common::real::*;
use operator_common::*;
use serde_json::{Value, json};

const BUCKET: &str = "berth-backups";
const PASSWORD: &str = "maria-real-pass";
/// The members' uid (`runAsUser` in the example, as in the official image).
const UID: u32 = 999;
const ROWS: u32 = 2_000;

/// The MariaDB example as app `name` on the real nodes, backed up to `server`, restored from
/// `url` when given.
fn mariadb_app(ns: &str, server: &S3Server, name: &str, url: Option<&str>) -> String {
    let store = (server.endpoint(), server.region());
    real_backup_example("mariadb", ns, (&store.0, store.1), name, url).to_string()
}

/// The Secrets: the app's password and the store's access key.
fn secrets(ns: &str, server: &S3Server) -> String {
    let secret = |name: &str, data: Value| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": data,
        })
    };
    let store = json!({"accessKeyId": server.access_key(), "secretAccessKey": server.secret_key()});
    let items = [
        secret("mariadb-auth", json!({ "password": PASSWORD })),
        secret("mariadb-backup", store),
    ];
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// Creates claim `name` as the StatefulSet's claim template would, waits until it is bound,
/// and gives its hostPath directory to [`UID`].
fn claim_for_members(cluster: &Cluster, ns: &str, name: &str) {
    let claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    });
    apply(cluster, &claim.to_string());
    let volume = wait_until(&format!("claim {name} bound"), REAL_TIMEOUT, || {
        let claim = cluster.get_json(&["pvc", name, "-n", ns]);
        let bound = claim["status"]["phase"] == "Bound";
        bound.then(|| claim["spec"]["volumeName"].as_str().unwrap().to_string())
    });
    let pv = cluster.get_json(&["pv", &volume]);
    let dir = pv["spec"]["hostPath"]["path"]
        .as_str()
        .expect("a hostPath volume");
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(UID), Some(UID)).unwrap();
}

/// `sql` through the example's own client script in `member`; its output, if it succeeded
/// (else its error is printed).
fn sql(cluster: &Cluster, ns: &str, member: &str, sql: &str) -> Option<String> {
    let script = "/bin/sh /etc/mariadb/client.sh --batch --skip-column-names";
    let out = cluster.run(
        &["exec", "-i", "-n", ns, member, "--", "sh", "-c", script],
        sql,
    );
    if !out.status.success() {
        eprintln!("{member}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Row count and sums of `shop.item` in `member`, as `expected` gives them for `ROWS` rows.
fn contents(cluster: &Cluster, ns: &str, member: &str) -> Option<String> {
    sql(
        cluster,
        ns,
        member,
        "SELECT COUNT(*), SUM(id), MIN(v = CONCAT('v:', id)) FROM shop.item",
    )
}

fn expected(n: u32) -> String {
    let ids: u64 = (0..u64::from(n)).sum();
    format!("{n}\t{ids}\t1")
}

#[test]
fn a_mariadb_backup_of_the_replica_restores_into_a_new_app() {
    let Some((cluster, ns, server)) = real_nodes_and_s3("real-mariadb", BUCKET) else {
        return;
    };
    let ns = &ns.name;
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &secrets(ns, &server));
    for ordinal in 0..2 {
        claim_for_members(cluster, ns, &format!("data-mariadb-{ordinal}"));
        claim_for_members(cluster, ns, &format!("data-copy-mariadb-{ordinal}"));
    }
    let source = mariadb_app(ns, &server, "mariadb", None);
    start_on_real_nodes(cluster, ns, "mariadb", &source, 2);
    assert_eq!(single_primary(cluster, ns, "mariadb", 2), "mariadb-0");
    let create = "CREATE DATABASE shop; CREATE TABLE shop.item (id INT PRIMARY KEY, v VARCHAR(16))";
    assert!(sql(cluster, ns, "mariadb-0", create).is_some());
    let insert = format!(
        "INSERT INTO shop.item SELECT seq, CONCAT('v:', seq) FROM shop.seq_0_to_{}",
        ROWS - 1
    );
    assert!(sql(cluster, ns, "mariadb-0", &insert).is_some());
    wait_until("the replica has every row", REAL_TIMEOUT, || {
        (contents(cluster, ns, "mariadb-1")? == expected(ROWS)).then_some(())
    });

    let done = backup_ended(cluster, ns, "mariadb", "first");
    assert_eq!(
        done["status"]["phase"],
        "Succeeded",
        "{done}\n{}",
        operator.log()
    );
    assert_eq!(
        done["status"]["member"], "mariadb-1",
        "taken on the replica"
    );
    let url = done["status"]["url"].as_str().unwrap();
    let more = "INSERT INTO shop.item VALUES (1000000, 'after the backup')";
    assert!(sql(cluster, ns, "mariadb-0", more).is_some());

    let copy = mariadb_app(ns, &server, "copy", Some(url));
    start_on_real_nodes(cluster, ns, "copy", &copy, 2);
    let restore = app(cluster, ns, "copy")["status"]["restore"].clone();
    assert_eq!(
        restore["phase"],
        "Succeeded",
        "{restore}\n{}",
        operator.log()
    );
    assert_eq!(
        contents(cluster, ns, "copy-mariadb-0").as_deref(),
        Some(expected(ROWS).as_str()),
        "the restored primary holds exactly the backup's rows"
    );
    wait_until(
        "the restored replica replicates the load",
        REAL_TIMEOUT,
        || (contents(cluster, ns, "copy-mariadb-1")? == expected(ROWS)).then_some(()),
    );
    assert_eq!(single_primary(cluster, ns, "copy", 2), "copy-mariadb-0");

    let old_revision = update_revision(cluster, ns, "mariadb");
    let mut changed: Value = serde_json::from_str(&source).unwrap();
    let my_cnf = &mut changed["spec"]["parts"][0]["state"]["config"]["files"][0];
    assert_eq!(my_cnf["name"], "my.cnf");
    let content = format!(
        "{}max-connections = 321\n",
        my_cnf["content"].as_str().unwrap()
    );
    my_cnf["content"] = json!(content);
    apply(cluster, &changed.to_string());
    rolled_out(cluster, ns, "mariadb", &old_revision);
    assert_eq!(single_primary(cluster, ns, "mariadb", 2), "mariadb-1");
    for member in ["mariadb-0", "mariadb-1"] {
        let setting = sql(cluster, ns, member, "SELECT @@max_connections");
        assert_eq!(setting.as_deref(), Some("321"), "{member} restarted");
    }
    let after = "INSERT INTO shop.item VALUES (2000000, 'switched over')";
    assert!(sql(cluster, ns, "mariadb-1", after).is_some());
    wait_until(
        "the old primary replicates the new one",
        REAL_TIMEOUT,
        || {
            let count = sql(cluster, ns, "mariadb-0", "SELECT COUNT(*) FROM shop.item")?;
            (count == (ROWS + 2).to_string()).then_some(())
        },
    );
}
