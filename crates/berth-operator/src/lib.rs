//! # berth-operator
//!
//! `berth operator`: a kube-rs controller that reconciles every `StatefulApp` with the same
//! renderer as `berth render`, writes its status, and prunes what left the spec.
//!
//! ## Layout
//! - [`run`]: wiring: client, leader election, one controller per watched namespace, telemetry.
//! - `watch`: reflector stores of the objects berth owns (workloads, Services, ConfigMaps, PDBs, pods).
//! - `reconcile`: validate → render → apply → prune → status, and cleanup on deletion.
//! - `claims`: checks before applying: whose each object is, and a server-side dry run.
//! - `apply`: server-side apply of rendered objects (field manager `berth`).
//! - `rollout`: members replaced or updated in place in the planner's order (StatefulSets use
//!   `OnDelete`), readiness gates, switchover actions.
//! - `partition`: canary partitions handed to the StatefulSet controller once berth's part is done.
//! - `membership`: scaling with memberJoin/memberLeave actions, one member at a time.
//! - `prober`: role probes run in members (`pods/exec`), their results as `berth.io/role` labels.
//! - `backup`: StatefulAppBackups: each run once in the member the core chooses, its output
//!   streamed through `pods/exec` to the S3 repository; schedules and retention on a timer.
//! - [`agent`]: `berth agent`, the role agent in members' pods: probes locally, labels on change.
//! - `leader`: leader election on a `coordination.k8s.io` Lease.
//! - `telemetry`: Prometheus metrics, health endpoints, logs.
//!
//! Every decision is made in `berth-core` / `berth-k8s` (pure); this crate performs them.

pub mod agent;
mod apply;
mod backup;
mod claims;
mod leader;
mod membership;
mod partition;
pub mod preview;
mod prober;
mod reconcile;
mod restore;
mod rollout;
mod run;
mod telemetry;
mod transfer;
mod watch;

pub use run::{Options, run};

/// Field manager (and event reporter) name of the operator.
pub const MANAGER: &str = "berth";
/// Finalizer that makes deletion run berth's ordered cleanup.
pub const FINALIZER: &str = "berth.io/cleanup";

/// Everything that can fail while reconciling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("failed to {action}: {source}")]
    Kube {
        /// What was attempted.
        action: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A rendered object could not be sent.
    #[error("failed to render: {0}")]
    Render(String),
    /// Startup failed.
    #[error("failed to start: {0}")]
    Startup(String),
    /// A kubeconfig file could not be used.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// berth may not apply an app's objects (see `claims`); nothing was applied.
    #[error("{reason}: {message}")]
    Refused {
        /// `Conflict` or `ApplyFailed`.
        reason: &'static str,
        /// What the user must know.
        message: String,
    },
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube { .. } => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Render(_) => "render",
            Error::Startup(_) | Error::Kubeconfig { .. } => "startup",
            Error::Refused {
                reason: "Conflict", ..
            } => "conflict",
            Error::Refused { .. } => "apply_failed",
        }
    }

    /// What a user should read of this error: for an answer of the API server, what was being
    /// done and the server's own message (not the whole response).
    pub fn user_message(&self) -> String {
        match self {
            Error::Kube {
                action,
                source: kube::Error::Api(status),
            } => format!("failed to {action}: {}", status.message),
            other => other.to_string(),
        }
    }

    /// Wraps a kube error with what was being done.
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }
}

/// Result with the operator's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
