//! Why a command failed: [`CliError`], printed to stderr before `berth` exits with code 1.
//! Each variant wraps the error of the library that failed; its message is what the user reads.

use std::path::PathBuf;

use berth_core::diag::{Diagnostic, Diagnostics};
use berth_k8s::render::RenderError;
use berth_local::error::{ControlError, SupervisorError};
use berth_local::keeper::KeeperError;

use crate::outdir::OutDirError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The app or its values have problems (each with its file, line and field path).
    #[error("{}", explain(.0))]
    Invalid(#[source] Diagnostics),
    /// A file named on the command line cannot be read.
    #[error("{0}")]
    Source(Diagnostic),
    /// The app does not render.
    #[error("render failed: {0}")]
    Render(#[source] RenderError),
    /// The rendered objects cannot be written as YAML.
    #[error("render failed: {0}")]
    Yaml(#[source] serde_yaml_ng::Error),
    /// `render -o DIR` failed.
    #[error(transparent)]
    OutDir(#[from] OutDirError),
    /// The CRD cannot be written as YAML.
    #[error("failed to write the CRD: {0}")]
    Crd(#[source] serde_yaml_ng::Error),
    /// The local engine failed (`up`, `apply`, `plan`, `scale`, `status`, `logs`, `down`).
    #[error(transparent)]
    Local(#[from] ControlError),
    /// A local backup did not run or failed.
    #[error(transparent)]
    Backup(#[from] berth_local::error::BackupError),
    /// The local supervisor gave up.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// The local keeper gave up.
    #[error(transparent)]
    Keeper(#[from] KeeperError),
    /// The berth home cannot be created or made absolute.
    #[error("{}: {source}", path.display())]
    Home {
        /// The home as given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// berth cannot find its own executable (to start the local supervisor).
    #[error("cannot find berth itself: {0}")]
    Exe(#[source] std::io::Error),
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The operator could not start or had to stop.
    #[error("operator: {0}")]
    Operator(#[source] berth_operator::Error),
    /// The role agent could not run.
    #[error("agent: {0}")]
    Agent(#[source] berth_operator::agent::AgentError),
    /// `berth agent ready`: the agent has a label change it could not write.
    #[error("the role agent is not ready: a role change could not be written")]
    NotReady,
    /// `berth agent transfer`: no request could be read.
    #[error("{0}")]
    Transfer(String),
    /// The cluster preview (`plan --kubeconfig`) failed: the API server's own message.
    #[error("{}", .0.user_message())]
    Cluster(#[source] berth_operator::Error),
    /// Output cannot be written as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Every problem, then how many.
fn explain(problems: &Diagnostics) -> String {
    let count = problems.0.len();
    format!(
        "{problems}\n{count} problem{} found",
        if count == 1 { "" } else { "s" }
    )
}
