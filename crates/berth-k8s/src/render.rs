//! A validated app to native Kubernetes objects, in a stable order, and those objects to YAML.
//! The same function feeds `berth render` and the operator.

use std::collections::BTreeMap;

use berth_core::load::{RenderedFile, ValidatedApp};
use berth_core::names;
use berth_core::spec::{
    PartSpec, PodUpdatePolicy, Retention, RetentionAction, UpdateStrategy, WorkloadKind,
};
use berth_core::topology::KubernetesAddressing;
use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec,
    DeploymentStrategy, RollingUpdateDaemonSet, RollingUpdateDeployment,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use crate::pod::{PodInputs, pod_template};
use crate::services::{PartNames, client_service, headless_service};

/// Rendering failed (only templates can fail once an app is validated).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template did not render.
    #[error("{path}: {message}")]
    Template {
        /// Field path of the template.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The part's volumes differ in retention policy, and a StatefulSet has one (validation
    /// rejects such apps; render never picks one of them silently).
    #[error(
        "{path}.retention: differs from the first volume's; a StatefulSet has one retention policy for all its volumes"
    )]
    Retention {
        /// Field path of the volume whose policy differs.
        path: String,
    },
    /// An object could not be turned into JSON.
    #[error("failed to serialise {what}: {source}")]
    Serialize {
        /// The object.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// Renders every object of `app` in apply order: per part its ConfigMaps, Services, workload and
/// disruption budget; then the extra objects in the order given.
///
/// # Errors
/// [`RenderError`] when a template fails.
pub fn render(app: &ValidatedApp) -> Result<Vec<Value>, RenderError> {
    render_with(app, Mode::Standalone)
}

/// Who rolls the members of StatefulSet parts to a new revision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `berth render` for kubectl and GitOps: the StatefulSet controller rolls members
    /// (native `RollingUpdate` with the part's partition and maxUnavailable).
    #[default]
    Standalone,
    /// The operator rolls members itself in the planner's order (roles, quorum, partition):
    /// StatefulSets use `OnDelete`.
    Operator,
}

/// [`render`] for the given [`Mode`].
///
/// # Errors
/// [`RenderError`] when a template fails.
pub fn render_with(app: &ValidatedApp, mode: Mode) -> Result<Vec<Value>, RenderError> {
    render_all(app, mode, None)
}

/// What the operator applies: [`Mode::Operator`], and with an `agent_image`, the role agent in
/// every StatefulSet part with a role probe ([`crate::agent`]).
///
/// # Errors
/// [`RenderError`] when a template fails.
pub fn render_for_operator(
    app: &ValidatedApp,
    agent_image: Option<&str>,
) -> Result<Vec<Value>, RenderError> {
    render_all(app, Mode::Operator, agent_image)
}

fn render_all(
    app: &ValidatedApp,
    mode: Mode,
    agent_image: Option<&str>,
) -> Result<Vec<Value>, RenderError> {
    let addressing = KubernetesAddressing::new(&app.namespace());
    let mut objects = Vec::new();
    for (index, part) in app.parts().iter().enumerate() {
        let agent = agent_image.filter(|_| crate::agent::wanted(part));
        objects.extend(render_part(app, index, part, &addressing, (mode, agent))?);
    }
    if agent_image.is_some() {
        objects.extend(agent_objects(app)?);
    }
    objects.extend(
        app.app
            .spec
            .extra_objects
            .iter()
            .map(|o| label_extra_object(o, &app.name())),
    );
    Ok(objects)
}

fn render_part(
    app: &ValidatedApp,
    index: usize,
    part: &PartSpec,
    addressing: &KubernetesAddressing,
    (mode, agent_image): (Mode, Option<&str>),
) -> Result<Vec<Value>, RenderError> {
    let (app_name, namespace) = (app.name(), app.namespace());
    let workload = names::workload_name(&app_name, &part.name);
    let headless = names::headless_service_name(&workload, part);
    let n = PartNames {
        app: &app_name,
        namespace: &namespace,
        workload: &workload,
        headless: &headless,
    };
    let files = app
        .config_files(index, addressing, None)
        .map_err(|e| RenderError::Template {
            path: format!("spec.parts[{index}].state.config.files"),
            message: e.to_string(),
        })?;
    let context = app.context(index, addressing, None);
    let mut pod = pod_template(&PodInputs {
        app: &app_name,
        part,
        part_path: format!("spec.parts[{index}]"),
        workload: &workload,
        headless: &headless,
        files: &files,
        context: &context,
    })?;
    if let Some(image) = agent_image {
        add_agent(app, index, image, &mut pod)?;
    }
    if mode == Mode::Operator && restores(app, index) {
        crate::restore::add_init_container(&mut pod, part);
    }
    if wants_in_place(part, mode) {
        crate::inplace::prepare_template(&mut pod);
    }
    let mut out = config_objects(app, index, part, addressing, &n, &files)?;
    for service in &part.services {
        out.push(to_value(&client_service(part, service, &n))?);
    }
    out.push(workload_object(index, part, &n, pod, mode)?);
    if let Some(pdb) = disruption_budget(part, &n) {
        out.push(to_value(&pdb)?);
    }
    Ok(out)
}

/// Adds the role agent to part `index`'s pod template, running its probe (if it has one) as the
/// operator would exec it.
fn add_agent(
    app: &ValidatedApp,
    index: usize,
    image: &str,
    pod: &mut k8s_openapi::api::core::v1::PodTemplateSpec,
) -> Result<(), RenderError> {
    let part = &app.parts()[index];
    let topology = &part.state.topology;
    let command = crate::roles::exec_command(app, index, berth_core::exec::ExecKind::RoleProbe)
        .map_err(|e| RenderError::Template {
            path: format!("spec.parts[{index}].state.topology.roleProbe.exec"),
            message: e.to_string(),
        })?
        .unwrap_or_default();
    let sidecar = crate::agent::Sidecar {
        image,
        probe: &command,
        period_seconds: topology
            .role_probe
            .as_ref()
            .map_or(10, |p| p.period_seconds),
        writable: topology
            .roles
            .iter()
            .filter(|r| r.writable)
            .map(|r| r.name.clone())
            .collect(),
    };
    crate::agent::add_to_template(pod, &app.name(), &sidecar);
    Ok(())
}

/// The app's agent ServiceAccount, Role and RoleBinding, as objects to apply.
fn agent_objects(app: &ValidatedApp) -> Result<Vec<Value>, RenderError> {
    let objects = crate::agent::objects(app);
    let mut out = Vec::new();
    if let Some(account) = &objects.account {
        out.push(to_value(account)?);
    }
    if let Some(role) = &objects.role {
        out.push(to_value(role)?);
    }
    if let Some(binding) = &objects.binding {
        out.push(to_value(binding)?);
    }
    Ok(out)
}

/// Whether part `index` is restored from `spec.restoreFrom` (its members wait for the
/// operator's restore before their first start).
fn restores(app: &ValidatedApp, index: usize) -> bool {
    app.app.spec.restore_from.is_some()
        && berth_core::restore::restore_part(app).is_ok_and(|(i, _, _)| i == index)
}

/// The part's ConfigMaps (its config files; for a StatefulSet its topology) and, for a
/// StatefulSet, its headless Service.
fn config_objects(
    app: &ValidatedApp,
    index: usize,
    part: &PartSpec,
    addressing: &KubernetesAddressing,
    n: &PartNames,
    files: &[RenderedFile],
) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::new();
    if !files.is_empty() {
        let data = files_data(files);
        out.push(to_value(&config_map(
            &names::config_map_name(n.workload),
            part,
            n,
            data,
        ))?);
    }
    if part.kind == WorkloadKind::StatefulSet {
        let data = topology_data(app, index, addressing);
        out.push(to_value(&config_map(
            &names::topology_map_name(n.workload),
            part,
            n,
            data,
        ))?);
        out.push(to_value(&headless_service(part, n))?);
    }
    Ok(out)
}

/// The part's workload (StatefulSet, Deployment or DaemonSet) around its pod template.
fn workload_object(
    index: usize,
    part: &PartSpec,
    n: &PartNames,
    pod: k8s_openapi::api::core::v1::PodTemplateSpec,
    mode: Mode,
) -> Result<Value, RenderError> {
    match part.kind {
        WorkloadKind::StatefulSet => {
            let retention = part
                .state
                .claim_retention()
                .map_err(|i| RenderError::Retention {
                    path: format!("spec.parts[{index}].state.persistent[{i}]"),
                })?;
            to_value(&stateful_set(part, n, pod, mode, retention))
        }
        WorkloadKind::Deployment => to_value(&deployment(part, n, pod)),
        WorkloadKind::DaemonSet => to_value(&daemon_set(part, n, pod)),
    }
}

fn to_value<T: serde::Serialize>(object: &T) -> Result<Value, RenderError> {
    serde_json::to_value(object).map_err(|source| RenderError::Serialize {
        what: std::any::type_name::<T>().to_string(),
        source,
    })
}

fn meta(name: &str, part: &PartSpec, n: &PartNames) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(n.namespace.to_string()),
        labels: Some(names::part_labels(n.app, &part.name)),
        ..Default::default()
    }
}

fn selector(part: &PartSpec, n: &PartNames) -> LabelSelector {
    LabelSelector {
        match_labels: Some(names::selector_labels(n.app, &part.name)),
        ..Default::default()
    }
}

fn config_map(
    name: &str,
    part: &PartSpec,
    n: &PartNames,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, part, n),
        data: Some(data),
        ..Default::default()
    }
}

fn files_data(files: &[RenderedFile]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|f| (f.name.clone(), f.content.clone()))
        .collect()
}

/// The published topology: members, peers and per-port endpoints. It changes with scaling but,
/// unlike config files, does not roll members: clients and scripts read it live.
fn topology_data(
    app: &ValidatedApp,
    index: usize,
    addressing: &KubernetesAddressing,
) -> BTreeMap<String, String> {
    let vars = berth_core::template::TemplateContext::for_part(
        &app.app,
        &app.params,
        index,
        addressing,
        None,
    );
    let mut data = BTreeMap::from([
        ("replicas".to_string(), vars.part.replicas.to_string()),
        (
            "members".to_string(),
            lines(vars.members.iter().map(|m| m.name.clone())),
        ),
        (
            "peers".to_string(),
            lines(
                vars.members
                    .iter()
                    .map(|m| format!("{}={}", m.name, m.address)),
            ),
        ),
    ]);
    for (port, list) in &vars.endpoints {
        data.insert(format!("endpoints.{port}"), list.join(","));
    }
    data
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.map(|l| l + "\n").collect()
}

fn stateful_set(
    part: &PartSpec,
    n: &PartNames,
    pod: k8s_openapi::api::core::v1::PodTemplateSpec,
    mode: Mode,
    retention: Retention,
) -> StatefulSet {
    let claims: Vec<PersistentVolumeClaim> = part
        .state
        .persistent
        .iter()
        .map(|v| claim_template(v, part, n))
        .collect();
    let mut metadata = meta(n.workload, part, n);
    let topology = &part.state.topology;
    if mode == Mode::Operator
        && (topology.member_join().is_some() || topology.member_leave().is_some())
    {
        metadata.annotations.get_or_insert_default().insert(
            names::ANNOTATION_ADMITTED_REPLICAS.to_string(),
            part.desired_replicas().to_string(),
        );
    }
    StatefulSet {
        metadata,
        spec: Some(StatefulSetSpec {
            replicas: Some(part.desired_replicas()),
            service_name: Some(n.headless.to_string()),
            pod_management_policy: Some(format!("{:?}", part.pod_management)),
            selector: selector(part, n),
            template: pod,
            update_strategy: Some(stateful_set_update(part, mode)),
            // Under the operator (OnDelete) the planner waits it out; shown for availableReplicas.
            min_ready_seconds: part.update.min_ready_seconds,
            volume_claim_templates: (!claims.is_empty()).then_some(claims),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_scaled: Some(retention_name(retention.when_scaled)),
                    when_deleted: Some(retention_name(retention.when_deleted)),
                },
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn retention_name(action: RetentionAction) -> String {
    format!("{action:?}")
}

fn claim_template(
    volume: &berth_core::spec::VolumeSpec,
    part: &PartSpec,
    n: &PartNames,
) -> PersistentVolumeClaim {
    let modes = if volume.access_modes.is_empty() {
        vec!["ReadWriteOnce".to_string()]
    } else {
        volume.access_modes.clone()
    };
    let mut metadata = meta(&volume.name, part, n);
    metadata.namespace = None;
    PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes),
            storage_class_name: volume.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(volume.size.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// In-place updates need the operator: it opens the readiness gate they add, which the kubelet
/// otherwise keeps closed.
fn wants_in_place(part: &PartSpec, mode: Mode) -> bool {
    mode == Mode::Operator
        && part.kind == WorkloadKind::StatefulSet
        && part.update.pod_update_policy != PodUpdatePolicy::ReCreate
}

/// Native update strategy for `berth render` (GitOps without the operator).
fn stateful_set_update(part: &PartSpec, mode: Mode) -> StatefulSetUpdateStrategy {
    if part.update.strategy == UpdateStrategy::OnDelete || mode == Mode::Operator {
        return StatefulSetUpdateStrategy {
            type_: Some("OnDelete".to_string()),
            rolling_update: None,
        };
    }
    let parallel = part.update.strategy == UpdateStrategy::Parallel;
    let rolling = RollingUpdateStatefulSetStrategy {
        partition: part.update.partition.filter(|p| *p > 0),
        max_unavailable: if parallel {
            part.update.max_unavailable.clone()
        } else {
            None
        },
    };
    let empty = rolling.partition.is_none() && rolling.max_unavailable.is_none();
    StatefulSetUpdateStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: (!empty).then_some(rolling),
    }
}

fn deployment(
    part: &PartSpec,
    n: &PartNames,
    pod: k8s_openapi::api::core::v1::PodTemplateSpec,
) -> Deployment {
    Deployment {
        metadata: meta(n.workload, part, n),
        spec: Some(DeploymentSpec {
            replicas: Some(part.desired_replicas()),
            selector: selector(part, n),
            template: pod,
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: part.update.max_unavailable.clone(),
                    max_surge: None,
                }),
            }),
            min_ready_seconds: part.update.min_ready_seconds,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn daemon_set(
    part: &PartSpec,
    n: &PartNames,
    pod: k8s_openapi::api::core::v1::PodTemplateSpec,
) -> DaemonSet {
    DaemonSet {
        metadata: meta(n.workload, part, n),
        spec: Some(DaemonSetSpec {
            selector: selector(part, n),
            template: pod,
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some(
                    if part.update.strategy == UpdateStrategy::OnDelete {
                        "OnDelete"
                    } else {
                        "RollingUpdate"
                    }
                    .to_string(),
                ),
                rolling_update: (part.update.strategy != UpdateStrategy::OnDelete).then(|| {
                    RollingUpdateDaemonSet {
                        max_unavailable: part.update.max_unavailable.clone(),
                        max_surge: None,
                    }
                }),
            }),
            min_ready_seconds: part.update.min_ready_seconds,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A budget keeping quorum: by default at most one member voluntarily disrupted at a time.
fn disruption_budget(part: &PartSpec, n: &PartNames) -> Option<PodDisruptionBudget> {
    let wanted = part.scheduling.disruption_budget.enabled
        && part.kind != WorkloadKind::DaemonSet
        && part.desired_replicas() > 1;
    wanted.then(|| PodDisruptionBudget {
        metadata: meta(n.workload, part, n),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(
                part.scheduling
                    .disruption_budget
                    .max_unavailable
                    .clone()
                    .unwrap_or(IntOrString::Int(1)),
            ),
            selector: Some(selector(part, n)),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Extra objects get berth's app labels so the operator can find (and prune) them.
fn label_extra_object(object: &Value, app: &str) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(labels) = labels.as_object_mut() {
            for (k, v) in names::app_labels(app) {
                labels.entry(k).or_insert(Value::String(v));
            }
        }
    }
    object
}

/// Multi-document YAML of `objects`, keys sorted, so equal input gives equal bytes.
///
/// # Errors
/// Only if a value cannot be represented in YAML.
pub fn to_yaml(objects: &[Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(object)?);
    }
    Ok(out)
}

/// A file name for an object: `NN-kind-name.yaml`, keeping apply order when sorted.
pub fn file_name(index: usize, object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_lowercase();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    format!("{index:02}-{kind}-{name}.yaml")
}
