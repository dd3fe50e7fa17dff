//! End to end: backup and restore of examples/etcd.yaml on the local engine with Debian's etcd
//! (its own `PATH`, without the test control plane's etcd 3.6)
//! and a real S3-compatible server (versitygw on 127.0.0.1). 10,000 keys are written, `berth
//! backup` streams a follower's snapshot to the bucket, 1,000 more keys are written, and a new
//! app started with `--restore-from` forms a healthy cluster holding exactly the first 10,000
//! keys with their values, on every member.
//!
//! Keys go through etcd's own HTTP/JSON gateway (`/v3/kv/txn`, 100 puts a request) on the
//! members' loopback addresses, so 11,000 writes take seconds rather than 11,000 `etcdctl` runs.

mod local_common;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use local_common::backup::{example_store, up_with_secret};
use local_common::{LocalApp, require, wait_until};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const FIRST: u32 = 10_000;
const MORE: u32 = 1_000;

/// Standard base64 (the gateway's encoding of keys and values).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let pad = i > chunk.len();
            out.push(if pad {
                '='
            } else {
                ABC[(n >> (18 - 6 * i) & 63) as usize] as char
            });
        }
    }
    out
}

/// POSTs `body` to the gateway of the member at `addr` and returns its JSON reply.
fn gateway(addr: &str, path: &str, body: &Value) -> Option<Value> {
    let mut conn = TcpStream::connect(addr)
        .map_err(|e| eprintln!("{addr}: {e}"))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).ok()?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .map_err(|e| eprintln!("{addr}: {e}"))
        .ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        eprintln!("{path} on {addr}: {head}\n{body}");
        return None;
    }
    let body = if head.contains("chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    serde_json::from_str(&body)
        .map_err(|e| eprintln!("{path} on {addr}: {e}: {head}\n{body}"))
        .ok()
}

/// The body of a chunked HTTP/1.1 reply.
fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn member(slot: u8, ordinal: u8) -> String {
    format!("127.{slot}.1.{}:2379", ordinal + 1)
}

/// Puts `k:<i>` = `v:<i>` for every `i` in `keys`, 100 a transaction, through the member at `addr`.
fn put(addr: &str, keys: std::ops::Range<u32>) {
    let all: Vec<u32> = keys.collect();
    for batch in all.chunks(100) {
        let puts: Vec<Value> = batch
            .iter()
            .map(|i| {
                let (k, v) = (format!("k:{i}"), format!("v:{i}"));
                json!({"requestPut": {"key": base64(k.as_bytes()), "value": base64(v.as_bytes())}})
            })
            .collect();
        let reply = gateway(addr, "/v3/kv/txn", &json!({ "success": puts }));
        assert!(reply.is_some(), "a put of {} keys failed", batch.len());
    }
}

/// Every `k:` key and its value, as the member at `addr` serves them (base64, as the gateway
/// gives them).
fn keys(addr: &str) -> Option<BTreeMap<String, String>> {
    let range = json!({"key": base64(b"k:"), "range_end": base64(b"k;"), "serializable": true});
    let reply = gateway(addr, "/v3/kv/range", &range)?;
    let kvs = reply["kvs"].as_array().cloned().unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Some(
        kvs.iter()
            .map(|kv| (text(&kv["key"]), text(&kv["value"])))
            .collect(),
    )
}

fn expected() -> BTreeMap<String, String> {
    (0..FIRST)
        .map(|i| {
            (
                base64(format!("k:{i}").as_bytes()),
                base64(format!("v:{i}").as_bytes()),
            )
        })
        .collect()
}

/// `PATH` without the test control plane's binaries (scripts/test puts them first, and its
/// etcdctl 3.6 cannot restore a snapshot), so members run Debian's etcd and etcdctl.
fn debian_path() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let testenv = std::env::var("BERTH_TESTENV_BIN").unwrap_or_default();
    let keep = |dir: &&str| testenv.is_empty() || *dir != testenv;
    path.split(':').filter(keep).collect::<Vec<_>>().join(":")
}

fn up(app: &LocalApp, manifest: &Path, secret: &Path, slot: u8, more: &[&str]) {
    let out = up_with_secret(app, manifest, ("etcd-backup", secret), slot, more)
        .env("PATH", debian_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_etcd_backup_restores_into_a_new_cluster_with_exactly_its_keys() {
    if !require(&[("etcd", "etcd-server"), ("etcdctl", "etcd-client")]) {
        return;
    }
    let Some(store) = example_store("etcd.yaml") else {
        return;
    };
    let (manifest, secret) = (&store.manifest, &store.secret);
    let source = LocalApp::new("etcd");
    up(&source, manifest, secret, 88, &[]);
    put(&member(88, 0), 0..FIRST);
    for ordinal in 0..3 {
        wait_until("every member has the keys", WAIT, || {
            keys(&member(88, ordinal)).is_some_and(|k| k.len() == FIRST as usize)
        });
    }
    let mut backup = source.berth(&["backup", "etcd"]);
    let out = backup.env("PATH", debian_path()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let url = stdout.lines().last().unwrap().trim().to_string();
    put(&member(88, 0), FIRST..FIRST + MORE);

    let restored = LocalApp::new("etcd");
    up(&restored, manifest, secret, 89, &["--restore-from", &url]);
    let want = expected();
    for ordinal in 0..3 {
        let got = keys(&member(89, ordinal)).expect("the restored member answers");
        assert_eq!(got.len(), want.len(), "member {ordinal}");
        assert!(
            got == want,
            "member {ordinal} holds other values than the backup's"
        );
    }
    put(&member(89, 1), FIRST..FIRST + 1);
    wait_until("the restored cluster replicates a new write", WAIT, || {
        keys(&member(89, 2)).is_some_and(|k| k.len() == want.len() + 1)
    });
    restored.down();
    source.down();
}
