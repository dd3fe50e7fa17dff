//! Typed errors of the local engine: its home (files, address slots, the machine-wide slot
//! registry), Secrets, members' plans, scaling's memberJoin/memberLeave, running as a member's
//! user, a member's start, addresses, the saved app, the supervisor, and what the CLI side
//! ([`crate::control`]) reports. Each says what failed and where (never a Secret's data).
//! Errors become text only where they are published (`state.json`'s `error`, a member's
//! `waiting`, its log) or printed.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitStatus;

use berth_core::diag::Diagnostics;
use berth_core::exec::ExecError;
use berth_core::lifecycle::ActionFailure;
use berth_core::template::TemplateError;

use crate::slots;

mod backup;
mod control;

pub use backup::{BackupError, RestoreError};
pub use control::{ControlError, Missing, Prerequisite, Unready};

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

/// What can go wrong with a Secret's local source or a member's Secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A `--secret` argument is not `NAME=PATH`.
    #[error("--secret {arg}: expected NAME=PATH (a directory or an env file)")]
    Argument {
        /// The argument.
        arg: String,
    },
    /// A `--secret` source does not exist or has no absolute form.
    #[error("--secret {name}: {} does not exist", path.display())]
    NoSource {
        /// The Secret.
        name: String,
        /// The path given.
        path: PathBuf,
    },
    /// A source could not be read.
    #[error("secret `{name}`: {}: {source}", path.display())]
    Read {
        /// The Secret.
        name: String,
        /// Its source.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Secret a member needs has no local source.
    #[error(
        "secret `{name}` has no local source: give it with `berth up --secret \
         {name}=DIR-or-ENV-FILE`"
    )]
    Unsourced {
        /// The Secret.
        name: String,
    },
    /// A Secret lacks the key an env variable takes.
    #[error("env {var}: secret `{name}` has no key `{key}`{}", if *sourced { String::new() } else { format!(" (secret `{name}` has no local source: give it with `berth up --secret {name}=DIR-or-ENV-FILE`)") })]
    NoKey {
        /// The variable.
        var: String,
        /// The Secret.
        name: String,
        /// The key.
        key: String,
        /// Whether the Secret has a source at all.
        sourced: bool,
    },
    /// A mounted Secret's file could not be written.
    #[error("{member}: {}: {source}", path.display())]
    Write {
        /// The member.
        member: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why a member cannot be planned: each names the member and what of its spec does not
/// render or cannot run locally.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The pod template has no container to run (or none named by `local.container`).
    #[error("{member}: no container to run")]
    NoContainer {
        /// The member.
        member: String,
    },
    /// A template (in the command, env, a probe or a hook) does not render.
    #[error("{member}: template: {source}")]
    Template {
        /// The member.
        member: String,
        /// Why it does not render.
        #[source]
        source: TemplateError,
    },
    /// A config file does not render.
    #[error("{member}: config file: {source}")]
    ConfigFile {
        /// The member.
        member: String,
        /// Why it does not render.
        #[source]
        source: TemplateError,
    },
    /// The role probe or an action does not render.
    #[error("{member}: {source}")]
    Exec {
        /// The member.
        member: String,
        /// The word that does not render, with its field path.
        #[source]
        source: ExecError,
    },
    /// The member has no command line: locally there is no image entrypoint.
    #[error(
        "{member}: no command: the image's entrypoint cannot run locally; give the container a \
         command or the part a `local.command`"
    )]
    NoCommand {
        /// The member.
        member: String,
    },
    /// An init container has no command line.
    #[error(
        "{member}: init container `{container}` has no command (the image's entrypoint cannot \
         run locally)"
    )]
    InitNoCommand {
        /// The member.
        member: String,
        /// The init container.
        container: String,
    },
    /// `lifecycle.stopSignal` names no signal.
    #[error(
        "{member}: lifecycle.stopSignal: unknown signal `{signal}` (use a name such as SIGINT)"
    )]
    StopSignal {
        /// The member.
        member: String,
        /// The name given.
        signal: String,
    },
}

/// Why a scale stopped: a memberJoin or memberLeave failed or cannot run. The members it was
/// about, and those after them, are left as they were.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The member chosen to run the action has none in its spec.
    #[error("{action} of {member} failed: {runner} has no {action} action")]
    NoAction {
        /// `memberJoin` or `memberLeave`.
        action: &'static str,
        /// The member that joins or leaves.
        member: String,
        /// The member chosen to run it.
        runner: String,
    },
    /// The action ran and failed: its exit code and the end of its output.
    #[error("{action} of {member} failed: {failure} (in {runner})")]
    Failed {
        /// `memberJoin` or `memberLeave`.
        action: &'static str,
        /// The member that joins or leaves.
        member: String,
        /// The member it ran in.
        runner: String,
        /// How it failed.
        #[source]
        failure: ActionFailure,
    },
    /// No member can run the next memberLeave yet (none ready, say).
    #[error("memberLeave in part {part}: waiting for {waiting_for}")]
    Waiting {
        /// The part.
        part: String,
        /// What the core's membership plan waits for.
        waiting_for: String,
    },
}

impl MembershipError {
    /// Why the action failed, without which action and member (for the events log, whose line
    /// names them already); the whole message for [`MembershipError::Waiting`].
    pub(crate) fn reason(&self) -> String {
        match self {
            Self::NoAction { action, runner, .. } => format!("{runner} has no {action} action"),
            Self::Failed {
                runner, failure, ..
            } => format!("{failure} (in {runner})"),
            Self::Waiting { .. } => self.to_string(),
        }
    }
}

/// Why a member's files cannot be given to the user it runs as (`securityContext.runAsUser`).
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    /// A file or directory of the member (or the home above it) could not be changed.
    #[error("{member}: {}: {source}", path.display())]
    File {
        /// The member.
        member: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory above the home is not searchable by the member's user.
    #[error(
        "{member}: runs as uid {uid}, which cannot reach its directory: {} is not searchable \
         by it; use a berth home (--home) below a directory it can reach, e.g. /var/tmp",
        dir.display()
    )]
    Unreachable {
        /// The member.
        member: String,
        /// The user it runs as.
        uid: u32,
        /// The directory it cannot search.
        dir: PathBuf,
    },
}

/// An address a member (or a service) must listen on is taken.
#[derive(Debug, thiserror::Error)]
#[error(
    "{ip}:{port} is not available ({source}): another process listens on it or on 0.0.0.0:{port}"
)]
pub struct PortError {
    /// The address.
    pub ip: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// Why it cannot be bound.
    #[source]
    pub source: std::io::Error,
}

/// Why a member's process could not start: its files, its Secrets, an init container, or the
/// program itself. The member task publishes it as why the member is waiting to restart.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A directory or config file of the member could not be written.
    #[error("{member}: {}: {source}", path.display())]
    File {
        /// The member.
        member: String,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A config file could not be written (the path is in the message).
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The member's files cannot be given to the user it runs as.
    #[error(transparent)]
    RunAs(#[from] RunAsError),
    /// The member's Secrets cannot be loaded or written.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// An init container's Secrets cannot be loaded or written.
    #[error("init container {init}: {source}")]
    InitSecret {
        /// The init container.
        init: String,
        /// The cause.
        #[source]
        source: SecretError,
    },
    /// An init container's process could not be started or waited for.
    #[error("init container {init} cannot start: {source}")]
    InitSpawn {
        /// The init container.
        init: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An init container exited unsuccessfully.
    #[error("init container {init} failed ({status})")]
    InitFailed {
        /// The init container.
        init: String,
        /// How it exited.
        status: ExitStatus,
    },
    /// The member's program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Why the app saved in a home cannot be loaded or its members planned.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The saved inputs cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// `inputs.json`.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The saved inputs are not what berth writes.
    #[error(transparent)]
    Decode(#[from] serde_json::Error),
    /// The saved app no longer validates.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
    /// The app's address slot cannot be taken or recorded.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A member cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Why the supervisor cannot run the app, or why an apply it was asked for failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The saved app cannot be loaded or planned.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The home's lock or state cannot be taken or written.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A member's address is taken.
    #[error("{member}: {source}")]
    Port {
        /// The member.
        member: String,
        /// The address and why.
        #[source]
        source: PortError,
    },
    /// A scale's memberJoin or memberLeave failed (with the action's exit code and output).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The supervisor could not set itself up (`what`: a signal handler, the runtime).
    #[error("the supervisor of {app} cannot start: {what}: {source}")]
    Setup {
        /// The app.
        app: String,
        /// What failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
