//! Operating-system edges: process liveness and ownership through `/proc`, signals to process
//! groups, finding binaries and installed Debian packages, and checking that an address:port
//! is free.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::PortError;
use crate::home::MemberState;

/// The fields of `/proc/<pid>/stat` after the command name (the state comes first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// When process `pid` started (clock ticks since boot); with the pid it identifies a process.
pub fn start_ticks(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether process `pid` is still the one that started at `ticks` (not a reused pid).
pub fn is_same_process(pid: u32, ticks: Option<u64>) -> bool {
    ticks.is_some() && alive(pid) && start_ticks(pid) == ticks
}

/// Sends `signal` to process group `pgid`, ignoring a group that is already gone.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid) {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Stops members left running by a supervisor that died: its stop signal (SIGTERM unless the
/// member has another) to each member's process group, then SIGKILL to those still alive after
/// their grace period.
pub fn stop_orphans(members: &[MemberState]) {
    let orphans: Vec<&MemberState> = members
        .iter()
        .filter(|m| m.pid.is_some_and(|pid| is_same_process(pid, m.started)))
        .collect();
    for m in &orphans {
        let signal = m.stop_signal.as_deref().and_then(|s| s.parse().ok());
        signal_group(m.pid.unwrap_or_default(), signal.unwrap_or(Signal::SIGTERM));
    }
    let grace = orphans.iter().map(|m| m.grace_seconds).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(grace);
    let running = || orphans.iter().any(|m| alive(m.pid.unwrap_or_default()));
    while running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    for m in &orphans {
        signal_group(m.pid.unwrap_or_default(), Signal::SIGKILL);
    }
}

/// Where `program` is: itself when it names a path, else its first match on `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// The packages among `packages` that dpkg says are not installed (none when there is no dpkg).
pub fn missing_packages(packages: &[String]) -> Vec<String> {
    if packages.is_empty() || find_program("dpkg-query").is_none() {
        return Vec::new();
    }
    packages
        .iter()
        .filter(|p| !package_installed(p))
        .cloned()
        .collect()
}

fn package_installed(package: &str) -> bool {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Fails when `ip:port` cannot be bound (another process listens there or on `0.0.0.0:port`).
///
/// # Errors
/// The address and why it cannot be bound.
pub fn check_port_free(ip: Ipv4Addr, port: u16) -> Result<(), PortError> {
    TcpListener::bind((ip, port))
        .map(drop)
        .map_err(|source| PortError { ip, port, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_no_member() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(is_same_process(me, start_ticks(me)));
        assert!(!is_same_process(me, Some(0)));
        assert!(!alive(u32::MAX));
    }

    #[test]
    fn a_taken_port_is_reported() {
        let taken = TcpListener::bind((Ipv4Addr::new(127, 0, 0, 1), 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = check_port_free(Ipv4Addr::new(127, 0, 0, 1), port).unwrap_err();
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
    }
}
