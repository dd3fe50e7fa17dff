//! Restoring a new app from a backup (`spec.restoreFrom`) under the operator. Each member of the
//! restored part starts held by the `berth-restore` init container (`berth_k8s::restore`);
//! every reconcile asks the core what to do with the members waiting there
//! (`berth_core::restore::steps`), and a task per app performs the steps in order:
//! - **restore**: the backup's data streamed from the repository through `pods/exec` into the
//!   init container's scratch directory (hashed on the way, the operator holding one chunk at a
//!   time), checked against the backup's manifest, then the part's restore action run there
//!   with it on stdin; the member is recorded as restored, then released;
//! - **release**: the marker written on the member's volume and the member let go.
//!
//! The restore's status (`status.restore`) is written only here, never by the reconcile's
//! status patch, so a status computed from a cache that lags cannot undo a step. It is also
//! remembered in this process, newer than the caches.
//!
//! # Guarantees
//! - No member starts before its own data is complete and verified; a missing or corrupt
//!   backup, or a failing restore action, fails the restore with the reason (status, Event,
//!   `Degraded`) and the members not yet restored never start.
//! - A member is restored at most once per restore (its ordinal is recorded before it is
//!   released); transient failures are retried with backoff, as the core says.
//! - An app whose `restoreFrom` was added after it ran is never restored (`Skipped`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_backup::transfer::Request;
use berth_backup::{Repository, Stored};
use berth_core::backup::{self, Location};
use berth_core::exec::ExecKind;
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::restore::{self, Failure, Step};
use berth_core::spec::{BackupSpec, RestorePhase, RestoreStatus, StatefulApp};
use berth_k8s::agent::{self, Transfer};
use berth_k8s::restore as member;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{AttachParams, Patch, PatchParams};
use kube::runtime::events::{EventType, Recorder};
use kube::{Api, Client, Resource as _, ResourceExt as _};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;

use crate::reconcile::Context;
use crate::{Error, Result};

/// How much of the exec's stdin stream is buffered between the download and the API server.
const STDIN_BUFFER: usize = 1 << 20;

/// What this process knows of each app's restore, by app UID.
#[derive(Default)]
pub(crate) struct Restores(Mutex<HashMap<String, Memory>>);

#[derive(Default)]
struct Memory {
    /// The status this process last wrote.
    status: Option<RestoreStatus>,
    /// Whether a task is performing steps.
    busy: bool,
}

impl Restores {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Memory>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn latest(&self, uid: &str) -> Option<RestoreStatus> {
        self.lock().get(uid).and_then(|m| m.status.clone())
    }

    fn remember(&self, uid: &str, status: &RestoreStatus) {
        self.lock().entry(uid.to_string()).or_default().status = Some(status.clone());
    }

    /// Marks the app busy; false when a task already runs for it.
    fn begin(&self, uid: &str) -> bool {
        let mut all = self.lock();
        let memory = all.entry(uid.to_string()).or_default();
        !std::mem::replace(&mut memory.busy, true)
    }

    fn end(&self, uid: &str) {
        if let Some(memory) = self.lock().get_mut(uid) {
            memory.busy = false;
        }
    }
}

/// Drives the app's restore one reconcile further: records its start the first time, and
/// starts a task for the steps the core asks for (unless one runs). Returns the restore's
/// status as this process knows it (`None` without `restoreFrom` and no earlier restore).
///
/// # Errors
/// The first status cannot be written.
pub(crate) async fn drive(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
    pods: &[Pod],
) -> Result<Option<RestoreStatus>> {
    let uid = app.uid().unwrap_or_default();
    let earlier = ctx
        .restores
        .latest(&uid)
        .or_else(|| app.status.as_ref().and_then(|s| s.restore.clone()));
    let Some(source) = &validated.app.spec.restore_from else {
        return Ok(earlier);
    };
    // Validation guarantees the part; without it there is nothing to hold members for.
    let Ok((index, part, spec)) = restore::restore_part(validated) else {
        return Ok(earlier);
    };
    let status = match earlier {
        Some(status) => status,
        None => {
            let fresh = restore::is_new_app(app.status.as_ref());
            let status = restore::start(&source.url, &part.name, part.desired_replicas(), fresh);
            patch(&ctx.client, app, &status).await?;
            ctx.restores.remember(&uid, &status);
            status
        }
    };
    let workload = names::workload_name(&validated.name(), &part.name);
    let waiting = member::waiting(pods, &workload);
    let steps = restore::steps(&status, &waiting, now());
    if steps.is_empty() || !ctx.restores.begin(&uid) {
        return Ok(Some(status));
    }
    let action = match berth_k8s::roles::exec_command(validated, index, ExecKind::Restore) {
        Ok(Some(command)) if !command.is_empty() => Ok(command),
        Ok(_) => Err("the part declares no restore action".to_string()),
        Err(e) => Err(format!("the restore action does not render: {e}")),
    };
    let job = Job {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        restores: Arc::clone(&ctx.restores),
        app: app.clone(),
        uid,
        namespace: validated.namespace(),
        workload,
        at: backup::parse_url(&status.url).ok(),
        spec: spec.clone(),
        action,
        data: member::data_file(part),
        timeout: Duration::from_secs(u64::try_from(spec.restore.timeout_seconds).unwrap_or(600)),
        steps,
        status: status.clone(),
    };
    tracing::info!(app = %job.app.name_any(), steps = ?job.steps, "restore: performing steps");
    tokio::spawn(job.perform());
    Ok(Some(status))
}

/// Whether the restore still has members to restore.
pub(crate) fn running(status: Option<&RestoreStatus>) -> bool {
    status.is_some_and(|s| s.phase == RestorePhase::Running)
}

/// Marks the app's restore as no longer busy when dropped (also when its task panics).
struct Busy<'a>(&'a Restores, &'a str);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// Everything a task needs to perform one batch of steps.
struct Job {
    client: Client,
    recorder: Recorder,
    restores: Arc<Restores>,
    app: StatefulApp,
    uid: String,
    namespace: String,
    workload: String,
    /// The backup (`None`: the URL does not parse; validation prevents it).
    at: Option<Location>,
    spec: BackupSpec,
    /// The rendered restore action, or why there is none.
    action: Result<Vec<String>, String>,
    /// Where a member's data lands in its pod (`berth_k8s::restore::data_file`).
    data: String,
    timeout: Duration,
    steps: Vec<Step>,
    status: RestoreStatus,
}

impl Job {
    /// Performs the steps in order; stops at the first failed restore.
    async fn perform(self) {
        let _busy = Busy(&self.restores, &self.uid);
        let mut status = self.status.clone();
        for step in &self.steps {
            match *step {
                Step::Release(ordinal) => self.release(ordinal).await,
                Step::Restore(ordinal) => {
                    let pod = self.pod(ordinal);
                    tracing::info!(pod = %pod, url = %status.url, "restore: streaming the backup");
                    let began = std::time::Instant::now();
                    match self.restore_member(&pod).await {
                        Ok((stored, carrier)) => {
                            status = restore::restored(
                                &status,
                                ordinal,
                                stored.size,
                                &stored.sha256,
                                now(),
                            );
                            self.save(&status).await;
                            let note = format!(
                                "restored {pod} from {} ({} bytes, sha256 {}, in {:.2}s, the bytes carried by {carrier})",
                                status.url,
                                stored.size,
                                stored.sha256,
                                began.elapsed().as_secs_f64()
                            );
                            self.announce(EventType::Normal, "MemberRestored", &note)
                                .await;
                            self.release(ordinal).await;
                            if status.phase == RestorePhase::Succeeded {
                                let note = format!("restore from {} succeeded", status.url);
                                self.announce(EventType::Normal, "RestoreSucceeded", &note)
                                    .await;
                            }
                        }
                        Err(failure) => {
                            status = restore::failed(&status, &failure, now());
                            self.save(&status).await;
                            let note = format!(
                                "restore of {pod}: {}",
                                status.message.as_deref().unwrap_or_default()
                            );
                            self.announce(EventType::Warning, "RestoreFailed", &note)
                                .await;
                            break;
                        }
                    }
                }
            }
        }
    }

    fn pod(&self, ordinal: i32) -> String {
        format!("{}-{ordinal}", self.workload)
    }

    /// Streams the backup into member `pod`, checks it and runs the restore action there; what
    /// was restored and who carried the bytes.
    async fn restore_member(&self, pod: &str) -> Result<(Stored, String), Failure> {
        let at = self.at.as_ref().ok_or_else(|| {
            Failure::Permanent(format!("`{}` is not a backup's URL", self.status.url))
        })?;
        let repository = &self.spec.repository;
        let creds = crate::backup::credentials(&self.client, &self.namespace, repository).await;
        let creds = creds.map_err(Failure::Transient)?;
        let repo = Repository::open(repository, &at.bucket, creds.as_ref())
            .map_err(|e| Failure::Permanent(e.to_string()))?;
        if let Some(container) = self.carrier(pod).await? {
            let carried = self.in_pod(pod, container, creds).await?;
            let who = format!("its own pod, {:.2}s there", carried.seconds);
            return Ok((carried.stored, who));
        }
        let manifest = repo.manifest(at).await.map_err(classify)?;
        let stored = self.receive(pod, &repo, at).await?;
        backup::verify(&manifest, stored.size, &stored.sha256)
            .map_err(|e| Failure::Permanent(format!("{}: {e}", self.status.url)))?;
        let action = self
            .action
            .as_ref()
            .map_err(|why| Failure::Permanent(why.clone()))?;
        let command = member::restore_command(action, &self.data);
        let run = exec(&self.client, &self.namespace, pod, command);
        match tokio::time::timeout(self.timeout, run).await {
            Ok(Ok(())) => Ok((stored, "the operator".into())),
            Ok(Err(why)) => Err(Failure::Permanent(format!("the restore action {why}"))),
            Err(_) => Err(Failure::Permanent(format!(
                "the restore action in {pod} timed out after {}s",
                self.timeout.as_secs()
            ))),
        }
    }

    /// The container of member `pod` that downloads the backup itself, if any
    /// (`berth_k8s::agent::transfer_container`).
    async fn carrier(&self, pod: &str) -> Result<Option<&'static str>, Failure> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let found = api.get(pod).await;
        let found = found.map_err(|e| Failure::Transient(format!("cannot read pod {pod}: {e}")))?;
        let repository = &self.spec.repository;
        Ok(agent::transfer_container(
            repository,
            &found,
            Transfer::Restore,
        ))
    }

    /// Has member `pod` download, check and restore the backup itself (`berth agent transfer`
    /// in `container`).
    async fn in_pod(
        &self,
        pod: &str,
        container: &str,
        credentials: Option<berth_backup::Credentials>,
    ) -> Result<crate::transfer::Carried, Failure> {
        let action = self
            .action
            .as_ref()
            .map_err(|why| Failure::Permanent(why.clone()))?;
        let request = Request::Restore {
            repository: self.spec.repository.clone(),
            credentials,
            url: self.status.url.clone(),
            command: action.clone(),
            input: self.spec.restore_input,
            scratch: self.data.clone().into(),
            timeout_seconds: self.timeout.as_secs(),
        };
        let client = &self.client;
        let carried = crate::transfer::in_pod(
            client,
            &self.namespace,
            pod,
            container,
            &request,
            self.timeout,
        )
        .await;
        carried.map_err(|e| Failure::of(e.to_string(), e.facts()))
    }

    /// Streams the data object into the member's scratch directory; what was streamed.
    async fn receive(
        &self,
        pod: &str,
        repo: &Repository,
        at: &Location,
    ) -> Result<Stored, Failure> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let params = AttachParams::default()
            .container(member::INIT_CONTAINER)
            .stdin(true)
            .stdout(false)
            .stderr(true)
            .max_stdin_buf_size(STDIN_BUFFER);
        let mut process = api
            .exec(pod, member::receive_command(&self.data), &params)
            .await
            .map_err(|e| Failure::Transient(format!("cannot exec in {pod}: {e}")))?;
        let mut stdin = process
            .stdin()
            .ok_or_else(|| Failure::Transient("the exec has no stdin".into()))?;
        let errors = process
            .stderr()
            .map(|s| tokio::spawn(crate::backup::tail(s)));
        let status = process.take_status();
        let stored = repo.download(&at.data_key(), &mut stdin).await;
        // Ends the member's stdin, so `cat` ends (dropping the writer would not: the pipe's
        // reading half keeps it open).
        let _ = stdin.shutdown().await;
        let stored = stored.map_err(classify)?;
        match crate::backup::ended(status, errors, None).await {
            Ok(()) => Ok(stored),
            Err(failed) => Err(Failure::Transient(format!(
                "receiving the data in {pod} {failed}"
            ))),
        }
    }

    /// Lets member `ordinal` start; a failure is logged (it still waits, and the next
    /// reconcile asks again).
    async fn release(&self, ordinal: i32) {
        let pod = self.pod(ordinal);
        let command = member::release_command(&self.status.url, &self.data);
        if let Err(why) = exec(&self.client, &self.namespace, &pod, command).await {
            tracing::warn!(pod = %pod, "could not release the member after its restore: {why}");
        }
    }

    /// Writes the status and remembers it.
    async fn save(&self, status: &RestoreStatus) {
        self.restores.remember(&self.uid, status);
        if let Err(e) = patch(&self.client, &self.app, status).await {
            tracing::warn!(app = %self.app.name_any(), error = %e, "could not write the restore's status");
        }
    }

    async fn announce(&self, type_: EventType, reason: &str, note: &str) {
        let object = self.app.object_ref(&());
        crate::reconcile::publish_on(&self.recorder, &object, type_, reason, note).await;
    }
}

/// A repository error as a restore failure (the bytes went to the init container's scratch
/// file, not yet to the restore action).
fn classify(error: berth_backup::Error) -> Failure {
    Failure::of(error.to_string(), error.facts())
}

/// Runs `command` in the member's init container; why it failed, if it did.
async fn exec(
    client: &Client,
    namespace: &str,
    pod: &str,
    command: Vec<String>,
) -> Result<(), String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = AttachParams::default()
        .container(member::INIT_CONTAINER)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut process = api
        .exec(pod, command, &params)
        .await
        .map_err(|e| format!("cannot exec in {pod}: {e}"))?;
    let (out, err) = crate::backup::tails(&mut process);
    let status = process.take_status();
    crate::backup::ended(status, err, out)
        .await
        .map_err(|failed| format!("in {pod} {failed}"))
}

/// Writes `status.restore` (a merge patch: the rest of the status is the reconcile's).
async fn patch(client: &Client, app: &StatefulApp, status: &RestoreStatus) -> Result<()> {
    let api: Api<StatefulApp> =
        Api::namespaced(client.clone(), &app.namespace().unwrap_or_default());
    let body = json!({ "status": { "restore": status } });
    api.patch_status(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&body),
    )
    .await
    .map_err(Error::kube("write the restore's status"))?;
    Ok(())
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}
