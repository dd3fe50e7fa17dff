//! `berth plan`: what applying a changed app would do, printed as text or JSON, without doing
//! it. Locally (the default), what `berth apply` would do to its run: members in the order the
//! rollout would take them, with switchovers and membership actions inline, then each restarted
//! member's changes as unified diffs ([`berth_local::control::preview`], reading the home).
//! With `--kubeconfig`, what the operator would do on that cluster: every object created,
//! changed (field by field) or deleted, then the members' steps
//! ([`berth_operator::preview`], reading the cluster and dry-running the applies).

use std::fmt::Write as _;

use berth_local::control;
use berth_local::home::Home;
use berth_local::preview::{Action, Change, PlannedStep, Preview};
use clap::{Args, ValueEnum};

use crate::args::AppArgs;
use crate::commands::load_app;
use crate::error::CliError;
use crate::local::HomeArgs;

/// `berth plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The changed app and its values.
    #[command(flatten)]
    pub app: AppArgs,
    /// The home.
    #[command(flatten)]
    pub home: HomeArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
    /// Preview the apply on the cluster of this kubeconfig file instead of the local home.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
}

/// How a plan is printed.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    /// Readable text.
    Text,
    /// JSON (the members, the steps in order, notes).
    Json,
}

pub fn plan(args: &PlanArgs) -> Result<(), CliError> {
    let (_, app) = load_app(&args.app)?;
    if let Some(kubeconfig) = &args.kubeconfig {
        return plan_cluster(args, kubeconfig, &app);
    }
    // Never create the home: a plan writes nothing.
    let root = std::path::absolute(&args.home.home).map_err(|source| CliError::Home {
        path: args.home.home.clone(),
        source,
    })?;
    let preview = control::preview(&Home::new(&root), &app)?;
    match args.output {
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&preview)?),
        PlanFormat::Text => print!("{}", text(&app.name(), &preview)),
    }
    Ok(())
}

/// `berth plan --kubeconfig`.
fn plan_cluster(
    args: &PlanArgs,
    kubeconfig: &std::path::Path,
    app: &berth_core::load::ValidatedApp,
) -> Result<(), CliError> {
    let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
    let preview = runtime
        .block_on(async {
            let client =
                berth_operator::preview::connect(kubeconfig, args.context.as_deref()).await?;
            berth_operator::preview::preview(client, app).await
        })
        .map_err(CliError::Cluster)?;
    match args.output {
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&preview)?),
        PlanFormat::Text => print!("{}", crate::plan_cluster::text(&preview)),
    }
    Ok(())
}

/// The plan as text.
fn text(app: &str, preview: &Preview) -> String {
    let mut out = String::new();
    let count = |a: Action| preview.members.iter().filter(|m| m.action == a).count();
    let _ = writeln!(
        out,
        "{app}: {} to restart, {} to start, {} to stop, {} unchanged{}",
        count(Action::Restart),
        count(Action::Start),
        count(Action::Stop),
        count(Action::Keep),
        if count(Action::Held) > 0 {
            format!(", {} held on their revision", count(Action::Held))
        } else {
            String::new()
        }
    );
    out.push_str(&steps_and_notes(
        &preview.steps,
        &preview.notes,
        "nothing to do\n",
    ));
    for member in &preview.members {
        let diffs: Vec<String> = member.changes.iter().map(change_text).collect();
        if !diffs.is_empty() {
            let action = format!("{:?}", member.action).to_lowercase();
            let _ = writeln!(
                out,
                "\n{} ({action}, revision {} -> {}):",
                member.name, member.revision, member.new_revision
            );
            diffs.iter().for_each(|d| out.push_str(d));
        }
    }
    out
}

/// The numbered steps (or `nothing`, when there are none), then the notes: the part of a plan
/// both engines' previews print alike.
pub(crate) fn steps_and_notes(steps: &[PlannedStep], notes: &[String], nothing: &str) -> String {
    let mut out = String::new();
    if steps.is_empty() {
        out.push_str(nothing);
    } else {
        out.push_str("\nsteps, in order:\n");
        for (n, step) in steps.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", n + 1, step_line(step));
        }
    }
    for note in notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn step_line(step: &PlannedStep) -> String {
    match step {
        PlannedStep::Stop { member, leave_in } => match leave_in {
            Some(runner) => format!("stop {member}: no longer wanted (memberLeave in {runner})"),
            None => format!("stop {member}: no longer wanted"),
        },
        PlannedStep::Restart {
            member,
            role,
            because,
            in_place,
        } => format!(
            "{} {member} (role {}): {}",
            if *in_place {
                "update in place"
            } else {
                "restart"
            },
            role.as_deref().unwrap_or("-"),
            because.join(", ")
        ),
        PlannedStep::Switchover { from, to } => format!("switchover {from} -> {to}"),
        PlannedStep::Start { member, join_in } => match join_in {
            Some(runner) => format!("start {member}: new member (memberJoin in {runner})"),
            None => format!("start {member}: new member"),
        },
    }
}

fn change_text(change: &Change) -> String {
    match change {
        Change::Command { before, after } => {
            format!(
                "  command:\n  - {}\n  + {}\n",
                before.join(" "),
                after.join(" ")
            )
        }
        Change::Env {
            name,
            before,
            after,
        } => format!(
            "  env {name}: {} -> {}\n",
            before.as_deref().unwrap_or("(unset)"),
            after.as_deref().unwrap_or("(unset)")
        ),
        Change::File { diff, .. } => diff.clone(),
        Change::Revision { running, saved } => format!(
            "  runs revision {running}, not the saved spec's {saved} (an earlier apply did not \
             finish)\n"
        ),
    }
}
