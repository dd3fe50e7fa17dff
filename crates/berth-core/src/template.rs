//! Templates in config files, env values and commands (minijinja), and the variable set they see.
//!
//! The variables are documented in `docs/templates.md`. Everything in them is the same for every
//! member on Kubernetes, so one ConfigMap serves a whole part; per-member values (ordinal, name)
//! come from the environment at start time (`BERTH_ORDINAL`, `BERTH_MEMBER`, ...).

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value;

use crate::names;
use crate::spec::{PartSpec, StatefulApp};
use crate::topology::{self, Addressing, MemberRef};

/// A rendered template context, as engines pass it around.
pub use minijinja::Value as TemplateValue;

/// The top-level template variables.
pub const VARIABLES: [&str; 10] = [
    "app",
    "part",
    "ports",
    "members",
    "endpoints",
    "files",
    "volumes",
    "paths",
    "parts",
    "params",
];

/// Every variable a template of one part sees.
#[derive(Clone, Debug, Serialize)]
pub struct TemplateContext {
    /// `app.name`, `app.namespace`.
    pub app: AppVars,
    /// The part the template belongs to.
    pub part: PartVars,
    /// Port numbers by port name.
    pub ports: BTreeMap<String, i32>,
    /// The part's members in ordinal order.
    pub members: Vec<MemberVars>,
    /// `address:port` of every member, by port name.
    pub endpoints: BTreeMap<String, Vec<String>>,
    /// Path of each config file, by file name.
    pub files: BTreeMap<String, String>,
    /// Path of each persistent volume's first mount, by volume name.
    pub volumes: BTreeMap<String, String>,
    /// Every declared container path (mounts, config files, secrets) as the engine places it:
    /// the same path on Kubernetes, a directory of the member locally.
    pub paths: BTreeMap<String, String>,
    /// Every part of the app, by name, for cross-part references.
    pub parts: BTreeMap<String, PeerPartVars>,
    /// Delivery parameter values, by key.
    pub params: BTreeMap<String, Value>,
}

/// App-level variables.
#[derive(Clone, Debug, Serialize)]
pub struct AppVars {
    /// The app's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// Variables describing the template's own part.
#[derive(Clone, Debug, Serialize)]
pub struct PartVars {
    /// The part's name.
    pub name: String,
    /// Its workload name (the members' name prefix).
    pub workload: String,
    /// Desired member count.
    pub replicas: i32,
    /// The headless Service name.
    pub headless: String,
}

/// One member as templates see it.
#[derive(Clone, Debug, Serialize)]
pub struct MemberVars {
    /// Stable name, e.g. `zk-server-0`.
    pub name: String,
    /// Ordinal.
    pub ordinal: i32,
    /// Short host name.
    pub host: String,
    /// Fully qualified name.
    pub fqdn: String,
    /// What to connect to: the FQDN on Kubernetes, the loopback address locally.
    pub address: String,
}

/// Another part, as templates see it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerPartVars {
    /// Workload name.
    pub workload: String,
    /// Desired member count.
    pub replicas: i32,
    /// Headless Service name.
    pub headless: String,
    /// Port numbers by name.
    pub ports: BTreeMap<String, i32>,
    /// Members in ordinal order.
    pub members: Vec<MemberVars>,
}

impl TemplateContext {
    /// The variables of part `part_index` as seen by `viewer` (`None` on engines where one
    /// rendering serves every member).
    pub fn for_part(
        app: &StatefulApp,
        params: &BTreeMap<String, Value>,
        part_index: usize,
        addressing: &dyn Addressing,
        viewer: Option<&MemberRef>,
    ) -> Self {
        let part = &app.spec.parts[part_index];
        let own = peer_vars(app, part, addressing);
        let path = |p: &str| addressing.container_path(viewer, p);
        Self {
            app: AppVars {
                name: topology::app_name(app),
                namespace: topology::app_namespace(app),
            },
            part: PartVars {
                name: part.name.clone(),
                workload: own.workload.clone(),
                replicas: own.replicas,
                headless: own.headless.clone(),
            },
            endpoints: endpoints(&own),
            files: part
                .state
                .config
                .files
                .iter()
                .map(|f| (f.name.clone(), path(&f.path)))
                .collect(),
            volumes: part
                .state
                .persistent
                .iter()
                .filter_map(|v| {
                    v.all_mounts()
                        .first()
                        .map(|m| (v.name.clone(), path(&m.path)))
                })
                .collect(),
            paths: declared_paths(part)
                .into_iter()
                .map(|p| (p.clone(), path(&p)))
                .collect(),
            parts: app
                .spec
                .parts
                .iter()
                .map(|p| (p.name.clone(), peer_vars(app, p, addressing)))
                .collect(),
            params: params.clone(),
            ports: own.ports,
            members: own.members,
        }
    }

    /// The context as a minijinja value.
    pub fn to_value(&self) -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(self))
    }
}

fn peer_vars(app: &StatefulApp, part: &PartSpec, addressing: &dyn Addressing) -> PeerPartVars {
    let workload = names::workload_name(&topology::app_name(app), &part.name);
    let headless = names::headless_service_name(&workload, part);
    let members = topology::members(app, part, part.desired_replicas())
        .iter()
        .map(|m| {
            let a = addressing.address(m, &headless);
            MemberVars {
                name: m.name(),
                ordinal: m.ordinal,
                address: a.fqdn.clone(),
                host: a.host,
                fqdn: a.fqdn,
            }
        })
        .collect();
    PeerPartVars {
        workload,
        replicas: part.desired_replicas(),
        headless,
        ports: part
            .state
            .topology
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.port))
            .collect(),
        members,
    }
}

/// Every container path a part declares: volume mounts, config files and secret directories.
pub fn declared_paths(part: &PartSpec) -> Vec<String> {
    let state = &part.state;
    let mounts = state
        .persistent
        .iter()
        .flat_map(|v| v.all_mounts().into_iter().map(|m| m.path));
    let files = state.config.files.iter().map(|f| f.path.clone());
    let secrets = state.config.secrets.iter().map(|s| s.path.clone());
    mounts.chain(files).chain(secrets).collect()
}

fn endpoints(part: &PeerPartVars) -> BTreeMap<String, Vec<String>> {
    let list = |port: i32| {
        part.members
            .iter()
            .map(|m| format!("{}:{port}", m.address))
            .collect()
    };
    part.ports
        .iter()
        .map(|(name, port)| (name.clone(), list(*port)))
        .collect()
}

/// A template that failed to render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateError {
    /// Line within the template, when known.
    pub line: Option<usize>,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "template line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Renders `source` with `context`. Unknown variables and attributes are errors, never empty text.
///
/// # Errors
/// A [`TemplateError`] naming the unknown variable or the syntax problem.
pub fn render(source: &str, context: &minijinja::Value) -> Result<String, TemplateError> {
    if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
        return Ok(source.to_string());
    }
    let env = environment();
    let template = env.template_from_str(source).map_err(to_error)?;
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| !VARIABLES.contains(&v.as_str()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        let message = format!(
            "unknown template variable `{}`; known variables: {}",
            unknown.join("`, `"),
            VARIABLES.join(", ")
        );
        return Err(TemplateError {
            line: None,
            message,
        });
    }
    template.render(context).map_err(|e| {
        let explained = (e.kind() == minijinja::ErrorKind::UndefinedError)
            .then(|| {
                e.detail()
                    .and_then(|d| explain_undefined(&env, source, context, d))
            })
            .flatten();
        let mut error = to_error(e);
        if let Some(message) = explained {
            error.message = message;
        }
        error
    })
}

/// For an undefined `a.b.attr`: names it and lists what `a.b` has. A loop variable (`m` in
/// `{% for m in members %}`) is looked at through the first item it iterates over.
fn explain_undefined(
    env: &Environment<'_>,
    source: &str,
    context: &minijinja::Value,
    detail: &str,
) -> Option<String> {
    let expr = detail.split('`').nth(1)?;
    let (base, _) = expr.rsplit_once('.')?;
    let root = base.split(['.', '[']).next()?;
    let scope = if VARIABLES.contains(&root) {
        context.clone()
    } else {
        loop_scope(env, source, context, root)?
    };
    let value = env.compile_expression(base).ok()?.eval(scope).ok()?;
    if value.kind() != minijinja::value::ValueKind::Map {
        return None;
    }
    let mut keys: Vec<String> = value.try_iter().ok()?.map(|k| k.to_string()).collect();
    keys.sort();
    Some(format!(
        "undefined `{expr}`; `{base}` has: {}",
        keys.join(", ")
    ))
}

/// `context` plus loop variable `name` bound to the first item of its `{% for name in ... %}`.
fn loop_scope(
    env: &Environment<'_>,
    source: &str,
    context: &minijinja::Value,
    name: &str,
) -> Option<minijinja::Value> {
    let needle = format!("for {name} in ");
    let start = source.find(&needle)? + needle.len();
    let end = start + source[start..].find("%}")?;
    let iterable = source[start..end].trim_end_matches('-').trim();
    let iterable = iterable
        .split(" if ")
        .next()?
        .trim_end_matches(" recursive");
    let items = env.compile_expression(iterable).ok()?.eval(context).ok()?;
    let first = items.try_iter().ok()?.next()?;
    let mut pairs: Vec<(String, minijinja::Value)> = context
        .try_iter()
        .ok()?
        .filter_map(|k| Some((k.to_string(), context.get_item(&k).ok()?)))
        .collect();
    pairs.push((name.to_string(), first));
    Some(minijinja::Value::from_pairs(pairs))
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let syntax = SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .expect("the default delimiters are valid");
    env.set_syntax(syntax);
    env
}

fn to_error(e: minijinja::Error) -> TemplateError {
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    TemplateError {
        line: e.line(),
        message: format!("{}{detail}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    #[test]
    fn renders_loops_over_members() {
        let ctx = context! { members => vec![context!{ordinal => 0, address => "a"}, context!{ordinal => 1, address => "b"}] };
        let out = render(
            "{% for m in members %}server.{{ m.ordinal + 1 }}={{ m.address }}\n{% endfor %}",
            &ctx,
        )
        .unwrap();
        assert_eq!(out, "server.1=a\nserver.2=b\n");
    }

    #[test]
    fn unknown_variables_are_errors_not_empty_text() {
        let err = render("x={{ replicaz }}", &context! {}).unwrap_err();
        assert!(
            err.message.contains("unknown template variable `replicaz`"),
            "{err}"
        );
        let err = render(
            "x={{ part.replicaz }}",
            &context! { part => context!{ replicas => 3 } },
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "undefined `part.replicaz`; `part` has: replicas"
        );
    }

    #[test]
    fn undefined_attributes_list_what_exists_also_through_loops() {
        let ctx = context! {
            ports => context!{ mysql => 3306, admin => 33062 },
            members => vec![context!{ordinal => 0, address => "a"}],
        };
        let err = render("{{ ports.mysq }}", &ctx).unwrap_err();
        assert_eq!(
            err.message,
            "undefined `ports.mysq`; `ports` has: admin, mysql"
        );
        let err = render("{% for m in members %}{{ m.adress }}{% endfor %}", &ctx).unwrap_err();
        assert_eq!(
            err.message,
            "undefined `m.adress`; `m` has: address, ordinal"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = render("a\n{{ part.name", &context! {}).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }

    #[test]
    fn text_without_template_syntax_is_untouched() {
        assert_eq!(
            render("echo $((BERTH_ORDINAL+1))", &context! {}).unwrap(),
            "echo $((BERTH_ORDINAL+1))"
        );
    }
}
