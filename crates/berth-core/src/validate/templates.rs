//! Every template of an app must render: config file contents, env values, commands and args
//! (and the exec commands of probes and lifecycle hooks),
//! local command overrides, and the role probe's and actions' commands. Unknown variables are errors, never empty strings.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serde_json::Value;

use crate::diag::Diagnostics;
use crate::exec::ExecKind;
use crate::spec::StatefulApp;
use crate::template::{self, TemplateContext};
use crate::topology::KubernetesAddressing;

/// Renders every template of `app` with Kubernetes addressing and reports those that fail.
///
/// # Errors
/// One diagnostic per failing template, at its field path.
pub fn check_templates(
    app: &StatefulApp,
    params: &BTreeMap<String, Value>,
) -> Result<(), Diagnostics> {
    let mut problems = Diagnostics::default();
    let addressing = KubernetesAddressing::new(&crate::topology::app_namespace(app));
    for (i, part) in app.spec.parts.iter().enumerate() {
        let context = TemplateContext::for_part(app, params, i, &addressing, None).to_value();
        let mut check = |path: String, source: &str| {
            if let Err(e) = template::render(source, &context) {
                problems.push(path, e.to_string());
            }
        };
        let at = format!("spec.parts[{i}]");
        for (j, f) in part.state.config.files.iter().enumerate() {
            check(format!("{at}.state.config.files[{j}].content"), &f.content);
        }
        if let Some(spec) = &part.template.spec {
            for (j, container) in spec.containers.iter().enumerate() {
                for_each_template(
                    container,
                    &format!("{at}.template.spec.containers[{j}]"),
                    &mut check,
                );
            }
            for (j, container) in spec.init_containers.iter().flatten().enumerate() {
                for_each_template(
                    container,
                    &format!("{at}.template.spec.initContainers[{j}]"),
                    &mut check,
                );
            }
        }
        for (j, word) in part.local.iter().flat_map(|l| l.command.iter()).enumerate() {
            check(format!("{at}.local.command[{j}]"), word);
        }
        for kind in ExecKind::ALL {
            let words = kind.words(&part.state).into_iter().flatten();
            for (k, word) in words.enumerate() {
                check(kind.path(i, k), word);
            }
        }
    }
    problems.into_result(())
}

/// Calls `f` with the path and text of every templated string of a container.
pub fn for_each_template(container: &Container, at: &str, f: &mut impl FnMut(String, &str)) {
    let mut copy = container.clone();
    for (path, word) in container_templates(&mut copy, at) {
        f(path, word);
    }
}

/// Every templated string of a container with its field path: `command`, `args`, env `value`s,
/// and the exec commands of its probes (readiness, liveness, startup) and lifecycle hooks
/// (postStart, preStop), which run in the container as its command does. Validation checks
/// exactly these and the Kubernetes renderer renders exactly these.
pub fn container_templates<'a>(
    container: &'a mut Container,
    at: &str,
) -> Vec<(String, &'a mut String)> {
    let Container {
        command,
        args,
        env,
        readiness_probe,
        liveness_probe,
        startup_probe,
        lifecycle,
        ..
    } = container;
    let mut out = Vec::new();
    push_words(&mut out, format!("{at}.command"), command.as_mut());
    push_words(&mut out, format!("{at}.args"), args.as_mut());
    for (k, env) in env.iter_mut().flatten().enumerate() {
        if let Some(value) = env.value.as_mut() {
            out.push((format!("{at}.env[{k}].value"), value));
        }
    }
    let probes = [
        ("readinessProbe", readiness_probe),
        ("livenessProbe", liveness_probe),
        ("startupProbe", startup_probe),
    ];
    for (field, probe) in probes {
        let exec = probe.as_mut().and_then(|p| p.exec.as_mut());
        let words = exec.and_then(|e| e.command.as_mut());
        push_words(&mut out, format!("{at}.{field}.exec.command"), words);
    }
    if let Some(lifecycle) = lifecycle.as_mut() {
        let hooks = [
            ("postStart", &mut lifecycle.post_start),
            ("preStop", &mut lifecycle.pre_stop),
        ];
        for (field, hook) in hooks {
            let exec = hook.as_mut().and_then(|h| h.exec.as_mut());
            let words = exec.and_then(|e| e.command.as_mut());
            push_words(
                &mut out,
                format!("{at}.lifecycle.{field}.exec.command"),
                words,
            );
        }
    }
    out
}

fn push_words<'a>(
    out: &mut Vec<(String, &'a mut String)>,
    at: String,
    words: Option<&'a mut Vec<String>>,
) {
    for (k, word) in words.into_iter().flatten().enumerate() {
        out.push((format!("{at}[{k}]"), word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(value: Value) -> Container {
        serde_json::from_value(value).unwrap()
    }

    fn exec(words: &[&str]) -> Value {
        json!({"exec": {"command": words}})
    }

    #[test]
    fn probe_and_hook_commands_are_templates_like_the_command() {
        let mut c = container(json!({
            "name": "redis",
            "command": ["sh", "{{ a }}"],
            "args": ["{{ b }}"],
            "env": [
                {"name": "X", "value": "{{ c }}"},
                {"name": "Y", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            ],
            "readinessProbe": exec(&["sh", "-c", "ping -p {{ ports.redis }}"]),
            "livenessProbe": {"tcpSocket": {"port": 6379}},
            "startupProbe": exec(&["{{ d }}"]),
            "lifecycle": {"postStart": exec(&["{{ e }}"]), "preStop": exec(&["{{ f }}"])},
        }));
        let paths: Vec<String> = container_templates(&mut c, "c")
            .into_iter()
            .map(|(path, _)| path)
            .collect();
        assert_eq!(
            paths,
            [
                "c.command[0]",
                "c.command[1]",
                "c.args[0]",
                "c.env[0].value",
                "c.readinessProbe.exec.command[0]",
                "c.readinessProbe.exec.command[1]",
                "c.readinessProbe.exec.command[2]",
                "c.startupProbe.exec.command[0]",
                "c.lifecycle.postStart.exec.command[0]",
                "c.lifecycle.preStop.exec.command[0]",
            ]
        );
    }

    #[test]
    fn rendering_through_the_list_changes_the_container() {
        let mut c = container(json!({
            "name": "redis",
            "readinessProbe": exec(&["sh", "-c", "ping -p {{ port }}"]),
        }));
        for (_, word) in container_templates(&mut c, "c") {
            *word = word.replace("{{ port }}", "6379");
        }
        let probe = c.readiness_probe.unwrap().exec.unwrap().command.unwrap();
        assert_eq!(probe, ["sh", "-c", "ping -p 6379"]);
    }
}
