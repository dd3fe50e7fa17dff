//! End to end: the MariaDB example on the local engine with Debian's MariaDB 10.11 and a real
//! S3-compatible server (versitygw on 127.0.0.1). A primary and a GTID replica, the password
//! (with a quote and a backslash in it) from a local Secret source, running as the `mysql`
//! user, their roles from the role probe. 10,000 rows are written on the primary, `berth backup`
//! dumps the replica to the bucket, 1,000 more rows are written, and a new app started with
//! `--restore-from` holds exactly the first 10,000 rows on both members (the replica by
//! replicating the primary's load), replicates a new write, and has its own Secret's password.
//! And `berth apply` of a config change rolls the members out role-aware: the replica first,
//! then the example's switchover makes it the primary without losing a row, then the old
//! primary restarts as its replica; after `down` and `up` the members replicate again.

mod local_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use local_common::backup::{example_store, up_with_secret};
use local_common::{LocalApp, require, wait_until};

const SOURCE: u8 = 71;
const RESTORED: u8 = 72;
const ROLLOUT: u8 = 73;
const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = r"maria's-pass\word";
const FIRST: u32 = 10_000;
const MORE: u32 = 1_000;

/// The programs the example needs here, with their Debian packages.
const MARIADB: &[(&str, &str)] = &[
    ("/usr/sbin/mariadbd", "mariadb-server"),
    ("mariadb-install-db", "mariadb-server"),
    ("mariadb", "mariadb-client"),
    ("mariadb-dump", "mariadb-client"),
];

/// `mariadb` as root on member `ordinal` of the app on `slot`, with `sql` on stdin; its
/// trimmed output, or `None` on failure (printed).
fn sql(slot: u8, ordinal: u8, password: &str, sql: &str) -> Option<String> {
    let host = format!("127.{slot}.1.{}", ordinal + 1);
    let mut child = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--user=root",
            "--host",
            &host,
            "--port=3306",
        ])
        .args(["--batch", "--skip-column-names", "--connect-timeout=3"])
        .env("MYSQL_PWD", password)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    std::io::Write::write_all(&mut child.stdin.take()?, sql.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        eprintln!("{host}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Inserts rows `rows` (`id`, `'v:<id>'`) into `shop.item` on member 0 (the primary) of the
/// app on `slot`, 1,000 a statement.
fn insert(slot: u8, rows: std::ops::Range<u32>) {
    insert_on(slot, 0, rows);
}

/// [`insert`] on member `ordinal`.
fn insert_on(slot: u8, ordinal: u8, rows: std::ops::Range<u32>) {
    let all: Vec<u32> = rows.collect();
    let statements: Vec<String> = all
        .chunks(1000)
        .map(|chunk| {
            let values: Vec<String> = chunk.iter().map(|i| format!("({i}, 'v:{i}')")).collect();
            format!("INSERT INTO shop.item VALUES {};", values.join(","))
        })
        .collect();
    sql(slot, ordinal, PASSWORD, &statements.concat())
        .expect("the rows are written on the primary");
}

/// The number of rows of `shop.item` and the sum of their ids and their values' lengths, as
/// member `ordinal` of the app on `slot` has them.
fn contents(slot: u8, ordinal: u8) -> Option<String> {
    sql(
        slot,
        ordinal,
        PASSWORD,
        "SELECT COUNT(*), SUM(id), SUM(LENGTH(v)), MIN(v = CONCAT('v:', id)) FROM shop.item",
    )
}

/// What `contents` says of rows `0..n`, all of them as written.
fn expected(n: u32) -> String {
    let ids: u64 = (0..u64::from(n)).sum();
    let lengths: usize = (0..n).map(|i| format!("v:{i}").len()).sum();
    format!("{n}\t{ids}\t{lengths}\t1")
}

/// `berth up` of `manifest` on `slot` as the `mysql` user, with both Secrets, and `more`.
fn up(app: &LocalApp, manifest: &Path, secrets: (&Path, &Path), slot: u8, more: &[&str]) {
    let uid = local_common::output("id", &["-u", "mysql"]);
    assert!(!uid.is_empty(), "the mysql user exists with mariadb-server");
    let backup = format!("mariadb-backup={}", secrets.1.display());
    let set_uid = format!("runAsUser={uid}");
    let mut args = vec!["--secret", &backup, "--set", &set_uid];
    args.extend_from_slice(more);
    let out = up_with_secret(app, manifest, ("mariadb-auth", secrets.0), slot, &args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The member `berth backups` says the app's only backup came from.
fn backed_up_from(app: &LocalApp) -> String {
    let out = app.berth(&["backups", "mariadb", "-o", "json"]).output();
    let listed: serde_json::Value = serde_json::from_slice(&out.unwrap().stdout).unwrap();
    listed[0]["member"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_mariadb_dump_restores_into_a_new_primary_and_its_replica() {
    if !require(MARIADB) {
        return;
    }
    let Some(store) = example_store("mariadb.yaml") else {
        return;
    };
    let (manifest, backup_secret) = (&store.manifest, &store.secret);
    let auth = store.files.path().join("mariadb.env");
    std::fs::write(&auth, format!("password={PASSWORD}\n")).unwrap();

    let source = LocalApp::new("mariadb");
    up(&source, manifest, (&auth, backup_secret), SOURCE, &[]);
    wait_until("the role probe names both roles", WAIT, || {
        source.roles() == ["\"primary\"", "\"replica\""]
    });
    sql(
        SOURCE,
        0,
        PASSWORD,
        "CREATE DATABASE shop; CREATE TABLE shop.item (id INT PRIMARY KEY, v VARCHAR(16))",
    )
    .expect("the table is created on the primary");
    insert(SOURCE, 0..FIRST);
    wait_until("the replica has every row", WAIT, || {
        contents(SOURCE, 1).as_deref() == Some(&expected(FIRST))
    });

    let out = source.berth(&["backup", "mariadb"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(backed_up_from(&source), "mariadb-1", "taken on the replica");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let url = stdout.lines().last().unwrap().trim().to_string();
    insert(SOURCE, FIRST..FIRST + MORE);

    let restored = LocalApp::new("mariadb");
    up(
        &restored,
        manifest,
        (&auth, backup_secret),
        RESTORED,
        &["--restore-from", &url],
    );
    assert_eq!(
        contents(RESTORED, 0).as_deref(),
        Some(expected(FIRST).as_str()),
        "the restored primary holds exactly the backup's rows"
    );
    wait_until("the restored replica replicates the load", WAIT, || {
        contents(RESTORED, 1).as_deref() == Some(&expected(FIRST))
    });
    insert(RESTORED, FIRST..FIRST + 1);
    wait_until("the restored replica replicates a new write", WAIT, || {
        contents(RESTORED, 1).as_deref() == Some(&expected(FIRST + 1))
    });

    for app in [&restored, &source] {
        for member in ["mariadb-0", "mariadb-1"] {
            let log = app.home.path().join("mariadb").join(member).join("log");
            let log = std::fs::read_to_string(log).unwrap();
            assert!(!log.contains(PASSWORD), "the password is never logged");
        }
        app.down();
    }
}

/// The example with one more server setting, `max_connections` 321: a config change.
fn changed_example(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(local_common::example("mariadb.yaml")).unwrap();
    let setting = "binlog-expire-logs-seconds = 0\n";
    assert!(text.contains(setting));
    let more = format!("{setting}                max-connections = 321\n");
    let path = dir.join("changed.yaml");
    std::fs::write(&path, text.replacen(setting, &more, 1)).unwrap();
    path
}

#[test]
fn a_config_change_rolls_out_with_a_switchover_to_the_replica() {
    if !require(MARIADB) {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let auth = files.path().join("mariadb.env");
    std::fs::write(&auth, format!("password={PASSWORD}\n")).unwrap();
    let unused = files.path().join("backup.env");
    std::fs::write(&unused, "accessKeyId=none\nsecretAccessKey=none\n").unwrap();
    let manifest = local_common::example("mariadb.yaml");
    let app = LocalApp::new("mariadb");
    up(&app, &manifest, (&auth, &unused), ROLLOUT, &[]);
    sql(
        ROLLOUT,
        0,
        PASSWORD,
        "CREATE DATABASE shop; CREATE TABLE shop.item (id INT PRIMARY KEY, v VARCHAR(16))",
    )
    .expect("the table is created on the primary");
    insert(ROLLOUT, 0..100);

    let changed = changed_example(files.path());
    let uid = format!("runAsUser={}", local_common::output("id", &["-u", "mysql"]));
    let mut apply = app.berth(&["apply", changed.to_str().unwrap(), "--set", &uid]);
    let out = apply.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "member 1 is the primary, member 0 its replica",
        WAIT,
        || app.roles() == ["\"replica\"", "\"primary\""],
    );
    for ordinal in 0..2 {
        let setting = sql(ROLLOUT, ordinal, PASSWORD, "SELECT @@max_connections");
        assert_eq!(
            setting.as_deref(),
            Some("321"),
            "member {ordinal} restarted"
        );
        assert_eq!(
            contents(ROLLOUT, ordinal),
            Some(expected(100)),
            "member {ordinal}"
        );
    }
    insert_on(ROLLOUT, 1, 100..200);
    wait_until("the old primary replicates the new one", WAIT, || {
        contents(ROLLOUT, 0).as_deref() == Some(&expected(200))
    });

    app.down();
    up(&app, &changed, (&auth, &unused), ROLLOUT, &[]);
    insert_on(ROLLOUT, 0, 200..300);
    wait_until(
        "after down and up, member 1 replicates member 0",
        WAIT,
        || contents(ROLLOUT, 1).as_deref() == Some(&expected(300)),
    );
    app.down();
}
