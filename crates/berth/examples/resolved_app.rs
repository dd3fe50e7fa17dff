//! `resolved_app APP NAMESPACE VALUES [KEY=VALUE...]`: prints the StatefulApp resource of APP
//! with the delivery values of the file VALUES and the `KEY=VALUE` sets applied, in NAMESPACE,
//! as JSON for `kubectl apply` (what `berth render` starts from, before it renders the objects;
//! the operator's real-node tests build their resources the same way). Used by
//! `bench/real-rollout.sh`.

use std::process::ExitCode;

use berth_core::load::{Inputs, load};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [app_file, namespace, values_file, sets @ ..] = &args[..] else {
        eprintln!("usage: resolved_app APP NAMESPACE VALUES [KEY=VALUE...]");
        return ExitCode::from(2);
    };
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| format!("failed to read {path}: {e}"))
    };
    let inputs = match (read(app_file), read(values_file)) {
        (Ok(app_text), Ok(values)) => Inputs {
            app_file: app_file.clone(),
            app_text,
            values: vec![(values_file.clone(), values)],
            sets: sets.to_vec(),
            namespace: Some(namespace.clone()),
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match load(&inputs) {
        Ok(app) => {
            println!(
                "{}",
                serde_json::to_string(&app.app).expect("an app serialises")
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::FAILURE
        }
    }
}
