//! A real S3-compatible server for tests: versitygw (built by `scripts/testenv build`) serving a
//! fresh temporary directory with its posix backend, stopped when dropped.
//!
//! - [`S3Server::start`]: on `127.0.0.1`, for the test process and the operator on the host.
//! - [`S3Server::start_for_pods`]: inside the real nodes' network namespace
//!   (`BERTH_TESTENV_NETNS`), on the address of its link to the host (`BERTH_TESTENV_POD_NET_IP`,
//!   e.g. 10.200.255.2), which pods on real nodes reach through the netns and the host directly
//!   over the link; both printed by `scripts/testenv env` while real nodes run. Nothing else
//!   changes (the host firewall stays as it is).
//!
//! The binary is `BERTH_TEST_VERSITYGW`, else the one in the testenv bin dir. Without it, tests
//! skip outside CI and fail in CI (see [`S3Server::start_or_skip`]).

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{exported, in_ci, testenv, testenv_tool};

/// The region the server is started with (not versitygw's default, so that clients must pass it).
pub const REGION: &str = "berth-test-1";

/// How long the server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often to start it again on a new port when another process took the free port first.
const PORT_ATTEMPTS: usize = 3;

/// How long a connection to the server may take (it runs on this machine).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The network namespace of the real nodes (`scripts/testenv env`: `/run/netns/berth-testenv-I`).
pub const NETNS_VAR: &str = "BERTH_TESTENV_NETNS";

/// The address in that namespace which pods and the host both reach (`scripts/testenv env`).
pub const POD_NET_IP_VAR: &str = "BERTH_TESTENV_POD_NET_IP";

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
    /// The port picked for the server already answers there (another process listens on it).
    #[error("something already listens on {address}")]
    PortTaken {
        /// The address that answered.
        address: SocketAddr,
    },
    /// A variable [`S3Server::start_for_pods`] needs is neither set nor printed by
    /// `scripts/testenv env` (no real nodes run).
    #[error(
        "{variable} is not set (and `scripts/testenv env` does not print it): the S3 server for \
         pods needs the test cluster's real nodes: `scripts/testenv up --real-nodes N`, then \
         `eval \"$(scripts/testenv env)\"`"
    )]
    PodNetwork {
        /// The variable.
        variable: &'static str,
    },
    /// `BERTH_TESTENV_POD_NET_IP` is not an IPv4 address.
    #[error("{POD_NET_IP_VAR}={value:?} is not an IPv4 address")]
    PodNetIp {
        /// Its value.
        value: String,
    },
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
    /// The address it listens on: 127.0.0.1, or the pod network's in [`S3Server::start_for_pods`].
    ip: Ipv4Addr,
    /// The port it listens on.
    port: u16,
    /// The root account's access key.
    access_key: String,
    /// The root account's secret key.
    secret_key: String,
}

/// Where a server listens: an address, and the network namespace it runs in.
#[derive(Debug)]
struct Listen {
    /// The network namespace to enter (`nsenter --net`), or `None` for the test process's own.
    netns: Option<PathBuf>,
    /// The address to listen on.
    ip: Ipv4Addr,
}

impl Listen {
    /// 127.0.0.1 of the test process's network namespace.
    fn localhost() -> Self {
        Self {
            netns: None,
            ip: Ipv4Addr::LOCALHOST,
        }
    }

    /// The real nodes' namespace and its address that pods and the host reach.
    fn pod_network() -> Result<Self, S3ServerError> {
        let netns = PathBuf::from(testenv_var(NETNS_VAR)?);
        let value = testenv_var(POD_NET_IP_VAR)?;
        let ip = value
            .parse()
            .map_err(|_| S3ServerError::PodNetIp { value })?;
        Ok(Self {
            netns: Some(netns),
            ip,
        })
    }

    /// A port for the server: free on the host a moment ago, and in another namespace also not
    /// answering there (its ports cannot be bound from here, but a refused connection tells).
    fn pick_port(&self) -> Result<u16, S3ServerError> {
        let port = free_port()?;
        let address = SocketAddr::from((self.ip, port));
        if self.netns.is_some() && TcpStream::connect_timeout(&address, CONNECT_TIMEOUT).is_ok() {
            return Err(S3ServerError::PortTaken { address });
        }
        Ok(port)
    }
}

/// The value of the testenv variable `name`: from the environment (`eval "$(scripts/testenv
/// env)"`, as `scripts/test` does), else from what `scripts/testenv env` prints now.
fn testenv_var(name: &'static str) -> Result<String, S3ServerError> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Ok(value);
    }
    exported(&testenv(&["env"]), name).ok_or(S3ServerError::PodNetwork { variable: name })
}

/// The server's binary: `BERTH_TEST_VERSITYGW`, else the one `scripts/testenv build` built.
pub fn versitygw_path() -> PathBuf {
    std::env::var_os("BERTH_TEST_VERSITYGW")
        .map_or_else(|| testenv_tool("versitygw"), PathBuf::from)
}

/// The binary, if it exists.
///
/// # Panics
/// In CI when it does not: there, tests never skip.
fn versitygw_binary() -> Result<PathBuf, S3ServerError> {
    let binary = versitygw_path();
    if binary.is_file() {
        return Ok(binary);
    }
    let missing = S3ServerError::Missing { path: binary };
    assert!(!in_ci(), "CI needs the S3 server: {missing}");
    Err(missing)
}

impl S3ServerError {
    /// Whether another process had the port: starting again on another port may succeed.
    fn port_taken(&self) -> bool {
        match self {
            Self::PortTaken { .. } => true,
            Self::Exited { log, .. } => log.contains("address already in use"),
            _ => false,
        }
    }
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
        Self::start_on(&Listen::localhost())
    }

    /// Starts versitygw as [`S3Server::start`] does, but in the real nodes' network namespace
    /// (`BERTH_TESTENV_NETNS`, entered with `nsenter --net`: needs root, as real nodes do) on
    /// `BERTH_TESTENV_POD_NET_IP` and a port nothing answers on, so that pods on real nodes and
    /// the host both reach [`S3Server::endpoint`]. The variables come from the environment, else
    /// from `scripts/testenv env`, which prints them while real nodes run.
    ///
    /// # Errors
    /// [`S3ServerError::PodNetwork`] naming the variable that is missing (no real nodes), and the
    /// errors of [`S3Server::start`].
    ///
    /// # Panics
    /// In CI (`CI` set) when the binary does not exist.
    pub fn start_for_pods() -> Result<Self, S3ServerError> {
        Self::start_on(&Listen::pod_network()?)
    }

    /// Starts the server on `listen`, again on another port while another process had the port.
    fn start_on(listen: &Listen) -> Result<Self, S3ServerError> {
        let binary = versitygw_binary()?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&binary, listen) {
                Err(e) if e.port_taken() && attempt < PORT_ATTEMPTS => attempt += 1,
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

    fn start_once(binary: &Path, listen: &Listen) -> Result<Self, S3ServerError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-s3-")
            .tempdir()
            .map_err(S3ServerError::Prepare)?;
        std::fs::create_dir(dir.path().join("buckets")).map_err(S3ServerError::Prepare)?;
        let port = listen.pick_port()?;
        let access_key = format!("BERTH{}", random_hex(8).to_uppercase());
        let secret_key = random_hex(20);
        let keys = (access_key.as_str(), secret_key.as_str());
        let child = spawn(binary, dir.path(), listen, port, keys)?;
        let mut server = Self {
            child,
            dir,
            ip: listen.ip,
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
            if answers_http(self.address()) {
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

    /// The S3 endpoint, `http://IP:PORT` (path-style requests only): IP is 127.0.0.1, or
    /// `BERTH_TESTENV_POD_NET_IP` for [`S3Server::start_for_pods`].
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address())
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, self.port))
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

/// Starts versitygw on `listen` and `port` with only the environment it needs (the caller's
/// `VGW_*` variables would change its behaviour), its log in `dir/versitygw.log`, through
/// `setpriv --pdeathsig KILL` (util-linux, on every Debian), so the kernel kills it when the test
/// that started it dies without dropping it (a killed or timed-out test process). In another
/// network namespace, setpriv runs `nsenter --net=NETNS` (util-linux), which execs the binary
/// without forking (it forks only to enter a PID namespace): the child is still the server,
/// with the parent-death signal (kept across exec), and killing it on drop kills the server.
fn spawn(
    binary: &Path,
    dir: &Path,
    listen: &Listen,
    port: u16,
    (access_key, secret_key): (&str, &str),
) -> Result<Child, S3ServerError> {
    let log = File::create(dir.join("versitygw.log")).map_err(S3ServerError::Prepare)?;
    let log_err = log.try_clone().map_err(S3ServerError::Prepare)?;
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--"]);
    if let Some(netns) = &listen.netns {
        command
            .arg("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("--");
    }
    command
        .arg(binary)
        .env_clear()
        .env("ROOT_ACCESS_KEY_ID", access_key)
        .env("ROOT_SECRET_ACCESS_KEY", secret_key)
        .args([
            "--port",
            &format!("{}:{port}", listen.ip),
            "--region",
            REGION,
        ])
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

/// Whether an HTTP server answers `GET /` on `address` (an unsigned request: versitygw answers
/// 403, which is enough).
fn answers_http(address: SocketAddr) -> bool {
    let exchange = || -> io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let request = format!("GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes())?;
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
