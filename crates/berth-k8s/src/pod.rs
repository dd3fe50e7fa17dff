//! The pod template of a part: the user's template plus what berth's state declarations imply:
//! `BERTH_*` env, rendered templates, volume mounts, volumes, labels, the config hash and
//! spreading over nodes.

use std::collections::BTreeMap;

use berth_core::load::RenderedFile;
use berth_core::names;
use berth_core::spec::{PartSpec, Spread};
use berth_core::template;
use berth_core::topology::{self, EnvSource, KubernetesAddressing};
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, KeyToPath,
    ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec,
    SecretVolumeSource, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::render::RenderError;

/// Name of the pod volume carrying the part's config files.
const CONFIG_VOLUME: &str = "berth-config";

/// Everything the pod template depends on besides the part itself.
pub(crate) struct PodInputs<'a> {
    pub app: &'a str,
    pub part: &'a PartSpec,
    pub part_path: String,
    pub workload: &'a str,
    pub headless: &'a str,
    pub files: &'a [RenderedFile],
    pub context: &'a berth_core::template::TemplateValue,
}

/// Builds the pod template berth runs for a part.
pub(crate) fn pod_template(inputs: &PodInputs) -> Result<PodTemplateSpec, RenderError> {
    let part = inputs.part;
    let mut template = part.template.clone();
    let metadata = template.metadata.get_or_insert_with(Default::default);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(names::part_labels(inputs.app, &part.name));
    if !inputs.files.is_empty() {
        let hash = berth_core::load::config_hash(inputs.files);
        metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(names::ANNOTATION_CONFIG_HASH.to_string(), hash);
    }
    let spec = template.spec.get_or_insert_with(PodSpec::default);
    let env = standard_env(inputs);
    for (i, container) in spec.containers.iter_mut().enumerate() {
        render_container(
            container,
            &format!("{}.template.spec.containers[{i}]", inputs.part_path),
            inputs.context,
        )?;
        prepend_env(container, &env);
        container.volume_mounts = merge_mounts(
            container.volume_mounts.take(),
            mounts_for(part, inputs.files, &container.name),
        );
    }
    for (i, container) in spec.init_containers.iter_mut().flatten().enumerate() {
        render_container(
            container,
            &format!("{}.template.spec.initContainers[{i}]", inputs.part_path),
            inputs.context,
        )?;
        prepend_env(container, &env);
        // Init containers see the pod's state as its containers do (e.g. to initialise data).
        container.volume_mounts = merge_mounts(
            container.volume_mounts.take(),
            mounts_for(part, inputs.files, &container.name),
        );
    }
    let volumes = volumes(part, inputs.workload, inputs.files);
    if !volumes.is_empty() {
        spec.volumes.get_or_insert_with(Vec::new).extend(volumes);
    }
    add_spreading(spec, part, inputs.app);
    Ok(template)
}

fn render_container(
    container: &mut Container,
    at: &str,
    context: &berth_core::template::TemplateValue,
) -> Result<(), RenderError> {
    let render = |path: String, text: &mut String| {
        *text = template::render(text, context).map_err(|e| RenderError::Template {
            path,
            message: e.to_string(),
        })?;
        Ok::<(), RenderError>(())
    };
    for (path, word) in berth_core::validate::container_templates(container, at) {
        render(path, word)?;
    }
    Ok(())
}

fn standard_env(inputs: &PodInputs) -> Vec<EnvVar> {
    topology::member_env(inputs.app, inputs.part, inputs.headless)
        .into_iter()
        .map(|(name, source)| env_var(name, source))
        .collect()
}

/// `name` set from the pod's field `path` (the downward API).
pub(crate) fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn env_var(name: &str, source: EnvSource) -> EnvVar {
    let field = |path: &str| field_env(name, path);
    let literal = |value: String| EnvVar {
        name: name.to_string(),
        value: Some(value),
        ..Default::default()
    };
    match source {
        EnvSource::Literal(v) => literal(v),
        EnvSource::MemberName => field("metadata.name"),
        EnvSource::Ordinal => field("metadata.labels['apps.kubernetes.io/pod-index']"),
        EnvSource::Namespace => field("metadata.namespace"),
        EnvSource::PodIp => field("status.podIP"),
        EnvSource::StableAddress { headless } => {
            let domain = KubernetesAddressing::new("").cluster_domain;
            literal(KubernetesAddressing::stable_name(
                "$(BERTH_MEMBER)",
                &headless,
                "$(BERTH_NAMESPACE)",
                &domain,
            ))
        }
    }
}

/// berth's variables come first so the user's env can refer to them as `$(BERTH_ORDINAL)`.
fn prepend_env(container: &mut Container, standard: &[EnvVar]) {
    let user = container.env.take().unwrap_or_default();
    let mut env: Vec<EnvVar> = standard
        .iter()
        .filter(|s| !user.iter().any(|u| u.name == s.name))
        .cloned()
        .collect();
    env.extend(user);
    container.env = Some(env);
}

fn applies_to(containers: &[String], name: &str) -> bool {
    containers.is_empty() || containers.iter().any(|c| c == name)
}

fn mounts_for(part: &PartSpec, files: &[RenderedFile], container: &str) -> Vec<VolumeMount> {
    let mut mounts = Vec::new();
    for volume in &part.state.persistent {
        for m in volume
            .all_mounts()
            .into_iter()
            .filter(|m| applies_to(&m.containers, container))
        {
            mounts.push(VolumeMount {
                name: volume.name.clone(),
                mount_path: m.path,
                sub_path: m.sub_path,
                read_only: m.read_only.then_some(true),
                ..Default::default()
            });
        }
    }
    for f in files
        .iter()
        .filter(|f| applies_to(&f.containers, container))
    {
        mounts.push(VolumeMount {
            name: CONFIG_VOLUME.to_string(),
            mount_path: f.path.clone(),
            sub_path: Some(f.name.clone()),
            read_only: Some(true),
            ..Default::default()
        });
    }
    for (i, s) in part
        .state
        .config
        .secrets
        .iter()
        .enumerate()
        .filter(|(_, s)| applies_to(&s.containers, container))
    {
        mounts.push(VolumeMount {
            name: secret_volume_name(i),
            mount_path: s.path.clone(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    mounts
}

fn merge_mounts(
    user: Option<Vec<VolumeMount>>,
    ours: Vec<VolumeMount>,
) -> Option<Vec<VolumeMount>> {
    let mut all = user.unwrap_or_default();
    all.extend(ours);
    (!all.is_empty()).then_some(all)
}

fn secret_volume_name(index: usize) -> String {
    format!("berth-secret-{index}")
}

fn volumes(part: &PartSpec, workload: &str, files: &[RenderedFile]) -> Vec<Volume> {
    let mut volumes = Vec::new();
    if !files.is_empty() {
        let items = files
            .iter()
            .map(|f| KeyToPath {
                key: f.name.clone(),
                path: f.name.clone(),
                mode: Some(f.mode),
            })
            .collect();
        volumes.push(Volume {
            name: CONFIG_VOLUME.to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::config_map_name(workload),
                items: Some(items),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    for (i, s) in part.state.config.secrets.iter().enumerate() {
        volumes.push(Volume {
            name: secret_volume_name(i),
            secret: Some(SecretVolumeSource {
                secret_name: Some(s.secret_name.clone()),
                optional: s.optional.then_some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    volumes
}

/// Adds anti-affinity between a part's members unless the user wrote their own.
fn add_spreading(spec: &mut PodSpec, part: &PartSpec, app: &str) {
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    if part.scheduling.spread == Spread::None || affinity.pod_anti_affinity.is_some() {
        if affinity == &Affinity::default() {
            spec.affinity = None;
        }
        return;
    }
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(names::selector_labels(app, &part.name)),
            ..Default::default()
        }),
        topology_key: part.scheduling.topology_key.clone(),
        ..Default::default()
    };
    affinity.pod_anti_affinity = Some(match part.scheduling.spread {
        Spread::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..Default::default()
        },
        _ => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term,
                },
            ]),
            ..Default::default()
        },
    });
}
