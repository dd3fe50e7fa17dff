//! StatefulAppBackups under the operator: a second controller in the same process (so under
//! the same leader lease) runs each backup once, and a timer creates backups on the apps'
//! schedules and deletes those retention expires (`schedule`).
//!
//! # Guarantees
//! - A backup runs at most once: a `Succeeded` or `Failed` one is never touched again, and one
//!   found `Running` that this process is not running (the operator restarted mid-stream) is
//!   marked `Failed`, not started again. One this process ended is not: the controller's cache
//!   can still show it `Running` after its end was written (`berth_core::backup::next`).
//! - Two backups of one app never stream at once: the second stays `Pending`, saying which one
//!   it waits for, and starts when that one ends.
//! - Which member runs the action, the object keys, the manifest, retention and the schedule
//!   are `berth_core::backup`'s decisions; this module carries them out (`take`, `stream`).

mod schedule;
mod stream;
mod take;

pub(crate) use stream::{ended, tail, tails};
pub(crate) use take::credentials;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::backup::{Next, next};
use berth_core::spec::{BackupPhase, StatefulApp, StatefulAppBackup, StatefulAppBackupStatus};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, ResourceExt as _};

use crate::telemetry::Metrics;
use crate::watch::{self, CachesReady};
use crate::{Error, MANAGER, Result};

/// How often a backup waiting for another one of its app looks again.
const WAITING: Duration = Duration::from_secs(3);
/// How many backups this process ended it remembers (a stale cache lags by seconds; a schedule
/// every minute ends 1,440 a day).
const REMEMBERED: usize = 256;

/// What the backup controller and the schedule share.
pub(crate) struct BackupContext {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics (backups by outcome).
    pub metrics: Arc<Metrics>,
    /// The scope's pods (members to choose from).
    pub pods: Store<Pod>,
    /// Opens once the scope's caches (pods among them) hold their first lists.
    pub caches_ready: CachesReady,
    /// The backup each app (`namespace/name`) is streaming in this process.
    running: Mutex<HashMap<String, String>>,
    /// The uids of the last [`REMEMBERED`] backups this process ended.
    ended: Mutex<VecDeque<String>>,
}

/// The right to stream a backup of one app; released when dropped.
struct AppLock<'a> {
    ctx: &'a BackupContext,
    app: String,
}

impl Drop for AppLock<'_> {
    fn drop(&mut self) {
        self.ctx.running().remove(&self.app);
    }
}

impl BackupContext {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes app `app`'s lock for backup `backup`, or says which backup holds it.
    fn lock(&self, app: &str, backup: &str) -> Result<AppLock<'_>, String> {
        let mut running = self.running();
        if let Some(other) = running.get(app) {
            return Err(other.clone());
        }
        running.insert(app.to_string(), backup.to_string());
        Ok(AppLock {
            ctx: self,
            app: app.to_string(),
        })
    }

    /// Whether this process is streaming backup `backup` of `app`.
    fn runs(&self, app: &str, backup: &str) -> bool {
        self.running().get(app).is_some_and(|b| b == backup)
    }

    /// Remembers that this process ended the backup with `uid`.
    fn end(&self, uid: String) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() == REMEMBERED {
            ended.pop_front();
        }
        ended.push_back(uid);
    }

    /// Whether this process ended the backup with `uid`.
    fn ended(&self, uid: &str) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        ended.iter().any(|u| u == uid)
    }
}

/// Runs the backup controller and the schedule of one scope until the process stops.
pub(crate) async fn run(
    client: Client,
    namespace: Option<String>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    caches: (Store<Pod>, Store<StatefulApp>, CachesReady),
) {
    let (pods, apps, caches_ready) = caches;
    let api = watch::api::<StatefulAppBackup>(&client, namespace.as_deref());
    let controller = Controller::new(api, watcher::Config::default());
    let backups = controller.store();
    let ctx = Arc::new(BackupContext {
        client,
        recorder,
        metrics,
        pods,
        caches_ready,
        running: Mutex::default(),
        ended: Mutex::default(),
    });
    let runs = controller
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "backup controller event");
            }
        });
    tokio::select! {
        () = runs => {}
        () = schedule::run(ctx, apps, backups) => {}
    }
}

fn phase_of(backup: &StatefulAppBackup) -> BackupPhase {
    backup
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

/// Reconciles one backup: nothing once it ended; `Failed` when found `Running` without this
/// process running it; else it waits for its app's lock and runs.
///
/// # Errors
/// A status that cannot be written; the controller retries.
async fn reconcile(backup: Arc<StatefulAppBackup>, ctx: Arc<BackupContext>) -> Result<Action> {
    let namespace = backup.namespace().unwrap_or_default();
    let app = format!("{namespace}/{}", backup.spec.app);
    let name = backup.name_any();
    let uid = backup.uid().unwrap_or_default();
    match next(phase_of(&backup), ctx.runs(&app, &name), ctx.ended(&uid)) {
        Next::Nothing => return Ok(Action::await_change()),
        Next::Abandoned => {
            let why = "the operator stopped while the backup ran; a backup is never run twice";
            take::fail(&ctx, &backup, status_of(&backup), why.into()).await?;
            return Ok(Action::await_change());
        }
        Next::Run => {}
    }
    if ctx.caches_ready.wait().await.is_err() {
        return Ok(Action::requeue(WAITING));
    }
    let lock = match ctx.lock(&app, &name) {
        Ok(lock) => lock,
        Err(other) => {
            let why = format!(
                "waiting for backup {other} of {} to finish",
                backup.spec.app
            );
            wait_pending(&ctx, &backup, why).await?;
            return Ok(Action::requeue(WAITING));
        }
    };
    take::take(&ctx, &backup).await?;
    ctx.end(uid);
    drop(lock);
    Ok(Action::await_change())
}

fn error_policy(_: Arc<StatefulAppBackup>, error: &Error, _: Arc<BackupContext>) -> Action {
    tracing::warn!(error = %error, "backup reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

fn status_of(backup: &StatefulAppBackup) -> StatefulAppBackupStatus {
    backup.status.clone().unwrap_or_default()
}

/// Marks the backup `Pending` with why it waits (written only when that changes).
async fn wait_pending(ctx: &BackupContext, backup: &StatefulAppBackup, why: String) -> Result<()> {
    let mut status = status_of(backup);
    if status.phase == Some(BackupPhase::Pending) && status.error.as_deref() == Some(&why) {
        return Ok(());
    }
    status.phase = Some(BackupPhase::Pending);
    status.error = Some(why);
    write_status(ctx, backup, &status).await
}

/// Writes the backup's status (a merge patch; an unset `error` is cleared).
async fn write_status(
    ctx: &BackupContext,
    backup: &StatefulAppBackup,
    status: &StatefulAppBackupStatus,
) -> Result<()> {
    let name = backup.name_any();
    let api: Api<StatefulAppBackup> =
        Api::namespaced(ctx.client.clone(), &backup.namespace().unwrap_or_default());
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if status.error.is_none() {
        value["error"] = serde_json::Value::Null;
    }
    let params = PatchParams {
        field_manager: Some(MANAGER.to_string()),
        ..Default::default()
    };
    let patch = serde_json::json!({ "status": value });
    api.patch_status(&name, &params, &Patch::Merge(&patch))
        .await
        .map_err(Error::kube(format!("write the status of backup {name}")))?;
    Ok(())
}

/// Publishes an Event on `object` (the note doubles as the action, as the app's events do).
async fn announce<K>(ctx: &BackupContext, object: &K, type_: EventType, reason: &str, note: &str)
where
    K: kube::Resource<DynamicType = ()>,
{
    crate::reconcile::publish_on(&ctx.recorder, &object.object_ref(&()), type_, reason, note).await;
}

/// Unix seconds now.
fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// `unix` as RFC 3339 (`2026-11-30T02:15:00Z`).
fn rfc3339(unix: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
