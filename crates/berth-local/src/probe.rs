//! Readiness checks against a running member: an exec probe runs with the member's env, TCP and
//! HTTP probes connect to the member's own address.

use std::net::Ipv4Addr;
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::plan::{MemberPlan, ProbeAction, ProbePlan};

/// Whether one check of `probe` passes for `member`.
pub async fn check(probe: &ProbePlan, member: &MemberPlan) -> bool {
    timeout(probe.timeout, check_once(&probe.action, member))
        .await
        .unwrap_or(false)
}

async fn check_once(action: &ProbeAction, member: &MemberPlan) -> bool {
    match action {
        ProbeAction::Exec(argv) => exec(argv, member).await,
        ProbeAction::Tcp(port) => TcpStream::connect((member.ip, *port)).await.is_ok(),
        ProbeAction::Http { port, path } => http_ok(member.ip, *port, path).await,
    }
}

async fn exec(argv: &[String], member: &MemberPlan) -> bool {
    run(argv, member).await.is_some()
}

/// Runs `argv` with the member's env in its directory; its stdout when it exits with 0.
async fn run(argv: &[String], member: &MemberPlan) -> Option<String> {
    let (program, args) = argv.split_first()?;
    let output = crate::member::exec_command(member, program)
        .args(args)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The member's role: the first line the role probe prints (empty when it fails).
pub async fn role(argv: &[String], member: &MemberPlan, limit: std::time::Duration) -> String {
    let out = timeout(limit, run(argv, member)).await.ok().flatten();
    berth_core::topology::role_from_probe_output(&out.unwrap_or_default()).unwrap_or_default()
}

/// An HTTP/1.0 GET; 2xx and 3xx pass, as on Kubernetes.
async fn http_ok(ip: Ipv4Addr, port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect((ip, port)).await else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    if stream.read_exact(&mut head).await.is_err() {
        return false;
    }
    status_passes(&head)
}

/// Whether an HTTP status line starting with `head` has a 2xx or 3xx code.
fn status_passes(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    code.is_some_and(|c| (200..400).contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes() {
        assert!(status_passes(b"HTTP/1.1 200"));
        assert!(status_passes(b"HTTP/1.0 302"));
        assert!(!status_passes(b"HTTP/1.1 503"));
        assert!(!status_passes(b"garbage"));
    }
}
