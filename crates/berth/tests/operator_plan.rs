//! End-to-end test of `berth plan --kubeconfig` on the real control plane (kwok nodes): the
//! preview of a change names the objects and fields that change and the members in the order
//! the operator then really takes them (checked against its events), and writes nothing.

mod operator_common;

use berth_testkit::Cluster;
use operator_common::*;
use serde_json::Value;

/// Runs `berth plan --kubeconfig` for the manifest `manifest` with `extra` arguments.
fn plan(cluster: &Cluster, manifest: &str, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("web.yaml");
    std::fs::write(&file, manifest).unwrap();
    let output = assert_cmd::Command::cargo_bin("berth")
        .unwrap()
        .arg("plan")
        .arg(&file)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "berth plan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every object of the app in `ns` (and the app itself) with its resourceVersion.
fn versions(cluster: &Cluster, ns: &str) -> Vec<(String, String)> {
    let list = cluster.get_json(&[
        "statefulapps,statefulsets,pods,services,configmaps,poddisruptionbudgets",
        "-n",
        ns,
    ]);
    let mut out: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let text = |p: &str| {
                o.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (
                format!("{} {}", text("/kind"), text("/metadata/name")),
                text("/metadata/resourceVersion"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The members the plan's steps name, in order (`switchover A B` for a switchover).
fn planned_steps(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().split_once(". "))
        .filter(|(n, _)| n.parse::<usize>().is_ok())
        .map(|(_, step)| {
            let words: Vec<&str> = step.split_whitespace().collect();
            match words.as_slice() {
                ["restart", member, ..] => (*member).to_string(),
                ["switchover", from, "->", to] => format!("switchover {from} {to}"),
                _ => step.to_string(),
            }
        })
        .collect()
}

#[test]
fn a_plan_shows_the_changes_and_the_order_the_operator_then_takes_and_writes_nothing() {
    let Some((cluster, ns)) = setup("op-plan") else {
        return;
    };
    let members = tempfile::tempdir().unwrap();
    let (_operator, manifest) = leader_web(cluster, &ns.name, members.path(), MOVE_ROLE);

    let unchanged = plan(cluster, &manifest, &[]);
    assert!(
        unchanged.contains("0 to create, 0 to change, 0 to delete"),
        "{unchanged}"
    );
    assert!(unchanged.contains("no member changes"), "{unchanged}");

    let changed = manifest.replace("nginx-slim:0.8", "nginx-slim:0.9");
    let before = versions(cluster, &ns.name);
    let text = plan(cluster, &changed, &[]);
    let json: Value = serde_json::from_str(&plan(cluster, &changed, &["-o", "json"])).unwrap();
    assert_eq!(
        versions(cluster, &ns.name),
        before,
        "berth plan changed the cluster"
    );
    assert!(
        text.contains("      spec.template.spec.containers[nginx].image: \"registry.k8s.io/nginx-slim:0.8\" -> \"registry.k8s.io/nginx-slim:0.9\""),
        "{text}"
    );
    let set = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap();
    assert_eq!(set["action"], "change", "{set}");
    let planned = planned_steps(&text);
    assert_eq!(
        planned,
        ["web-2", "web-0", "switchover web-1 web-2", "web-1"],
        "{text}"
    );

    apply(cluster, &changed);
    replacement_order(cluster, &ns.name, 3);
    let taken: Vec<String> = step_events(cluster, &ns.name, &["RollingUpdate", "Switchover"])
        .into_iter()
        .map(|(reason, note)| match replaced_member(&note) {
            Some(member) => member,
            None if reason == "Switchover" => {
                let words: Vec<&str> = note.split_whitespace().collect();
                format!("switchover {} {}", words[3], words[5])
            }
            None => note,
        })
        .collect();
    assert_eq!(
        taken, planned,
        "the operator took another order than planned"
    );
}
