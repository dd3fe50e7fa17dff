//! Helpers shared by the local-engine end-to-end tests: a temporary berth home whose app is
//! always brought down and purged (even when the test fails), binary requirements that fail
//! in CI and skip elsewhere, and polling with a timeout instead of sleeping.

#![allow(dead_code)]

pub mod backup;
pub mod resp;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// The repository's `examples/` directory.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Whether every program is installed. Missing ones fail the test when `CI=true`; elsewhere
/// the test is skipped with a notice.
pub fn require(programs: &[(&str, &str)]) -> bool {
    let missing: Vec<String> = programs
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, package)| format!("{p} (Debian package {package})"))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("missing: {}", missing.join(", "));
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    Process::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A local app in a temporary home; dropping it runs `berth down --purge`.
pub struct LocalApp {
    pub home: tempfile::TempDir,
    pub name: String,
}

impl LocalApp {
    /// A fresh home for app `name`.
    pub fn new(name: &str) -> Self {
        Self {
            home: tempfile::tempdir().expect("temp dir"),
            name: name.to_string(),
        }
    }

    /// `berth ARGS --home HOME`.
    pub fn berth(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("berth").expect("the berth binary");
        command.args(args).arg("--home").arg(self.home.path());
        command.timeout(Duration::from_secs(300));
        command
    }

    /// `berth up MANIFEST --slot SLOT`, asserting success.
    pub fn up(&self, manifest: &Path, slot: u8) {
        let slot = slot.to_string();
        let manifest = manifest.to_str().expect("utf-8 path");
        self.berth(&["up", manifest, "--slot", &slot])
            .assert()
            .success();
    }

    /// `berth down APP`, asserting success.
    pub fn down(&self) {
        self.berth(&["down", &self.name]).assert().success();
    }

    /// The app's members from `berth status -o json`.
    pub fn members(&self) -> Vec<Value> {
        let out = self
            .berth(&["status", &self.name, "-o", "json"])
            .output()
            .expect("status");
        let states: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        states[0]["members"].as_array().cloned().unwrap_or_default()
    }

    /// Each member's role as `berth status` shows it (JSON text, `null` while unknown).
    pub fn roles(&self) -> Vec<String> {
        self.members()
            .iter()
            .map(|m| m["role"].to_string())
            .collect()
    }

    /// The pid of `member`.
    pub fn pid(&self, member: &str) -> u32 {
        let members = self.members();
        let m = members
            .iter()
            .find(|m| m["name"] == member)
            .expect("member");
        m["pid"].as_u64().expect("running") as u32
    }
}

impl Drop for LocalApp {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_logs(self.home.path());
        }
        let _ = self.berth(&["down", &self.name, "--purge"]).output();
    }
}

/// Prints the end of every log under a failed test's home (supervisor, events, members), so a
/// failure in CI can be understood without a rerun.
fn print_logs(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            print_logs(&path);
        } else if name == "log" || name.ends_with(".log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("==> {} <==\n{}", path.display(), tail.join("\n"));
        }
    }
}

/// Polls `condition` until it holds; panics naming `what` after `timeout` (the test kit's
/// `wait_until`, for conditions without a value).
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    berth_testkit::wait_until(what, timeout, || condition().then_some(()));
}

/// The programs the Redis example needs here, with their Debian packages.
pub const REDIS: &[(&str, &str)] = &[
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
];

/// Runs a program and returns its trimmed stdout (empty on failure).
pub fn output(program: &str, args: &[&str]) -> String {
    Process::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
