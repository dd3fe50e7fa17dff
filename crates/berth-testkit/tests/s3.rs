//! The test S3 server (versitygw, `berth_testkit::s3`) with the client berth's backups will use
//! (`object_store`'s AmazonS3, path-style, plain HTTP): a multipart upload of 20 MiB reads back
//! byte for byte, lists and deletes; a wrong secret key and a missing bucket fail with the errors
//! berth has to report. Skipped without `scripts/testenv build` outside CI; failing in CI.
//! The server started for pods (`S3Server::start_for_pods`, in the real nodes' netns) serves the
//! host and a pod on a real node alike; skipped without real nodes outside CI, like
//! `real_nodes.rs`. Either server dies with a killed test process.

use std::time::{Duration, Instant};

use berth_testkit::s3::S3Server;
use futures::TryStreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart,
};
use sha2::{Digest as _, Sha256};

const MIB: usize = 1024 * 1024;

/// The size of the uploaded object: four 5 MiB parts (S3's minimum part size) and a smaller last.
const OBJECT_SIZE: usize = 20 * MIB + 12_345;

/// Starts the server (or skips), printing how long it took to answer.
fn server() -> Option<S3Server> {
    let start = Instant::now();
    let server = S3Server::start_or_skip()?;
    eprintln!(
        "versitygw answered on {} after {:?}",
        server.endpoint(),
        start.elapsed()
    );
    Some(server)
}

/// A client for `bucket` on `server` signing with `secret_key`, as berth's backups configure it.
fn client(server: &S3Server, bucket: &str, secret_key: &str) -> AmazonS3 {
    // installed once per process: reqwest's `rustls-no-provider` needs one, even for plain HTTP
    let _ = rustls::crypto::ring::default_provider().install_default();
    AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .with_access_key_id(server.access_key())
        .with_secret_access_key(secret_key)
        .with_region(server.region())
        .with_bucket_name(bucket)
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        })
        .build()
        .expect("the S3 client builds")
}

/// `len` bytes that differ from part to part (a xorshift sequence), so a misplaced part shows.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Uploads `bytes` to `path` in 5 MiB parts, written 1 MiB at a time.
async fn upload_multipart(store: &AmazonS3, path: &Path, bytes: &[u8]) {
    let upload = store
        .put_multipart(path)
        .await
        .expect("multipart upload starts");
    let mut writer = WriteMultipart::new_with_chunk_size(upload, 5 * MIB);
    for chunk in bytes.chunks(MIB) {
        writer.wait_for_capacity(2).await.expect("parts upload");
        writer.write(chunk);
    }
    writer.finish().await.expect("multipart upload completes");
}

/// The paths and sizes under `prefix`, sorted.
async fn listing(store: &AmazonS3, prefix: &Path) -> Vec<(String, u64)> {
    let mut found: Vec<(String, u64)> = store
        .list(Some(prefix))
        .map_ok(|meta| (meta.location.to_string(), meta.size))
        .try_collect()
        .await
        .expect("the prefix lists");
    found.sort();
    found
}

#[tokio::test]
async fn multipart_upload_reads_back_lists_and_deletes() {
    let Some(server) = server() else { return };
    server.create_bucket("backups").unwrap();
    let store = client(&server, "backups", server.secret_key());
    let prefix = Path::from("app/redis/2026-01-01T00:00:00Z");
    let (dump, manifest) = (
        prefix.clone().join("dump.rdb"),
        prefix.clone().join("manifest.json"),
    );
    let bytes = data(OBJECT_SIZE);

    let start = Instant::now();
    upload_multipart(&store, &dump, &bytes).await;
    eprintln!("uploaded {OBJECT_SIZE} bytes in {:?}", start.elapsed());
    store
        .put(&manifest, PutPayload::from_static(b"{\"members\":3}"))
        .await
        .expect("the manifest is written");

    let meta = store.head(&dump).await.expect("the object exists");
    let etag = meta.e_tag.unwrap_or_default();
    assert!(
        etag.ends_with("-5\""),
        "five parts make a multipart ETag: {etag}"
    );
    let read = store.get(&dump).await.unwrap().bytes().await.unwrap();
    assert_eq!(read.len(), OBJECT_SIZE);
    assert_eq!(
        Sha256::digest(&read),
        Sha256::digest(&bytes),
        "the object reads back unchanged"
    );
    assert_eq!(
        listing(&store, &prefix).await,
        [
            (dump.to_string(), OBJECT_SIZE as u64),
            (manifest.to_string(), 13)
        ]
    );
    assert_eq!(listing(&store, &Path::from("app/other")).await, []);

    store.delete(&dump).await.expect("the object is deleted");
    store
        .delete(&manifest)
        .await
        .expect("the manifest is deleted");
    assert_eq!(listing(&store, &prefix).await, []);
    let gone = store
        .get(&dump)
        .await
        .expect_err("a deleted object is gone");
    assert!(
        matches!(gone, object_store::Error::NotFound { .. }),
        "{gone}"
    );
}

#[tokio::test]
async fn a_wrong_secret_key_is_denied() {
    let Some(server) = server() else { return };
    server.create_bucket("backups").unwrap();
    let store = client(&server, "backups", "not-the-secret");
    let denied = store
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a wrong secret key is refused");
    assert!(
        matches!(denied, object_store::Error::PermissionDenied { .. }),
        "{denied:?}"
    );
    assert!(
        denied.to_string().contains("SignatureDoesNotMatch"),
        "{denied}"
    );
    let listed = listing_result(&store).await.expect_err("and cannot list");
    assert_list_error(&listed, "403", "SignatureDoesNotMatch");
}

#[tokio::test]
async fn a_missing_bucket_is_not_found() {
    let Some(server) = server() else { return };
    let store = client(&server, "no-such-bucket", server.secret_key());
    let put = store
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .expect_err("no bucket, no upload");
    assert!(
        matches!(put, object_store::Error::NotFound { .. }),
        "{put:?}"
    );
    assert!(put.to_string().contains("NoSuchBucket"), "{put}");
    let listed = listing_result(&store)
        .await
        .expect_err("no bucket, no listing");
    assert_list_error(&listed, "404", "NoSuchBucket");
}

/// Lists the whole bucket, returning the first error.
async fn listing_result(store: &AmazonS3) -> object_store::Result<Vec<object_store::ObjectMeta>> {
    store.list(None).try_collect().await
}

/// object_store 0.14 maps a failed list request to `Error::Generic` (not `NotFound` or
/// `PermissionDenied` as for get, put and delete): only its message has the HTTP status and the
/// S3 error code, so that is what a caller reporting it can go by.
fn assert_list_error(error: &object_store::Error, status: &str, code: &str) {
    assert!(
        matches!(error, object_store::Error::Generic { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("status code: {status}")) && message.contains(code),
        "{message}"
    );
}

/// The server holds clients to AWS's rules that berth's uploads must follow, so passing here
/// means something: parts but the last of at least 5 MiB, and requests signed for its region.
#[tokio::test]
async fn parts_under_5_mib_and_another_region_are_refused_as_by_aws() {
    let Some(server) = server() else { return };
    server.create_bucket("backups").unwrap();
    let store = client(&server, "backups", server.secret_key());
    let upload = store
        .put_multipart(&Path::from("small-parts"))
        .await
        .unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, MIB);
    writer.write(&data(3 * MIB));
    let small = writer.finish().await.expect_err("1 MiB parts are refused");
    assert!(small.to_string().contains("EntityTooSmall"), "{small}");

    let other_region = AmazonS3Builder::new()
        .with_endpoint(server.endpoint())
        .with_allow_http(true)
        .with_access_key_id(server.access_key())
        .with_secret_access_key(server.secret_key())
        .with_region("us-east-1")
        .with_bucket_name("backups")
        .build()
        .unwrap();
    let refused = other_region
        .put(&Path::from("x"), PutPayload::from_static(b"x"))
        .await
        .expect_err("a request signed for another region is refused");
    assert!(
        refused.to_string().contains("AuthorizationHeaderMalformed"),
        "{refused}"
    );
}

/// Set in the child process of the tests that kill it: `host` or `pods`, which server to start.
const ORPHAN_CHILD: &str = "BERTH_TEST_S3_ORPHAN_CHILD";

/// In the child: starts a server, prints its pid, and waits to be killed. In the test itself:
/// runs that child, kills it with SIGKILL (no drop runs), and awaits the server's end, which
/// only the kernel's parent-death signal brings (versitygw outlived killed tests before).
#[test]
fn a_server_dies_with_a_killed_test_process() {
    orphaned_server_dies("a_server_dies_with_a_killed_test_process", "host");
}

/// The same for the server in the real nodes' netns: `nsenter` must exec it, not fork it, or the
/// parent-death signal would kill `nsenter` only.
#[test]
fn a_server_for_pods_dies_with_a_killed_test_process() {
    if std::env::var_os(ORPHAN_CHILD).is_none() {
        let Some(cluster) = berth_testkit::cluster() else {
            return;
        };
        if berth_testkit::real_nodes(cluster, 1).is_none() {
            return;
        }
    }
    orphaned_server_dies("a_server_for_pods_dies_with_a_killed_test_process", "pods");
}

/// The body of the tests above: `test` is the caller's name (run again in the child), `mode`
/// the server the child starts.
fn orphaned_server_dies(test: &str, mode: &str) {
    use std::io::BufRead as _;
    if std::env::var_os(ORPHAN_CHILD).is_some() {
        let server = if mode == "pods" {
            S3Server::start_for_pods()
                .unwrap_or_else(|e| panic!("the S3 server for pods did not start: {e}"))
        } else {
            let Some(server) = server() else { return };
            server
        };
        println!("server {} {}", server.pid(), server.address());
        std::thread::sleep(Duration::from_secs(600));
        return;
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(ORPHAN_CHILD, mode)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let started = stdout.lines().map_while(Result::ok).find_map(|l| {
        let (pid, address) = l.strip_prefix("server ")?.split_once(' ')?;
        Some((pid.to_string(), address.parse().ok()?))
    });
    let Some((pid, address)) = started else {
        let _ = child.wait();
        assert!(
            !berth_testkit::in_ci() && mode == "host",
            "the child started no server"
        );
        return; // skipped: no versitygw outside CI
    };
    child.kill().unwrap();
    child.wait().unwrap();
    berth_testkit::wait_until(
        "the orphaned server to die",
        Duration::from_secs(10),
        || server_gone(&pid, address).then_some(()),
    );
}

/// Whether the server is gone: process `pid` (or a zombie: killed, not reaped yet), and nothing
/// answers on its `address` any more (what would stay if a wrapper died in its place).
fn server_gone(pid: &str, address: std::net::SocketAddr) -> bool {
    let proc = std::path::PathBuf::from(format!("/proc/{pid}"));
    let exited = !proc.exists()
        || std::fs::read_to_string(proc.join("stat")).is_ok_and(|s| s.contains(") Z "));
    exited && std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err()
}

/// Starts the probe pod in `ns` and waits until it is Ready.
fn probe_pod(cluster: &berth_testkit::Cluster, ns: &str) {
    cluster.ok(&["apply", "-n", ns, "-f", "-"], berth_testkit::PROBE_POD);
    let ready = r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#;
    berth_testkit::wait_until("the probe pod Ready", Duration::from_secs(120), || {
        let out = cluster.run(&["get", "pod", "probe", "-n", ns, "-o", ready], "");
        (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
    });
}

/// `GET url` from the probe pod (bash's /dev/tcp: the image has no HTTP client), the whole
/// response; `None` when the pod cannot connect.
fn pod_get(cluster: &berth_testkit::Cluster, ns: &str, url: &reqwest::Url) -> Option<String> {
    let (host, port) = (url.host_str()?, url.port()?);
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && \
         printf 'GET %s HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' '{target}' '{host}:{port}' >&3 && cat <&3"
    );
    let command = [
        "exec", "-n", ns, "probe", "--", "timeout", "10", "bash", "-c", &script,
    ];
    let out = cluster.run(&command, "");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The server for pods listens on the pod network's address, not 127.0.0.1: the host writes and
/// reads an object through its endpoint, a pod on a real node reads the same object (a presigned
/// GET), and once dropped the server process is gone.
#[tokio::test]
async fn a_server_for_pods_serves_the_host_and_pods_on_real_nodes() {
    use object_store::signer::{Method, Signer as _};
    let Some(cluster) = berth_testkit::cluster() else {
        return;
    };
    if berth_testkit::real_nodes(cluster, 1).is_none() {
        return;
    }
    let start = Instant::now();
    let server = S3Server::start_for_pods()
        .unwrap_or_else(|e| panic!("the S3 server for pods did not start: {e}"));
    eprintln!(
        "versitygw answered on {} after {:?}",
        server.endpoint(),
        start.elapsed()
    );
    assert!(
        !server.address().ip().is_loopback(),
        "it listens on the pod network: {}",
        server.endpoint()
    );
    let exe = std::fs::read_link(format!("/proc/{}/exe", server.pid())).unwrap();
    assert_eq!(
        exe,
        berth_testkit::s3::versitygw_path().canonicalize().unwrap(),
        "the child is the server itself (nsenter execs it), so drop and the parent-death signal reach it"
    );
    server.create_bucket("backups").unwrap();
    let store = client(&server, "backups", server.secret_key());
    let path = Path::from("app/greeting.txt");
    let body = "hello from the host";
    store
        .put(&path, PutPayload::from_static(body.as_bytes()))
        .await
        .expect("the host writes");
    let read = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(read, body.as_bytes(), "the host reads it back");

    let ns = berth_testkit::TestNamespace::new(cluster, "s3-pods");
    probe_pod(cluster, &ns.name);
    let url = store
        .signed_url(Method::GET, &path, Duration::from_secs(600))
        .await
        .expect("a presigned URL");
    let response = pod_get(cluster, &ns.name, &url)
        .unwrap_or_else(|| panic!("the pod reaches {}", server.endpoint()));
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with(body),
        "the pod reads the object: {response}"
    );

    let (pid, address) = (server.pid().to_string(), server.address());
    drop(server);
    assert!(server_gone(&pid, address), "the server is gone after drop");
}
