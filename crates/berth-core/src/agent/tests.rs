//! Tests of the role agent's decisions: labels written only on change, stale reports
//! ignored, failures clearing the role, and stale writers found across a part.

use super::*;
use proptest::prelude::*;

fn labelled(role: Option<&str>, term: Option<u64>) -> Labelled {
    Labelled {
        role: role.map(str::to_string),
        term,
    }
}

fn reported(role: &str, term: Option<u64>) -> Observation {
    Observation::Reported(Report {
        role: role.to_string(),
        term,
    })
}

#[test]
fn a_role_that_holds_writes_nothing() {
    let current = labelled(Some("master"), None);
    assert_eq!(next_label(&current, &reported("master", None)), None);
    let current = labelled(Some("leader"), Some(3));
    assert_eq!(next_label(&current, &reported("leader", Some(3))), None);
}

#[test]
fn a_new_role_or_term_is_written() {
    assert_eq!(
        next_label(&Labelled::default(), &reported("slave", None)),
        Some(labelled(Some("slave"), None))
    );
    assert_eq!(
        next_label(
            &labelled(Some("leader"), Some(3)),
            &reported("leader", Some(4))
        ),
        Some(labelled(Some("leader"), Some(4)))
    );
}

#[test]
fn a_report_from_an_older_term_is_ignored() {
    let current = labelled(Some("follower"), Some(5));
    assert_eq!(next_label(&current, &reported("leader", Some(4))), None);
}

#[test]
fn a_report_without_a_term_keeps_the_known_term() {
    let current = labelled(Some("follower"), Some(5));
    assert_eq!(
        next_label(&current, &reported("leader", None)),
        Some(labelled(Some("leader"), Some(5)))
    );
}

#[test]
fn a_failed_probe_clears_the_role_and_keeps_the_term() {
    let current = labelled(Some("leader"), Some(5));
    assert_eq!(
        next_label(&current, &Observation::Failed),
        Some(labelled(None, Some(5)))
    );
    assert_eq!(
        next_label(&labelled(None, Some(5)), &Observation::Failed),
        None
    );
}

#[test]
fn readiness_fails_only_for_an_unwritten_change_or_a_cut_off_writer() {
    use std::time::Duration;
    let writable = ["leader".to_string()];
    let (leader, follower) = (
        labelled(Some("leader"), None),
        labelled(Some("follower"), None),
    );
    let view = |pending, label, lost: Option<u64>| AgentView {
        pending,
        label,
        writable: &writable,
        api_lost_for: lost.map(Duration::from_secs),
        period: Duration::from_secs(2),
    };
    assert!(unready(&view(true, Some(&follower), None)));
    assert!(unready(&view(false, Some(&leader), Some(3))));
    assert!(
        !unready(&view(false, Some(&leader), Some(1))),
        "within a period"
    );
    assert!(!unready(&view(false, Some(&follower), Some(3))));
    assert!(!unready(&view(false, Some(&leader), None)));
    assert!(!unready(&view(false, None, Some(3))));
}

fn roles() -> Vec<RoleSpec> {
    vec![
        RoleSpec {
            name: "leader".into(),
            writable: true,
            voting: true,
            update_order: None,
        },
        RoleSpec {
            name: "follower".into(),
            writable: false,
            voting: true,
            update_order: None,
        },
    ]
}

fn member(name: &str, role: Option<&str>, term: Option<u64>) -> MemberLabel {
    MemberLabel {
        name: name.into(),
        label: labelled(role, term),
    }
}

#[test]
fn the_writer_from_an_older_term_loses_its_label() {
    let members = [
        member("a-0", Some("leader"), Some(4)),
        member("a-1", Some("leader"), Some(5)),
        member("a-2", Some("follower"), Some(3)),
    ];
    assert_eq!(
        stale_writers(&roles(), &members),
        [member("a-0", None, Some(5))]
    );
}

#[test]
fn writers_without_terms_or_alone_are_left_alone() {
    let untermed = [
        member("a-0", Some("leader"), None),
        member("a-1", Some("leader"), None),
    ];
    assert!(stale_writers(&roles(), &untermed).is_empty());
    let alone = [
        member("a-0", Some("leader"), Some(1)),
        member("a-1", Some("follower"), Some(9)),
    ];
    assert!(stale_writers(&roles(), &alone).is_empty());
}

fn any_member() -> impl Strategy<Value = MemberLabel> {
    (
        prop::option::of(prop::sample::select(vec!["leader", "follower"])),
        prop::option::of(0u64..4),
    )
        .prop_map(|(role, term)| member("", role, term))
}

fn any_observation() -> impl Strategy<Value = Observation> {
    prop_oneof![
        Just(Observation::Failed),
        (
            prop::sample::select(vec!["leader", "follower"]),
            prop::option::of(0u64..6)
        )
            .prop_map(|(role, term)| reported(role, term)),
    ]
}

proptest! {
    /// After the stale writers lose their label, the writers left that carry a term all carry
    /// the same one (two writers remain only when no term tells them apart), and a stripped
    /// member's own report from its old term cannot label it again.
    #[test]
    fn after_stripping_no_two_writers_from_different_terms_remain(
        members in prop::collection::vec(any_member(), 0..6)
    ) {
        let members: Vec<MemberLabel> = members
            .into_iter()
            .enumerate()
            .map(|(i, m)| MemberLabel { name: format!("a-{i}"), ..m })
            .collect();
        let stale = stale_writers(&roles(), &members);
        let stripped = |m: &MemberLabel| stale.iter().any(|s| s.name == m.name);
        let left: Vec<&MemberLabel> = members
            .iter()
            .filter(|m| m.label.role.as_deref() == Some("leader") && !stripped(m))
            .collect();
        let terms: std::collections::BTreeSet<u64> =
            left.iter().filter_map(|m| m.label.term).collect();
        prop_assert!(terms.len() <= 1, "writers left from terms {terms:?}");
        for s in &stale {
            let before = members.iter().find(|m| m.name == s.name).unwrap();
            prop_assert_eq!(before.label.role.as_deref(), Some("leader"));
            let again = reported("leader", before.label.term);
            prop_assert_eq!(next_label(&s.label, &again), None, "relabelled from its old term");
        }
    }

    /// Played through any sequence of probes, the label is the last report that was not
    /// older than the newest term seen (or nothing after a failure), and the term never goes
    /// back.
    #[test]
    fn the_label_follows_the_newest_report_and_the_term_never_decreases(
        seen in prop::collection::vec(any_observation(), 0..20)
    ) {
        let mut label = Labelled::default();
        for observation in &seen {
            let before = label.clone();
            if let Some(next) = next_label(&label, observation) {
                prop_assert_ne!(&next, &before, "a write that changes nothing");
                label = next;
            }
            prop_assert!(label.term >= before.term, "term went back: {:?} -> {:?}", before, label);
            match observation {
                Observation::Failed => prop_assert_eq!(&label.role, &None),
                Observation::Reported(r) if !is_older(r.term, before.term) => {
                    prop_assert_eq!(label.role.as_deref(), Some(r.role.as_str()))
                }
                Observation::Reported(_) => prop_assert_eq!(&label, &before),
            }
        }
    }
}
