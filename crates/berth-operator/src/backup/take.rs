//! Taking one backup: the app and its part, the member the core chooses, the rendered backup
//! action, the repository's access key from its Secret; then the stream (`stream`), the
//! manifest, the status, an Event and the metric. Messages are the local engine's
//! (`berth backup`), so both engines tell a backup's story the same way.

use std::time::Duration;

use berth_backup::transfer::Request;
use berth_backup::{Credentials, Repository, Stored};
use berth_core::backup::{self, Candidate, Location, Manifest};
use berth_core::exec::ExecKind;
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::{
    BackupOutput, BackupPhase, BackupSpec, PartSpec, RepositorySpec, StatefulApp,
    StatefulAppBackup, StatefulAppBackupStatus,
};
use berth_k8s::agent::{self, Transfer};
use berth_k8s::roles;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt as _};

use super::{BackupContext, announce, now, rfc3339, stream, write_status};
use crate::Result;

/// Everything a backup needs before it starts.
struct Plan {
    /// The app as validated.
    app: ValidatedApp,
    /// The part's name.
    part: String,
    /// The part's backup spec.
    spec: BackupSpec,
    /// The member that runs the action.
    pod: Pod,
    /// The rendered action.
    command: Vec<String>,
    /// How long the action may run.
    timeout: Duration,
}

/// Runs `backup` to its end: `Running`, then `Succeeded` or `Failed`.
///
/// # Errors
/// A status that cannot be written.
pub(super) async fn take(ctx: &BackupContext, backup: &StatefulAppBackup) -> Result<()> {
    let namespace = backup.namespace().unwrap_or_default();
    let plan = match plan(ctx, backup, &namespace).await {
        Ok(plan) => plan,
        Err(reason) => return fail(ctx, backup, StatefulAppBackupStatus::default(), reason).await,
    };
    let started_at = now();
    let repository = &plan.spec.repository;
    let taken = taken_ids(ctx, &namespace, &backup.spec.app).await;
    let taken: Vec<&str> = taken.iter().map(String::as_str).collect();
    let at = Location {
        bucket: repository.bucket.clone(),
        dir: format!(
            "{}/{}",
            backup::part_prefix(repository, &plan.app.name(), &plan.part),
            backup::unique_id(started_at, &taken)
        ),
    };
    let member = plan.pod.name_any();
    let status = StatefulAppBackupStatus {
        phase: Some(BackupPhase::Running),
        start_time: Some(rfc3339(started_at)),
        url: Some(at.url()),
        key: Some(at.data_key()),
        member: Some(member.clone()),
        revision: Some(revision(&plan.pod)),
        ..Default::default()
    };
    write_status(ctx, backup, &status).await?;
    let carrier = match agent::transfer_container(repository, &plan.pod, Transfer::Backup) {
        Some(_) => "its own pod",
        None => "the operator",
    };
    let note = format!(
        "backup {} of {}: running in {member}, the bytes carried by {carrier}",
        at.id(),
        plan.part
    );
    announce(ctx, backup, EventType::Normal, "BackupStarted", &note).await;
    let began = std::time::Instant::now();
    match store(ctx, &plan, &at, &status, &namespace).await {
        Ok(moved) => {
            let took = began.elapsed();
            succeed(ctx, backup, status, &moved, (at.id(), took)).await
        }
        Err(reason) => fail(ctx, backup, status, reason).await,
    }
}

/// The ids of the app's other backups (from their status), so two started within one second
/// get different ids ([`backup::unique_id`]); none if they cannot be listed.
async fn taken_ids(ctx: &BackupContext, namespace: &str, app: &str) -> Vec<String> {
    let api: Api<StatefulAppBackup> = Api::namespaced(ctx.client.clone(), namespace);
    let Ok(list) = api.list(&Default::default()).await else {
        return Vec::new();
    };
    list.items
        .iter()
        .filter(|b| b.spec.app == app)
        .filter_map(|b| b.status.as_ref()?.url.as_deref())
        .filter_map(|url| backup::parse_url(url).ok())
        .map(|at| at.id().to_string())
        .collect()
}

/// The app, part, member and command of `backup`, or why it cannot run.
async fn plan(
    ctx: &BackupContext,
    backup: &StatefulAppBackup,
    namespace: &str,
) -> Result<Plan, String> {
    let name = &backup.spec.app;
    let api: Api<StatefulApp> = Api::namespaced(ctx.client.clone(), namespace);
    let found = api.get_opt(name).await;
    let found = found.map_err(|e| format!("cannot read StatefulApp {name}: {e}"))?;
    let resource = found.ok_or_else(|| format!("StatefulApp {name} not found in {namespace}"))?;
    let app = crate::reconcile::validate(&resource)
        .map_err(|d| format!("StatefulApp {name} is not valid: {d}"))?;
    let (index, part, spec) = backup_part(&app, backup.spec.part.as_deref())?;
    let spec = spec.clone();
    let pods = crate::watch::select(
        &ctx.pods,
        namespace,
        &names::selector_labels(name, &part.name),
    );
    let pod = chosen_pod(&app, part, &spec, pods)?;
    let command = roles::exec_command(&app, index, ExecKind::Backup)
        .map_err(|e| e.to_string())?
        .ok_or("the member has no backup action")?;
    let timeout = Duration::from_secs(u64::try_from(spec.action.timeout_seconds).unwrap_or(30));
    Ok(Plan {
        part: part.name.clone(),
        app,
        spec,
        pod,
        command,
        timeout,
    })
}

/// The part to back up: the named one, else the first declaring `state.backup`, with its index
/// and its backup spec.
fn backup_part<'a>(
    app: &'a ValidatedApp,
    part: Option<&str>,
) -> Result<(usize, &'a PartSpec, &'a BackupSpec), String> {
    let mut declared = app
        .parts()
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p, p.state.backup.as_ref()?)));
    let found = match part {
        Some(name) => declared.find(|(_, p, _)| p.name == name),
        None => declared.next(),
    };
    let what = part.map_or("no part".into(), |p| format!("part {p}"));
    found.ok_or_else(|| format!("{}: {what} declares no state.backup", app.name()))
}

/// The member the core chooses among the part's pods (ready ones, by their role label).
fn chosen_pod(
    app: &ValidatedApp,
    part: &PartSpec,
    spec: &BackupSpec,
    pods: Vec<Pod>,
) -> Result<Pod, String> {
    let workload = names::workload_name(&app.name(), &part.name);
    let ordinal = |pod: &Pod| -> Option<i32> {
        let name = pod.metadata.name.as_deref()?;
        name.strip_prefix(&format!("{workload}-"))?.parse().ok()
    };
    let writable = |pod: &Pod| {
        let role = pod.labels().get(names::LABEL_ROLE)?;
        part.state.topology.is_writable(role)
    };
    let candidates: Vec<Candidate> = pods
        .iter()
        .filter_map(|pod| {
            Some(Candidate {
                ordinal: ordinal(pod)?,
                ready: pod.metadata.deletion_timestamp.is_none()
                    && berth_k8s::member::is_ready(pod),
                writable: writable(pod),
            })
        })
        .collect();
    let chosen = backup::choose_member(spec.from, &candidates)
        .map_err(|e| format!("{}/{}: {e}", app.name(), part.name))?;
    pods.into_iter()
        .find(|pod| ordinal(pod) == Some(chosen))
        .ok_or_else(|| format!("member {chosen} has no pod"))
}

/// The member's revision: its pod's `controller-revision-hash`.
fn revision(pod: &Pod) -> String {
    let label = pod.labels().get("controller-revision-hash");
    label.cloned().unwrap_or_default()
}

/// What a backup stored, and how long its member's pod took for it (when the pod carried the
/// bytes).
struct Moved {
    stored: Stored,
    in_pod: Option<f64>,
}

/// Streams the action's output to the repository and writes the manifest; why it failed
/// otherwise (then nothing of it is left in the repository).
async fn store(
    ctx: &BackupContext,
    plan: &Plan,
    at: &Location,
    status: &StatefulAppBackupStatus,
    namespace: &str,
) -> Result<Moved, String> {
    let repository = &plan.spec.repository;
    let creds = credentials(&ctx.client, namespace, repository).await?;
    let repo = Repository::open(repository, &repository.bucket, creds.as_ref())
        .map_err(|e| e.to_string())?;
    let moved = carry(ctx, plan, at, &repo, creds).await?;
    let stored = &moved.stored;
    let manifest = Manifest {
        format_version: backup::FORMAT_VERSION,
        id: at.id().to_string(),
        app: plan.app.name(),
        part: plan.part.clone(),
        member: plan.pod.name_any(),
        revision: status.revision.clone().unwrap_or_default(),
        engine: "kubernetes".into(),
        started_at: status
            .start_time
            .as_deref()
            .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map_or_else(now, |t| t.as_second()),
        finished_at: now(),
        size: stored.size,
        sha256: stored.sha256.clone(),
    };
    if let Err(e) = repo.put_manifest(at, &manifest).await {
        let _ = repo.delete(at).await;
        return Err(e.to_string());
    }
    Ok(moved)
}

/// Moves the action's output into the repository: in the member's pod when it has the agent
/// and the repository's carrier is `Member`, else through the operator's exec stream. Nothing
/// is left stored when it fails.
async fn carry(
    ctx: &BackupContext,
    plan: &Plan,
    at: &Location,
    repo: &Repository,
    credentials: Option<Credentials>,
) -> Result<Moved, String> {
    let repository = &plan.spec.repository;
    let command = plan.command.clone();
    let to_file = plan.spec.backup_output == BackupOutput::File;
    let Some(container) = agent::transfer_container(repository, &plan.pod, Transfer::Backup) else {
        let command = if to_file {
            berth_k8s::backup::file_command(&command)
        } else {
            command
        };
        let stored = stream::stream(&ctx.client, &plan.pod, command, plan.timeout, repo, at).await;
        return stored.map(|stored| Moved {
            stored,
            in_pod: None,
        });
    };
    let request = Request::Backup {
        repository: repository.clone(),
        credentials,
        url: at.url(),
        command,
        file: to_file.then(|| berth_k8s::backup::FILE.into()),
        timeout_seconds: plan.timeout.as_secs(),
    };
    let namespace = plan.pod.namespace().unwrap_or_default();
    let pod = plan.pod.name_any();
    let carried = crate::transfer::in_pod(
        &ctx.client,
        &namespace,
        &pod,
        container,
        &request,
        plan.timeout,
    )
    .await;
    match carried {
        Ok(carried) => {
            let seconds = carried.seconds;
            tracing::info!(pod = %pod, seconds, "backup: the member's pod stored the bytes");
            Ok(Moved {
                stored: carried.stored,
                in_pod: Some(seconds),
            })
        }
        Err(e) => {
            let _ = repo.delete(at).await;
            Err(e.to_string())
        }
    }
}

/// The access key the repository names, from its Secret in the app's namespace. Errors name
/// the Secret and key, never a value.
pub(crate) async fn credentials(
    client: &kube::Client,
    namespace: &str,
    repository: &RepositorySpec,
) -> Result<Option<Credentials>, String> {
    let Some(refs) = &repository.credentials else {
        return Ok(None);
    };
    let name = &refs.secret_name;
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get(name).await.map_err(|e| match e {
        kube::Error::Api(status) => {
            format!("backup credentials: Secret {name}: {}", status.message)
        }
        other => format!("backup credentials: Secret {name}: {other}"),
    })?;
    let data = secret.data.unwrap_or_default();
    let key = |k: &String| {
        let value = data
            .get(k)
            .ok_or_else(|| format!("backup credentials: Secret {name} has no key `{k}`"))?;
        Ok::<_, String>(String::from_utf8_lossy(&value.0).trim().to_string())
    };
    Ok(Some(Credentials {
        access_key_id: key(&refs.access_key_id_key)?,
        secret_access_key: key(&refs.secret_access_key_key)?,
    }))
}

/// Records success: the status, an Event and the metric.
async fn succeed(
    ctx: &BackupContext,
    backup: &StatefulAppBackup,
    mut status: StatefulAppBackupStatus,
    moved: &Moved,
    (id, took): (&str, Duration),
) -> Result<()> {
    let stored = &moved.stored;
    status.phase = Some(BackupPhase::Succeeded);
    status.finish_time = Some(rfc3339(now()));
    status.size = Some(stored.size);
    status.sha256 = Some(stored.sha256.clone());
    status.error = None;
    write_status(ctx, backup, &status).await?;
    ctx.metrics.backup_finished("succeeded");
    let in_pod = moved
        .in_pod
        .map(|s| format!(", {s:.2}s of it in the member's pod"))
        .unwrap_or_default();
    let note = format!(
        "backup {id}: succeeded, {} bytes, sha256 {}, in {:.2}s{in_pod}",
        stored.size,
        stored.sha256,
        took.as_secs_f64()
    );
    tracing::info!(backup = %backup.name_any(), "{note}");
    announce(ctx, backup, EventType::Normal, "BackupSucceeded", &note).await;
    Ok(())
}

/// Records failure: the status with the reason, a Warning Event and the metric.
///
/// # Errors
/// A status that cannot be written.
pub(super) async fn fail(
    ctx: &BackupContext,
    backup: &StatefulAppBackup,
    mut status: StatefulAppBackupStatus,
    reason: String,
) -> Result<()> {
    let reason = brief(&reason);
    status.phase = Some(BackupPhase::Failed);
    status.finish_time = Some(rfc3339(now()));
    status.error = Some(reason.clone());
    write_status(ctx, backup, &status).await?;
    ctx.metrics.backup_finished("failed");
    let id = status
        .url
        .as_deref()
        .and_then(|u| backup::parse_url(u).ok())
        .map_or_else(|| backup.name_any(), |at| at.id().to_string());
    let note = format!("backup {id}: failed: {reason}");
    tracing::warn!(backup = %backup.name_any(), "{note}");
    announce(ctx, backup, EventType::Warning, "BackupFailed", &note).await;
    Ok(())
}

/// A failure reason fit for a status: an S3 error document the client quotes whole (kilobytes
/// of XML with the canonical request) becomes its code and message.
fn brief(reason: &str) -> String {
    let Some((before, xml)) = reason.split_once("<?xml") else {
        return reason.to_string();
    };
    let element = |name: &str| {
        let (_, rest) = xml.split_once(&format!("<{name}>"))?;
        Some(rest.split_once(&format!("</{name}>"))?.0.to_string())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{} {code}: {message}", before.trim_end()),
        _ => before.trim_end().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::brief;

    #[test]
    fn an_s3_error_document_is_cut_to_its_code_and_message() {
        let reason = "starting the upload of s3://b/k/data: ... 403 Forbidden: <?xml version=\"1.0\"?>\n\
                      <Error><Code>SignatureDoesNotMatch</Code><Message>The signature differs.</Message>\
                      <StringToSign>AWS4</StringToSign></Error>";
        assert_eq!(
            brief(reason),
            "starting the upload of s3://b/k/data: ... 403 Forbidden: SignatureDoesNotMatch: The signature differs."
        );
        assert_eq!(
            brief("exited with Some(1): boom"),
            "exited with Some(1): boom"
        );
    }
}
