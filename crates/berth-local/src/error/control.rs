//! The errors the CLI side of the local engine ([`crate::control`]) reports, and how the
//! longer ones read.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{HomeError, LoadError, PlanError};
use crate::home::RolloutState;

/// What the CLI side of the local engine ([`crate::control`]) reports: `up`, `apply`, `plan`,
/// `scale`, `status`, `logs` and `down`.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The app cannot be loaded or planned.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The new app could not be restored from its backup; no member was started.
    #[error(transparent)]
    Restore(#[from] super::RestoreError),
    /// A file, the slot or the scale of the home cannot be written.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A member of the changed app cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Programs or packages the members need are missing (one line each).
    #[error("{}", lines(.0))]
    Missing(Vec<Prerequisite>),
    /// Secrets the app references have no local source.
    #[error("{}", unsourced_message(.0))]
    Unsourced(Vec<String>),
    /// The supervisor's command line is empty.
    #[error("no supervisor command")]
    NoSupervisorCommand,
    /// The supervisor's log cannot be opened.
    #[error("{}: {source}", path.display())]
    SupervisorLog {
        /// The log.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The supervisor cannot be started.
    #[error("cannot start the supervisor: {0}")]
    StartSupervisor(#[source] std::io::Error),
    /// The supervisor (or its keeper) cannot be signalled.
    #[error("cannot signal the supervisor: {0}")]
    Signal(#[source] nix::Error),
    /// The supervisor published an error (`state.json`'s `error`).
    #[error("{app}: {error}")]
    Failed {
        /// The app.
        app: String,
        /// What the supervisor published.
        error: String,
    },
    /// The supervisor exited before the app was ready.
    #[error("{app}: the supervisor exited:\n{log}")]
    SupervisorExited {
        /// The app.
        app: String,
        /// The last lines of its log.
        log: String,
    },
    /// The supervisor exited during an apply, leaving the members unsupervised.
    #[error(
        "{app}: the supervisor exited during the apply; its members still run, unsupervised, \
         and the apply did not finish (`berth status {app}`; `berth up` starts a supervisor \
         again). Last lines of {}:\n{tail}",
        log.display()
    )]
    ExitedDuringApply {
        /// The app.
        app: String,
        /// Its supervisor's log.
        log: PathBuf,
        /// The last lines of it.
        tail: String,
    },
    /// A member was not ready in time.
    #[error("{}", not_ready_message(app, *secs, member.as_deref()))]
    NotReady {
        /// The app.
        app: String,
        /// The timeout, in seconds.
        secs: u64,
        /// The first member not ready, if one is known.
        member: Option<Box<Unready>>,
    },
    /// A rollout is stuck (members not ready past the deadline, or a failing switchover).
    #[error("{}", stuck_message(app, rollout, events))]
    Stuck {
        /// The app.
        app: String,
        /// The rollout as published.
        rollout: Box<RolloutState>,
        /// The app's events log.
        events: PathBuf,
    },
    /// No supervisor runs the app.
    #[error("{app} is not running; use `berth up`")]
    NotRunning {
        /// The app.
        app: String,
    },
    /// No supervisor runs the app in this home (`berth plan`).
    #[error("{app} is not running in {}; `berth up` it first", home.display())]
    NotRunningIn {
        /// The app.
        app: String,
        /// The home.
        home: PathBuf,
    },
    /// The app has no address slot.
    #[error("{app} has no address slot")]
    NoSlot {
        /// The app.
        app: String,
    },
    /// The home has no such app.
    #[error("no app `{app}` in {}", home.display())]
    NoApp {
        /// The app.
        app: String,
        /// The home.
        home: PathBuf,
    },
    /// The app has no such part.
    #[error("{app} has no part `{part}`")]
    NoPart {
        /// The app.
        app: String,
        /// The part.
        part: String,
    },
    /// No app of the home has such a member.
    #[error("no member `{member}` in {}", home.display())]
    NoMember {
        /// The member.
        member: String,
        /// The home.
        home: PathBuf,
    },
    /// A member's log cannot be read.
    #[error("{}: {source}", path.display())]
    Log {
        /// The log.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Standard output cannot be written.
    #[error(transparent)]
    Output(std::io::Error),
    /// A running supervisor has published no state.
    #[error("the supervisor has published no state")]
    NoState,
    /// The supervisor did not stop within its members' grace periods.
    #[error("{app}: the supervisor did not stop in time")]
    StopTimeout {
        /// The app.
        app: String,
    },
    /// The app's directory cannot be deleted (`down --purge`).
    #[error("{}: {source}", path.display())]
    Purge {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A program or packages a member needs that this host lacks.
#[derive(Debug, PartialEq, Eq)]
pub struct Prerequisite {
    /// The member.
    pub member: String,
    /// What it lacks.
    pub missing: Missing,
}

/// What a member lacks.
#[derive(Debug, PartialEq, Eq)]
pub enum Missing {
    /// Its (or an init container's) program is not found.
    Program {
        /// The program.
        program: String,
        /// The part's Debian packages (`local.packages`), to suggest.
        packages: Vec<String>,
    },
    /// Debian packages of its part are not installed.
    Packages(Vec<String>),
}

impl fmt::Display for Prerequisite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.member)?;
        match &self.missing {
            Missing::Program { program, packages } if packages.is_empty() => {
                write!(f, "program `{program}` not found on this host")
            }
            Missing::Program { program, packages } => write!(
                f,
                "program `{program}` not found on this host; install it with `apt-get install \
                 {}`",
                packages.join(" ")
            ),
            Missing::Packages(missing) => write!(
                f,
                "Debian package(s) not installed: {}; install with `apt-get install {}`",
                missing.join(", "),
                missing.join(" ")
            ),
        }
    }
}

/// The first member not ready when an `up` or `apply` timed out.
#[derive(Debug)]
pub struct Unready {
    /// The member.
    pub name: String,
    /// What it waits for.
    pub waiting: String,
    /// Its log.
    pub log: PathBuf,
    /// The last lines of it.
    pub tail: String,
}

fn lines(items: &[Prerequisite]) -> String {
    let lines: Vec<String> = items.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

fn unsourced_message(missing: &[String]) -> String {
    let args: Vec<String> = missing
        .iter()
        .map(|s| format!("--secret {s}=DIR-or-ENV-FILE"))
        .collect();
    format!(
        "the app references Secret(s) with no local source: {}; give each with `berth up {}` \
         (a directory of key files, or a file of KEY=VALUE lines)",
        missing.join(", "),
        args.join(" ")
    )
}

fn not_ready_message(app: &str, secs: u64, member: Option<&Unready>) -> String {
    let Some(member) = member else {
        return format!("{app}: not ready after {secs}s");
    };
    format!(
        "{app}: {} not ready after {secs}s (waiting for {}); last lines of {}:\n{}\n\
         (the supervisor keeps trying; `berth down {app}` stops it)",
        member.name,
        member.waiting,
        member.log.display(),
        member.tail
    )
}

/// Why an apply ends while its rollout is Degraded: stuck members, or a failing switchover.
fn stuck_message(app: &str, rollout: &RolloutState, events: &Path) -> String {
    let why = if rollout.stuck.is_empty() {
        rollout.degraded.clone().unwrap_or_default()
    } else {
        format!(
            "{} not ready on the new revision past the progress deadline; fix the spec and \
             `berth apply` again",
            rollout.stuck.join(", ")
        )
    };
    format!(
        "{app}: rollout of part {} is stuck: {why} (the supervisor keeps at it; see `berth \
         status` and {})",
        rollout.part,
        events.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lacks(member: &str, missing: Missing) -> Prerequisite {
        Prerequisite {
            member: member.into(),
            missing,
        }
    }

    #[test]
    fn missing_programs_and_packages_read_one_line_each() {
        let error = ControlError::Missing(vec![
            lacks(
                "db-0",
                Missing::Program {
                    program: "postgres".into(),
                    packages: vec!["postgresql".into(), "postgresql-client".into()],
                },
            ),
            lacks(
                "db-0",
                Missing::Program {
                    program: "init-db".into(),
                    packages: vec![],
                },
            ),
            lacks("db-0", Missing::Packages(vec!["a".into(), "b".into()])),
        ]);
        assert_eq!(
            error.to_string(),
            "db-0: program `postgres` not found on this host; install it with `apt-get install \
             postgresql postgresql-client`\n\
             db-0: program `init-db` not found on this host\n\
             db-0: Debian package(s) not installed: a, b; install with `apt-get install a b`"
        );
    }

    #[test]
    fn not_ready_names_the_first_waiting_member_and_its_log() {
        let bare = ControlError::NotReady {
            app: "web".into(),
            secs: 5,
            member: None,
        };
        assert_eq!(bare.to_string(), "web: not ready after 5s");
        let member = Unready {
            name: "web-0".into(),
            waiting: "readiness probe: tcp 127.1.1.1:80".into(),
            log: PathBuf::from("/h/web/web-0/log"),
            tail: "listening".into(),
        };
        let waiting = ControlError::NotReady {
            app: "web".into(),
            secs: 5,
            member: Some(Box::new(member)),
        };
        assert_eq!(
            waiting.to_string(),
            "web: web-0 not ready after 5s (waiting for readiness probe: tcp 127.1.1.1:80); last \
             lines of /h/web/web-0/log:\nlistening\n(the supervisor keeps trying; `berth down \
             web` stops it)"
        );
    }

    #[test]
    fn unsourced_secrets_say_how_to_give_each() {
        let error = ControlError::Unsourced(vec!["auth".into(), "tls".into()]);
        assert_eq!(
            error.to_string(),
            "the app references Secret(s) with no local source: auth, tls; give each with `berth \
             up --secret auth=DIR-or-ENV-FILE --secret tls=DIR-or-ENV-FILE` (a directory of key \
             files, or a file of KEY=VALUE lines)"
        );
    }
}
