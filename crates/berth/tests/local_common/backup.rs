//! Helpers of the backup tests: a shipped example pointed at the test's S3 server (with the
//! Secret file `berth up --secret` reads), and a Redis member's key count.

use std::path::{Path, PathBuf};

use berth_testkit::s3::S3Server;

use super::example;
use super::resp::Redis;

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
