//! The Helm chart renders the same objects as `deploy/` (and ships the same CRD), so the two
//! install paths cannot drift.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use berth_testkit::repo_root;
use serde::Deserialize;
use serde_json::Value;

fn documents(text: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

fn helm() -> PathBuf {
    if let Ok(path) = std::env::var("BERTH_HELM") {
        return path.into();
    }
    let env = Command::new(repo_root().join("scripts/testenv"))
        .arg("env")
        .output()
        .unwrap();
    let env = String::from_utf8(env.stdout).unwrap();
    let bin = env
        .lines()
        .find_map(|l| l.strip_prefix("export BERTH_TESTENV_BIN="))
        .expect("scripts/testenv env names its bin directory");
    PathBuf::from(bin.trim_matches('\'')).join("helm")
}

fn as_set(objects: Vec<Value>) -> BTreeSet<String> {
    objects
        .into_iter()
        .map(|o| serde_json::to_string(&o).unwrap())
        .collect()
}

#[test]
fn the_chart_renders_what_deploy_holds() {
    let helm = helm();
    let out = Command::new(&helm)
        .args([
            "template",
            "berth",
            "charts/berth",
            "--namespace",
            "berth-system",
        ])
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (built by scripts/testenv build): {e}",
                helm.display()
            )
        });
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = as_set(documents(&String::from_utf8(out.stdout).unwrap()));
    let read = |name: &str| std::fs::read_to_string(repo_root().join("deploy").join(name)).unwrap();
    let mut deployed = documents(&read("rbac.yaml"));
    deployed.extend(documents(&read("operator.yaml")));
    deployed.retain(|o| o["kind"] != "Namespace");
    let deployed = as_set(deployed);
    let only_chart: Vec<_> = rendered.difference(&deployed).collect();
    let only_deploy: Vec<_> = deployed.difference(&rendered).collect();
    assert!(
        only_chart.is_empty() && only_deploy.is_empty(),
        "only in the chart: {only_chart:#?}\nonly in deploy/: {only_deploy:#?}"
    );
}

#[test]
fn the_chart_ships_the_generated_crds() {
    let root = repo_root();
    let read = |name: &str| std::fs::read_to_string(root.join("charts/berth/crds").join(name));
    let chart = [
        read("statefulapps.berth.io.yaml").unwrap(),
        read("statefulappbackups.berth.io.yaml").unwrap(),
    ]
    .join("---\n");
    let deploy = std::fs::read_to_string(root.join("deploy/crd.yaml")).unwrap();
    assert!(
        chart == deploy,
        "charts/berth/crds is stale: split deploy/crd.yaml at `---` into \
         statefulapps.berth.io.yaml and statefulappbackups.berth.io.yaml"
    );
}
