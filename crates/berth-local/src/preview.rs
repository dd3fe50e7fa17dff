//! What `berth apply` of a changed app would do to its running local members, computed without
//! I/O (`berth plan`): which members stop, restart or start, in the order the supervisor would
//! act, with the switchovers and membership actions, and why each member restarts (which part of
//! its rendered command, env or files changed, files as unified diffs).
//!
//! The order is not re-implemented: the preview follows the supervisor's reconcile (members to
//! remove, then each part's rollout, then new members; see `supervisor::reload_once`), takes the
//! same [`decide::reconcile`], `Policy::for_part` and [`decide::planner_member`], and plays the
//! core's planners through ([`berth_core::preview::roll`] for rollouts,
//! [`berth_core::preview::scale`] for membership): every restarted member comes back ready, a
//! switchover hands the leader's role to its target.

use std::collections::BTreeMap;

use berth_core::preview as core_preview;
pub use berth_core::preview::PlannedStep;
use berth_core::rollout;
use berth_core::spec::PartSpec;
use serde::Serialize;

use crate::decide;
use crate::home::MemberState;
use crate::plan::MemberPlan;

/// What an apply would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// The app's name (set by the caller).
    pub app: String,
    /// Every member running or wanted, in start order (members to stop last).
    pub members: Vec<MemberChange>,
    /// The actions, in the order the supervisor would take them.
    pub steps: Vec<PlannedStep>,
    /// Rollouts, waits and failures the apply would meet.
    pub notes: Vec<String>,
}

/// What happens to one member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberChange {
    /// `<app>-<part>-<ordinal>`.
    pub name: String,
    /// What happens to it.
    pub action: Action,
    /// The revision it runs now (empty for a new member).
    pub revision: String,
    /// The revision it would run (empty for a member to stop).
    pub new_revision: String,
    /// What changed in what it runs.
    pub changes: Vec<Change>,
}

/// What happens to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing: its revision is unchanged.
    Keep,
    /// It restarts on its new revision.
    Restart,
    /// Its revision changes, but it keeps running the old one (partition or OnDelete).
    Held,
    /// It is new and starts.
    Start,
    /// It is no longer wanted and stops.
    Stop,
}

/// One difference in what a member runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// Its command line.
    Command {
        /// Before.
        before: Vec<String>,
        /// After.
        after: Vec<String>,
    },
    /// An environment variable (absent: `null`).
    Env {
        /// Its name.
        name: String,
        /// Before.
        before: Option<String>,
        /// After.
        after: Option<String>,
    },
    /// A rendered config file, with a unified diff.
    File {
        /// Its path in the member's directory.
        path: String,
        /// The unified diff (old on `-` lines, new on `+`).
        diff: String,
    },
    /// It runs a revision other than the one the saved spec renders (e.g. a stuck rollout).
    Revision {
        /// What it runs.
        running: String,
        /// What the saved spec renders.
        saved: String,
    },
}

impl Change {
    /// A few words naming what changed.
    pub fn short(&self) -> String {
        match self {
            Change::Command { .. } => "command".to_string(),
            Change::Env { name, .. } => format!("env {name}"),
            Change::File { path, .. } => format!("file {path}"),
            Change::Revision { running, .. } => format!("runs an older revision ({running})"),
        }
    }
}

/// The apply's inputs: what runs (`running`: the supervisor's published members, start order),
/// what the saved spec renders for them (`saved`), what the new spec renders (`wanted`) and its
/// parts.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// Members as the supervisor published them.
    pub running: &'a [MemberState],
    /// The saved spec's members (for the reasons).
    pub saved: &'a [MemberPlan],
    /// The new spec's members.
    pub wanted: &'a [MemberPlan],
    /// The new spec's parts, in order.
    pub parts: &'a [PartSpec],
}

/// A member in the simulation: its name and the planner's view of it.
type Sim = core_preview::Named;

/// Previews the apply of `inputs.wanted` over the running members.
pub fn preview(inputs: &Inputs) -> Preview {
    let pairs_running: Vec<(String, String)> = inputs
        .running
        .iter()
        .map(|m| (m.name.clone(), m.revision.clone()))
        .collect();
    let pairs_wanted: Vec<(String, String)> = inputs
        .wanted
        .iter()
        .map(|p| (p.name.clone(), p.revision.clone()))
        .collect();
    let todo = decide::reconcile(&pairs_running, &pairs_wanted);
    let mut out = Preview::default();
    let mut sims = initial_states(inputs, &todo.add);
    if remove_members(inputs, &todo.remove, &sims, &mut out) {
        for part in inputs.parts {
            let members = sims.entry(part.name.clone()).or_default();
            roll_part(inputs, part, members, &mut out);
        }
        add_members(inputs, &todo.add, &mut sims, &mut out);
    }
    out.members = member_changes(inputs, &todo.remove, &out.steps);
    out
}

/// The running members that stay, by part, as the planner sees them against the new revisions.
fn initial_states(inputs: &Inputs, added: &[String]) -> BTreeMap<String, Vec<Sim>> {
    let mut sims: BTreeMap<String, Vec<Sim>> = BTreeMap::new();
    for plan in inputs.wanted.iter().filter(|p| !added.contains(&p.name)) {
        let seen = inputs.running.iter().find(|m| m.name == plan.name);
        let ready = seen.is_some_and(|m| m.ready);
        let secs = if ready { decide::LONG_READY_SECONDS } else { 0 };
        let state = decide::planner_member(plan.member.ordinal, &plan.revision, seen, secs);
        let part = sims.entry(plan.member.part.clone()).or_default();
        part.push((plan.name.clone(), state));
    }
    sims
}

/// Stops the members no longer wanted, part by part as the core plays the scaling through
/// ([`core_preview::scale`]: highest first, each after its memberLeave in a ready member that
/// stays); members of parts the spec no longer has simply stop. Returns `false` when the apply
/// would fail there.
fn remove_members(
    inputs: &Inputs,
    names: &[String],
    sims: &BTreeMap<String, Vec<Sim>>,
    out: &mut Preview,
) -> bool {
    let mut parts: Vec<&str> = Vec::new();
    for name in names {
        let Some(leaving) = inputs.running.iter().find(|m| &m.name == name) else {
            continue;
        };
        match inputs.parts.iter().find(|p| p.name == leaving.part) {
            Some(_) if !parts.contains(&leaving.part.as_str()) => parts.push(&leaving.part),
            Some(_) => {}
            None => out.steps.push(PlannedStep::Stop {
                member: name.clone(),
                leave_in: None,
            }),
        }
    }
    for part in inputs
        .parts
        .iter()
        .filter(|p| parts.contains(&p.name.as_str()))
    {
        let staying = sims.get(&part.name).cloned().unwrap_or_default();
        let mut members = staying.clone();
        members.extend(leaving_members(inputs, names, &part.name));
        members.sort_by_key(|m| m.1.ordinal);
        let desired = i32::try_from(staying.len()).unwrap_or(i32::MAX);
        let scaled = core_preview::scale(part, &members, desired, &|o| format!("#{o}"));
        out.steps.extend(scaled.steps);
        if !scaled.notes.is_empty() {
            out.notes.extend(scaled.notes);
            out.notes.push("the apply would fail there".to_string());
            return false;
        }
    }
    true
}

/// The running members of `part` among `names`, as the planner sees them (ordinals from the
/// saved spec's plans).
fn leaving_members(inputs: &Inputs, names: &[String], part: &str) -> Vec<Sim> {
    inputs
        .running
        .iter()
        .filter(|m| m.part == part && names.contains(&m.name))
        .filter_map(|m| {
            let plan = inputs.saved.iter().find(|p| p.name == m.name)?;
            let secs = if m.ready {
                decide::LONG_READY_SECONDS
            } else {
                0
            };
            let state = decide::planner_member(plan.member.ordinal, &m.revision, Some(m), secs);
            Some((m.name.clone(), state))
        })
        .collect()
}

/// Simulates the rollout of `part` ([`berth_core::preview::roll`]: the core planner's steps,
/// each member coming back ready on its new revision, a switchover handing the leader's role to
/// its target) and records it; `members` end as the simulation leaves them.
fn roll_part(inputs: &Inputs, part: &PartSpec, members: &mut [Sim], out: &mut Preview) {
    if members.is_empty() {
        return;
    }
    let wanted = inputs
        .wanted
        .iter()
        .filter(|p| p.member.part == part.name)
        .count();
    let policy = rollout::Policy::for_part(part, i32::try_from(wanted).unwrap_or(i32::MAX));
    let update = |member: &str| core_preview::Update {
        because: reasons(inputs, member).iter().map(Change::short).collect(),
        in_place: false,
    };
    let rolled = core_preview::roll(&part.name, &policy, members, &update);
    out.steps.extend(rolled.steps);
    out.notes.extend(rolled.notes);
    for (sim, end) in members.iter_mut().zip(rolled.members) {
        sim.1 = end;
    }
}

/// Starts the new members, part by part as the core plays the scaling through
/// ([`core_preview::scale`]: in ordinal order; in a part that runs members and declares
/// memberJoin, each after its memberJoin, run where the core says).
fn add_members(
    inputs: &Inputs,
    names: &[String],
    sims: &mut BTreeMap<String, Vec<Sim>>,
    out: &mut Preview,
) {
    for part in inputs.parts {
        let joining: Vec<&MemberPlan> = inputs
            .wanted
            .iter()
            .filter(|p| p.member.part == part.name && names.contains(&p.name))
            .collect();
        if joining.is_empty() {
            continue;
        }
        let members = sims.entry(part.name.clone()).or_default();
        let desired = i32::try_from(members.len() + joining.len()).unwrap_or(i32::MAX);
        let name = |ordinal: i32| {
            joining
                .iter()
                .find(|p| p.member.ordinal == ordinal)
                .map(|p| p.name.clone())
                .unwrap_or_default()
        };
        let scaled = core_preview::scale(part, members, desired, &name);
        out.steps.extend(scaled.steps);
        out.notes.extend(scaled.notes);
        *members = scaled.members;
    }
}

/// Every member and what happens to it: wanted ones in start order, then the ones to stop.
fn member_changes(inputs: &Inputs, removed: &[String], steps: &[PlannedStep]) -> Vec<MemberChange> {
    let restarted = |name: &str| {
        steps
            .iter()
            .any(|s| matches!(s, PlannedStep::Restart { member, .. } if member == name))
    };
    let mut out: Vec<MemberChange> = inputs
        .wanted
        .iter()
        .map(|plan| {
            let running = inputs.running.iter().find(|m| m.name == plan.name);
            let revision = running.map(|m| m.revision.clone()).unwrap_or_default();
            let action = match running {
                None => Action::Start,
                Some(_) if revision == plan.revision => Action::Keep,
                Some(_) if restarted(&plan.name) => Action::Restart,
                Some(_) => Action::Held,
            };
            let changes = match action {
                Action::Restart | Action::Held => reasons(inputs, &plan.name),
                _ => Vec::new(),
            };
            MemberChange {
                name: plan.name.clone(),
                action,
                revision,
                new_revision: plan.revision.clone(),
                changes,
            }
        })
        .collect();
    out.extend(removed.iter().map(|name| {
        MemberChange {
            name: name.clone(),
            action: Action::Stop,
            revision: inputs
                .running
                .iter()
                .find(|m| &m.name == name)
                .map(|m| m.revision.clone())
                .unwrap_or_default(),
            new_revision: String::new(),
            changes: Vec::new(),
        }
    }));
    out
}

/// Why member `name` changes revision: the differences between the saved spec's rendering and
/// the new one; when they render the same, that it runs an older revision than the saved spec's.
pub fn reasons(inputs: &Inputs, name: &str) -> Vec<Change> {
    let Some(new) = inputs.wanted.iter().find(|p| p.name == name) else {
        return Vec::new();
    };
    let running = inputs
        .running
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.revision.clone())
        .unwrap_or_default();
    let old = inputs.saved.iter().find(|p| p.name == name);
    let mut changes = old.map(|old| differences(old, new)).unwrap_or_default();
    let saved = old.map(|p| p.revision.clone()).unwrap_or_default();
    if changes.is_empty() || (running != saved && running != new.revision) {
        changes.push(Change::Revision { running, saved });
    }
    changes
}

/// The differences between two renderings of a member: command, env variables, files.
pub fn differences(old: &MemberPlan, new: &MemberPlan) -> Vec<Change> {
    let mut changes = Vec::new();
    if old.argv != new.argv {
        changes.push(Change::Command {
            before: old.argv.clone(),
            after: new.argv.clone(),
        });
    }
    let lookup = |env: &[(String, String)], k: &str| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let mut names: Vec<&String> = new.env.iter().map(|(k, _)| k).collect();
    names.extend(
        old.env
            .iter()
            .map(|(k, _)| k)
            .filter(|k| lookup(&new.env, k).is_none()),
    );
    for name in names {
        let (before, after) = (lookup(&old.env, name), lookup(&new.env, name));
        if before != after {
            changes.push(Change::Env {
                name: name.clone(),
                before,
                after,
            });
        }
    }
    changes.extend(file_changes(old, new));
    changes
}

/// Rendered files that differ, added or removed, each with a unified diff.
fn file_changes(old: &MemberPlan, new: &MemberPlan) -> Vec<Change> {
    let mut paths: Vec<&std::path::Path> = new.files.iter().map(|f| f.path.as_path()).collect();
    let gone = old.files.iter().map(|f| f.path.as_path());
    paths.extend(gone.filter(|p| !new.files.iter().any(|f| f.path == *p)));
    paths
        .into_iter()
        .filter_map(|path| {
            let content = |plan: &MemberPlan| {
                let file = plan.files.iter().find(|f| f.path == path);
                file.map(|f| f.content.clone()).unwrap_or_default()
            };
            let (before, after) = (content(old), content(new));
            if before == after {
                return None;
            }
            let shown = path
                .strip_prefix(&new.dir)
                .unwrap_or(path)
                .display()
                .to_string();
            let diff = similar::TextDiff::from_lines(&before, &after)
                .unified_diff()
                .context_radius(2)
                .header(&format!("a/{shown}"), &format!("b/{shown}"))
                .to_string();
            Some(Change::File { path: shown, diff })
        })
        .collect()
}

/// The name of the simulated member with `ordinal`.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::addressing::LocalAddressing;
    use berth_core::load::{Inputs as AppInputs, ValidatedApp, load};
    use std::path::Path;

    /// A part with a leader role, a switchover and membership actions; `{replicas}`, `{flag}`
    /// and `{update}` are filled in by [`app`].
    const APP: &str = r#"
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: kv}
spec:
  parts:
    - name: kv
      replicas: {replicas}
{update}      template:
        spec:
          containers:
            - name: kv
              image: kv:1
              command: ["kv", "--flag={flag}"]
              env:
                - {name: MODE, value: "{flag}"}
      state:
        config:
          files:
            - {name: kv.conf, path: /etc/kv.conf, content: "a\nflag {flag}\nz\n"}
        topology:
          ports:
            - {name: client, port: 7000}
          roles:
            - {name: leader, writable: true}
            - {name: follower}
          roleProbe:
            exec: [kv, role]
          actions:
            switchover: {exec: [kv, switchover]}
            memberJoin: {exec: [kv, join]}
            memberLeave: {exec: [kv, leave]}
"#;

    fn app(replicas: i32, flag: &str, update: &str) -> (ValidatedApp, Vec<MemberPlan>) {
        let text = APP
            .replace("{replicas}", &replicas.to_string())
            .replace("{flag}", flag)
            .replace("{update}", update);
        let inputs = AppInputs {
            app_file: "kv.yaml".into(),
            app_text: text,
            ..Default::default()
        };
        let app = load(&inputs).unwrap();
        let plans = crate::plan::plan_app(
            &app,
            &LocalAddressing::new(&app.app, Path::new("/h/kv"), 20),
        )
        .unwrap();
        (app, plans)
    }

    /// The members of `plans` running, ready, with these roles.
    fn running(plans: &[MemberPlan], roles: &[&str]) -> Vec<MemberState> {
        plans
            .iter()
            .zip(roles)
            .map(|(p, role)| MemberState {
                name: p.name.clone(),
                part: p.member.part.clone(),
                ready: true,
                role: role.to_string(),
                revision: p.revision.clone(),
                ..Default::default()
            })
            .collect()
    }

    fn steps(preview: &Preview) -> Vec<String> {
        preview
            .steps
            .iter()
            .map(|s| match s {
                PlannedStep::Stop { member, leave_in } => format!("stop {member} {leave_in:?}"),
                PlannedStep::Restart { member, .. } => format!("restart {member}"),
                PlannedStep::Switchover { from, to } => format!("switchover {from} {to}"),
                PlannedStep::Start { member, join_in } => format!("start {member} {join_in:?}"),
            })
            .collect()
    }

    fn run(
        saved: &[MemberPlan],
        state: &[MemberState],
        new: &(ValidatedApp, Vec<MemberPlan>),
    ) -> Preview {
        preview(&Inputs {
            running: state,
            saved,
            wanted: &new.1,
            parts: new.0.parts(),
        })
    }

    #[test]
    fn followers_first_then_a_switchover_then_the_leader() {
        let (_, old) = app(3, "a", "");
        let state = running(&old, &["follower", "leader", "follower"]);
        let p = run(&old, &state, &app(3, "b", ""));
        assert_eq!(
            steps(&p),
            [
                "restart kv-2",
                "restart kv-0",
                "switchover kv-1 kv-2",
                "restart kv-1"
            ]
        );
        let PlannedStep::Restart { because, role, .. } = &p.steps[3] else {
            panic!("{p:?}");
        };
        assert_eq!(role.as_deref(), Some("follower"), "the leader moved away");
        assert_eq!(because, &["command", "env MODE", "file config/kv.conf"]);
        let Change::File { diff, .. } = &p.members[0].changes[2] else {
            panic!("{p:?}");
        };
        assert!(diff.contains("-flag a\n+flag b\n"), "{diff}");
        assert!(p.members.iter().all(|m| m.action == Action::Restart));
    }

    #[test]
    fn an_unready_member_goes_first() {
        let (_, old) = app(3, "a", "");
        let mut state = running(&old, &["leader", "follower", "follower"]);
        state[1].ready = false;
        let p = run(&old, &state, &app(3, "b", ""));
        assert_eq!(
            steps(&p),
            [
                "restart kv-1",
                "restart kv-2",
                "switchover kv-0 kv-2",
                "restart kv-0"
            ]
        );
    }

    #[test]
    fn unchanged_members_are_kept_and_a_partition_holds_members() {
        let (_, old) = app(3, "a", "");
        let state = running(&old, &["leader", "follower", "follower"]);
        assert!(run(&old, &state, &app(3, "a", "")).steps.is_empty());
        let update = "      update: {partition: 2}\n";
        let p = run(&old, &state, &app(3, "b", update));
        assert_eq!(steps(&p), ["restart kv-2"]);
        let actions: Vec<Action> = p.members.iter().map(|m| m.action).collect();
        assert_eq!(actions, [Action::Held, Action::Held, Action::Restart]);
    }

    #[test]
    fn scaling_runs_membership_actions_in_the_leader_or_the_lowest_staying_member() {
        let (_, old) = app(3, "a", "");
        let state = running(&old, &["follower", "leader", "follower"]);
        let p = run(&old, &state, &app(5, "a", ""));
        assert_eq!(
            steps(&p),
            ["start kv-3 Some(\"kv-1\")", "start kv-4 Some(\"kv-1\")"]
        );
        // As the engines take it (the core's membership plan): kv-2 leaves through the leader,
        // which is still a member then, and kv-1 through the member left.
        let p = run(&old, &state, &app(1, "a", ""));
        assert_eq!(
            steps(&p),
            ["stop kv-2 Some(\"kv-1\")", "stop kv-1 Some(\"kv-0\")"]
        );
        assert_eq!(p.members.last().unwrap().action, Action::Stop);
    }

    #[test]
    fn a_revision_left_by_an_unfinished_apply_is_a_reason() {
        let (_, old) = app(3, "a", "");
        let mut state = running(&old, &["leader", "follower", "follower"]);
        state[2].revision = "older".into();
        let p = run(&old, &state, &app(3, "a", ""));
        assert_eq!(steps(&p), ["restart kv-2"]);
        assert!(
            matches!(&p.members[2].changes[0], Change::Revision { running, .. } if running == "older")
        );
    }
}
