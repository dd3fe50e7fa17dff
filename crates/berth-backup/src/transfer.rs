//! What the operator asks of `berth agent transfer` inside a member's pod, and its answer: one
//! JSON [`Request`] on the process's stdin (the repository, its access key, the backup and the
//! rendered action), one JSON [`Outcome`] on its stdout. The bytes then move between the pod and
//! the store ([`crate::action`]), never through the API server.
//!
//! The access key travels only on the exec stream's stdin: never in the pod's spec, its
//! environment, a file or a command line.

use std::path::PathBuf;
use std::time::Duration;

use berth_core::backup::{self, Location};
use berth_core::spec::{RepositorySpec, RestoreInput};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::action::{self, ActionError, Output, RestoreRun};
use crate::{Credentials, Repository, Stored};

/// One transfer the operator asks for.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Run the backup action and store its stdout at `url`.
    #[serde(rename_all = "camelCase")]
    Backup {
        /// The repository.
        repository: RepositorySpec,
        /// Its access key.
        credentials: Option<Credentials>,
        /// The backup's `s3://` URL.
        url: String,
        /// The rendered backup action.
        command: Vec<String>,
        /// The file the action writes its backup to (`backupOutput: File`); none: its stdout.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<PathBuf>,
        /// Its limit.
        timeout_seconds: u64,
    },
    /// Restore the backup at `url` with the restore action.
    #[serde(rename_all = "camelCase")]
    Restore {
        /// The repository.
        repository: RepositorySpec,
        /// Its access key.
        credentials: Option<Credentials>,
        /// The backup's `s3://` URL.
        url: String,
        /// The rendered restore action.
        command: Vec<String>,
        /// How the action gets the data.
        input: RestoreInput,
        /// The scratch file (`File` input).
        scratch: PathBuf,
        /// The limit for the download and the action.
        timeout_seconds: u64,
    },
}

/// How a transfer ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The bytes stored or restored.
    #[serde(rename_all = "camelCase")]
    Done {
        /// How many.
        size: u64,
        /// Their sha256.
        sha256: String,
        /// How long the transfer took in the pod (0 from an agent that did not say).
        #[serde(default)]
        seconds: f64,
    },
    /// Why it failed, and whether trying again cannot help.
    #[serde(rename_all = "camelCase")]
    Failed {
        /// The reason.
        message: String,
        /// A missing or corrupt backup, or a failing action.
        permanent: bool,
    },
}

impl Outcome {
    fn of(result: Result<Stored, ActionError>, took: Duration) -> Self {
        match result {
            Ok(stored) => Self::Done {
                size: stored.size,
                sha256: stored.sha256,
                seconds: took.as_secs_f64(),
            },
            Err(e) => Self::Failed {
                permanent: e.is_permanent(),
                message: e.to_string(),
            },
        }
    }
}

/// Performs `request` in this process (the member's pod).
pub async fn serve(request: Request) -> Outcome {
    let began = std::time::Instant::now();
    let result = perform(request).await;
    Outcome::of(result, began.elapsed())
}

async fn perform(request: Request) -> Result<Stored, ActionError> {
    match request {
        Request::Backup {
            repository,
            credentials,
            url,
            command,
            file,
            timeout_seconds,
        } => {
            let (repo, at) = open(&repository, credentials.as_ref(), &url)?;
            let command = command_of(&command, "backup")?;
            let output = file.map_or(Output::Stdout, Output::File);
            let timeout = Duration::from_secs(timeout_seconds);
            action::backup(&repo, &at, command, &output, timeout).await
        }
        Request::Restore {
            repository,
            credentials,
            url,
            command,
            input,
            scratch,
            timeout_seconds,
        } => {
            let (repo, at) = open(&repository, credentials.as_ref(), &url)?;
            let run = RestoreRun {
                input,
                scratch,
                keep: false,
                timeout: Duration::from_secs(timeout_seconds),
            };
            action::restore(&repo, &at, command_of(&command, "restore")?, &run).await
        }
    }
}

fn open(
    repository: &RepositorySpec,
    credentials: Option<&Credentials>,
    url: &str,
) -> Result<(Repository, Location), ActionError> {
    let at = backup::parse_url(url).map_err(|e| crate::Error::BadUrl {
        url: url.into(),
        reason: e.to_string(),
    })?;
    Ok((Repository::open(repository, &at.bucket, credentials)?, at))
}

/// `argv` as a command, run with this process's environment.
fn command_of(argv: &[String], what: &'static str) -> Result<Command, ActionError> {
    let (program, args) = argv.split_first().ok_or(ActionError::Empty(what))?;
    let mut command = Command::new(program);
    command.args(args);
    Ok(command)
}
