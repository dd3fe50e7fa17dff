//! Having a member's pod move a backup's bytes itself: the operator runs `berth agent transfer`
//! (the agent's binary, `berth_k8s::agent::BINARY`) in the container
//! `berth_k8s::agent::transfer_container` names, sends it one JSON request on the exec's stdin
//! (the repository, its access key, the backup's URL, the rendered action) and reads one JSON
//! outcome from its stdout. The data goes straight between the pod and the store
//! (`berth_backup::action`), not through the API server; only a few hundred bytes cross the exec
//! stream.

use std::time::Duration;

use berth_backup::Stored;
use berth_backup::transfer::{Outcome, Request};
use berth_core::restore::Facts;
use k8s_openapi::api::core::v1::Pod;
use kube::api::AttachParams;
use kube::{Api, Client};
use tokio::io::AsyncWriteExt as _;

/// Time the exec may take beyond the action's own limit (the pod's process enforces that).
const GRACE: Duration = Duration::from_secs(60);

/// Why a transfer in a pod did not store or restore the backup.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransferError {
    /// The pod's process reported a failure.
    #[error("{message}")]
    Failed {
        /// Its reason.
        message: String,
        /// Whether trying again cannot help.
        permanent: bool,
    },
    /// The exec itself failed, or its answer was not an outcome.
    #[error("berth agent transfer in {pod}/{container}: {reason}")]
    Exec {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// What went wrong.
        reason: String,
        /// Whether the request had reached the pod: its process may still be at work, so the
        /// transfer must not be started again.
        sent: bool,
    },
}

impl TransferError {
    /// What this failure tells the core's retry rule (`berth_core::restore::Failure::of`): the
    /// pod's process already applied it to its own facts; an exec that broke may pass, but once
    /// the request was sent it had reached the member.
    pub(crate) fn facts(&self) -> Facts {
        match self {
            Self::Failed { permanent, .. } => Facts {
                may_pass: !permanent,
                reached_member: false,
            },
            Self::Exec { sent, .. } => Facts {
                may_pass: true,
                reached_member: *sent,
            },
        }
    }
}

/// Where an exchange with the pod's process broke.
struct Broke {
    reason: String,
    sent: bool,
}

/// What a pod's transfer stored or restored, and how long it took there.
pub(crate) struct Carried {
    /// The bytes.
    pub(crate) stored: Stored,
    /// Seconds in the pod (without the exec's own set-up).
    pub(crate) seconds: f64,
}

/// Runs `request` in `container` of `pod`, waiting at most `limit` plus a grace period.
pub(crate) async fn in_pod(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: &str,
    request: &Request,
    limit: Duration,
) -> Result<Carried, TransferError> {
    let broke = |b: Broke| TransferError::Exec {
        pod: pod.into(),
        container: container.into(),
        reason: b.reason,
        sent: b.sent,
    };
    let run = exchange(client, namespace, pod, container, request);
    let answer = tokio::time::timeout(limit + GRACE, run)
        .await
        .map_err(|_| {
            broke(Broke {
                reason: format!("no answer after {}s", (limit + GRACE).as_secs()),
                sent: true,
            })
        })?
        .map_err(broke)?;
    match answer {
        Outcome::Done {
            size,
            sha256,
            seconds,
        } => Ok(Carried {
            stored: Stored { size, sha256 },
            seconds,
        }),
        Outcome::Failed { message, permanent } => Err(TransferError::Failed { message, permanent }),
    }
}

/// Sends the request, reads the outcome.
async fn exchange(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: &str,
    request: &Request,
) -> Result<Outcome, Broke> {
    let unsent = |reason: String| Broke {
        reason,
        sent: false,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = AttachParams::default()
        .container(container)
        .stdin(true)
        .stdout(true)
        .stderr(true);
    let command = vec![
        berth_k8s::agent::BINARY.to_string(),
        "agent".into(),
        "transfer".into(),
    ];
    let mut process = api
        .exec(pod, command, &params)
        .await
        .map_err(|e| unsent(format!("cannot exec: {e}")))?;
    let (out, err) = crate::backup::tails(&mut process);
    let status = process.take_status();
    let mut stdin = process
        .stdin()
        .ok_or_else(|| unsent("the exec has no stdin".into()))?;
    let body = serde_json::to_vec(request).map_err(|e| unsent(e.to_string()))?;
    stdin
        .write_all(&body)
        .await
        .map_err(|e| unsent(format!("sending the request: {e}")))?;
    // Ends the request: the process reads stdin to its end.
    let _ = stdin.shutdown().await;
    let output = match out {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let answer = String::from_utf8_lossy(&output);
    let last = answer.lines().rev().find(|l| !l.trim().is_empty());
    let outcome = last.and_then(|line| serde_json::from_str::<Outcome>(line).ok());
    let ended = crate::backup::ended(status, err, None).await;
    let reason = match (outcome, ended) {
        (Some(outcome), _) => return Ok(outcome),
        (None, Err(failed)) => failed.to_string(),
        (None, Ok(())) => format!("its answer is not an outcome: {answer}"),
    };
    Err(Broke { reason, sent: true })
}
