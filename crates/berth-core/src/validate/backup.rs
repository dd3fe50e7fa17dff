//! Rules for backups (`state.backup`) and for creating an app from one (`restoreFrom`).

use super::Checker;
use crate::backup;
use crate::spec::{BackupSpec, PartSpec, StatefulApp};

/// A part's `state.backup` at `at` (`spec.parts[i].state`).
pub(super) fn check_part_backup(part: &PartSpec, at: &str, c: &mut Checker) {
    let Some(spec) = &part.state.backup else {
        return;
    };
    let at = format!("{at}.backup");
    c.require(
        !part.state.persistent.is_empty(),
        at.clone(),
        "a backup needs persistent state: declare state.persistent volumes",
    );
    check_repository(spec, &at, c);
    if let Some(schedule) = &spec.schedule
        && let Err(e) = backup::next_run(schedule, 0)
    {
        let field = match e {
            backup::ScheduleError::Cron { .. } => "cron",
            backup::ScheduleError::TimeZone { .. } => "timeZone",
        };
        c.problems
            .push(format!("{at}.schedule.{field}"), e.to_string());
    }
}

fn check_repository(spec: &BackupSpec, at: &str, c: &mut Checker) {
    let repo = &spec.repository;
    let at = format!("{at}.repository");
    c.require(
        repo.endpoint.starts_with("http://") || repo.endpoint.starts_with("https://"),
        format!("{at}.endpoint"),
        format!("`{}` is not an http:// or https:// URL", repo.endpoint),
    );
    c.require(
        is_bucket_name(&repo.bucket),
        format!("{at}.bucket"),
        format!(
            "`{}` is not a bucket name (3-63 lower-case letters, digits, `.` and `-`)",
            repo.bucket
        ),
    );
    if let Some(credentials) = &repo.credentials {
        c.dns_label(
            &credentials.secret_name,
            253,
            format!("{at}.credentials.secretName"),
            "Secret name",
        );
    }
}

fn is_bucket_name(name: &str) -> bool {
    let allowed =
        |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '.' || ch == '-';
    (3..=63).contains(&name.len()) && name.chars().all(allowed)
}

/// `spec.restoreFrom`: a backup's URL, and some part that declares how to restore it.
pub(super) fn check_restore_from(app: &StatefulApp, c: &mut Checker) {
    let Some(source) = &app.spec.restore_from else {
        return;
    };
    if let Err(e) = backup::parse_url(&source.url) {
        c.problems.push("spec.restoreFrom.url", e.to_string());
    }
    let declared = app
        .spec
        .parts
        .iter()
        .filter(|p| p.state.backup.is_some())
        .count();
    c.require(
        declared > 0,
        "spec.restoreFrom",
        "no part declares state.backup, so none knows how to restore",
    );
    c.require(
        declared < 2,
        "spec.restoreFrom",
        "more than one part declares state.backup; a backup restores one part (restoring several is not supported yet)",
    );
}
