//! The subcommands, each a small function from arguments to output or a [`CliError`].

use std::path::Path;

use berth_core::load::{self, Inputs, ValidatedApp};
use berth_core::params;
use berth_k8s::{crd, reference, render};
use serde_json::{Value, json};

use crate::args::{AppArgs, Cli, Command, Format};
use crate::error::CliError;
use crate::input::{read_inputs, read_source};

/// Runs one command.
///
/// # Errors
/// Why the command failed.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Validate(app) => validate(&app),
        Command::Render { app, output_dir } => render_app(&app, output_dir.as_deref()),
        Command::Params { app, output } => list_params(&app, output),
        Command::Operator(args) => crate::operator::run(&args),
        Command::Agent(args) => crate::agent::run(args),
        Command::Up(args) => crate::local::up(&args),
        Command::Apply(args) => crate::local::apply(&args),
        Command::Plan(args) => crate::plan::plan(&args),
        Command::Scale(args) => crate::local::scale(&args),
        Command::Backup(args) => crate::local::backup(&args),
        Command::Backups(args) => crate::local::backups(&args),
        Command::Status(args) => crate::local::status(&args),
        Command::Logs(args) => crate::local::logs(&args),
        Command::Down(args) => crate::local::down(&args),
        Command::LocalSupervisor(args) => crate::local::supervise(&args),
        Command::Reference => {
            print!("{}", reference::reference_markdown());
            Ok(())
        }
        Command::Crd => {
            print!("{}", crd::crd_yaml().map_err(CliError::Crd)?);
            Ok(())
        }
    }
}

/// Reads (standard input at most once) and checks an app with its values.
pub(crate) fn load_app(args: &AppArgs) -> Result<(Inputs, ValidatedApp), CliError> {
    let inputs = read_inputs(args).map_err(CliError::Invalid)?;
    let app = load::load(&inputs).map_err(CliError::Invalid)?;
    Ok((inputs, app))
}

fn validate(args: &AppArgs) -> Result<(), CliError> {
    let (inputs, app) = load_app(args)?;
    let members: i32 = app.parts().iter().map(|p| p.desired_replicas()).sum();
    let parts = app.parts().len();
    println!(
        "{}: valid ({parts} part{}, {members} member{})",
        inputs.app_file,
        plural(parts as i32),
        plural(members)
    );
    Ok(())
}

fn plural(n: i32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn render_app(args: &AppArgs, output_dir: Option<&Path>) -> Result<(), CliError> {
    let (_, app) = load_app(args)?;
    let objects = render::render(&app).map_err(CliError::Render)?;
    match output_dir {
        None => {
            print!("{}", render::to_yaml(&objects).map_err(CliError::Yaml)?);
            Ok(())
        }
        Some(dir) => Ok(crate::outdir::write_objects(dir, &objects)?),
    }
}

fn list_params(app: &Path, format: Format) -> Result<(), CliError> {
    let (file, text) = read_source(app).map_err(CliError::Source)?;
    let (definitions, doc) =
        load::load_param_definitions(&file, &text).map_err(CliError::Invalid)?;
    let rows: Vec<Value> = definitions
        .iter()
        .map(|p| {
            json!({
                "key": p.key,
                "type": format!("{:?}", p.kind).to_lowercase(),
                "default": params::default_value(p, &doc),
                "required": p.required,
                "description": p.description,
                "path": p.path,
                "values": p.values,
            })
        })
        .collect();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON values serialise")
        ),
        Format::Table => print!("{}", table(&rows)),
    }
    Ok(())
}

fn table(rows: &[Value]) -> String {
    const HEADERS: [&str; 5] = ["KEY", "TYPE", "DEFAULT", "REQUIRED", "DESCRIPTION"];
    let cell = |row: &Value, h: &str| match &row[h.to_lowercase()] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        other => other.to_string(),
    };
    let cells: Vec<[String; 5]> = rows.iter().map(|r| HEADERS.map(|h| cell(r, h))).collect();
    crate::table::render(HEADERS, &cells)
}
