//! End to end: the PostgreSQL example on the local engine, as issue 13's new user ran it: a
//! primary and a streaming standby, the password from a local Secret source, initdb and
//! pg_basebackup in an init container, running as the `postgres` user and stopped with SIGINT.
//! A row written on the primary is read on the standby. Needs Debian's `postgresql-15`.

mod local_common;

use std::time::Duration;

use local_common::{LocalApp, example, require, wait_until};

const SLOT: u8 = 89;
const PASSWORD: &str = "pg-test-password";

/// The programs the PostgreSQL example needs here, with their Debian packages.
const POSTGRES: &[(&str, &str)] = &[
    ("/usr/lib/postgresql/15/bin/postgres", "postgresql-15"),
    ("/usr/lib/postgresql/15/bin/initdb", "postgresql-15"),
    ("psql", "postgresql-client-15"),
];

/// `psql` against member `ordinal` as the superuser; its trimmed output, or `None` on failure.
fn psql(ordinal: u8, sql: &str) -> Option<String> {
    let out = std::process::Command::new("psql")
        .args(["-h", &format!("127.{SLOT}.1.{}", ordinal + 1), "-p", "5432"])
        .args(["-U", "postgres", "-d", "postgres", "-tAc", sql])
        .env("PGPASSWORD", PASSWORD)
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_row_written_on_the_primary_is_read_on_the_standby() {
    if !require(POSTGRES) {
        return;
    }
    let uid = local_common::output("id", &["-u", "postgres"]);
    assert!(
        !uid.is_empty(),
        "the postgres user exists with postgresql-15"
    );
    let app = LocalApp::new("postgres");
    let secret = app.home.path().join("pg.env");
    std::fs::write(&secret, format!("password={PASSWORD}\n")).unwrap();
    let manifest = example("postgres.yaml");
    let secret_arg = format!("postgres-auth={}", secret.display());
    let set_uid = format!("runAsUser={uid}");
    app.berth(&[
        "up",
        manifest.to_str().unwrap(),
        "--slot",
        &SLOT.to_string(),
        "--secret",
        &secret_arg,
        "--set",
        &set_uid,
    ])
    .assert()
    .success();

    assert_eq!(
        psql(1, "select pg_is_in_recovery()").as_deref(),
        Some("t"),
        "member 1 is a standby"
    );
    psql(
        0,
        "create table greeting (text text); insert into greeting values ('hello')",
    )
    .expect("write on the primary");
    wait_until(
        "the row to reach the standby",
        Duration::from_secs(30),
        || psql(1, "select text from greeting").as_deref() == Some("hello"),
    );

    let data = app
        .home
        .path()
        .join("postgres/postgres-0/volumes/data/pgdata");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap());
    if local_common::output("id", &["-u"]) == "0" {
        assert_eq!(owner.to_string(), uid, "the data belongs to postgres");
    }
    app.down();
    let log = std::fs::read_to_string(app.home.path().join("postgres/postgres-0/log")).unwrap();
    assert!(log.contains("stopping (SIGINT)"), "{log}");
    assert!(log.contains("fast shutdown request"), "{log}");
    assert!(!log.contains(PASSWORD), "the password is never logged");
}
