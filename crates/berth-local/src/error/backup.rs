//! Errors of `berth backup` and of restoring a new app from a backup.

use std::path::PathBuf;

use berth_core::backup::{ChoiceError, UrlError, VerifyError};

use super::{HomeError, LoadError, SecretError};

/// Why a backup did not run or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The app cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The home cannot be read or written.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// No part (or not the named one) declares `state.backup`.
    #[error("{app}: {what} declares no state.backup")]
    NoBackup {
        /// The app.
        app: String,
        /// `no part` or `part NAME`.
        what: String,
    },
    /// The app is not running (no member state to choose from).
    #[error("{app} is not running here (start it with `berth up`)")]
    NotRunning {
        /// The app.
        app: String,
    },
    /// Another backup of the app is running.
    #[error("a backup of {app} is already running")]
    Running {
        /// The app.
        app: String,
    },
    /// No member can run the backup action.
    #[error("{app}/{part}: {source}")]
    Choice {
        /// The app.
        app: String,
        /// The part.
        part: String,
        /// Why.
        source: ChoiceError,
    },
    /// The repository's credentials Secret has no local source or lacks a key.
    #[error("backup credentials: {0}")]
    Credentials(#[from] SecretError),
    /// The backup ran and failed (recorded as `Failed`).
    #[error("backup {id} of {app}/{part} failed: {reason}")]
    Failed {
        /// The app.
        app: String,
        /// The part.
        part: String,
        /// The backup's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The tokio runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Why a new app could not be restored from a backup; no member was started.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The URL is not a backup's location.
    #[error("restoreFrom: {0}")]
    Url(#[from] UrlError),
    /// No part can restore the backup.
    #[error("restoreFrom {url}: {source}")]
    NoPart {
        /// The URL.
        url: String,
        /// Why no part fits.
        source: berth_core::restore::PartError,
    },
    /// The app already has data: restoring would overwrite it.
    #[error(
        "restoreFrom {url}: {member} already has data in {dir}; a restore only creates new apps (run `berth down --purge` first to replace it)"
    )]
    HasData {
        /// The URL.
        url: String,
        /// The member.
        member: String,
        /// Its directory.
        dir: PathBuf,
    },
    /// The repository's credentials.
    #[error("restore credentials: {0}")]
    Credentials(#[from] SecretError),
    /// Talking to the repository failed (missing backup, unreachable, refused).
    #[error("restoreFrom {url}: {source}")]
    Repository {
        /// The URL.
        url: String,
        /// Why.
        source: berth_backup::Error,
    },
    /// The downloaded data does not match its manifest.
    #[error("restoreFrom {url}: the backup is corrupt: {source}; no member was started")]
    Corrupt {
        /// The URL.
        url: String,
        /// What differs.
        source: VerifyError,
    },
    /// A member's restore action failed.
    #[error(
        "restoreFrom {url}: the restore action failed in {member}: {reason}; no member was started"
    )]
    Member {
        /// The URL.
        url: String,
        /// The member.
        member: String,
        /// Why.
        reason: String,
    },
    /// A local file (the downloaded data, a member's directory).
    #[error("restoreFrom {url}: {path}: {source}")]
    File {
        /// The URL.
        url: String,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tokio runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}
