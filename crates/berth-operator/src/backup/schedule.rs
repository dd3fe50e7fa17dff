//! Backups on a schedule, and retention, on a timer: for every app whose parts declare
//! `state.backup`, a `StatefulAppBackup` named `<app>-<id>` (owned by the app) is created when
//! `berth_core::backup::due` says the part's schedule is due, and the backups
//! `berth_core::backup::expired` returns are deleted: their objects in the repository first,
//! then the resource (a backup whose objects cannot be deleted stays listed).
//!
//! The schedule counts from the part's newest backup (scheduled or asked for, created even if
//! not yet run), else from the app's creation, so a restarted operator neither repeats nor
//! catches up runs.

use std::sync::Arc;
use std::time::Duration;

use berth_backup::Repository;
use berth_core::backup::{self, BackupRecord};
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::{
    BackupPhase, BackupSchedule, BackupSpec, StatefulApp, StatefulAppBackup, StatefulAppBackupSpec,
};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, Resource as _, ResourceExt as _};

use super::take::credentials;
use super::{BackupContext, announce, now};

/// How often schedules and retention are looked at.
const TICK: Duration = Duration::from_secs(10);
/// The label a scheduled backup carries.
pub const LABEL_SCHEDULED: &str = "berth.io/scheduled";

/// Tends every app's schedule and retention until the process stops.
pub(super) async fn run(
    ctx: Arc<BackupContext>,
    apps: Store<StatefulApp>,
    backups: Store<StatefulAppBackup>,
) {
    // One waiter per store (see `watch::CachesReady`): the controller does not await these.
    if apps.wait_until_ready().await.is_err() || backups.wait_until_ready().await.is_err() {
        tracing::error!("the caches of apps or backups stopped before their first list");
        return;
    }
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for app in apps.state() {
            tend(&ctx, &app, &backups).await;
        }
    }
}

/// Creates a due backup and deletes expired ones, for each of the app's parts with backups.
async fn tend(ctx: &BackupContext, app: &StatefulApp, backups: &Store<StatefulAppBackup>) {
    let declares = app.spec.parts.iter().any(|p| p.state.backup.is_some());
    if !declares || app.metadata.deletion_timestamp.is_some() {
        return;
    }
    let Ok(validated) = crate::reconcile::validate(app) else {
        return;
    };
    let now = now();
    for part in validated.parts() {
        let Some(spec) = &part.state.backup else {
            continue;
        };
        let mine = part_backups(&validated, &part.name, backups);
        if let Some(schedule) = &spec.schedule {
            create_if_due(ctx, app, &part.name, schedule, &mine, now).await;
        }
        expire(ctx, app, spec, &mine, now).await;
    }
}

/// The backups of the app's part `part` (a backup naming no part is the first part's with
/// backups, as the controller resolves it).
fn part_backups(
    app: &ValidatedApp,
    part: &str,
    backups: &Store<StatefulAppBackup>,
) -> Vec<Arc<StatefulAppBackup>> {
    let first = app
        .parts()
        .iter()
        .find(|p| p.state.backup.is_some())
        .map(|p| p.name.as_str());
    backups
        .state()
        .into_iter()
        .filter(|b| b.namespace() == Some(app.namespace()) && b.spec.app == app.name())
        .filter(|b| b.spec.part.as_deref().or(first) == Some(part))
        .collect()
}

fn created(backup: &StatefulAppBackup) -> Option<i64> {
    let at = backup.metadata.creation_timestamp.as_ref()?;
    Some(at.0.as_second())
}

/// Creates `<app>-<id>` when the part's schedule is due.
async fn create_if_due(
    ctx: &BackupContext,
    app: &StatefulApp,
    part: &str,
    schedule: &BackupSchedule,
    mine: &[Arc<StatefulAppBackup>],
    now: i64,
) {
    let last = mine.iter().filter_map(|b| created(b)).max();
    let since = app
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(now, |t| t.0.as_second());
    match backup::due(schedule, last, since, now) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(app = %app.name_any(), error = %e, "the backup schedule does not parse");
            return;
        }
    }
    let name = format!(
        "{}-{}",
        app.name_any(),
        backup::backup_id(now).to_lowercase()
    );
    let mut object = StatefulAppBackup::new(
        &name,
        StatefulAppBackupSpec {
            app: app.name_any(),
            part: Some(part.to_string()),
        },
    );
    let mut labels = names::app_labels(&app.name_any());
    labels.insert(LABEL_SCHEDULED.into(), "true".into());
    object.metadata.labels = Some(labels);
    object.metadata.owner_references = app.controller_owner_ref(&()).map(|r| vec![r]);
    let namespace = app.namespace().unwrap_or_default();
    let api: Api<StatefulAppBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => {
            let note = format!("backup {name} created by the schedule `{}`", schedule.cron);
            announce(ctx, app, EventType::Normal, "BackupScheduled", &note).await;
        }
        Err(e) => tracing::warn!(backup = %name, error = %e, "could not create a scheduled backup"),
    }
}

/// The finished backups as retention sees them.
fn records(mine: &[Arc<StatefulAppBackup>]) -> Vec<BackupRecord> {
    mine.iter()
        .filter_map(|b| {
            let status = b.status.as_ref()?;
            let phase = status.phase.filter(|p| p.is_finished())?;
            let started = status.start_time.as_deref();
            let started = started.and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok());
            Some(BackupRecord {
                id: b.name_any(),
                succeeded: phase == BackupPhase::Succeeded,
                started_at: started.map(|t| t.as_second()).or_else(|| created(b))?,
            })
        })
        .collect()
}

/// Deletes the backups retention expires: the objects, then the resource.
async fn expire(
    ctx: &BackupContext,
    app: &StatefulApp,
    spec: &BackupSpec,
    mine: &[Arc<StatefulAppBackup>],
    now: i64,
) {
    let gone = backup::expired(&records(mine), &spec.retention, now);
    if gone.is_empty() {
        return;
    }
    let namespace = app.namespace().unwrap_or_default();
    let repository = &spec.repository;
    let repo = match credentials(&ctx.client, &namespace, repository).await {
        Ok(creds) => Repository::open(repository, &repository.bucket, creds.as_ref()),
        Err(why) => {
            tracing::warn!(app = %app.name_any(), "retention: {why}");
            return;
        }
    };
    let Ok(repo) = repo else { return };
    let api: Api<StatefulAppBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    for backup in mine.iter().filter(|b| gone.contains(&b.name_any())) {
        let name = backup.name_any();
        let at = backup.status.as_ref().and_then(|s| s.url.as_deref());
        let at = at.and_then(|url| backup::parse_url(url).ok());
        if let Some(at) = &at
            && let Err(e) = repo.delete(at).await
        {
            tracing::warn!(backup = %name, error = %e, "retention could not delete the objects");
            continue;
        }
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(backup = %name, error = %e, "retention could not delete the backup");
            continue;
        }
        let note = format!("backup {name}: deleted by retention");
        announce(ctx, app, EventType::Normal, "BackupExpired", &note).await;
    }
}
