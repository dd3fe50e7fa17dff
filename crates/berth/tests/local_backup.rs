//! End to end: backup and restore on the local engine with real Redis (examples/redis.yaml)
//! and a real S3-compatible server (versitygw, started by the test on 127.0.0.1). 10,000 keys
//! are written, `berth backup` streams a replica's snapshot to the bucket with its manifest,
//! 1,000 more keys are written, and a new app started with `--restore-from` holds exactly the
//! first 10,000 keys with their values on every member. A backup whose stored data was
//! damaged, or one that does not exist, fails the restore before any member starts.

mod local_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_testkit::s3::S3Server;
use local_common::resp::Redis;
use local_common::{LocalApp, REDIS, example, require, wait_until};
use serde_json::Value;

const BUCKET: &str = "berth-backups";
const WAIT: Duration = Duration::from_secs(60);
const FIRST: u32 = 10_000;
const MORE: u32 = 1_000;

/// The example pointed at `server`, and the Secret file with its access key.
fn manifest_for(server: &S3Server, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(example("redis.yaml")).unwrap();
    let text = text.replacen("http://127.0.0.1:9000", &server.endpoint(), 1);
    let region = format!("pathStyle: true\n            region: {}", server.region());
    let text = text.replacen("pathStyle: true", &region, 1);
    let manifest = dir.join("redis.yaml");
    std::fs::write(&manifest, text).unwrap();
    let secret = dir.join("backup.env");
    let creds = format!(
        "accessKeyId={}\nsecretAccessKey={}\n",
        server.access_key(),
        server.secret_key()
    );
    std::fs::write(&secret, creds).unwrap();
    (manifest, secret)
}

/// `berth up` with the backup credentials and more arguments, returning the command's output.
fn up(
    app: &LocalApp,
    manifest: &Path,
    secret: &Path,
    slot: u8,
    more: &[&str],
) -> std::process::Output {
    let secret = format!("redis-backup={}", secret.display());
    let slot = slot.to_string();
    let mut args = vec![
        "up",
        manifest.to_str().unwrap(),
        "--slot",
        &slot,
        "--secret",
        &secret,
    ];
    args.extend_from_slice(more);
    app.berth(&args).output().unwrap()
}

fn member_addr(slot: u8, ordinal: u8) -> String {
    format!("127.{slot}.1.{}:6379", ordinal + 1)
}

fn dbsize(addr: &str) -> Option<u64> {
    let mut conn = Redis::connect(addr).ok()?;
    conn.call(&["DBSIZE"])
        .ok()?
        .0
        .trim_start_matches(':')
        .parse()
        .ok()
}

fn write(addr: &str, keys: std::ops::Range<u32>) {
    let mut conn = Redis::connect(addr).unwrap();
    for i in keys {
        let (reply, _) = conn
            .call(&["SET", &format!("k:{i}"), &format!("v:{i}")])
            .unwrap();
        assert_eq!(reply, "+OK", "SET k:{i}");
    }
}

fn backups(app: &LocalApp) -> Vec<Value> {
    let out = app
        .berth(&["backups", "redis", "-o", "json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_backup_restores_into_a_new_app_with_exactly_its_keys() {
    if !require(REDIS) {
        return;
    }
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    server.create_bucket(BUCKET).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (manifest, secret) = manifest_for(&server, files.path());

    let source = LocalApp::new("redis");
    assert!(up(&source, &manifest, &secret, 83, &[]).status.success());
    wait_until("a master", WAIT, || {
        source.roles().contains(&r#""master""#.to_string())
    });
    let write_service = "127.83.250.1:6379";
    write(write_service, 0..FIRST);
    for ordinal in 0..3 {
        wait_until("every replica has the keys", WAIT, || {
            dbsize(&member_addr(83, ordinal)) == Some(u64::from(FIRST))
        });
    }
    let out = source.berth(&["backup", "redis"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = stdout.lines().last().unwrap().trim().to_string();
    write(write_service, FIRST..FIRST + MORE);

    let listed = backups(&source);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["phase"], "Succeeded");
    assert_eq!(listed[0]["url"], url.as_str());
    assert_eq!(listed[0]["sha256"].as_str().unwrap().len(), 64);
    assert_ne!(
        listed[0]["member"], "redis-0",
        "taken from the master, not a replica"
    );

    let restored = LocalApp::new("redis");
    let out = up(&restored, &manifest, &secret, 84, &["--restore-from", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ordinal in 0..3 {
        wait_until("a restored member serves the keys", WAIT, || {
            dbsize(&member_addr(84, ordinal)) == Some(u64::from(FIRST))
        });
    }
    let mut conn = Redis::connect(&member_addr(84, 0)).unwrap();
    for i in 0..FIRST {
        let (_, value) = conn.call(&["GET", &format!("k:{i}")]).unwrap();
        assert_eq!(value.as_deref(), Some(format!("v:{i}").as_str()), "k:{i}");
    }
    restored.down();

    refused_restores(&server, &manifest, &secret, &url);
    source.down();
}

/// A damaged backup and a missing one: `berth up` fails naming why, and no member starts.
fn refused_restores(server: &S3Server, manifest: &Path, secret: &Path, url: &str) {
    let key = url.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    let data = server.object_file(BUCKET, &format!("{key}/data"));
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let missing = format!("{url}-missing");
    for (source, expected) in [(url, "corrupt"), (missing.as_str(), "not found")] {
        let app = LocalApp::new("redis");
        let out = up(&app, manifest, secret, 85, &["--restore-from", source]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        let started = app.home.path().join("redis/redis-0").exists();
        assert!(
            !started,
            "a member's directory exists after a refused restore"
        );
        assert!(app.members().iter().all(|m| m["pid"].is_null()));
    }
}
