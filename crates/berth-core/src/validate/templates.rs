//! Every template of an app must render: config file contents, env values, commands and args,
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
            let words = kind.words(&part.state.topology).into_iter().flatten();
            for (k, word) in words.enumerate() {
                check(kind.path(i, k), word);
            }
        }
    }
    problems.into_result(())
}

/// Calls `f` with the path and text of every templated string of a container.
pub fn for_each_template(container: &Container, at: &str, f: &mut impl FnMut(String, &str)) {
    for (k, word) in container.command.iter().flatten().enumerate() {
        f(format!("{at}.command[{k}]"), word);
    }
    for (k, word) in container.args.iter().flatten().enumerate() {
        f(format!("{at}.args[{k}]"), word);
    }
    for (k, env) in container.env.iter().flatten().enumerate() {
        if let Some(value) = &env.value {
            f(format!("{at}.env[{k}].value"), value);
        }
    }
}
