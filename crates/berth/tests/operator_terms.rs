//! Role terms on the test control plane: the web example with roles, its members run locally by
//! kwok (`local_members`), a role probe that prints the member's file `role` (`ROLE TERM`),
//! through the operator's exec (no agent). Of two members labelled with the writable role, the
//! one from the older term loses its label and takes the newer term, so its own stale reports
//! cannot label it again; a later election moves the label as usual.

mod operator_common;

use operator_common::*;

/// Each web member's role label and term annotation ("-" for none), by ordinal.
fn labels_and_terms(cluster: &Cluster, ns: &str) -> Vec<(String, String)> {
    let pods = cluster.get_json(&["pods", "-n", ns, "-l", "app.kubernetes.io/instance=web"]);
    let mut members: Vec<(String, (String, String))> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let meta = &p["metadata"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            (
                text(&meta["name"]),
                (
                    text(&meta["labels"]["berth.io/role"]),
                    text(&meta["annotations"]["berth.io/role-term"]),
                ),
            )
        })
        .collect();
    members.sort();
    members.into_iter().map(|(_, l)| l).collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .collect()
}

#[test]
fn a_writer_from_an_older_term_loses_its_label_and_its_stale_reports_do_not_restore_it() {
    let Some((cluster, ns)) = setup("op-terms") else {
        return;
    };
    let ns = &ns.name;
    let members = tempfile::tempdir().unwrap();
    local_members(
        cluster,
        ns,
        members.path(),
        &["leader 5", "leader 4", "follower 5"],
    );
    let operator = Operator::start(cluster, ns, &[]);
    apply(cluster, &web_with_role_probe(ns, MOVE_ROLE));
    wait_ready(cluster, ns, "web");

    // web-1 still claims leadership from term 4: it loses the label and takes term 5
    let settled = pairs(&[("leader", "5"), ("-", "5"), ("follower", "5")]);
    wait_until("web-1 unlabelled in term 5", TIMEOUT, || {
        (labels_and_terms(cluster, ns) == settled).then_some(())
    });
    assert!(
        operator
            .log()
            .contains("removed the role of a writer from an older term"),
        "{}",
        operator.log()
    );
    // its report from term 4 goes on (every second) and changes nothing: observed over three
    // probe periods
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(labels_and_terms(cluster, ns), settled);

    // a new election: web-1 wins term 6, web-0 follows
    let write = |member: &str, role: &str| {
        std::fs::write(
            members.path().join(member).join("role"),
            format!("{role}\n"),
        )
        .unwrap();
    };
    write("web-1", "leader 6");
    write("web-0", "follower 6");
    let elected = pairs(&[("follower", "6"), ("leader", "6"), ("follower", "5")]);
    wait_until("web-1 labelled leader in term 6", TIMEOUT, || {
        (labels_and_terms(cluster, ns) == elected).then_some(())
    });
}
