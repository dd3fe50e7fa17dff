//! Reading the files named on the command line into the core's [`Inputs`]. A file named `-`
//! is read from standard input and called [`STDIN`] in messages; at most one file can be.

use std::path::Path;

use berth_core::diag::{Diagnostic, Diagnostics};
use berth_core::load::Inputs;

use crate::args::AppArgs;

/// The name of the file read from standard input, as messages show it.
pub const STDIN: &str = "<stdin>";

/// Whether a file argument names standard input.
fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Reads one file named on the command line (`-`: standard input), as (name, text).
///
/// # Errors
/// A diagnostic naming the file when it cannot be read.
pub fn read_source(path: &Path) -> Result<(String, String), Diagnostic> {
    let (name, text) = if is_stdin(path) {
        (STDIN.to_string(), std::io::read_to_string(std::io::stdin()))
    } else {
        (path.display().to_string(), std::fs::read_to_string(path))
    };
    match text {
        Ok(text) => Ok((name, text)),
        Err(e) => {
            Err(Diagnostic::at("", format!("cannot read the file: {e}")).in_file(&name, None))
        }
    }
}

/// Reads the app manifest and values files.
///
/// # Errors
/// A diagnostic per file that cannot be read, or one when more than one file is `-`.
pub fn read_inputs(args: &AppArgs) -> Result<Inputs, Diagnostics> {
    let from_stdin = std::iter::once(&args.app)
        .chain(&args.values)
        .filter(|p| is_stdin(p))
        .count();
    if from_stdin > 1 {
        return Err(Diagnostics::one(Diagnostic::at(
            "",
            format!(
                "{from_stdin} files are named `-`, but only one (the app or one values file) can be read from standard input"
            ),
        )));
    }
    let mut problems = Diagnostics::default();
    let mut read = |path: &Path| read_source(path).map_err(|d| problems.0.push(d)).ok();
    let app = read(&args.app);
    let values: Vec<(String, String)> = args.values.iter().filter_map(|p| read(p)).collect();
    let (app_file, app_text) = match app {
        Some(pair) if problems.is_empty() => pair,
        _ => return Err(problems),
    };
    problems.into_result(Inputs {
        app_file,
        app_text,
        values,
        sets: args.set.clone(),
        namespace: args.namespace.clone(),
    })
}
