//! Rules for one part: replicas, pod template, services, scheduling, update policy, local overrides.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Checker, MAX_REPLICAS, state};
use crate::spec::{PartSpec, UpdateStrategy, WorkloadKind};

pub(super) fn check_part(part: &PartSpec, at: &str, c: &mut Checker) {
    c.dns_label(&part.name, 40, format!("{at}.name"), "part name");
    check_replicas(part, at, c);
    let containers = container_names(part);
    c.require(
        !containers.is_empty(),
        format!("{at}.template.spec.containers"),
        "a part needs at least one container in template.spec.containers",
    );
    c.unique(
        "container name",
        containers.iter().enumerate().map(|(i, n)| {
            (
                format!("{at}.template.spec.containers[{i}].name"),
                n.as_str(),
            )
        }),
    );
    state::check_state(part, &containers, at, c);
    check_services(part, at, c);
    check_scheduling(part, at, c);
    check_update(part, at, c);
    check_local(part, &containers, at, c);
}

/// Names of the pod template's (main) containers.
pub(super) fn container_names(part: &PartSpec) -> Vec<String> {
    part.template
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

fn check_replicas(part: &PartSpec, at: &str, c: &mut Checker) {
    let path = format!("{at}.replicas");
    match (part.kind, part.replicas) {
        (WorkloadKind::DaemonSet, Some(_)) => c.problems.push(
            path,
            "a DaemonSet runs one member per node: remove `replicas`",
        ),
        (_, Some(n)) if !(0..=MAX_REPLICAS).contains(&n) => {
            c.problems.push(
                path,
                format!("expected a member count from 0 to {MAX_REPLICAS}, found {n}"),
            );
        }
        _ => {}
    }
}

fn check_services(part: &PartSpec, at: &str, c: &mut Checker) {
    let ports = part.state.topology.port_names();
    let roles = part.state.topology.role_names();
    c.unique(
        "service name",
        part.services
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("{at}.services[{i}].name"), s.name.as_str())),
    );
    for (i, s) in part.services.iter().enumerate() {
        let here = format!("{at}.services[{i}]");
        c.dns_label(&s.name, 20, format!("{here}.name"), "service name");
        c.require(
            !ports.is_empty(),
            format!("{here}.ports"),
            "a service needs ports: declare them in state.topology.ports",
        );
        for (j, p) in s.ports.iter().enumerate() {
            c.require(
                ports.contains(&p.as_str()),
                format!("{here}.ports[{j}]"),
                format!("unknown port `{p}`; declared ports: {}", list(&ports)),
            );
        }
        if let Some(role) = &s.role {
            c.require(
                roles.contains(&role.as_str()),
                format!("{here}.role"),
                format!("unknown role `{role}`; declared roles: {}", list(&roles)),
            );
            c.require(
                part.state.topology.role_probe.is_some(),
                format!("{here}.role"),
                format!("a Service selecting role `{role}` needs members' roles, but {at}.state.topology.roleProbe is not declared: without it no member is ever selected"),
            );
        }
        if let Some(session) = &s.session_affinity {
            state::check_session(session, &format!("{here}.sessionAffinity"), c);
        }
    }
}

fn check_scheduling(part: &PartSpec, at: &str, c: &mut Checker) {
    let key = &part.scheduling.topology_key;
    c.require(
        !key.is_empty(),
        format!("{at}.scheduling.topologyKey"),
        "expected a node label name such as kubernetes.io/hostname",
    );
    if let Some(max) = &part.scheduling.disruption_budget.max_unavailable {
        check_int_or_percent(
            max,
            &format!("{at}.scheduling.disruptionBudget.maxUnavailable"),
            c,
        );
    }
}

fn check_update(part: &PartSpec, at: &str, c: &mut Checker) {
    let u = &part.update;
    if let Some(max) = &u.max_unavailable {
        check_int_or_percent(max, &format!("{at}.update.maxUnavailable"), c);
    }
    if let Some(p) = u.partition {
        let replicas = part.desired_replicas();
        c.require(
            (0..=replicas).contains(&p),
            format!("{at}.update.partition"),
            format!("expected a partition from 0 to the replica count {replicas}, found {p}"),
        );
        c.require(
            part.kind == WorkloadKind::StatefulSet,
            format!("{at}.update.partition"),
            "a partition needs ordinals: only StatefulSet parts have them",
        );
    }
    if u.strategy == UpdateStrategy::RoleAware {
        c.require(
            !part.state.topology.roles.is_empty(),
            format!("{at}.update.strategy"),
            "RoleAware updates need roles: declare them in state.topology.roles",
        );
    }
    if let Some(d) = u.progress_deadline_seconds {
        c.require(
            d > 0,
            format!("{at}.update.progressDeadlineSeconds"),
            format!("expected a positive number of seconds, found {d}"),
        );
    }
}

fn check_local(part: &PartSpec, containers: &[String], at: &str, c: &mut Checker) {
    let Some(local) = &part.local else { return };
    if let Some(name) = &local.container {
        c.require(
            containers.contains(name),
            format!("{at}.local.container"),
            format!(
                "unknown container `{name}`; containers: {}",
                containers.join(", ")
            ),
        );
    }
}

/// An int-or-string must be a positive number or a percentage from 1% to 100%.
pub(super) fn check_int_or_percent(value: &IntOrString, path: &str, c: &mut Checker) {
    let ok = match value {
        IntOrString::Int(n) => *n >= 1,
        IntOrString::String(s) => s
            .strip_suffix('%')
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=100).contains(&n)),
    };
    let shown = match value {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => format!("\"{s}\""),
    };
    c.require(ok, path, format!("expected a number of members (at least 1) or a percentage such as \"25%\", found {shown}"));
}

pub(super) fn list(items: &[&str]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}
