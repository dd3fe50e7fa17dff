//! The `berth` binary's contract: exit codes, where output goes, and that nothing is written
//! when input is invalid, `-` for standard input, and `render -o` into a directory.

use std::path::{Path, PathBuf};

mod local_common;

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

/// Asserts that the committed `file` is what `berth COMMAND` prints.
fn assert_generated(command: &str, file: &str) {
    let printed = berth()
        .arg(command)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let committed = std::fs::read_to_string(repo().join(file)).unwrap();
    assert!(
        String::from_utf8(printed).unwrap() == committed,
        "{file} is stale: run `cargo run -- {command} > {file}`"
    );
}

#[test]
fn the_committed_crd_is_what_berth_crd_prints() {
    assert_generated("crd", "deploy/crd.yaml");
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
fn a_bad_backup_spec_names_each_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("examples/redis.yaml")).unwrap();
    let text = text
        .replacen("endpoint: http://127.0.0.1:9000", "endpoint: 127.0.0.1:9000", 1)
        .replacen("bucket: berth-backups", "bucket: Berth_Backups", 1)
        .replacen("            keepLast: 7\n", "            keepLast: 7\n          schedule: {cron: 'every day', timeZone: Mars/Olympus}\n", 1);
    let bad = write(dir.path(), "redis.yaml", &text);
    let out = berth()
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "spec.parts[0].state.backup.repository.endpoint: `127.0.0.1:9000` is not an http:// or https:// URL",
        "spec.parts[0].state.backup.repository.bucket: `Berth_Backups` is not a bucket name",
        "spec.parts[0].state.backup.schedule.cron: `every day` is not a cron schedule",
    ] {
        assert!(
            stderr.contains(expected),
            "missing `{expected}` in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("redis.yaml:"),
        "no file and line:\n{stderr}"
    );
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
    let servers = text.lines().filter(|l| {
        let l = l.trim_start();
        l.starts_with("server.") && l[7..].starts_with(|c: char| c.is_ascii_digit())
    });
    assert_eq!(servers.count(), 5);
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
    assert_eq!(
        file_names(&out),
        [
            ".berth-render",
            "00-configmap-web-topology.yaml",
            "01-service-nginx.yaml",
            "02-service-web-http.yaml",
            "03-statefulset-web.yaml",
            "04-poddisruptionbudget-web.yaml"
        ]
    );
    let manifest = std::fs::read_to_string(out.join(".berth-render")).unwrap();
    assert!(manifest.ends_with("\n03-statefulset-web.yaml\n04-poddisruptionbudget-web.yaml\n"));
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
                .and(predicate::str::contains(
                    "storage class of the data volumes",
                ))
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

fn file_names(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    files
}

#[test]
fn rendering_again_into_a_directory_removes_objects_no_longer_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    berth()
        .args(["render", "examples/web.yaml", "-o", out_arg])
        .assert()
        .success();
    assert!(out.join("04-poddisruptionbudget-web.yaml").exists());
    // Someone else's file beside berth's stays.
    write(&out, "kustomization.yaml", "resources: []\n");
    // One member: no PodDisruptionBudget any more.
    berth()
        .args([
            "render",
            "examples/web.yaml",
            "--set",
            "replicas=1",
            "-o",
            out_arg,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("removed 1 no longer rendered"));
    assert_eq!(
        file_names(&out),
        [
            ".berth-render",
            "00-configmap-web-topology.yaml",
            "01-service-nginx.yaml",
            "02-service-web-http.yaml",
            "03-statefulset-web.yaml",
            "kustomization.yaml"
        ]
    );
}

#[test]
fn render_refuses_a_non_empty_directory_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "notes.txt", "mine\n");
    berth()
        .args([
            "render",
            "examples/web.yaml",
            "-o",
            dir.path().to_str().unwrap(),
        ])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains(dir.path().to_str().unwrap())
                .and(predicate::str::contains(
                    "was not written by `berth render -o`",
                ))
                .and(predicate::str::contains("new or empty directory")),
        );
    assert_eq!(file_names(dir.path()), ["notes.txt"]);
}

#[test]
fn a_failed_render_leaves_the_previous_files_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    berth()
        .args(["render", "examples/web.yaml", "-o", out_arg])
        .assert()
        .success();
    let before: Vec<(String, String)> = file_names(&out)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read_to_string(out.join(&n)).unwrap()))
        .collect();
    berth()
        .args([
            "render",
            "examples/web.yaml",
            "--set",
            "replicas=-1",
            "-o",
            out_arg,
        ])
        .assert()
        .code(1);
    let after: Vec<(String, String)> = file_names(&out)
        .into_iter()
        .map(|n| (n.clone(), std::fs::read_to_string(out.join(&n)).unwrap()))
        .collect();
    assert_eq!(before, after);
}

/// `berth ARGS` with `text` on standard input.
fn berth_with_stdin(args: &[&str], text: &str) -> assert_cmd::assert::Assert {
    berth().args(args).write_stdin(text).assert()
}

const BAD_APP: &str = "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata: {name: a}\nspec:\n  parts:\n  - name: p\n    replicas: -2\n    template: {spec: {containers: [{name: c, image: i}]}}\n";

#[test]
fn a_dash_reads_the_app_from_stdin_and_messages_name_it() {
    let zookeeper = std::fs::read_to_string(repo().join("examples/zookeeper.yaml")).unwrap();
    berth_with_stdin(&["validate", "-"], &zookeeper)
        .success()
        .stdout(predicate::str::contains(
            "<stdin>: valid (1 part, 3 members)",
        ));
    berth_with_stdin(&["validate", "-"], BAD_APP)
        .code(1)
        .stderr(predicate::str::contains(
            "<stdin>:7: spec.parts[0].replicas: expected a member count from 0 to 1000, found -2",
        ));
    berth_with_stdin(&["render", "-", "--set", "replicas=5"], &zookeeper)
        .success()
        .stdout(predicate::str::contains("server.5=zookeeper-server-4."));
    berth_with_stdin(&["params", "-", "-o", "json"], &zookeeper)
        .success()
        .stdout(predicate::str::contains("\"key\": \"replicas\""));
}

#[test]
fn a_dash_reads_a_values_file_from_stdin_but_only_one_file_can() {
    berth_with_stdin(
        &["validate", "examples/zookeeper.yaml", "-f", "-"],
        "image: zookeeper:3.9\nreplcas: 5\n",
    )
    .code(1)
    .stderr(predicate::str::contains(
        "<stdin>:2: replcas: unknown parameter `replcas`",
    ));
    berth_with_stdin(&["validate", "-", "-f", "-"], BAD_APP)
        .code(1)
        .stderr(predicate::str::contains(
            "2 files are named `-`, but only one (the app or one values file) can be read from standard input",
        ));
}

#[test]
fn up_reads_the_app_from_stdin() {
    let app = local_common::LocalApp::new("stdin");
    let manifest = "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata: {name: stdin}\nspec:\n  parts:\n  - name: stdin\n    template:\n      spec:\n        terminationGracePeriodSeconds: 1\n        containers: [{name: main, image: example/none:1, command: [sleep, '1000']}]\n";
    app.berth(&["up", "-", "--slot", "90"])
        .write_stdin(manifest)
        .assert()
        .success();
    let members = app.members();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["ready"], true);
}

#[test]
fn the_committed_reference_is_what_berth_reference_prints() {
    assert_generated("reference", "docs/reference.md");
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
