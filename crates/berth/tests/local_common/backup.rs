//! Helpers of the backup tests: a shipped example pointed at the test's S3 server (with the
//! Secret file `berth up --secret` reads), and a Redis member's key count.

use std::path::{Path, PathBuf};

use berth_testkit::s3::S3Server;

use super::resp::Redis;
use super::{LocalApp, example};

/// The bucket the shipped examples back up to.
pub const EXAMPLE_BUCKET: &str = "berth-backups";

/// A shipped example pointed at a test's own S3 server ([`example_files`]), with the files
/// in a directory that lives as long as it.
pub struct ExampleStore {
    pub server: S3Server,
    pub files: tempfile::TempDir,
    /// The example, its repository on `server`.
    pub manifest: PathBuf,
    /// The Secret file with the server's access key.
    pub secret: PathBuf,
}

/// A new S3 server with the examples' bucket and `examples/<name>` pointed at it; `None`
/// (skipped) outside CI when the server is missing.
pub fn example_store(name: &str) -> Option<ExampleStore> {
    let server = S3Server::start_or_skip()?;
    server.create_bucket(EXAMPLE_BUCKET).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (manifest, secret) = example_files(&server, name, files.path());
    Some(ExampleStore {
        server,
        files,
        manifest,
        secret,
    })
}

/// `examples/<name>` with its repository at `server` (endpoint and region) written into `dir`,
/// and the Secret file with the server's access key: what `berth up FILE --secret
/// <secretName>=SECRET` takes.
pub fn example_files(server: &S3Server, name: &str, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(example(name)).unwrap();
    let text = text.replacen("http://127.0.0.1:9000", &server.endpoint(), 1);
    let region = format!("pathStyle: true\n            region: {}", server.region());
    let text = text.replacen("pathStyle: true", &region, 1);
    let manifest = dir.join(name);
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

/// The number of keys the Redis at `addr` holds, if it answers.
pub fn dbsize(addr: &str) -> Option<u64> {
    let mut conn = Redis::connect(addr).ok()?;
    conn.call(&["DBSIZE"])
        .ok()?
        .0
        .trim_start_matches(':')
        .parse()
        .ok()
}

/// Damages the stored data of the backup at `url` (`s3://<bucket>/<key>`): one byte in its
/// middle flipped, the size kept, so only the checksum tells.
pub fn damage(server: &S3Server, url: &str) {
    let (bucket, key) = url.strip_prefix("s3://").unwrap().split_once('/').unwrap();
    let data = server.object_file(bucket, &format!("{key}/data"));
    let mut bytes = std::fs::read(&data).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
}

/// `berth up MANIFEST --slot SLOT --secret NAME=FILE MORE...` for `app`, not yet run.
pub fn up_with_secret(
    app: &LocalApp,
    manifest: &Path,
    (name, file): (&str, &Path),
    slot: u8,
    more: &[&str],
) -> assert_cmd::Command {
    let secret = format!("{name}={}", file.display());
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
    app.berth(&args)
}
