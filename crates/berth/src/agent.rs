//! `berth agent`: the role agent in members' pods (see `berth_operator::agent`). The operator
//! adds it to parts with a role probe when it has an agent image; nobody runs it by hand.

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
        /// The role probe command and its arguments.
        #[arg(last = true, required = true)]
        probe: Vec<String>,
    },
    /// Copy this binary to DEST (the agent's install init container).
    Install {
        /// Where to copy it.
        dest: PathBuf,
    },
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
