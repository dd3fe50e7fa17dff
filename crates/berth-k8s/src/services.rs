//! The Services of a part: the headless one that gives members stable DNS names (published
//! before members are ready, so peers can find each other while forming a cluster) and the
//! client Services, optionally following a role and keeping client sessions on one member.

use std::collections::BTreeMap;

use berth_core::names;
use berth_core::spec::{Affinity, PartSpec, PortSpec, ServiceSpec, SessionState};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, Service, ServicePort, ServiceSpec as K8sServiceSpec, SessionAffinityConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Where a part's Services come from.
pub(crate) struct PartNames<'a> {
    pub app: &'a str,
    pub namespace: &'a str,
    pub workload: &'a str,
    pub headless: &'a str,
}

/// The headless Service of a part.
pub(crate) fn headless_service(part: &PartSpec, n: &PartNames) -> Service {
    let ports: Vec<&PortSpec> = part.state.topology.ports.iter().collect();
    Service {
        metadata: metadata(n.headless, part, n, balancing_annotation(part, &ports)),
        spec: Some(K8sServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(names::selector_labels(n.app, &part.name)),
            ports: service_ports(&ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A client Service of a part.
pub(crate) fn client_service(part: &PartSpec, service: &ServiceSpec, n: &PartNames) -> Service {
    let ports: Vec<&PortSpec> = if service.ports.is_empty() {
        part.state.topology.ports.iter().collect()
    } else {
        part.state
            .topology
            .ports
            .iter()
            .filter(|p| service.ports.contains(&p.name))
            .collect()
    };
    let mut selector = names::selector_labels(n.app, &part.name);
    if let Some(role) = &service.role {
        selector.insert(names::LABEL_ROLE.to_string(), role.clone());
    }
    let mut annotations = balancing_annotation(part, &ports);
    annotations.extend(service.annotations.clone());
    let session = service
        .session_affinity
        .or(part.state.session)
        .unwrap_or_default();
    Service {
        metadata: metadata(
            &names::service_name(n.workload, &service.name),
            part,
            n,
            annotations,
        ),
        spec: Some(K8sServiceSpec {
            type_: Some(format!("{:?}", service.service_type)),
            selector: Some(selector),
            ports: service_ports(&ports),
            session_affinity: Some(affinity_name(&session).to_string()),
            session_affinity_config: session_config(&session),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn metadata(
    name: &str,
    part: &PartSpec,
    n: &PartNames,
    annotations: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(n.namespace.to_string()),
        labels: Some(names::part_labels(n.app, &part.name)),
        annotations: (!annotations.is_empty()).then_some(annotations),
        ..Default::default()
    }
}

fn service_ports(ports: &[&PortSpec]) -> Option<Vec<ServicePort>> {
    let list: Vec<ServicePort> = ports
        .iter()
        .map(|p| ServicePort {
            name: Some(p.name.clone()),
            port: p.port,
            target_port: Some(IntOrString::Int(p.port)),
            protocol: Some(format!("{:?}", p.protocol)),
            ..Default::default()
        })
        .collect();
    (!list.is_empty()).then_some(list)
}

/// Marks Services whose ports carry long-lived connections that clients must balance themselves.
fn balancing_annotation(part: &PartSpec, ports: &[&PortSpec]) -> BTreeMap<String, String> {
    let balanced: Vec<&str> = part
        .state
        .connection
        .endpoints
        .iter()
        .filter(|e| e.client_side_balancing && ports.iter().any(|p| p.name == e.port))
        .map(|e| e.port.as_str())
        .collect();
    if balanced.is_empty() {
        return BTreeMap::new();
    }
    BTreeMap::from([(
        names::ANNOTATION_CLIENT_SIDE_BALANCING.to_string(),
        balanced.join(","),
    )])
}

fn affinity_name(session: &SessionState) -> &'static str {
    match session.affinity {
        Affinity::None => "None",
        Affinity::ClientIP => "ClientIP",
    }
}

fn session_config(session: &SessionState) -> Option<SessionAffinityConfig> {
    (session.affinity == Affinity::ClientIP).then(|| SessionAffinityConfig {
        client_ip: Some(ClientIPConfig {
            timeout_seconds: Some(session.timeout_seconds.unwrap_or(10800)),
        }),
    })
}
