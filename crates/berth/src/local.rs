//! The local-engine subcommands (`up`, `status`, `logs`, `down` and the hidden supervisor):
//! arguments and output; the work is done by [`berth_local::control`].

use std::path::PathBuf;
use std::time::Duration;

use berth_local::control::{self, UpOptions};
use berth_local::home::{AppState, Home};
use clap::Args;

use crate::args::{AppArgs, Format};
use crate::commands::load_app;
use crate::error::CliError;

/// Where local apps keep their state.
#[derive(Args, Debug)]
pub struct HomeArgs {
    /// The berth home: state, logs and data of local apps.
    #[arg(long, value_name = "DIR", default_value = ".berth")]
    pub home: PathBuf,
}

/// `berth up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// The app and its values.
    #[command(flatten)]
    pub app: AppArgs,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Address slot N: members get 127.N.<part>.<ordinal+1> (default: kept, or the lowest free).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=254))]
    pub slot: Option<u8>,
    /// Seconds members may take to become ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,
    /// The data of Secret NAME: a directory (a file per key) or a file of KEY=VALUE lines;
    /// repeatable, remembered for later `up`s and `apply`s. Only the path is saved.
    #[arg(long = "secret", value_name = "NAME=PATH", value_parser = berth_local::secrets::parse_source)]
    pub secrets: Vec<(String, PathBuf)>,
    /// Create the app from a backup, `s3://<bucket>/<key>` as `berth backups` shows it: every
    /// member runs the part's restore action before its first start (overrides
    /// `spec.restoreFrom`; refused if the app already has data).
    #[arg(long, value_name = "URL")]
    pub restore_from: Option<String>,
}

/// `berth backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The app.
    pub app: String,
    /// The part (default: the only part declaring `state.backup`).
    #[arg(long)]
    pub part: Option<String>,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
}

/// `berth backups`.
#[derive(Args, Debug)]
pub struct BackupsArgs {
    /// The app.
    pub app: String,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `berth apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The app and its values.
    #[command(flatten)]
    pub app: AppArgs,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Seconds members may take to become ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,
}

/// `berth scale`.
#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// The app.
    pub app: String,
    /// The part.
    pub part: String,
    /// Its number of members.
    #[arg(value_parser = clap::value_parser!(i32).range(0..=253))]
    pub replicas: i32,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Seconds members may take to become ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    pub timeout: u64,
}

/// `berth status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The app (default: every app in the home).
    pub app: Option<String>,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `berth logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The member, e.g. `redis-1`.
    pub member: String,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Keep printing what the member writes.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

/// `berth down`.
#[derive(Args, Debug)]
pub struct DownArgs {
    /// The app.
    pub app: String,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Also delete the app's directory: data, config and logs.
    #[arg(long)]
    pub purge: bool,
}

/// The hidden supervisor subcommand: the keeper, which runs the supervisor itself (`--kept`)
/// and starts it again if it dies.
#[derive(Args, Debug)]
pub struct SupervisorArgs {
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Run the supervisor itself, under a keeper that holds the app's lock.
    #[arg(long, hide = true)]
    pub kept: bool,
    /// The app.
    pub app: String,
}

/// The home as an absolute path (the supervisor outlives the current directory's meaning).
fn home(args: &HomeArgs) -> Result<Home, CliError> {
    std::fs::create_dir_all(&args.home)
        .and_then(|()| std::path::absolute(&args.home))
        .map(|root| Home::new(&root))
        .map_err(|source| CliError::Home {
            path: args.home.clone(),
            source,
        })
}

pub fn up(args: &UpArgs) -> Result<(), CliError> {
    let (inputs, app) = load_app(&args.app)?;
    let home = home(&args.home)?;
    let exe = std::env::current_exe().map_err(CliError::Exe)?;
    let options = UpOptions {
        supervisor_command: vec![
            exe.display().to_string(),
            "__local-supervisor".to_string(),
            "--home".to_string(),
            home.root.display().to_string(),
        ],
        slot: args.slot,
        timeout: Duration::from_secs(args.timeout),
        secrets: args.secrets.clone(),
        restore_from: args.restore_from.clone(),
    };
    Ok(control::up(&home, &inputs, &app, &options)?)
}

pub fn apply(args: &ApplyArgs) -> Result<(), CliError> {
    let (inputs, app) = load_app(&args.app)?;
    let timeout = Duration::from_secs(args.timeout);
    Ok(control::apply(&home(&args.home)?, &inputs, &app, timeout)?)
}

pub fn scale(args: &ScaleArgs) -> Result<(), CliError> {
    let timeout = Duration::from_secs(args.timeout);
    let home = home(&args.home)?;
    Ok(control::scale(
        &home,
        &args.app,
        &args.part,
        args.replicas,
        timeout,
    )?)
}

pub fn status(args: &StatusArgs) -> Result<(), CliError> {
    let states = control::status(&home(&args.home)?, args.app.as_deref())?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&states)?),
        Format::Table => print!("{}", status_table(&states)),
    }
    Ok(())
}

fn status_table(states: &[AppState]) -> String {
    let headers = [
        "APP", "PHASE", "MEMBER", "PID", "ADDRESS", "READY", "ROLE", "RESTARTS", "REVISION",
    ];
    let rows: Vec<[String; 9]> = states
        .iter()
        .flat_map(|s| {
            s.members.iter().map(|m| {
                [
                    s.app.clone(),
                    s.phase.to_string(),
                    m.name.clone(),
                    m.pid.map_or("-".to_string(), |p| p.to_string()),
                    m.address.clone(),
                    if m.ready { "yes" } else { "no" }.to_string(),
                    if m.role.is_empty() {
                        "-".to_string()
                    } else {
                        m.role.clone()
                    },
                    m.restarts.to_string(),
                    m.revision.clone(),
                ]
            })
        })
        .collect();
    let mut out = crate::table::render(headers, &rows);
    out.push_str(&control::status_notes(states));
    out
}

pub fn backup(args: &BackupArgs) -> Result<(), CliError> {
    let home = home(&args.home)?;
    let done = berth_local::backup::backup(&home, &args.app, args.part.as_deref())?;
    println!(
        "backup {} of {}/{}: {} bytes from {}, sha256 {}\n{}",
        done.id, args.app, done.part, done.size, done.member, done.sha256, done.url
    );
    Ok(())
}

pub fn backups(args: &BackupsArgs) -> Result<(), CliError> {
    let records = berth_local::backup::records(&home(&args.home)?, &args.app);
    if matches!(args.output, Format::Json) {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    let headers = [
        "ID", "PART", "PHASE", "MEMBER", "SIZE", "SHA256", "URL", "ERROR",
    ];
    let rows: Vec<[String; 8]> = records
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                r.part.clone(),
                r.phase.to_string(),
                r.member.clone(),
                r.size.to_string(),
                r.sha256.chars().take(12).collect(),
                r.url.clone(),
                r.error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!("{}", crate::table::render(headers, &rows));
    Ok(())
}

pub fn logs(args: &LogsArgs) -> Result<(), CliError> {
    let path = control::log_path(&home(&args.home)?, &args.member)?;
    Ok(control::print_log(&path, args.follow)?)
}

pub fn down(args: &DownArgs) -> Result<(), CliError> {
    Ok(control::down(&home(&args.home)?, &args.app, args.purge)?)
}

pub fn supervise(args: &SupervisorArgs) -> Result<(), CliError> {
    let root = home(&args.home)?.root;
    if args.kept {
        return Ok(berth_local::supervisor::supervise(&root, &args.app, true)?);
    }
    let exe = std::env::current_exe().map_err(CliError::Exe)?;
    let supervisor = [
        exe.display().to_string(),
        "__local-supervisor".to_string(),
        "--home".to_string(),
        root.display().to_string(),
        "--kept".to_string(),
        args.app.clone(),
    ];
    Ok(berth_local::keeper::keep(&root, &args.app, &supervisor)?)
}
