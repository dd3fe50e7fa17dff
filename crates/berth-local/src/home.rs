//! The berth home directory: where each app keeps its inputs, address slot, supervisor lock,
//! published state and member directories; plus reading and writing those files.
//!
//! ```text
//! <home>/<app>/inputs.json      the manifest, values and --set arguments of the last `up`
//! <home>/<app>/scale.json     replicas set by `berth scale`, by part
//! <home>/<app>/slot             the app's address slot (second octet of its addresses)
//! <home>/<app>/supervisor.lock  flock'ed by the running supervisor
//! <home>/<app>/keeper.lock      flock'ed by the keeper that restarts the supervisor
//! <home>/<app>/supervisor.log   the supervisor's own output
//! <home>/<app>/state.json       what the supervisor publishes (see [`AppState`])
//! <home>/<app>/events.log       one line per rollout action (update, switchover, stuck)
//! <home>/<app>/<member>/        the member's config, volumes, secrets and `log`
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use berth_core::load::Inputs;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::HomeError;
use crate::slots;

/// The lowest slot given automatically (127.10.*.* upwards stay clear of 127.0.0.1).
pub const FIRST_SLOT: u8 = 10;

/// The home directory.
#[derive(Clone, Debug)]
pub struct Home {
    /// Its path.
    pub root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The directory of app `app`.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join(app)
    }

    /// A file of app `app`.
    pub fn file(&self, app: &str, name: &str) -> PathBuf {
        self.app_dir(app).join(name)
    }

    /// The apps that have a directory here.
    pub fn apps(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut apps: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().join("slot").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        apps.sort();
        apps
    }

    /// The app's slot: `wanted`, else the one it already has, else the lowest one free on this
    /// machine; recorded in the app's `slot` file and in the machine-wide [`slots::Registry`],
    /// so that no other home picks it.
    ///
    /// # Errors
    /// The slot cannot be recorded, or `wanted` belongs to another app (of this home or of
    /// another home on this machine: the message names it and a free slot).
    pub fn slot(&self, app: &str, wanted: Option<u8>) -> Result<u8, HomeError> {
        self.slot_in(&slots::Registry::open()?, app, wanted)
    }

    /// [`Home::slot`] with the registry `registry`.
    ///
    /// # Errors
    /// As [`Home::slot`].
    pub fn slot_in(
        &self,
        registry: &slots::Registry,
        app: &str,
        wanted: Option<u8>,
    ) -> Result<u8, HomeError> {
        let app_dir = self.app_dir(app);
        std::fs::create_dir_all(&app_dir).map_err(HomeError::file(&app_dir))?;
        let app_dir = std::fs::canonicalize(&app_dir).unwrap_or(app_dir);
        let own = self.read_slot(app);
        let others: Vec<(String, u8)> = self
            .apps()
            .into_iter()
            .filter(|a| a != app)
            .filter_map(|a| self.read_slot(&a).map(|s| (a, s)))
            .collect();
        let in_home = |s: u8| others.iter().any(|(_, o)| *o == s);
        let free = || registry.free(FIRST_SLOT, &app_dir, &in_home);
        let slot = match (wanted, own) {
            (Some(s), _) if in_home(s) => {
                let (other, _) = others.iter().find(|(_, o)| *o == s).expect("found");
                return Err(HomeError::SlotInHome {
                    slot: s,
                    other: other.clone(),
                });
            }
            (Some(s), Some(own)) if s != own && self.supervisor_running(app) => {
                return Err(HomeError::SlotWhileRunning {
                    app: app.to_string(),
                    slot: own,
                });
            }
            (Some(s), _) => match registry.holder(s, &app_dir) {
                Some(holder) => {
                    let free = free();
                    return Err(HomeError::SlotHeld {
                        slot: s,
                        holder,
                        free,
                    });
                }
                None => s,
            },
            // A slot taken meanwhile by another home (e.g. after the registry was cleared) is
            // given up for a free one, unless the app runs on it.
            (None, Some(s))
                if registry.holder(s, &app_dir).is_none() || self.supervisor_running(app) =>
            {
                s
            }
            (None, _) => free().ok_or(HomeError::NoFreeSlot)?,
        };
        registry.claim(slot, &app_dir, own)?;
        write_atomic(&self.file(app, "slot"), slot.to_string().as_bytes())?;
        Ok(slot)
    }

    /// The slot `app` has, without taking one.
    pub fn read_slot(&self, app: &str) -> Option<u8> {
        slots::read_slot_file(&self.file(app, "slot"))
    }

    /// Replicas set by `berth scale`, by part name.
    pub fn scale_overrides(&self, app: &str) -> BTreeMap<String, i32> {
        std::fs::read_to_string(self.file(app, "scale.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Records that part `part` of `app` runs `replicas` members.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn set_scale(&self, app: &str, part: &str, replicas: i32) -> Result<(), HomeError> {
        let mut overrides = self.scale_overrides(app);
        overrides.insert(part.to_string(), replicas);
        let json = serde_json::to_vec_pretty(&overrides).map_err(|source| HomeError::Encode {
            what: "scale.json",
            source,
        })?;
        write_atomic(&self.file(app, "scale.json"), &json)
    }

    /// Forgets `berth scale` overrides (the manifest's replicas apply again).
    pub fn clear_scale(&self, app: &str) {
        let _ = std::fs::remove_file(self.file(app, "scale.json"));
    }

    /// The published state of `app`, if any.
    pub fn state(&self, app: &str) -> Option<AppState> {
        let text = std::fs::read_to_string(self.file(app, "state.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Tries to take the supervisor lock of `app`; `None` while a supervisor holds it.
    ///
    /// # Errors
    /// The lock file cannot be opened.
    pub fn try_lock(&self, app: &str) -> Result<Option<Flock<File>>, HomeError> {
        self.try_lock_file(app, "supervisor.lock")
    }

    /// Tries to take the keeper lock of `app`; `None` while a keeper holds it. The keeper and
    /// the supervisor it runs each hold their own lock (never inherited by members), so the
    /// app counts as supervised while either lives.
    ///
    /// # Errors
    /// The lock file cannot be opened.
    pub fn try_lock_keeper(&self, app: &str) -> Result<Option<Flock<File>>, HomeError> {
        self.try_lock_file(app, "keeper.lock")
    }

    /// Tries to take the backup lock of `app` (two backups of one app never run at once);
    /// `None` while another backup holds it.
    ///
    /// # Errors
    /// The lock file cannot be opened.
    pub fn try_lock_backup(&self, app: &str) -> Result<Option<Flock<File>>, HomeError> {
        self.try_lock_file(app, "backup.lock")
    }

    fn try_lock_file(&self, app: &str, name: &str) -> Result<Option<Flock<File>>, HomeError> {
        let path = self.file(app, name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(HomeError::file(&path))?;
        Ok(Flock::lock(file, FlockArg::LockExclusiveNonblock).ok())
    }

    /// Whether a supervisor of `app` is running (it, or the keeper that restarts it, holds its
    /// lock).
    pub fn supervisor_running(&self, app: &str) -> bool {
        self.app_dir(app).is_dir()
            && (matches!(self.try_lock(app), Ok(None))
                || matches!(self.try_lock_keeper(app), Ok(None)))
    }
}

/// The inputs of `berth up`, saved for the supervisor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedInputs {
    /// The manifest's file name.
    pub app_file: String,
    /// The manifest's text.
    pub app_text: String,
    /// Values files (name, text).
    pub values: Vec<(String, String)>,
    /// `--set` arguments.
    pub sets: Vec<String>,
}

impl From<&Inputs> for SavedInputs {
    fn from(i: &Inputs) -> Self {
        Self {
            app_file: i.app_file.clone(),
            app_text: i.app_text.clone(),
            values: i.values.clone(),
            sets: i.sets.clone(),
        }
    }
}

impl From<SavedInputs> for Inputs {
    fn from(s: SavedInputs) -> Self {
        Self {
            app_file: s.app_file,
            app_text: s.app_text,
            values: s.values,
            sets: s.sets,
            namespace: None,
        }
    }
}

/// Where the app as a whole is: the core's phase, the same the operator shows.
pub use berth_core::phase::Phase;

/// What the supervisor publishes in `state.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AppState {
    /// The app's name.
    pub app: String,
    /// The supervisor's process id.
    pub supervisor_pid: u32,
    /// The keeper's process id: the process that runs the supervisor and starts it again if it
    /// dies (see [`crate::keeper`]); signals for the supervisor go to it while it lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keeper_pid: Option<u32>,
    /// The app's phase (see [`berth_core::phase`]).
    pub phase: Phase,
    /// The Ready, Progressing and Degraded conditions, as the operator shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<berth_core::spec::Condition>,
    /// Why the supervisor gave up, or why the last `apply` or `scale` failed.
    pub error: Option<String>,
    /// How many `apply`/`scale` requests the supervisor has handled.
    #[serde(default)]
    pub reloads: u64,
    /// How many `apply`/`scale` requests the supervisor has started handling.
    #[serde(default)]
    pub applying: u64,
    /// Whether an `apply` or `scale` is being reconciled now (a later one supersedes it).
    #[serde(default)]
    pub reconciling: bool,
    /// Each part's admitted size: how many members its memberJoin/memberLeave actions have
    /// made part of the group (written as soon as an action returns). A supervisor that
    /// resumes after a crash neither repeats a join or leave that ran nor skips one that did
    /// not (the operator keeps the same number on the StatefulSet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub admitted: BTreeMap<String, i32>,
    /// The rollout in progress (or the last one, when it got stuck).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,
    /// The members in start order.
    pub members: Vec<MemberState>,
    /// Role-selecting services and where they forward to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceState>,
}

/// A rollout the supervisor drives with the core planner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// The part being rolled out.
    pub part: String,
    /// The resolved update strategy.
    pub strategy: String,
    /// Why it does nothing right now (empty while acting).
    pub waiting_for: String,
    /// Members on the new revision unready past the progress deadline.
    #[serde(default)]
    pub stuck: Vec<String>,
    /// Why the rollout is Degraded (a stuck member, a failing switchover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// A role-selecting service: a stable local address forwarding to the member with the role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// `<part>/<service>`.
    pub name: String,
    /// The role it selects.
    pub role: String,
    /// `ip:port` it listens on.
    pub address: String,
    /// The member it forwards new connections to (empty while no member has the role).
    pub target: String,
}

/// One member as the supervisor sees it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MemberState {
    /// `<app>-<part>-<ordinal>`.
    pub name: String,
    /// Its part.
    #[serde(default)]
    pub part: String,
    /// The process id (also its process group id) while running.
    pub pid: Option<u32>,
    /// Its loopback address.
    pub address: String,
    /// When its process started (`/proc` clock ticks), to recognise it after a supervisor crash.
    #[serde(default)]
    pub started: Option<u64>,
    /// Whether its readiness probe passes.
    pub ready: bool,
    /// Its role (not probed yet: empty).
    pub role: String,
    /// How often it was restarted after exiting.
    pub restarts: u32,
    /// Hash of what it runs.
    pub revision: String,
    /// What it waits for, when not ready.
    pub waiting: String,
    /// Its stop grace in seconds.
    pub grace_seconds: u64,
    /// The signal that stops it (`SIGTERM` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Its log file.
    pub log: PathBuf,
}

/// Appends a timestamped line to `<home>/<app>/events.log` (actions the supervisor takes).
pub fn append_event(path: &Path, text: &str) {
    use std::io::Write as _;
    let line = format!("{} {text}\n", utc_now());
    if let Ok(mut f) = File::options().create(true).append(true).open(path) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        now.subsec_millis()
    )
}

/// Year, month and day of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers never see half.
///
/// # Errors
/// The message naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(HomeError::file(dir))?;
    }
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(HomeError::file(path))
}

/// The last `lines` lines of a file (empty when it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let registry = slots::Registry::open_at(&dir.path().join("registry")).unwrap();
        let home = Home::new(&dir.path().join("one"));
        let other = Home::new(&dir.path().join("two"));
        assert_eq!(home.slot_in(&registry, "a", None).unwrap(), FIRST_SLOT);
        assert_eq!(home.slot_in(&registry, "b", None).unwrap(), FIRST_SLOT + 1);
        assert_eq!(home.slot_in(&registry, "a", None).unwrap(), FIRST_SLOT);
        let taken = home.slot_in(&registry, "c", Some(FIRST_SLOT)).unwrap_err();
        assert!(matches!(taken, HomeError::SlotInHome { ref other, .. } if other == "a"));
        assert_eq!(
            taken.to_string(),
            format!(
                "address slot {FIRST_SLOT} is used by app `a` in this home: choose another with \
                 `--slot N` or leave out `--slot`"
            )
        );
        assert_eq!(home.slot_in(&registry, "c", Some(99)).unwrap(), 99);
        assert_eq!(
            other.slot_in(&registry, "a", None).unwrap(),
            FIRST_SLOT + 2,
            "another home"
        );
        let err = other.slot_in(&registry, "d", Some(99)).unwrap_err();
        assert!(matches!(err, HomeError::SlotHeld { slot: 99, .. }), "{err}");
        assert!(err.to_string().contains("held by app `c`"), "{err}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_413), (2025, 11, 21));
        assert_eq!(utc_now().len(), 24);
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.app_dir("a")).unwrap();
        let held = home.try_lock("a").unwrap();
        assert!(held.is_some());
        assert!(home.supervisor_running("a"));
        drop(held);
        assert!(!home.supervisor_running("a"));
    }
}
