//! Backups on the local engine: `berth backup APP` runs the part's backup action in the member
//! the core chooses and streams its stdout to the repository (`berth-backup`); `berth backups`
//! lists the records kept in `<home>/<app>/backups.json`; `berth up --restore-from URL` (or
//! `spec.restoreFrom`) restores a new app before any member starts.
//!
//! Records are written as the backup goes (`Running`, then `Succeeded` or `Failed` with the
//! reason), and each outcome is a line in the app's events log. Retention runs after each
//! successful backup. The repository's credentials come from the Secret source given with
//! `berth up --secret`, read when needed and never written anywhere.

use std::path::Path;

use berth_backup::action::{self, ActionError, Output, RestoreRun, runtime};
use berth_backup::{Credentials, Repository, Stored};
use berth_core::backup::{self, BackupRecord, Candidate, Location, Manifest, Next};
use berth_core::load::ValidatedApp;
use berth_core::restore::{self, LocalStep};
use berth_core::spec::{BackupOutput, BackupPhase, BackupSpec, PartSpec, RepositorySpec};
use serde::{Deserialize, Serialize};

use crate::error::{BackupError, HomeError, RestoreError, SecretError};
use crate::home::{AppState, Home, append_event, write_atomic};
use crate::plan::{ActionPlan, MemberPlan};
use crate::{secrets, supervisor};

/// The file (in the app's directory) listing the app's backups.
pub const RECORDS: &str = "backups.json";
/// The file (in the app's directory) saying which backup the app was restored from.
pub const RESTORED: &str = "restored.json";

/// A backup of a local app, as `berth backups` lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalBackup {
    /// The backup's id.
    pub id: String,
    /// The part.
    pub part: String,
    /// `Running`, `Succeeded` or `Failed` (the operator's phases; a local backup is never
    /// `Pending`: it runs at once or fails on the lock).
    pub phase: BackupPhase,
    /// The member whose action wrote it.
    pub member: String,
    /// The app's revision (spec hash) when it was taken.
    pub revision: String,
    /// Unix seconds when it started.
    pub started_at: i64,
    /// Unix seconds when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The data's size in bytes.
    #[serde(default)]
    pub size: u64,
    /// The data's sha256.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Where it is: `s3://<bucket>/<key of its directory>`, what `--restore-from` takes.
    pub url: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The app's backup records, oldest first.
pub fn records(home: &Home, app: &str) -> Vec<LocalBackup> {
    std::fs::read_to_string(home.file(app, RECORDS))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn save_record(home: &Home, app: &str, record: &LocalBackup) -> Result<(), HomeError> {
    let mut all = records(home, app);
    match all
        .iter_mut()
        .find(|r| r.id == record.id && r.part == record.part)
    {
        Some(old) => *old = record.clone(),
        None => all.push(record.clone()),
    }
    let json = serde_json::to_vec_pretty(&all).unwrap_or_default();
    write_atomic(&home.file(app, RECORDS), &json)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The part to back up: the named one, else the only one declaring `state.backup`.
fn backup_part<'a>(
    app: &'a ValidatedApp,
    part: Option<&str>,
) -> Result<(&'a PartSpec, &'a BackupSpec), BackupError> {
    let declared = |p: &'a PartSpec| p.state.backup.as_ref().map(|b| (p, b));
    let mut parts = app.parts().iter().filter_map(declared);
    let found = match part {
        Some(name) => parts.find(|(p, _)| p.name == name),
        None => parts.next(),
    };
    found.ok_or_else(|| BackupError::NoBackup {
        app: app.name(),
        what: part.map_or("no part".into(), |p| format!("part {p}")),
    })
}

/// The access key the repository names, from its Secret's local source.
fn credentials(
    home: &Home,
    app: &str,
    repo: &RepositorySpec,
) -> Result<Option<Credentials>, SecretError> {
    let Some(refs) = &repo.credentials else {
        return Ok(None);
    };
    let name = &refs.secret_name;
    let sources = secrets::sources(&home.app_dir(app));
    let source = sources
        .get(name)
        .ok_or_else(|| SecretError::Unsourced { name: name.clone() })?;
    let data = secrets::read(name, source)?;
    let key = |k: &String| {
        let value = data.get(k).ok_or_else(|| SecretError::Unsourced {
            name: format!("{name}` key `{k}"),
        })?;
        Ok::<_, SecretError>(String::from_utf8_lossy(value).trim().to_string())
    };
    Ok(Some(Credentials {
        access_key_id: key(&refs.access_key_id_key)?,
        secret_access_key: key(&refs.secret_access_key_key)?,
    }))
}

/// The part's members as a backup sees them.
fn candidates(state: &AppState, part: &PartSpec, plans: &[MemberPlan]) -> Vec<Candidate> {
    plans
        .iter()
        .filter(|p| p.member.part == part.name)
        .filter_map(|p| {
            let m = state.members.iter().find(|m| m.name == p.name)?;
            Some(Candidate {
                ordinal: p.member.ordinal,
                ready: m.ready && m.pid.is_some(),
                writable: part.state.topology.is_writable(&m.role),
            })
        })
        .collect()
}

/// Takes a backup of `app` (its part `part`, or the only part declaring one) now.
///
/// # Errors
/// Nothing to back up, the app not running, another backup running, no member able to run
/// it, or the backup failing (then recorded as `Failed`).
pub fn backup(home: &Home, app: &str, part: Option<&str>) -> Result<LocalBackup, BackupError> {
    let (validated, plans) = supervisor::load_saved(home, app)?;
    let (part, spec) = backup_part(&validated, part)?;
    let Some(_lock) = home.try_lock_backup(app)? else {
        return Err(BackupError::Running { app: app.into() });
    };
    interrupted(home, app)?;
    let plan = chosen_member(home, app, part, spec, &plans)?;
    let creds = credentials(home, app, &spec.repository)?;
    let repo = Repository::open(&spec.repository, &spec.repository.bucket, creds.as_ref());
    let (at, mut record) = started(home, app, &part.name, spec, plan);
    save_record(home, app, &record)?;
    let events = home.file(app, "events.log");
    let running = format!(
        "backup {} of {}: running in {}",
        record.id, part.name, plan.name
    );
    append_event(&events, &running);
    let outcome = match repo {
        Ok(repo) => {
            let output = match spec.backup_output {
                BackupOutput::Stdout => Output::Stdout,
                // the app's directory: one backup of an app at a time (the lock above)
                BackupOutput::File => Output::File(home.file(app, "backup.data")),
            };
            run_backup(&repo, &at, plan, &output, app, &record).map(|s| (repo, s))
        }
        Err(e) => Err(e.to_string()),
    };
    record.finished_at = Some(now());
    let (repo, stored) = match outcome {
        Ok(done) => done,
        Err(reason) => {
            record.phase = BackupPhase::Failed;
            record.error = Some(reason.clone());
            save_record(home, app, &record)?;
            append_event(&events, &format!("backup {}: failed: {reason}", record.id));
            let (app, part, id) = (app.into(), part.name.clone(), record.id);
            return Err(BackupError::Failed {
                app,
                part,
                id,
                reason,
            });
        }
    };
    record.phase = BackupPhase::Succeeded;
    (record.size, record.sha256) = (stored.size, stored.sha256);
    save_record(home, app, &record)?;
    let done = format!(
        "backup {}: succeeded, {} bytes, sha256 {}",
        record.id, record.size, record.sha256
    );
    append_event(&events, &done);
    expire(home, app, &repo, spec, &part.name);
    Ok(record)
}

/// The member the core chooses to run the part's backup action, from the app's state.
fn chosen_member<'a>(
    home: &Home,
    app: &str,
    part: &PartSpec,
    spec: &BackupSpec,
    plans: &'a [MemberPlan],
) -> Result<&'a MemberPlan, BackupError> {
    let not_running = || BackupError::NotRunning { app: app.into() };
    let state = home.state(app).ok_or_else(not_running)?;
    let chosen = backup::choose_member(spec.from, &candidates(&state, part, plans));
    let ordinal = chosen.map_err(|source| BackupError::Choice {
        app: app.into(),
        part: part.name.clone(),
        source,
    })?;
    plans
        .iter()
        .find(|p| p.member.part == part.name && p.member.ordinal == ordinal)
        .ok_or_else(not_running)
}

/// A new backup's location and its `Running` record.
fn started(
    home: &Home,
    app: &str,
    part: &str,
    spec: &BackupSpec,
    plan: &MemberPlan,
) -> (Location, LocalBackup) {
    let started_at = now();
    let earlier = records(home, app);
    let taken: Vec<&str> = earlier
        .iter()
        .filter(|r| r.part == part)
        .map(|r| r.id.as_str())
        .collect();
    let prefix = backup::part_prefix(&spec.repository, app, part);
    let at = Location {
        bucket: spec.repository.bucket.clone(),
        dir: format!("{prefix}/{}", backup::unique_id(started_at, &taken)),
    };
    let record = LocalBackup {
        id: at.id().to_string(),
        part: part.into(),
        phase: BackupPhase::Running,
        member: plan.name.clone(),
        revision: plan.revision.clone(),
        started_at,
        finished_at: None,
        size: 0,
        sha256: String::new(),
        url: at.url(),
        error: None,
    };
    (at, record)
}

/// Marks the records the core's `backup::next` calls abandoned as `Failed`: with the backup
/// lock held, no process of this machine streams or ends any of them, so a `Running` one's
/// process ended before it did (a supervisor stopped during a scheduled backup).
fn interrupted(home: &Home, app: &str) -> Result<(), HomeError> {
    let abandoned = |r: &LocalBackup| backup::next(r.phase, false, false) == Next::Abandoned;
    for mut record in records(home, app).into_iter().filter(abandoned) {
        record.phase = BackupPhase::Failed;
        record.error = Some("interrupted: the process taking it ended".into());
        save_record(home, app, &record)?;
    }
    Ok(())
}

/// Runs the backup action and stores its output and manifest; the reason when it fails.
fn run_backup(
    repo: &Repository,
    at: &Location,
    plan: &MemberPlan,
    output: &Output,
    app: &str,
    record: &LocalBackup,
) -> Result<Stored, String> {
    let action = plan
        .backup
        .as_ref()
        .ok_or("the member has no backup action")?;
    let rt = runtime().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    rt.block_on(async {
        let stored = run_action(repo, at, plan, action, output).await?;
        let manifest = Manifest {
            format_version: backup::FORMAT_VERSION,
            id: record.id.clone(),
            app: app.into(),
            part: record.part.clone(),
            member: plan.name.clone(),
            revision: plan.revision.clone(),
            engine: "local".into(),
            started_at: record.started_at,
            finished_at: now(),
            size: stored.size,
            sha256: stored.sha256.clone(),
        };
        repo.put_manifest(at, &manifest)
            .await
            .map_err(|e| e.to_string())?;
        Ok(stored)
    })
}

/// Runs `action` in `plan`'s member and stores what it hands over (`output`) as the data
/// object; a failed or timed-out action removes what was stored
/// (`berth_backup::action::backup`).
async fn run_action(
    repo: &Repository,
    at: &Location,
    plan: &MemberPlan,
    action: &ActionPlan,
    output: &Output,
) -> Result<Stored, String> {
    let (program, args) = action.argv.split_first().ok_or("empty command")?;
    let mut command = crate::member::action_command(plan, program).map_err(|e| e.to_string())?;
    command.args(args);
    berth_backup::action::backup(repo, at, command, output, action.timeout)
        .await
        .map_err(|e| e.to_string())
}

/// Deletes the part's backups that retention expires (from the repository, then the records).
fn expire(home: &Home, app: &str, repo: &Repository, spec: &BackupSpec, part: &str) {
    let all = records(home, app);
    let mine: Vec<BackupRecord> = all
        .iter()
        .filter(|r| r.part == part && r.phase.is_finished())
        .map(|r| BackupRecord {
            id: r.id.clone(),
            succeeded: r.phase == BackupPhase::Succeeded,
            started_at: r.started_at,
        })
        .collect();
    let gone = backup::expired(&mine, &spec.retention, now());
    if gone.is_empty() {
        return;
    }
    let Ok(rt) = runtime() else {
        return;
    };
    let events = home.file(app, "events.log");
    let mut kept = Vec::new();
    for r in all {
        let expired = r.part == part && gone.contains(&r.id);
        let at = backup::parse_url(&r.url).ok();
        let deleted = expired && at.is_some_and(|at| rt.block_on(repo.delete(&at)).is_ok());
        if deleted {
            append_event(&events, &format!("backup {}: deleted by retention", r.id));
        } else {
            kept.push(r);
        }
    }
    let json = serde_json::to_vec_pretty(&kept).unwrap_or_default();
    let _ = write_atomic(&home.file(app, RECORDS), &json);
}

/// How often the supervisor looks at the app's backup schedules.
const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the app's backup schedules for as long as the supervisor lives (its own thread): when
/// [`backup::due`] says a part's schedule is due (counting from the part's last backup, or
/// from now), takes the backup as `berth backup` would. A failed one is recorded and the next
/// run still happens; one that finds another backup running is skipped.
pub fn run_schedules(home: &Home, app: &str) {
    let since = now();
    loop {
        std::thread::sleep(SCHEDULE_TICK);
        let Ok(validated) = supervisor::saved_app(home, app) else {
            continue;
        };
        for part in validated.parts() {
            let schedule = part.state.backup.as_ref().and_then(|b| b.schedule.as_ref());
            let Some(schedule) = schedule else { continue };
            let last = records(home, app)
                .iter()
                .filter(|r| r.part == part.name)
                .map(|r| r.started_at)
                .max();
            if backup::due(schedule, last, since, now()).unwrap_or(false) {
                let _ = self::backup(home, app, Some(&part.name));
            }
        }
    }
}

/// Restores the new app `app` (planned as `plans`) from the backup at `url` before any member
/// starts: reads its manifest, then runs the part's restore action in each member, the data
/// checked against the manifest before any member starts (`restoreInput: File` checks it before
/// the first action runs; `Stdin` streams it into the first member's action and checks it as
/// it ends, keeping a copy in the app's directory only when other members need it).
/// Does nothing when the app was already restored from it.
///
/// # Errors
/// A member that already has data, a missing or corrupt backup, or a failed restore action;
/// the member directories it created are removed again.
pub fn restore(
    home: &Home,
    app: &ValidatedApp,
    plans: &[MemberPlan],
    url: &str,
) -> Result<(), RestoreError> {
    let name = app.name();
    if home.file(&name, RESTORED).exists() {
        return Ok(());
    }
    let at = backup::parse_url(url)?;
    let (_, part, spec) = restore::restore_part(app).map_err(|source| RestoreError::NoPart {
        url: url.into(),
        source,
    })?;
    let members: Vec<&MemberPlan> = plans
        .iter()
        .filter(|p| p.member.part == part.name)
        .collect();
    if let Some(m) = members.iter().find(|m| m.dir.exists()) {
        return Err(RestoreError::HasData {
            url: url.into(),
            member: m.name.clone(),
            dir: m.dir.clone(),
        });
    }
    let creds = credentials(home, &name, &spec.repository)?;
    let data = home.file(&name, "restore.data");
    let began = std::time::Instant::now();
    let result = fetch_and_restore(spec, creds.as_ref(), &at, &data, &members, url);
    let _ = std::fs::remove_file(&data);
    let stored = match result {
        Ok(stored) => stored,
        Err(e) => {
            for m in &members {
                let _ = std::fs::remove_dir_all(&m.dir);
            }
            return Err(e);
        }
    };
    let done = format!(
        "restored from {url}: {} bytes, sha256 {}, {} member(s), in {:.2}s",
        stored.size,
        stored.sha256,
        members.len(),
        began.elapsed().as_secs_f64()
    );
    append_event(&home.file(&name, "events.log"), &done);
    let marker = serde_json::json!({ "url": url, "at": now() });
    write_atomic(&home.file(&name, RESTORED), marker.to_string().as_bytes()).map_err(|e| {
        RestoreError::File {
            url: url.into(),
            path: home.file(&name, RESTORED),
            source: std::io::Error::other(e.to_string()),
        }
    })
}

/// Restores every member as the core's `restore::local_steps` say: one from the repository
/// (the data checked against its manifest, streamed or through `data` as the part's
/// `restoreInput` says, and kept in `data` when other members need it), the others from `data`.
fn fetch_and_restore(
    spec: &BackupSpec,
    creds: Option<&Credentials>,
    at: &Location,
    data: &Path,
    members: &[&MemberPlan],
    url: &str,
) -> Result<Stored, RestoreError> {
    let repo = Repository::open(&spec.repository, &at.bucket, creds).map_err(|source| {
        RestoreError::Repository {
            url: url.into(),
            source,
        }
    })?;
    let rt = runtime().map_err(RestoreError::Runtime)?;
    rt.block_on(async {
        let mut stored = None;
        for step in restore::local_steps(members.len()) {
            match step {
                LocalStep::Download { member, keep } => {
                    let plan = members[member];
                    let (command, timeout) = restore_command(plan, url)?;
                    let run = RestoreRun {
                        input: spec.restore_input,
                        scratch: data.to_path_buf(),
                        keep,
                        timeout,
                    };
                    let done = action::restore(&repo, at, command, &run).await;
                    stored = Some(done.map_err(|e| restore_failure(e, plan, url))?);
                }
                LocalStep::FromKept { member } => {
                    let plan = members[member];
                    let (command, timeout) = restore_command(plan, url)?;
                    let done = action::restore_verified(command, data, timeout).await;
                    done.map_err(|e| restore_failure(e, plan, url))?;
                }
            }
        }
        stored.ok_or_else(|| RestoreError::Member {
            url: url.into(),
            member: String::new(),
            reason: "the part has no members".into(),
        })
    })
}

/// Creates the member's directories and files; its restore action as a command in it.
fn restore_command(
    plan: &MemberPlan,
    url: &str,
) -> Result<(tokio::process::Command, std::time::Duration), RestoreError> {
    let fail = |reason: String| RestoreError::Member {
        url: url.into(),
        member: plan.name.clone(),
        reason,
    };
    crate::member::write_member_files(plan).map_err(|e| fail(e.to_string()))?;
    let action = plan
        .restore
        .as_ref()
        .ok_or_else(|| fail("no restore action".into()))?;
    let (program, args) = action
        .argv
        .split_first()
        .ok_or_else(|| fail("empty command".into()))?;
    let mut command =
        crate::member::action_command(plan, program).map_err(|e| fail(e.to_string()))?;
    command.args(args);
    Ok((command, action.timeout))
}

/// A failed restore as the error `up` reports: the repository's, a corrupt backup, the scratch
/// file's, or the member's action.
fn restore_failure(error: ActionError, plan: &MemberPlan, url: &str) -> RestoreError {
    let url = url.to_string();
    match error {
        ActionError::Store(source) => RestoreError::Repository { url, source },
        ActionError::Corrupt { source, .. } => RestoreError::Corrupt { url, source },
        ActionError::Scratch { path, source } => RestoreError::File { url, path, source },
        other => RestoreError::Member {
            url,
            member: plan.name.clone(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, phase: BackupPhase) -> LocalBackup {
        LocalBackup {
            id: id.into(),
            part: "db".into(),
            phase,
            member: "db-1".into(),
            revision: "r1".into(),
            started_at: 1,
            finished_at: None,
            size: 0,
            sha256: String::new(),
            url: format!("s3://b/app/db/{id}"),
            error: None,
        }
    }

    /// With the backup lock held, a `Running` record's process is gone: it becomes `Failed`
    /// with the reason; ended records are left as they are.
    #[test]
    fn only_running_records_are_marked_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.file("app", "")).unwrap();
        let phases = [
            BackupPhase::Running,
            BackupPhase::Succeeded,
            BackupPhase::Failed,
        ];
        for (i, phase) in phases.into_iter().enumerate() {
            save_record(&home, "app", &record(&i.to_string(), phase)).unwrap();
        }
        interrupted(&home, "app").unwrap();
        let after = records(&home, "app");
        let seen: Vec<BackupPhase> = after.iter().map(|r| r.phase).collect();
        assert_eq!(
            seen,
            [
                BackupPhase::Failed,
                BackupPhase::Succeeded,
                BackupPhase::Failed
            ]
        );
        assert!(
            after[0]
                .error
                .as_deref()
                .unwrap()
                .starts_with("interrupted")
        );
        assert_eq!(after[1].error, None);
        assert_eq!(after[2].error, None);
    }
}
