//! The `berth` command line: validate, render, params, crd, reference, the operator and the
//! local engine.
//!
//! Exit codes: 0 success, 1 invalid input or failed operation, 2 usage error (clap's own).

mod agent;
mod args;
mod commands;
mod error;
mod input;
mod local;
mod operator;
mod outdir;
mod plan;
mod plan_cluster;
mod table;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            ExitCode::from(1)
        }
    }
}
