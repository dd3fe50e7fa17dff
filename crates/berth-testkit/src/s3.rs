//! A real S3-compatible server for tests: versitygw (built by `scripts/testenv build`) serving a
//! fresh temporary directory with its posix backend on `127.0.0.1`, stopped when dropped.
//!
//! [`S3Server::start`] finds the binary in `BERTH_TEST_VERSITYGW`, else in the testenv bin dir.
//! Without it, tests skip outside CI and fail in CI (see [`S3Server::start_or_skip`]).

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{in_ci, testenv_tool};

/// The region the server is started with (not versitygw's default, so that clients must pass it).
pub const REGION: &str = "berth-test-1";

/// How long the server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often to start it again on a new port when another process took the free port first.
const PORT_ATTEMPTS: usize = 3;

/// Why the server could not be started or a bucket created.
#[derive(Debug, thiserror::Error)]
pub enum S3ServerError {
    /// The versitygw binary does not exist (tests skip on this outside CI).
    #[error(
        "versitygw not found at {}: run `scripts/testenv build` or set BERTH_TEST_VERSITYGW",
        path.display()
    )]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Creating the server's directories or log failed.
    #[error("failed to prepare the S3 server's directory")]
    Prepare(#[source] io::Error),
    /// No free port could be found.
    #[error("failed to find a free port on 127.0.0.1")]
    FreePort(#[source] io::Error),
    /// The binary could not be started.
    #[error("failed to start {}", path.display())]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The server exited before it answered.
    #[error("versitygw exited ({status}) before it answered; its log:\n{log}")]
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log.
        log: String,
    },
    /// The server did not answer in time.
    #[error("versitygw did not answer on {endpoint} within {READY_TIMEOUT:?}; its log:\n{log}")]
    NotReady {
        /// The endpoint polled.
        endpoint: String,
        /// Its log.
        log: String,
    },
    /// The bucket name is not a valid S3 bucket name.
    #[error(
        "invalid bucket name {0:?} (3 to 63 of a-z, 0-9, '-', '.'; a letter or digit at both ends)"
    )]
    BucketName(String),
    /// Creating the bucket's directory failed.
    #[error("failed to create bucket {name}")]
    CreateBucket {
        /// The bucket.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A running versitygw with a directory of its own; killed (and its directory removed) on drop.
#[derive(Debug)]
pub struct S3Server {
    /// The versitygw process.
    child: Child,
    /// Holds `buckets/` (the posix backend's root: one directory per bucket) and `versitygw.log`.
    dir: tempfile::TempDir,
    /// The port it listens on, on 127.0.0.1.
    port: u16,
    /// The root account's access key.
    access_key: String,
    /// The root account's secret key.
    secret_key: String,
}

/// The server's binary: `BERTH_TEST_VERSITYGW`, else the one `scripts/testenv build` built.
pub fn versitygw_path() -> PathBuf {
    std::env::var_os("BERTH_TEST_VERSITYGW")
        .map_or_else(|| testenv_tool("versitygw"), PathBuf::from)
}

impl S3Server {
    /// Starts versitygw on a free port of 127.0.0.1 with fresh random credentials and an empty
    /// root directory, and returns once it answers HTTP requests.
    ///
    /// # Errors
    /// [`S3ServerError::Missing`] when the binary does not exist (outside CI), or the step that
    /// failed, with the server's log where it ran.
    ///
    /// # Panics
    /// In CI (`CI` set) when the binary does not exist: there, tests never skip.
    pub fn start() -> Result<Self, S3ServerError> {
        let binary = versitygw_path();
        if !binary.is_file() {
            let missing = S3ServerError::Missing { path: binary };
            assert!(!in_ci(), "CI needs the S3 server: {missing}");
            return Err(missing);
        }
        let mut attempt = 1;
        loop {
            match Self::start_once(&binary) {
                Err(S3ServerError::Exited { log, .. })
                    if log.contains("address already in use") && attempt < PORT_ATTEMPTS =>
                {
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// [`S3Server::start`], or `None` with a `SKIPPED` notice when the binary is missing
    /// (outside CI only; in CI that panics).
    ///
    /// # Panics
    /// When the server does not start for any other reason.
    pub fn start_or_skip() -> Option<Self> {
        match Self::start() {
            Ok(server) => Some(server),
            Err(missing @ S3ServerError::Missing { .. }) => {
                eprintln!("SKIPPED: {missing}");
                None
            }
            Err(e) => panic!("the S3 server did not start: {e}"),
        }
    }

    fn start_once(binary: &Path) -> Result<Self, S3ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-s3-")
            .tempdir()
            .map_err(S3ServerError::Prepare)?;
        std::fs::create_dir(dir.path().join("buckets")).map_err(S3ServerError::Prepare)?;
        let port = free_port()?;
        let access_key = format!("BERTH{}", random_hex(8).to_uppercase());
        let secret_key = random_hex(20);
        let child = spawn(binary, dir.path(), port, &access_key, &secret_key)?;
        let mut server = Self {
            child,
            dir,
            port,
            access_key,
            secret_key,
        };
        server.await_ready()?;
        Ok(server)
    }

    /// Polls until the server answers an HTTP request (any status), it exits, or time is up.
    fn await_ready(&mut self) -> Result<(), S3ServerError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if answers_http(self.port) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(S3ServerError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if Instant::now() >= deadline {
                return Err(S3ServerError::NotReady {
                    endpoint: self.endpoint(),
                    log: self.log(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT` (path-style requests only).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The root account's access key id.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The root account's secret access key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The region requests must be signed for ([`REGION`]).
    pub fn region(&self) -> &str {
        REGION
    }

    /// Creates an empty bucket owned by the root account. versitygw's posix backend serves every
    /// directory in its root as a bucket, so this creates one (S3 clients see it at once).
    ///
    /// # Errors
    /// When `name` is not a valid bucket name, or the directory cannot be created (also when the
    /// bucket exists).
    pub fn create_bucket(&self, name: &str) -> Result<(), S3ServerError> {
        if !valid_bucket_name(name) {
            return Err(S3ServerError::BucketName(name.to_string()));
        }
        std::fs::create_dir(self.dir.path().join("buckets").join(name)).map_err(|source| {
            S3ServerError::CreateBucket {
                name: name.to_string(),
                source,
            }
        })
    }

    /// The file holding object `key` of `bucket` (the posix backend stores each object as a file
    /// at its key), for tests that damage a stored object behind the server's back.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.dir.path().join("buckets").join(bucket).join(key)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server logged so far (startup messages and errors; requests are not logged).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("versitygw.log")).unwrap_or_default()
    }
}

impl Drop for S3Server {
    /// Kills the server and waits for it, so no process outlives the test; the directory goes next.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts versitygw with only the environment it needs (the caller's `VGW_*` variables would
/// change its behaviour), its log in `dir/versitygw.log`, through `setpriv --pdeathsig KILL`
/// (util-linux, on every Debian), so the kernel kills it when the test that started it dies
/// without dropping it (a killed or timed-out test process).
fn spawn(
    binary: &Path,
    dir: &Path,
    port: u16,
    access_key: &str,
    secret_key: &str,
) -> Result<Child, S3ServerError> {
    let log = File::create(dir.join("versitygw.log")).map_err(S3ServerError::Prepare)?;
    let log_err = log.try_clone().map_err(S3ServerError::Prepare)?;
    Command::new("setpriv")
        .args(["--pdeathsig", "KILL", "--"])
        .arg(binary)
        .env_clear()
        .env("ROOT_ACCESS_KEY_ID", access_key)
        .env("ROOT_SECRET_ACCESS_KEY", secret_key)
        .args(["--port", &format!("127.0.0.1:{port}"), "--region", REGION])
        .args(["--quiet", "posix"])
        .arg(dir.join("buckets"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(|source| S3ServerError::Spawn {
            path: binary.to_path_buf(),
            source,
        })
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, S3ServerError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(S3ServerError::FreePort)
}

/// Whether an HTTP server answers `GET /` on 127.0.0.1:`port` (an unsigned request: versitygw
/// answers 403, which is enough).
fn answers_http(port: u16) -> bool {
    let exchange = || -> io::Result<bool> {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
        let mut head = [0u8; 8];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1."))
    };
    exchange().unwrap_or(false)
}

/// S3's bucket naming rules, as far as they keep the name a single plain directory.
fn valid_bucket_name(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
        && !name.contains("..")
}

/// `bytes` random bytes from the kernel, hex-encoded.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("/dev/urandom is readable");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_plain_bucket_names() {
        for ok in ["abc", "berth-backups", "a.b-c.9", &"x".repeat(63)] {
            assert!(valid_bucket_name(ok), "{ok}");
        }
        for bad in [
            "ab",
            "Abc",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "../etc",
            "a/b",
            &"x".repeat(64),
        ] {
            assert!(!valid_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn random_hex_is_hex_of_the_length_asked() {
        let a = random_hex(20);
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(20));
    }
}
