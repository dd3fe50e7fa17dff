//! Reading the files named on the command line into the core's [`Inputs`].

use std::path::Path;

use berth_core::diag::{Diagnostic, Diagnostics};
use berth_core::load::Inputs;

use crate::args::AppArgs;

/// Reads the app manifest and values files.
///
/// # Errors
/// A diagnostic per file that cannot be read.
pub fn read_inputs(args: &AppArgs) -> Result<Inputs, Diagnostics> {
    let mut problems = Diagnostics::default();
    let mut read = |path: &Path| match std::fs::read_to_string(path) {
        Ok(text) => Some((path.display().to_string(), text)),
        Err(e) => {
            problems.0.push(
                Diagnostic::at("", format!("cannot read the file: {e}"))
                    .in_file(&path.display().to_string(), None),
            );
            None
        }
    };
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
