//! Running a backup or restore action next to its data, with its bytes moving straight between
//! the action and the repository: the local engine's `berth` process does this for a member on
//! the machine, and `berth agent transfer` does it inside a member's pod on Kubernetes (the
//! operator sends it a [`crate::transfer::Request`]). One implementation, so both engines move,
//! check and clean up the same way.
//!
//! - [`backup`]: the action's stdout goes into a multipart upload, hashed on the way; a failed
//!   action, a timeout or a failed upload deletes what was stored.
//! - [`restore`]: the manifest is read first (no manifest, no restore), then the data either
//!   goes into a scratch file, is checked and fed to the action (`RestoreInput::File`), or is
//!   streamed into the action's stdin and checked when the stream ends (`RestoreInput::Stdin`),
//!   before the caller lets any member start.
//! - [`restore_verified`]: a restore action fed from a scratch file another member's restore
//!   already checked.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use berth_core::backup::{self, Location, VerifyError};
use berth_core::restore::Facts;
use berth_core::spec::RestoreInput;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::batch::WRITE_SIZE;
use crate::{Error, Repository, Stored};

/// The most of an action's output kept for its failure message.
const TAIL: usize = 16 << 10;
pub use berth_core::backup::{BACKUP_FILE_ENV, RESTORE_FILE_ENV};

/// Why an action did not store or restore a backup.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action's command could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command is empty.
    #[error("the {0} action has no command")]
    Empty(&'static str),
    /// The action (with its transfer) ran out of time.
    #[error("the {what} action timed out after {seconds}s")]
    TimedOut {
        /// `backup` or `restore`.
        what: &'static str,
        /// Its limit.
        seconds: u64,
    },
    /// The action exited non-zero.
    #[error("the {what} action exited with {code:?}: {tail}")]
    Exited {
        /// `backup` or `restore`.
        what: &'static str,
        /// Its exit code (none when killed by a signal).
        code: Option<i32>,
        /// The end of its stderr, or of its stdout when stderr is empty.
        tail: String,
    },
    /// The repository failed (unreachable, refused, missing object) or the bytes could not be
    /// read or written.
    #[error(transparent)]
    Store(#[from] Error),
    /// The data does not match its manifest.
    #[error("{url}: {source}")]
    Corrupt {
        /// The backup.
        url: String,
        /// How it differs.
        source: VerifyError,
    },
    /// A streamed restore's transfer broke after its action had begun to read the data (so
    /// `berth_core::restore::Failure::of` never runs it again).
    #[error("{0} (after the restore action had started)")]
    Started(Box<ActionError>),
    /// A `File` backup action exited 0 without writing its file.
    #[error("the backup action exited 0 but wrote no file at {} ({BACKUP_FILE_ENV})", path.display())]
    NoBackupFile {
        /// The file it was to write.
        path: PathBuf,
    },
    /// The scratch file could not be written or read.
    #[error("{}: {source}", path.display())]
    Scratch {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl ActionError {
    /// What this failure tells the core's retry rule: an unreachable store, a broken stream or
    /// a full scratch disk may pass, a missing or corrupt backup or a failing action cannot;
    /// a stream that broke after the action started had reached the member.
    pub fn facts(&self) -> Facts {
        match self {
            Self::Store(e) => e.facts(),
            Self::Scratch { .. } => Facts {
                may_pass: true,
                reached_member: false,
            },
            Self::Started(cause) => Facts {
                reached_member: true,
                ..cause.facts()
            },
            _ => Facts::default(),
        }
    }

    /// Whether trying again cannot help or could harm (`berth_core::restore::Facts`).
    pub fn is_permanent(&self) -> bool {
        !self.facts().allow_retry()
    }

    /// This failure of a streamed restore, which had started its action: a failure of the
    /// stream (the store, the scratch file) is wrapped in [`Self::Started`]; the action's own
    /// failures say so themselves.
    fn after_start(self) -> Self {
        match self {
            Self::Store(_) | Self::Scratch { .. } => Self::Started(Box::new(self)),
            other => other,
        }
    }
}

/// Where a backup action puts its backup (the part's `backupOutput`).
#[derive(Clone, Debug)]
pub enum Output {
    /// On its stdout, streamed to the store as it comes.
    Stdout,
    /// In this file, named to the action in [`BACKUP_FILE_ENV`], stored once the action exited
    /// 0; removed before the action starts and after the backup either way.
    File(PathBuf),
}

/// Runs the backup `command` (stdin closed, stdout and stderr piped) within `timeout` and
/// stores what it hands over as `output` says as `at`'s data; what was stored. On any failure
/// nothing is left stored.
///
/// # Errors
/// The action failing, timing out, not starting or writing no file, or the upload failing.
pub async fn backup(
    repo: &Repository,
    at: &Location,
    mut command: Command,
    output: &Output,
    timeout: Duration,
) -> Result<Stored, ActionError> {
    command.stdin(Stdio::null());
    let outcome = tokio::time::timeout(timeout, async {
        match output {
            Output::Stdout => store_stdout(repo, at, command).await,
            Output::File(file) => store_file(repo, at, command, file).await,
        }
    })
    .await
    .unwrap_or_else(|_| Err(timed_out("backup", timeout)));
    if let Output::File(file) = output {
        let _ = tokio::fs::remove_file(file).await;
    }
    if outcome.is_err() {
        let _ = repo.delete(at).await;
    }
    outcome
}

/// Streams the action's stdout to `at`'s data while it runs.
async fn store_stdout(
    repo: &Repository,
    at: &Location,
    mut command: Command,
) -> Result<Stored, ActionError> {
    let mut running = Running::spawn(&mut command, true)?;
    let mut stdout = running.child.stdout.take();
    if let Some(pipe) = stdout.as_ref() {
        // As for a restore's stdin: the action would stop every 64 KiB.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe, WRITE_SIZE);
    }
    let stored = match stdout.as_mut() {
        Some(out) => repo.upload(&at.data_key(), out).await,
        None => repo.upload(&at.data_key(), &mut tokio::io::empty()).await,
    };
    let stored = stored?;
    running.succeeded("backup").await?;
    Ok(stored)
}

/// Runs the action with `file` in [`BACKUP_FILE_ENV`], then stores the file it wrote. A file
/// left by an earlier run is removed first, so only this run's can be stored.
async fn store_file(
    repo: &Repository,
    at: &Location,
    mut command: Command,
    file: &Path,
) -> Result<Stored, ActionError> {
    let scratch = |source| ActionError::Scratch {
        path: file.to_path_buf(),
        source,
    };
    match tokio::fs::remove_file(file).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(scratch(e)),
        _ => {}
    }
    command.env(BACKUP_FILE_ENV, file);
    Running::spawn(&mut command, false)?
        .succeeded("backup")
        .await?;
    let mut data = match tokio::fs::File::open(file).await {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ActionError::NoBackupFile {
                path: file.to_path_buf(),
            });
        }
        Err(e) => return Err(scratch(e)),
    };
    Ok(repo.upload(&at.data_key(), &mut data).await?)
}

/// How a restore gets and keeps its data.
#[derive(Clone, Debug)]
pub struct RestoreRun {
    /// `File` or `Stdin` (the part's `restoreInput`).
    pub input: RestoreInput,
    /// The scratch file: always written for `File`; for `Stdin` only when `keep` is set.
    pub scratch: PathBuf,
    /// Leave the checked data in `scratch` for [`restore_verified`] of the other members.
    pub keep: bool,
    /// The limit for the download and the action together.
    pub timeout: Duration,
}

/// Restores the backup at `at` with the restore `command` (which gets the member's env from
/// its caller): reads the manifest, then moves and checks the data as `run.input` says; what
/// was restored. A scratch file not kept is removed.
///
/// # Errors
/// No manifest or data, data that does not match the manifest, the action failing, timing out
/// or not starting, or the scratch file failing. After a `Stdin` restore fails, the caller must
/// treat whatever the action wrote as garbage.
pub async fn restore(
    repo: &Repository,
    at: &Location,
    command: Command,
    run: &RestoreRun,
) -> Result<Stored, ActionError> {
    let manifest = repo.manifest(at).await?;
    let check = |stored: Stored| match backup::verify(&manifest, stored.size, &stored.sha256) {
        Ok(()) => Ok(stored),
        Err(source) => Err(ActionError::Corrupt {
            url: at.url(),
            source,
        }),
    };
    let outcome = tokio::time::timeout(run.timeout, async {
        match run.input {
            RestoreInput::File => {
                let stored = check(download_to_file(repo, at, &run.scratch).await?)?;
                feed_file(command, &run.scratch).await?;
                Ok(stored)
            }
            RestoreInput::Stdin => match stream_into(repo, at, command, run).await {
                Ok(stored) => check(stored),
                Err(e) => Err(e.after_start()),
            },
        }
    })
    .await
    .unwrap_or_else(|_| Err(timed_out("restore", run.timeout)));
    if !run.keep || outcome.is_err() {
        let _ = tokio::fs::remove_file(&run.scratch).await;
    }
    outcome
}

/// Runs the restore `command` on `file`, data an earlier [`restore`] checked and kept, within
/// `timeout`.
///
/// # Errors
/// The action failing, timing out or not starting, or the file missing.
pub async fn restore_verified(
    command: Command,
    file: &Path,
    timeout: Duration,
) -> Result<(), ActionError> {
    tokio::time::timeout(timeout, feed_file(command, file))
        .await
        .unwrap_or_else(|_| Err(timed_out("restore", timeout)))
}

/// The runtime a transfer runs on: one thread. Its parts upload two at a time and a download
/// is read ahead of the action's pipe while that drains ([`Repository::download_into`]), so a
/// second thread only added hand-offs between threads: with two workers a 1 GiB restore was
/// 5-10 % slower, locally and in a pod (`docs/benchmarks.md`).
///
/// # Errors
/// The runtime cannot start.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn timed_out(what: &'static str, timeout: Duration) -> ActionError {
    ActionError::TimedOut {
        what,
        seconds: timeout.as_secs(),
    }
}

/// Downloads `at`'s data into `file` (through `file.part`, so a broken download never leaves
/// a complete-looking file).
async fn download_to_file(
    repo: &Repository,
    at: &Location,
    file: &Path,
) -> Result<Stored, ActionError> {
    let part = file.with_extension("part");
    let scratch = |source| ActionError::Scratch {
        path: part.clone(),
        source,
    };
    let mut out = tokio::fs::File::create(&part).await.map_err(scratch)?;
    let stored = repo.download_into(&at.data_key(), &mut [&mut out]).await;
    let stored = stored.inspect_err(|_| {
        let _ = std::fs::remove_file(&part);
    })?;
    tokio::fs::rename(&part, file).await.map_err(scratch)?;
    Ok(stored)
}

/// Runs `command` with `file` on stdin and its path in [`RESTORE_FILE_ENV`].
async fn feed_file(mut command: Command, file: &Path) -> Result<(), ActionError> {
    let data = std::fs::File::open(file).map_err(|source| ActionError::Scratch {
        path: file.to_path_buf(),
        source,
    })?;
    command.env(RESTORE_FILE_ENV, file).stdin(Stdio::from(data));
    Running::spawn(&mut command, false)?
        .succeeded("restore")
        .await
}

/// Streams `at`'s data into `command`'s stdin (and into the scratch file when it is kept);
/// what was streamed, once the action exited 0.
async fn stream_into(
    repo: &Repository,
    at: &Location,
    mut command: Command,
    run: &RestoreRun,
) -> Result<Stored, ActionError> {
    command.stdin(Stdio::piped());
    let mut running = Running::spawn(&mut command, false)?;
    let mut stdin = running.child.stdin.take().inspect(|pipe| {
        // A pipe holds 64 KiB by default: the action would wake up for every 64 KiB.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe, WRITE_SIZE);
    });
    let mut kept = match run.keep {
        true => Some(
            tokio::fs::File::create(&run.scratch)
                .await
                .map_err(|source| ActionError::Scratch {
                    path: run.scratch.clone(),
                    source,
                })?,
        ),
        false => None,
    };
    let mut outs: Vec<&mut (dyn AsyncWrite + Unpin + Send)> = Vec::new();
    if let Some(stdin) = stdin.as_mut() {
        outs.push(stdin);
    }
    if let Some(file) = kept.as_mut() {
        outs.push(file);
    }
    let stored = repo.download_into(&at.data_key(), &mut outs).await;
    drop(outs);
    // Ends the action's input, so it sees the end of the data.
    drop(stdin);
    match (stored, running.succeeded("restore").await) {
        (Ok(stored), Ok(())) => Ok(stored),
        // An action that stopped reading breaks the pipe: its own failure says more.
        (_, Err(exited)) => Err(exited),
        (Err(e), Ok(())) => Err(e.into()),
    }
}

/// A started action with its output collected in the background (bounded tails).
struct Running {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Running {
    /// Starts `command` with stdout and stderr piped. Stderr is collected at once; stdout too,
    /// unless `take_stdout` leaves it for the caller (then it is collected only after).
    fn spawn(command: &mut Command, take_stdout: bool) -> Result<Self, ActionError> {
        let program = command.as_std().get_program().to_string_lossy().to_string();
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ActionError::Spawn { program, source })?;
        let stderr = child.stderr.take().map(|s| tokio::spawn(tail(s)));
        let stdout = match take_stdout {
            true => None,
            false => child.stdout.take().map(|s| tokio::spawn(tail(s))),
        };
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits for the action: fine when it exited 0, else its code and output tail.
    async fn succeeded(mut self, what: &'static str) -> Result<(), ActionError> {
        if let Some(out) = self.child.stdout.take() {
            self.stdout = Some(tokio::spawn(tail(out)));
        }
        let status = self.child.wait().await;
        if status.as_ref().is_ok_and(ExitStatus::success) {
            return Ok(());
        }
        let collect = |task: Option<JoinHandle<Vec<u8>>>| async move {
            match task {
                Some(task) => task.await.unwrap_or_default(),
                None => Vec::new(),
            }
        };
        let (stderr, stdout) = (collect(self.stderr).await, collect(self.stdout).await);
        Err(ActionError::Exited {
            what,
            code: status.ok().and_then(|s| s.code()),
            tail: berth_core::exec::output_tail(&stderr, &stdout),
        })
    }
}

/// The last [`TAIL`] bytes (16 KiB) `reader` gives: an action's output kept for its failure
/// message.
pub async fn tail(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = reader.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > TAIL {
            kept.drain(..kept.len() - TAIL);
        }
    }
    kept
}

#[cfg(test)]
mod tests;
