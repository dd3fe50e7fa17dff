//! The `berth` binary's contract: exit codes, where output goes, and that nothing is written
//! when input is invalid.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn berth() -> Command {
    let mut cmd = Command::cargo_bin("berth").unwrap();
    cmd.current_dir(repo());
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_committed_crd_is_what_berth_crd_prints() {
    let printed = berth()
        .arg("crd")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let committed = std::fs::read_to_string(repo().join("deploy/crd.yaml")).unwrap();
    assert!(
        String::from_utf8(printed).unwrap() == committed,
        "deploy/crd.yaml is stale: run `cargo run -- crd > deploy/crd.yaml`"
    );
}

#[test]
fn valid_examples_exit_zero() {
    for example in ["zookeeper", "redis", "web", "etcd"] {
        berth()
            .args(["validate", &format!("examples/{example}.yaml")])
            .assert()
            .success()
            .stdout(predicate::str::contains("valid"));
    }
}

#[test]
fn invalid_input_exits_one_with_file_line_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata: {name: a}\nspec:\n  parts:\n  - name: p\n    replicas: -2\n    template: {spec: {containers: [{name: c, image: i}]}}\n",
    );
    berth()
        .args(["validate", bad.to_str().unwrap()])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "bad.yaml:7: spec.parts[0].replicas: expected a member count from 0 to 1000, found -2",
        ));
}

#[test]
fn a_missing_file_exits_one() {
    berth()
        .args(["validate", "no-such-file.yaml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no-such-file.yaml: cannot read the file",
        ));
}

#[test]
fn usage_errors_exit_two() {
    berth().args(["validate"]).assert().code(2);
    berth().args(["frobnicate"]).assert().code(2);
}

#[test]
fn values_with_unknown_keys_are_rejected_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let values = write(dir.path(), "v.yaml", "image: zookeeper:3.9\nreplcas: 5\n");
    berth()
        .args([
            "validate",
            "examples/zookeeper.yaml",
            "-f",
            values.to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "v.yaml:2: replcas: unknown parameter `replcas`",
        ));
}

#[test]
fn render_with_set_lists_five_servers() {
    let out = berth()
        .args(["render", "examples/zookeeper.yaml", "--set", "replicas=5"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("server.").count(), 5);
    assert!(text.contains("server.5=zookeeper-server-4."));
}

#[test]
fn render_to_a_directory_writes_one_file_per_object_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    berth()
        .args(["render", "examples/web.yaml", "-o", out.to_str().unwrap()])
        .assert()
        .success();
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "00-configmap-web-topology.yaml",
            "01-service-nginx.yaml",
            "02-service-web-http.yaml",
            "03-statefulset-web.yaml",
            "04-poddisruptionbudget-web.yaml"
        ]
    );
}

#[test]
fn nothing_is_written_when_validation_fails() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    berth()
        .args([
            "render",
            "examples/web.yaml",
            "--set",
            "replicas=-1",
            "-o",
            out.to_str().unwrap(),
        ])
        .assert()
        .code(1);
    assert!(!out.exists());
}

#[test]
fn params_are_listed_as_a_table_and_as_json() {
    berth()
        .args(["params", "examples/zookeeper.yaml"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("storageClass")
                .and(predicate::str::contains("zk-storage"))
                .and(predicate::str::contains("KEY")),
        );
    let out = berth()
        .args(["params", "examples/zookeeper.yaml", "-o", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(rows[4]["key"], "replicas");
    assert_eq!(rows[4]["type"], "int");
    assert_eq!(rows[4]["default"], 3);
}

#[test]
fn a_typo_in_the_pod_template_is_an_error_not_a_workload_without_image() {
    let dir = tempfile::tempdir().unwrap();
    let app = write(
        dir.path(),
        "app.yaml",
        "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata: {name: a}\nspec:\n  parts:\n  - name: p\n    template:\n      spec:\n        containers:\n        - name: c\n          imagee: i\n          resources: {limits: {cpu: lots}}\n",
    );
    berth()
        .args(["render", app.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains(
            "app.yaml:11: spec.parts[0].template.spec.containers[0].imagee: unknown field `imagee`; did you mean `image`?",
        ))
        .stderr(predicate::str::contains(
            "app.yaml:12: spec.parts[0].template.spec.containers[0].resources.limits.cpu: `lots` is not a quantity",
        ));
}

#[test]
fn a_bad_value_is_reported_where_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let values = write(dir.path(), "v.yaml", "image: zookeeper:3.9\nreplicas: -2\n");
    berth()
        .args(["validate", "examples/zookeeper.yaml", "-f"])
        .arg(&values)
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "v.yaml:2: spec.parts[0].replicas: expected a member count from 0 to 1000, found -2",
        ));
    berth()
        .args(["validate", "examples/zookeeper.yaml", "--set", "replicas=1001"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "--set replicas=1001: spec.parts[0].replicas: expected a member count from 0 to 1000, found 1001",
        ));
}
