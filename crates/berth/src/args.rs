//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// berth: run stateful applications on Kubernetes or on one machine, from one spec.
#[derive(Parser, Debug)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check an app (and its values) and report every problem with file, line and field path.
    Validate(AppArgs),
    /// Render an app into plain Kubernetes objects (multi-document YAML).
    Render {
        /// The app and its values.
        #[command(flatten)]
        app: AppArgs,
        /// Write one file per object into this directory instead of printing. Files of an
        /// earlier render into it that are no longer rendered are removed (berth lists the
        /// files it wrote in DIR/.berth-render); a non-empty directory berth did not write is
        /// refused.
        #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// List an app's delivery parameters.
    Params {
        /// The app manifest; `-` reads it from standard input.
        app: PathBuf,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Print the StatefulApp CustomResourceDefinition.
    Crd,
    /// Print the StatefulApp field reference (Markdown, as in docs/reference.md).
    Reference,
    /// Reconcile StatefulApps on a Kubernetes cluster.
    Operator(crate::operator::OperatorArgs),
    /// The role agent the operator runs in members' pods.
    #[command(hide = true)]
    Agent(crate::agent::AgentArgs),
    /// Run an app on this machine (members as processes under a background supervisor);
    /// returns once every member is ready.
    Up(crate::local::UpArgs),
    /// Apply a changed app to its local run: members whose command, env or config changed
    /// restart one at a time, highest ordinal first.
    Apply(crate::local::ApplyArgs),
    /// Show what `apply` of a changed app would do to its local run, changing nothing: the
    /// members to restart in the order the rollout takes them (switchovers and membership
    /// actions inline) and why, with a unified diff of each changed config file.
    Plan(crate::plan::PlanArgs),
    /// Change the number of members of a part of a local app.
    Scale(crate::local::ScaleArgs),
    /// Back up a local app now: the part's backup action runs in the member `state.backup.from`
    /// chooses, and its output streams to the repository with a manifest.
    Backup(crate::local::BackupArgs),
    /// List a local app's backups (`-o json` for every field).
    Backups(crate::local::BackupsArgs),
    /// Show the members of apps run on this machine.
    Status(crate::local::StatusArgs),
    /// Print a local member's output (stdout and stderr).
    Logs(crate::local::LogsArgs),
    /// Stop an app run on this machine.
    Down(crate::local::DownArgs),
    /// Run the supervisor of a local app (started by `up`).
    #[command(name = "__local-supervisor", hide = true)]
    LocalSupervisor(crate::local::SupervisorArgs),
}

/// An app manifest with its delivery-parameter values.
#[derive(Args, Debug)]
pub struct AppArgs {
    /// The app manifest (a StatefulApp resource); `-` reads it from standard input.
    pub app: PathBuf,
    /// Values files for the app's parameters, applied in order; `-` reads one from standard
    /// input (when the app is not read from there).
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub values: Vec<PathBuf>,
    /// A parameter value, `key=value`; applied after values files.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Use this namespace instead of the manifest's `metadata.namespace`.
    #[arg(short = 'n', long = "namespace")]
    pub namespace: Option<String>,
}

/// How a listing is printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}
