//! The keeper: the process `berth up` starts for an app, so that the app's members stay
//! supervised when the supervisor itself dies. It
//! - holds the app's keeper lock while the supervisor holds its own, so the app counts as
//!   supervised while either lives (and members, which inherit neither, never hold one);
//! - is the child subreaper of the members, so a member left by a dead supervisor is reaped
//!   here instead of staying a zombie;
//! - forwards SIGTERM, SIGINT and SIGHUP to the supervisor;
//! - starts the supervisor again when a signal or a panic ends it
//!   ([`crate::decide::after_supervisor`]); the new one adopts the members that still run
//!   (see [`crate::supervisor`]) and resumes an interrupted apply;
//! - stops the members itself when asked to stop while no supervisor runs.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};

use crate::decide::{self, KeeperStep, SupervisorExit};
use crate::error::HomeError;
use crate::home::Home;
use crate::os;

/// Why the keeper could not keep the app supervised.
#[derive(Debug, thiserror::Error)]
pub enum KeeperError {
    /// The app's lock could not be taken.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// The keeper could not set itself up (`what`: the subreaper flag, a signal handler, the
    /// runtime).
    #[error("the keeper of {app} cannot start: {what}: {source}")]
    Setup {
        /// The app.
        app: String,
        /// What failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The supervisor process could not be started.
    #[error("cannot start the supervisor ({program}): {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The supervisor gave up with an error it published in `state.json`.
    #[error("the supervisor exited with code {0} (see `berth status`)")]
    Supervisor(i32),
}

impl fmt::Display for SupervisorExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal(signal) => match Signal::try_from(*signal) {
                Ok(s) => write!(f, "killed by {}", s.as_str()),
                Err(_) => write!(f, "killed by signal {signal}"),
            },
        }
    }
}

/// Keeps the supervisor of `app` running (`supervisor`: its command line) until it stops as
/// asked; returns at once if another keeper or supervisor holds the app's lock.
///
/// # Errors
/// The keeper cannot set itself up or start the supervisor, or the supervisor gave up.
pub fn keep(home: &Path, app: &str, supervisor: &[String]) -> Result<(), KeeperError> {
    let home = Home::new(home);
    let Some(_lock) = home.try_lock_keeper(app)? else {
        return Ok(());
    };
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| KeeperError::Setup {
        app: app.to_string(),
        what: "the subreaper flag",
        source: e.into(),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| KeeperError::Setup {
            app: app.to_string(),
            what: "the runtime",
            source,
        })?;
    runtime.block_on(run(&home, app, supervisor))
}

/// The signals the keeper waits for: the supervisor's (to forward) and SIGCHLD.
struct Signals {
    forwarded: crate::supervisor::Signals,
    child: tokio::signal::unix::Signal,
}

/// What woke the keeper.
enum Wake {
    Stop,
    Reload,
    Child,
}

impl Signals {
    fn new(app: &str) -> Result<Self, KeeperError> {
        let setup = |source| KeeperError::Setup {
            app: app.to_string(),
            what: "a signal handler",
            source,
        };
        Ok(Self {
            forwarded: crate::supervisor::Signals::new().map_err(setup)?,
            child: signal(SignalKind::child()).map_err(setup)?,
        })
    }

    async fn next(&mut self) -> Wake {
        tokio::select! {
            stop = self.forwarded.next() => if stop { Wake::Stop } else { Wake::Reload },
            _ = self.child.recv() => Wake::Child,
        }
    }
}

async fn run(home: &Home, app: &str, supervisor: &[String]) -> Result<(), KeeperError> {
    let mut signals = Signals::new(app)?;
    let mut streak = 0;
    let mut stopping = false;
    loop {
        let started = Instant::now();
        let pid = spawn(supervisor)?;
        let exit = supervise_until_exit(pid, &mut signals, &mut stopping).await;
        if stopping && exit != SupervisorExit::Code(0) {
            stop_members(home, app);
        }
        streak = decide::crash_streak(streak, started.elapsed());
        match decide::after_supervisor(exit, stopping, streak) {
            KeeperStep::Exit(0) => return Ok(()),
            KeeperStep::Exit(code) => return Err(KeeperError::Supervisor(code)),
            KeeperStep::Restart(delay) => {
                eprintln!(
                    "[berth keeper] the supervisor of {app} (pid {pid}) ended ({exit}); starting \
                     it again in {}s: it adopts the members that still run",
                    delay.as_secs()
                );
                if stopped_meanwhile(&mut signals, delay).await {
                    stop_members(home, app);
                    return Ok(());
                }
            }
        }
    }
}

/// Forwards signals to supervisor `pid` until it ends; reaps orphaned members meanwhile.
async fn supervise_until_exit(
    pid: Pid,
    signals: &mut Signals,
    stopping: &mut bool,
) -> SupervisorExit {
    loop {
        match signals.next().await {
            Wake::Stop => {
                *stopping = true;
                let _ = kill(pid, Signal::SIGTERM);
            }
            Wake::Reload => {
                let _ = kill(pid, Signal::SIGHUP);
            }
            Wake::Child => {
                if let Some(exit) = reap(pid) {
                    return exit;
                }
            }
        }
    }
}

/// Waits out a restart delay; `true` when a stop signal arrived meanwhile. A reload asked for
/// meanwhile needs no forwarding: the next supervisor reads the saved inputs when it starts.
async fn stopped_meanwhile(signals: &mut Signals, delay: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return false,
            wake = signals.next() => match wake {
                Wake::Stop => return true,
                Wake::Reload => {}
                Wake::Child => { reap(Pid::from_raw(0)); }
            },
        }
    }
}

/// Starts the supervisor (stdin closed, output to the keeper's own: the app's supervisor log).
fn spawn(supervisor: &[String]) -> Result<Pid, KeeperError> {
    let (program, args) = supervisor.split_first().ok_or_else(|| KeeperError::Spawn {
        program: String::new(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| KeeperError::Spawn {
            program: program.clone(),
            source,
        })?;
    // Reaped by `reap`, never waited through `child`.
    Ok(Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)))
}

/// Reaps every child that has ended (the supervisor, members orphaned by an earlier one);
/// the supervisor's exit if it is among them.
fn reap(supervisor: Pid) -> Option<SupervisorExit> {
    let mut exit = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == supervisor => {
                exit = Some(SupervisorExit::Code(code));
            }
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == supervisor => {
                exit = Some(SupervisorExit::Signal(signal as i32));
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return exit,
            Ok(_) => {}
        }
    }
}

/// Stops the members a dead supervisor left running (their stop signal, SIGKILL after grace).
fn stop_members(home: &Home, app: &str) {
    if let Some(state) = home.state(app) {
        os::stop_orphans(&state.members);
    }
}
