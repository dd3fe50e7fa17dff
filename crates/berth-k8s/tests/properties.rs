//! Property tests of rendering: it is a pure function (same input, same bytes), and every object
//! it produces is a valid instance of its Kubernetes type.

use berth_core::load::{Inputs, load};
use berth_k8s::render::{render, to_yaml};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use proptest::prelude::*;
use serde_json::Value;

/// A generated app: a few parts of every kind with volumes, files, ports and services.
fn app_yaml(parts: &[(u8, i32, u8, bool, u8)]) -> String {
    let mut out = String::from(
        "apiVersion: berth.io/v1alpha1\nkind: StatefulApp\nmetadata: {name: gen, namespace: ns1}\nspec:\n  parts:\n",
    );
    for (i, (kind, replicas, volumes, session, spread)) in parts.iter().enumerate() {
        let kind = ["StatefulSet", "Deployment", "DaemonSet"][*kind as usize % 3];
        out += &format!("  - name: p{i}\n    kind: {kind}\n");
        if kind != "DaemonSet" {
            out += &format!("    replicas: {replicas}\n");
        }
        out += "    template: {spec: {containers: [{name: c, image: img, command: [\"run\", \"{{ part.replicas }}\", \"{% for m in members %}{{ m.address }} {% endfor %}\"]}]}}\n";
        out += &format!(
            "    scheduling: {{spread: {}}}\n",
            ["Preferred", "Required", "None"][*spread as usize % 3]
        );
        out += "    state:\n";
        if kind == "StatefulSet" && *volumes > 0 {
            out += "      persistent:\n";
            for v in 0..*volumes {
                out += &format!(
                    "      - {{name: v{v}, size: {}Gi, mountPath: /v{v}}}\n",
                    v + 1
                );
            }
        }
        out += "      config: {files: [{name: a.conf, path: /etc/a.conf, content: \"n={{ part.replicas }}\\n{% for m in members %}{{ m.fqdn }}\\n{% endfor %}\"}]}\n";
        out += "      topology: {ports: [{name: main, port: 7000}, {name: aux, port: 7001}]}\n";
        if *session {
            out += "      session: {affinity: ClientIP, timeoutSeconds: 60}\n";
        }
        out += "    services: [{name: client, ports: [main]}]\n";
    }
    out
}

fn deserialises(object: &Value) -> Result<(), String> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let o = object.clone();
    let result = match kind {
        "ConfigMap" => serde_json::from_value::<ConfigMap>(o).map(drop),
        "Service" => serde_json::from_value::<Service>(o).map(drop),
        "StatefulSet" => serde_json::from_value::<StatefulSet>(o).map(drop),
        "Deployment" => serde_json::from_value::<Deployment>(o).map(drop),
        "DaemonSet" => serde_json::from_value::<DaemonSet>(o).map(drop),
        "PodDisruptionBudget" => serde_json::from_value::<PodDisruptionBudget>(o).map(drop),
        other => return Err(format!("unexpected kind {other}")),
    };
    result.map_err(|e| format!("{kind}: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn render_is_deterministic_and_every_object_is_typed(
        parts in prop::collection::vec((0u8..3, 0i32..12, 0u8..3, any::<bool>(), 0u8..3), 1..4)
    ) {
        let inputs = Inputs { app_file: "gen.yaml".into(), app_text: app_yaml(&parts), ..Default::default() };
        let app = load(&inputs).map_err(|e| TestCaseError::fail(format!("{e}\n{}", inputs.app_text)))?;
        let first = render(&app).unwrap();
        let second = render(&load(&inputs).unwrap()).unwrap();
        prop_assert_eq!(to_yaml(&first).unwrap(), to_yaml(&second).unwrap());
        for object in &first {
            prop_assert!(deserialises(object).is_ok(), "{:?}", deserialises(object));
            prop_assert_eq!(object["metadata"]["namespace"].as_str(), Some("ns1"));
        }
        let workloads = first.iter().filter(|o| ["StatefulSet", "Deployment", "DaemonSet"].contains(&o["kind"].as_str().unwrap())).count();
        prop_assert_eq!(workloads, parts.len());
    }
}
