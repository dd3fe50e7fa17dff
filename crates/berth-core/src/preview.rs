//! What `berth plan` shows of a part's members, shared by both engines: the steps of an apply
//! ([`PlannedStep`]) and a part's rollout played through ([`roll`]) with the core planner
//! ([`crate::simulate`]), so the local and the cluster preview name the same steps in the same
//! order and word the same waits the same way.

use serde::Serialize;

use crate::rollout::{MemberState, Policy};
use crate::simulate;
use crate::spec::UpdateStrategy;

/// One step of an apply, in the order an engine would take it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "lowercase")]
pub enum PlannedStep {
    /// Stop a member no longer wanted, after its memberLeave action (run in `leave_in`).
    Stop {
        /// The member.
        member: String,
        /// Where memberLeave runs (`None`: the part declares none).
        leave_in: Option<String>,
    },
    /// Bring a member to its new revision: restart it, or update it in place.
    Restart {
        /// The member.
        member: String,
        /// Its role when restarted (`None`: none detected).
        role: Option<String>,
        /// What changed, in a few words each.
        because: Vec<String>,
        /// Its containers take the new images in place (the pod is kept).
        #[serde(
            default,
            skip_serializing_if = "std::ops::Not::not",
            rename = "inPlace"
        )]
        in_place: bool,
    },
    /// Move the leader's role away before it restarts.
    Switchover {
        /// The leader.
        from: String,
        /// The member that takes over.
        to: String,
    },
    /// Start a new member, after its memberJoin action (run in `join_in`).
    Start {
        /// The member.
        member: String,
        /// Where memberJoin runs (`None`: the part declares none, or it starts from zero).
        join_in: Option<String>,
    },
}

/// A member in a preview: its name and the planner's view of it.
pub type Named = (String, MemberState);

/// How an engine would bring one member to its new revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// What changed, in a few words each.
    pub because: Vec<String>,
    /// In place rather than by a restart.
    pub in_place: bool,
}

/// A part's rollout as a preview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rolled {
    /// The steps, in order.
    pub steps: Vec<PlannedStep>,
    /// Rollouts, waits and failures it would meet.
    pub notes: Vec<String>,
    /// The members as the rollout leaves them.
    pub members: Vec<MemberState>,
}

/// Plays the rollout of part `part` over `members` under `policy` through; `update` says why
/// and how each member would be brought to its revision.
pub fn roll(
    part: &str,
    policy: &Policy,
    members: &[Named],
    update: &dyn Fn(&str) -> Update,
) -> Rolled {
    let states: Vec<MemberState> = members.iter().map(|m| m.1.clone()).collect();
    let mut out = Rolled {
        members: states.clone(),
        ..Rolled::default()
    };
    let outdated = states.iter().filter(|m| !m.updated).count();
    if outdated == 0 {
        return out;
    }
    out.notes.push(format!(
        "rollout of part {part}: strategy {:?}, {outdated} of {} members outdated",
        policy.strategy,
        members.len()
    ));
    if policy.strategy == UpdateStrategy::OnDelete {
        out.notes.push(format!(
            "rollout of part {part}: OnDelete: members keep their revision until restarted"
        ));
        return out;
    }
    let run = simulate::simulate(&states, policy);
    for action in run.actions {
        if let Some(step) = step_of(action, members, update, &mut out.notes) {
            out.steps.push(step);
        }
    }
    if !run.waiting_for.is_empty() {
        out.notes.push(format!(
            "rollout of part {part} would wait for {}",
            run.waiting_for
        ));
    }
    out.members = run.members;
    out
}

/// The step a simulated action shows as (`None` for a switchover nobody can take: a note).
fn step_of(
    action: simulate::Action,
    members: &[Named],
    update: &dyn Fn(&str) -> Update,
    notes: &mut Vec<String>,
) -> Option<PlannedStep> {
    Some(match action {
        simulate::Action::Update { ordinal, role } => {
            let member = name_of(members, ordinal).unwrap_or_default();
            let Update { because, in_place } = update(&member);
            PlannedStep::Restart {
                member,
                role,
                because,
                in_place,
            }
        }
        simulate::Action::Switchover { from, to } => PlannedStep::Switchover {
            from: name_of(members, from).unwrap_or_default(),
            to: name_of(members, to).unwrap_or_default(),
        },
        simulate::Action::NoSwitchover { .. } => {
            notes.push(
                "switchover: no ready member on the new revision to take over; the leader \
                 would be updated without one"
                    .to_string(),
            );
            return None;
        }
    })
}

/// A part's size change as a preview.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scaled {
    /// The steps, in order: members leaving from the top or joining in ordinal order, each with
    /// where its membership action runs.
    pub steps: Vec<PlannedStep>,
    /// Waits the scaling would meet.
    pub notes: Vec<String>,
    /// The members at the end.
    pub members: Vec<Named>,
}

/// Plays the scaling of part `part` from `members` to `desired` members through, as the
/// engines take it: the core's membership plan ([`crate::membership::plan`]) asked again after
/// each step, every new member coming up ready. `name` names a new member.
pub fn scale(
    part: &crate::spec::PartSpec,
    members: &[Named],
    desired: i32,
    name: &dyn Fn(i32) -> String,
) -> Scaled {
    use crate::membership::{Actions, Change, plan};
    let topology = &part.state.topology;
    let actions = Actions {
        join: topology.member_join().is_some(),
        leave: topology.member_leave().is_some(),
    };
    let mut out = Scaled {
        members: members.to_vec(),
        ..Scaled::default()
    };
    for _ in 0..=(members.len() + usize::try_from(desired).unwrap_or(0)) {
        let current = i32::try_from(out.members.len()).unwrap_or(i32::MAX);
        if current == desired {
            break;
        }
        let states: Vec<MemberState> = out.members.iter().map(|m| m.1.clone()).collect();
        let step = plan(current, desired, &states, &topology.roles, actions);
        let runner = |o: i32| name_of(&out.members, o);
        match step.change {
            Some(Change::Join { ordinal, run_in }) => {
                let join_in = runner(run_in);
                start(&mut out, ordinal, join_in, name);
            }
            Some(Change::Leave { run_in, .. }) => {
                let leave_in = runner(run_in);
                stop(&mut out, leave_in);
            }
            None if step.replicas > current => {
                (current..step.replicas).for_each(|o| start(&mut out, o, None, name));
            }
            None if step.replicas < current => {
                (step.replicas..current).for_each(|_| stop(&mut out, None));
            }
            None => {
                out.notes.push(format!(
                    "scaling of part {} would wait for {}",
                    part.name, step.waiting_for
                ));
                break;
            }
        }
    }
    out
}

fn start(out: &mut Scaled, ordinal: i32, join_in: Option<String>, name: &dyn Fn(i32) -> String) {
    let member = name(ordinal);
    out.steps.push(PlannedStep::Start {
        member: member.clone(),
        join_in,
    });
    let state = MemberState {
        ordinal,
        updated: true,
        ready: true,
        role: None,
        unready_seconds: 0,
        ready_seconds: simulate::SETTLED,
    };
    out.members.push((member, state));
}

/// Stops the highest member.
fn stop(out: &mut Scaled, leave_in: Option<String>) {
    if let Some((member, _)) = out.members.pop() {
        out.steps.push(PlannedStep::Stop { member, leave_in });
    }
}

/// The name of the member with `ordinal`.
pub fn name_of(members: &[Named], ordinal: i32) -> Option<String> {
    members
        .iter()
        .find(|m| m.1.ordinal == ordinal)
        .map(|m| m.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RoleSpec;

    fn member(ordinal: i32, role: &str) -> Named {
        let state = MemberState {
            ordinal,
            updated: false,
            ready: true,
            role: Some(role.to_string()),
            unready_seconds: 0,
            ready_seconds: simulate::SETTLED,
        };
        (format!("db-{ordinal}"), state)
    }

    fn policy(strategy: UpdateStrategy) -> Policy {
        let roles: Vec<RoleSpec> =
            serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#)
                .unwrap();
        Policy {
            strategy,
            partition: 0,
            max_unavailable: 1,
            roles,
            switchover: true,
            progress_deadline_seconds: 600,
            min_ready_seconds: 0,
            update_leader_without_switchover: false,
        }
    }

    #[test]
    fn a_role_aware_rollout_names_members_reasons_and_the_switchover() {
        let members = [member(0, "leader"), member(1, "follower")];
        let update = |name: &str| Update {
            because: vec![format!("image of {name}")],
            in_place: name == "db-1",
        };
        let rolled = roll("db", &policy(UpdateStrategy::RoleAware), &members, &update);
        assert_eq!(
            rolled.steps,
            [
                PlannedStep::Restart {
                    member: "db-1".into(),
                    role: Some("follower".into()),
                    because: vec!["image of db-1".into()],
                    in_place: true,
                },
                PlannedStep::Switchover {
                    from: "db-0".into(),
                    to: "db-1".into(),
                },
                PlannedStep::Restart {
                    member: "db-0".into(),
                    role: Some("follower".into()),
                    because: vec!["image of db-0".into()],
                    in_place: false,
                },
            ]
        );
        assert!(rolled.members.iter().all(|m| m.updated));
    }

    #[test]
    fn on_delete_takes_no_step_and_says_why() {
        let members = [member(0, "leader")];
        let rolled = roll("db", &policy(UpdateStrategy::OnDelete), &members, &|_| {
            Update::default()
        });
        assert!(rolled.steps.is_empty());
        assert!(rolled.notes[1].contains("OnDelete"), "{:?}", rolled.notes);
    }

    #[test]
    fn in_place_is_left_out_of_json_when_false() {
        let step = PlannedStep::Restart {
            member: "db-0".into(),
            role: None,
            because: Vec::new(),
            in_place: false,
        };
        let json = serde_json::to_value(&step).unwrap();
        assert!(json.get("inPlace").is_none(), "{json}");
    }

    fn part(actions: &str) -> crate::spec::PartSpec {
        serde_json::from_str(&format!(
            r#"{{"name": "db", "template": {{"spec": {{"containers": [{{"name": "db", "image": "db"}}]}}}},
               "state": {{"topology": {{"roles": [{{"name": "leader", "writable": true}}, {{"name": "follower"}}],
               "actions": {{{actions}}}}}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn scaling_with_actions_goes_one_member_at_a_time_through_the_leader() {
        let p = part(r#""memberJoin": {"exec": ["join"]}, "memberLeave": {"exec": ["leave"]}"#);
        let members = [member(0, "follower"), member(1, "leader")];
        let up = scale(&p, &members, 4, &|o| format!("db-{o}"));
        assert_eq!(
            up.steps,
            [
                PlannedStep::Start {
                    member: "db-2".into(),
                    join_in: Some("db-1".into()),
                },
                PlannedStep::Start {
                    member: "db-3".into(),
                    join_in: Some("db-1".into()),
                },
            ]
        );
        let down = scale(&p, &up.members, 1, &|o| format!("db-{o}"));
        let stops: Vec<&PlannedStep> = down.steps.iter().collect();
        assert_eq!(stops.len(), 3);
        assert_eq!(
            stops[2],
            &PlannedStep::Stop {
                member: "db-1".into(),
                leave_in: Some("db-0".into()),
            }
        );
    }

    #[test]
    fn without_actions_or_from_zero_members_start_at_once() {
        let none = part("");
        let up = scale(&none, &[], 2, &|o| format!("db-{o}"));
        assert!(
            up.steps
                .iter()
                .all(|s| matches!(s, PlannedStep::Start { join_in: None, .. }))
        );
        let members = [member(0, "leader")];
        let down = scale(&none, &members, 0, &|o| format!("db-{o}"));
        assert_eq!(
            down.steps,
            [PlannedStep::Stop {
                member: "db-0".into(),
                leave_in: None,
            }]
        );
    }
}
