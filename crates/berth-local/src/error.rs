//! Typed errors of the local engine's home: its files, its address slots and the machine-wide
//! slot registry. Each says what failed and where; [`HomeError`] converts into the plain message
//! the rest of the engine still passes around (`Result<_, String>`, being replaced module by
//! module).

use std::path::PathBuf;

use crate::slots;

/// What can go wrong with a berth home's files and address slots.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// A file or directory of the home could not be written, created or opened.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The machine-wide slot registry could not be opened or locked.
    #[error("address slot registry {}: {source}", path.display())]
    Registry {
        /// The registry's directory or lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The slot asked for is another app's of the same home.
    #[error(
        "address slot {slot} is used by app `{other}` in this home: choose another with \
         `--slot N` or leave out `--slot`"
    )]
    SlotInHome {
        /// The slot.
        slot: u8,
        /// The app that has it.
        other: String,
    },
    /// The app runs on another slot than the one asked for.
    #[error("{app} runs on slot {slot}; `berth down {app}` first")]
    SlotWhileRunning {
        /// The app.
        app: String,
        /// The slot it runs on.
        slot: u8,
    },
    /// The slot asked for is held by an app of another home on this machine.
    #[error("{}", slots::held_message(*slot, holder, *free))]
    SlotHeld {
        /// The slot.
        slot: u8,
        /// The app directory that holds it.
        holder: PathBuf,
        /// A free slot to suggest.
        free: Option<u8>,
    },
    /// Every slot is taken.
    #[error("no free address slot left")]
    NoFreeSlot,
    /// A record could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl HomeError {
    /// A failure on the home's file or directory `path`.
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::File { path, source }
    }
}

impl From<HomeError> for String {
    fn from(error: HomeError) -> Self {
        error.to_string()
    }
}
