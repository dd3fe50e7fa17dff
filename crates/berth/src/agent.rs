//! `berth agent`: the role agent in members' pods (see `berth_operator::agent`). The operator
//! adds it to parts with a role probe when it has an agent image; nobody runs it by hand.
//! `berth agent transfer` is how the operator has a member's pod move a backup's bytes
//! itself (`berth_backup::transfer`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::error::CliError;

/// Arguments of `berth agent`.
#[derive(Args, Debug)]
pub struct AgentArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AgentCommand,
}

/// The agent's subcommands.
#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Run the role probe every period and label the pod when its role changes.
    Run {
        /// Seconds between probes.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
        period: u64,
        /// A writable role of the part (repeat for several).
        #[arg(long = "writable", value_name = "ROLE")]
        writable: Vec<String>,
        /// The agent's directory (its readiness file).
        #[arg(long, default_value = berth_k8s::agent::DIR)]
        dir: PathBuf,
        /// The role probe command and its arguments; without one the agent only waits, to
        /// serve `berth agent transfer`.
        #[arg(last = true)]
        probe: Vec<String>,
    },
    /// Copy this binary to DEST (the agent's install init container).
    Install {
        /// Where to copy it.
        dest: PathBuf,
    },
    /// Move a backup's bytes between this pod and the store: one JSON request on stdin
    /// (`berth_backup::transfer::Request`, sent by the operator), one JSON outcome on stdout.
    Transfer,
    /// Exit 0 when the agent is ready, 1 when not (the sidecar's readiness probe).
    Ready {
        /// The agent's directory.
        #[arg(long, default_value = berth_k8s::agent::DIR)]
        dir: PathBuf,
    },
}

/// Runs an agent subcommand.
///
/// # Errors
/// Why the agent could not run, or [`CliError::NotReady`].
pub fn run(args: AgentArgs) -> Result<(), CliError> {
    match args.command {
        AgentCommand::Install { dest } => {
            berth_operator::agent::install(&dest).map_err(CliError::Agent)
        }
        AgentCommand::Ready { dir } => {
            if berth_operator::agent::ready(&dir) {
                Ok(())
            } else {
                Err(CliError::NotReady)
            }
        }
        AgentCommand::Transfer => transfer(),
        AgentCommand::Run {
            period,
            writable,
            dir,
            probe,
        } => {
            let options = berth_operator::agent::AgentOptions {
                period: Duration::from_secs(period),
                writable,
                probe,
                state_dir: dir,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            runtime
                .block_on(berth_operator::agent::run(options))
                .map_err(CliError::Agent)
        }
    }
}

/// Reads the operator's transfer request from stdin, performs it, prints the outcome as one
/// JSON line. The outcome says whether it worked; exit 1 only when no request could be read.
fn transfer() -> Result<(), CliError> {
    use berth_backup::transfer::{Outcome, Request};
    let request: Result<Request, String> = serde_json::from_reader(std::io::stdin().lock())
        .map_err(|e| format!("the transfer request on stdin does not decode: {e}"));
    let outcome = match &request {
        Ok(request) => {
            let runtime = berth_backup::action::runtime().map_err(CliError::Runtime)?;
            runtime.block_on(berth_backup::transfer::serve(request.clone()))
        }
        Err(message) => Outcome::Failed {
            message: message.clone(),
            permanent: true,
        },
    };
    println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
    match request {
        Ok(_) => Ok(()),
        Err(message) => Err(CliError::Transfer(message)),
    }
}
