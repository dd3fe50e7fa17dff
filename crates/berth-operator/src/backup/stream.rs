//! The bytes of a backup on Kubernetes: the rendered backup action runs in the member's pod
//! through `pods/exec`, and its stdout, as the API server relays it over the exec stream, goes
//! straight into the repository's multipart upload (`berth_backup::Repository::upload`): the
//! operator holds at most the upload's in-flight parts, never the whole backup. Stderr is kept
//! as a bounded tail for the failure message.
//!
//! # Guarantees
//! A backup that fails (the action exits non-zero, times out, the exec or the upload breaks)
//! leaves nothing in the repository: the upload is aborted or the stored data deleted.

use std::time::Duration;

pub(crate) use berth_backup::action::tail;
use berth_backup::{Repository, Stored};
use berth_core::backup::Location;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use kube::{Api, Client, ResourceExt as _};
use tokio::task::JoinHandle;

/// How much of the action's stdout is buffered between the API server's stream and the upload
/// (kube's default, 1 KiB, makes a wake-up per KiB).
const STDOUT_BUFFER: usize = 1 << 20;

/// Parts uploading while the next one fills. The exec stream (about 100 MiB/s at best, see
/// docs/benchmarks.md) fills a part slower than one uploads, so a second in flight would only
/// add [`berth_backup::PART_SIZE`] to the operator's memory.
const PARTS_IN_FLIGHT: usize = 1;

/// Runs `command` in the pod's first container with its stdout streamed to `at`'s data object,
/// within `timeout`; what was stored, or why it failed (then nothing is left stored).
pub(super) async fn stream(
    client: &Client,
    pod: &Pod,
    command: Vec<String>,
    timeout: Duration,
    repo: &Repository,
    at: &Location,
) -> Result<Stored, String> {
    let outcome = tokio::time::timeout(timeout, exec_into(client, pod, command, repo, at)).await;
    let failure = match outcome {
        Ok(Ok(stored)) => return Ok(stored),
        Ok(Err(why)) => why,
        Err(_) => format!("timed out after {}s", timeout.as_secs()),
    };
    let _ = repo.delete(at).await;
    Err(failure)
}

async fn exec_into(
    client: &Client,
    pod: &Pod,
    command: Vec<String>,
    repo: &Repository,
    at: &Location,
) -> Result<Stored, String> {
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .ok_or("the pod has no container")?;
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let params = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true)
        .max_stdout_buf_size(STDOUT_BUFFER);
    let mut process = api
        .exec(&name, command, &params)
        .await
        .map_err(|e| format!("cannot exec in {name}: {e}"))?;
    let mut stdout = process.stdout().ok_or("the exec has no stdout")?;
    let errors = process.stderr().map(|s| tokio::spawn(tail(s)));
    let status = process.take_status();
    // An upload that fails returns at once: the action, no longer read, is not waited for.
    let stored = repo
        .upload_with(&at.data_key(), &mut stdout, PARTS_IN_FLIGHT)
        .await
        .map_err(|e| e.to_string())?;
    match ended(status, errors, None).await {
        Ok(()) => Ok(stored),
        Err(failed) => Err(format!("the backup action {failed}")),
    }
}

/// An output being collected in the background as a bounded tail.
pub(crate) type Collecting = Option<JoinHandle<Vec<u8>>>;

/// An exec's stdout and stderr, each collected in the background as a bounded tail.
pub(crate) fn tails(process: &mut kube::api::AttachedProcess) -> (Collecting, Collecting) {
    let out = process.stdout().map(|s| tokio::spawn(tail(s)));
    let err = process.stderr().map(|s| tokio::spawn(tail(s)));
    (out, err)
}

/// How an exec that did not exit 0 ended: its exit code and the end of its output.
#[derive(Debug)]
pub(crate) struct Failed {
    code: Option<i32>,
    tail: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exited with {:?}: {}", self.code, self.tail)
    }
}

/// Waits for an exec's end (`status`, from `take_status`): fine when it exited 0, else its exit
/// code and the end of its stderr (`errors`), or of its stdout (`output`) when stderr is empty.
pub(crate) async fn ended(
    status: Option<impl std::future::Future<Output = Option<Status>>>,
    errors: Option<JoinHandle<Vec<u8>>>,
    output: Option<JoinHandle<Vec<u8>>>,
) -> Result<(), Failed> {
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    if status.as_ref().and_then(|s| s.status.as_deref()) == Some("Success") {
        return Ok(());
    }
    let collect = |task: Option<JoinHandle<Vec<u8>>>| async move {
        match task {
            Some(task) => task.await.unwrap_or_default(),
            None => Vec::new(),
        }
    };
    let (stderr, stdout) = (collect(errors).await, collect(output).await);
    Err(Failed {
        code: status.as_ref().and_then(crate::prober::exit_code),
        tail: berth_core::exec::output_tail(&stderr, &stdout),
    })
}
