//! Backup and restore decisions, made once for both engines: which member runs the backup
//! action, where a backup's objects go, what a backup's manifest says, whether downloaded bytes
//! match it, which backups the retention policy expires and when the schedule is next due.
//!
//! The engines carry the bytes (`berth-backup`): they run the action, stream its stdout to the
//! repository and record the outcome; every rule about it is here.
//!
//! A backup is two objects under `<prefix>/<app>/<part>/<id>/`: `data` (the action's stdout,
//! as it was) and `manifest.json` ([`Manifest`]), written after the data, so a backup without a
//! manifest is incomplete and never restored.

use std::str::FromStr as _;

use chrono::{DateTime, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::{BackupPhase, BackupRetention, BackupSchedule, BackupSource, RepositorySpec};

/// The manifest format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The name of a backup's data object inside its directory.
pub const DATA: &str = "data";
/// The name of a backup's manifest object inside its directory.
pub const MANIFEST: &str = "manifest.json";
/// The variable naming the file a `backupOutput: File` backup action writes, on both engines.
pub const BACKUP_FILE_ENV: &str = "BERTH_BACKUP_FILE";
/// The variable naming the file a restore action reads the backup from, on both engines.
pub const RESTORE_FILE_ENV: &str = "BERTH_RESTORE_FILE";

/// What a backup holds and how to check it: written next to the data by any engine, read by
/// any engine before it restores.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The backup's id (its directory's last segment).
    pub id: String,
    /// The app it was taken from.
    pub app: String,
    /// The part it was taken from.
    pub part: String,
    /// The member whose action wrote it.
    pub member: String,
    /// The app's revision (its spec hash) when it was taken.
    pub revision: String,
    /// `kubernetes` or `local`.
    pub engine: String,
    /// Unix seconds when the action started.
    pub started_at: i64,
    /// Unix seconds when the data was stored.
    pub finished_at: i64,
    /// The data's size in bytes.
    pub size: u64,
    /// The data's sha256, lower-case hex.
    pub sha256: String,
}

/// A backup as the engines list it: from their records (failed ones too) or from manifests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The backup's id.
    pub id: String,
    /// Whether it is complete (data and manifest stored).
    pub succeeded: bool,
    /// Unix seconds when it started.
    pub started_at: i64,
}

/// A member as a backup sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Its ordinal.
    pub ordinal: i32,
    /// Whether it is ready.
    pub ready: bool,
    /// Whether its current role is writable (`None`: the part has no roles, or none reported).
    pub writable: Option<bool>,
}

/// Why no backup can start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChoiceError {
    /// No member is ready.
    #[error("no member is ready to run the backup action")]
    NoneReady,
    /// `from: Leader` and no ready member holds the writable role.
    #[error("no ready member holds the writable role (backup.from is Leader)")]
    NoLeader,
}

/// The member that runs the backup action, as `from` says: the lowest ready ordinal among the
/// preferred members (for `Follower`, those without a writable role; the leader when it is the
/// only ready member).
///
/// # Errors
/// No ready member, or no ready leader for `Leader`.
pub fn choose_member(from: BackupSource, members: &[Candidate]) -> Result<i32, ChoiceError> {
    let ready = || members.iter().filter(|m| m.ready);
    let lowest = |it: &mut dyn Iterator<Item = &Candidate>| it.map(|m| m.ordinal).min();
    let any = lowest(&mut ready()).ok_or(ChoiceError::NoneReady)?;
    match from {
        BackupSource::Any => Ok(any),
        BackupSource::Leader => {
            lowest(&mut ready().filter(|m| m.writable == Some(true))).ok_or(ChoiceError::NoLeader)
        }
        BackupSource::Follower => {
            Ok(lowest(&mut ready().filter(|m| m.writable != Some(true))).unwrap_or(any))
        }
    }
}

/// A backup id for one started at `unix` seconds: its UTC time, `20261130T021500Z`, so ids
/// sort by time.
pub fn backup_id(unix: i64) -> String {
    let at = Utc.timestamp_opt(unix, 0).single().unwrap_or_default();
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A backup id for one started at `unix` seconds that none of `taken` has: [`backup_id`], with
/// `-2`, `-3`, ... appended when backups start within one second.
pub fn unique_id(unix: i64, taken: &[&str]) -> String {
    let base = backup_id(unix);
    (1..)
        .map(|n| {
            if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            }
        })
        .find(|id| !taken.contains(&id.as_str()))
        .unwrap_or(base)
}

/// The key prefix of part `part`'s backups of `app`: `<prefix>/<app>/<part>`.
pub fn part_prefix(repository: &RepositorySpec, app: &str, part: &str) -> String {
    let prefix = repository.prefix.trim_matches('/');
    if prefix.is_empty() {
        format!("{app}/{part}")
    } else {
        format!("{prefix}/{app}/{part}")
    }
}

/// A backup's place: a bucket and the key of its directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The bucket.
    pub bucket: String,
    /// The directory's key, without a trailing `/`.
    pub dir: String,
}

impl Location {
    /// The key of the data object.
    pub fn data_key(&self) -> String {
        format!("{}/{DATA}", self.dir)
    }

    /// The key of the manifest.
    pub fn manifest_key(&self) -> String {
        format!("{}/{MANIFEST}", self.dir)
    }

    /// `s3://<bucket>/<dir>`, as users give it to `restoreFrom`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.dir)
    }

    /// The id: the directory's last segment.
    pub fn id(&self) -> &str {
        self.dir.rsplit('/').next().unwrap_or(&self.dir)
    }
}

/// A `restoreFrom` URL that is not `s3://<bucket>/<key>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{url}` is not a backup's location; expected s3://<bucket>/<key of the backup>")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
}

/// Parses `s3://<bucket>/<dir>` (a trailing `/`, `/data` or `/manifest.json` is dropped).
///
/// # Errors
/// Another scheme, no bucket or no key.
pub fn parse_url(url: &str) -> Result<Location, UrlError> {
    let error = || UrlError { url: url.into() };
    let rest = url.strip_prefix("s3://").ok_or_else(error)?;
    let (bucket, dir) = rest.split_once('/').ok_or_else(error)?;
    let dir = dir.trim_end_matches('/');
    let dir = dir
        .strip_suffix(&format!("/{MANIFEST}"))
        .or_else(|| dir.strip_suffix(&format!("/{DATA}")))
        .unwrap_or(dir);
    if bucket.is_empty() || dir.is_empty() {
        return Err(error());
    }
    Ok(Location {
        bucket: bucket.into(),
        dir: dir.into(),
    })
}

/// Why a backup cannot be restored.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A manifest of a format this berth does not read.
    #[error("manifest format {found} is not supported (this berth reads format {FORMAT_VERSION})")]
    Format {
        /// The manifest's format.
        found: u32,
    },
    /// The data is not the size the manifest says.
    #[error("the data is {found} bytes; its manifest says {expected}")]
    Size {
        /// What the manifest says.
        expected: u64,
        /// What was read.
        found: u64,
    },
    /// The data's checksum differs from the manifest's.
    #[error("the data's sha256 is {found}; its manifest says {expected}")]
    Checksum {
        /// What the manifest says.
        expected: String,
        /// What was read.
        found: String,
    },
}

/// Checks the bytes read (`size`, `sha256`) against the manifest.
///
/// # Errors
/// An unknown format, or a size or checksum that differs.
pub fn verify(manifest: &Manifest, size: u64, sha256: &str) -> Result<(), VerifyError> {
    if manifest.format_version != FORMAT_VERSION {
        return Err(VerifyError::Format {
            found: manifest.format_version,
        });
    }
    if manifest.size != size {
        return Err(VerifyError::Size {
            expected: manifest.size,
            found: size,
        });
    }
    if !manifest.sha256.eq_ignore_ascii_case(sha256) {
        return Err(VerifyError::Checksum {
            expected: manifest.sha256.clone(),
            found: sha256.into(),
        });
    }
    Ok(())
}

/// The backups retention deletes at `now`: successful ones beyond the newest `keepLast`, and
/// any older than `maxAgeHours` (failed ones included); never the newest successful backup.
pub fn expired(backups: &[BackupRecord], retention: &BackupRetention, now: i64) -> Vec<String> {
    let mut done: Vec<&BackupRecord> = backups.iter().filter(|b| b.succeeded).collect();
    done.sort_by_key(|b| std::cmp::Reverse((b.started_at, b.id.clone())));
    let newest = done.first().map(|b| b.id.as_str());
    let beyond_count = |b: &BackupRecord| {
        let keep = retention.keep_last.map_or(usize::MAX, |n| n as usize);
        b.succeeded
            && done
                .iter()
                .position(|d| d.id == b.id)
                .is_some_and(|i| i >= keep)
    };
    let too_old = |b: &BackupRecord| {
        let limit = retention.max_age_hours.map(|h| i64::from(h) * 3600);
        limit.is_some_and(|l| now - b.started_at > l)
    };
    backups
        .iter()
        .filter(|b| Some(b.id.as_str()) != newest)
        .filter(|b| beyond_count(b) || too_old(b))
        .map(|b| b.id.clone())
        .collect()
}

/// A schedule that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression.
    #[error("`{cron}` is not a cron schedule: {why}")]
    Cron {
        /// The expression.
        cron: String,
        /// The parser's message.
        why: String,
    },
    /// The time zone.
    #[error("`{zone}` is not an IANA time zone (e.g. UTC or Europe/Berlin)")]
    TimeZone {
        /// The zone as given.
        zone: String,
    },
}

/// The first time the schedule is due strictly after `after` (unix seconds), or `None` when it
/// never is again.
///
/// # Errors
/// A cron expression or time zone that does not parse.
pub fn next_run(schedule: &BackupSchedule, after: i64) -> Result<Option<i64>, ScheduleError> {
    let cron = croner::Cron::from_str(&schedule.cron).map_err(|e| ScheduleError::Cron {
        cron: schedule.cron.clone(),
        why: e.to_string(),
    })?;
    let zone: chrono_tz::Tz = schedule
        .time_zone
        .parse()
        .map_err(|_| ScheduleError::TimeZone {
            zone: schedule.time_zone.clone(),
        })?;
    let Some(start) = Utc.timestamp_opt(after, 0).single() else {
        return Ok(None);
    };
    let local: DateTime<chrono_tz::Tz> = start.with_timezone(&zone);
    Ok(cron
        .find_next_occurrence(&local, false)
        .ok()
        .map(|t| t.timestamp()))
}

/// Whether a scheduled backup is due at `now`, the last one (scheduled or not) having started at
/// `last` (`None`: never; then the schedule counts from `since`, when it was first seen).
///
/// # Errors
/// As [`next_run`].
pub fn due(
    schedule: &BackupSchedule,
    last: Option<i64>,
    since: i64,
    now: i64,
) -> Result<bool, ScheduleError> {
    let from = last.unwrap_or(since);
    Ok(next_run(schedule, from)?.is_some_and(|at| at <= now))
}

/// What a reconcile of a `StatefulAppBackup` does with it (`berth operator`), from the phase its
/// cache shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It ended, or this process streams it.
    Nothing,
    /// `Running`, but this process neither streams nor ended it: an operator stopped
    /// mid-stream. It is marked `Failed`, never run again.
    Abandoned,
    /// It waits for its app's lock, then runs.
    Run,
}

/// What to do with a backup seen in phase `seen`, given whether this process streams it and
/// whether it ended it. One this process ended counts as ended whatever the cache shows: its
/// end is written, but the cache can still hold an earlier version (`Running`, or none yet),
/// and the reconcile that the `Running` write itself queued may see it. Before this rule, such
/// a backup, `Succeeded`, was then marked `Failed` (seen under load by `bench/real-backup.sh`);
/// seen without a phase it would have run twice.
pub fn next(seen: BackupPhase, streams_here: bool, ended_here: bool) -> Next {
    if seen.is_finished() || ended_here {
        return Next::Nothing;
    }
    match (seen, streams_here) {
        (BackupPhase::Running, true) => Next::Nothing,
        (BackupPhase::Running, false) => Next::Abandoned,
        _ => Next::Run,
    }
}

#[cfg(test)]
mod tests;
