//! Repositories work where the system has no CA certificates, as in a member's image running
//! `berth agent transfer` (the Redis image has none): a plain-HTTP one needs none, an HTTPS one
//! falls back to Mozilla's roots. The test runs itself again as a child process whose environment points the
//! system's CA locations at nothing.

use berth_backup::{Credentials, Repository};
use berth_core::spec::RepositorySpec;
use berth_testkit::s3::S3Server;

const CHILD: &str = "BERTH_TEST_WITHOUT_CA_CHILD";

#[test]
fn a_plain_http_repository_needs_no_ca_certificates() {
    if std::env::var_os(CHILD).is_some() {
        return tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(round_trip());
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_plain_http_repository_needs_no_ca_certificates",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .env("SSL_CERT_DIR", "/nonexistent")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
}

/// An HTTPS client starts, and a plain-HTTP repository stores an object and reads it back.
async fn round_trip() {
    let https = RepositorySpec {
        endpoint: "https://s3.example.com".into(),
        bucket: "b".into(),
        prefix: String::new(),
        region: "us-east-1".into(),
        path_style: false,
        credentials: None,
        carrier: Default::default(),
    };
    Repository::open(&https, "b", None).expect("an HTTPS client without system CAs");
    let Some(server) = S3Server::start_or_skip() else {
        return;
    };
    server.create_bucket("plain").unwrap();
    let spec = RepositorySpec {
        endpoint: server.endpoint(),
        bucket: "plain".into(),
        prefix: String::new(),
        region: server.region().into(),
        path_style: true,
        credentials: None,
        carrier: Default::default(),
    };
    let credentials = Credentials {
        access_key_id: server.access_key().into(),
        secret_access_key: server.secret_key().into(),
    };
    let repo = Repository::open(&spec, "plain", Some(&credentials)).unwrap();
    let stored = repo.upload("k", &mut &b"hello"[..]).await.unwrap();
    let mut back = Vec::new();
    assert_eq!(repo.download("k", &mut back).await.unwrap(), stored);
    assert_eq!(back, b"hello");
}
