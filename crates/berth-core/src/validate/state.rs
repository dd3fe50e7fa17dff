//! Rules for a part's five kinds of state.

use super::Checker;
use super::part::list;
use crate::names;
use crate::quantity;
use crate::spec::{Affinity, PartSpec, SessionState, TopologyState, VolumeSpec, WorkloadKind};

const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

pub(super) fn check_state(part: &PartSpec, containers: &[String], at: &str, c: &mut Checker) {
    let at = format!("{at}.state");
    check_persistent(part, containers, &at, c);
    super::backup::check_part_backup(part, &at, c);
    check_config(part, containers, &at, c);
    check_topology(part, &at, c);
    if let Some(session) = &part.state.session {
        check_session(session, &format!("{at}.session"), c);
    }
    check_connection(part, &at, c);
    check_mount_paths(part, &at, c);
}

fn check_containers(wanted: &[String], containers: &[String], at: &str, c: &mut Checker) {
    for (i, name) in wanted.iter().enumerate() {
        c.require(
            containers.contains(name),
            format!("{at}[{i}]"),
            format!(
                "unknown container `{name}`; containers: {}",
                containers.join(", ")
            ),
        );
    }
}

fn check_persistent(part: &PartSpec, containers: &[String], at: &str, c: &mut Checker) {
    let volumes = &part.state.persistent;
    if !volumes.is_empty() && part.kind != WorkloadKind::StatefulSet {
        c.problems.push(
            format!("{at}.persistent"),
            format!(
                "per-member volumes need kind StatefulSet; this part is a {:?}",
                part.kind
            ),
        );
    }
    c.unique(
        "volume name",
        volumes
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{at}.persistent[{i}].name"), v.name.as_str())),
    );
    check_retention(part, at, c);
    for (i, v) in volumes.iter().enumerate() {
        check_volume(v, containers, &format!("{at}.persistent[{i}]"), c);
    }
}

/// One per-member volume at `here`: name, size, storage class, access modes, mounts.
fn check_volume(v: &VolumeSpec, containers: &[String], here: &str, c: &mut Checker) {
    c.dns_label(&v.name, 63, format!("{here}.name"), "volume name");
    if let Err(e) = quantity::check_positive(&v.size) {
        c.problems.push(format!("{here}.size"), e);
    }
    if let Some(class) = &v.storage_class {
        c.require(
            names::is_dns_subdomain(class),
            format!("{here}.storageClass"),
            format!("`{class}` is not a valid storage class name"),
        );
    }
    for (j, mode) in v.access_modes.iter().enumerate() {
        c.require(
            ACCESS_MODES.contains(&mode.as_str()),
            format!("{here}.accessModes[{j}]"),
            format!(
                "unknown access mode `{mode}`; expected one of {}",
                ACCESS_MODES.join(", ")
            ),
        );
    }
    c.require(
        v.mount_path.is_some() || !v.mounts.is_empty(),
        format!("{here}.mountPath"),
        "a volume needs `mountPath` or `mounts`",
    );
    for (j, m) in v.mounts.iter().enumerate() {
        if let Some(sub) = &m.sub_path {
            let ok = !sub.starts_with('/') && !sub.split('/').any(|s| s == "..");
            c.require(
                ok,
                format!("{here}.mounts[{j}].subPath"),
                format!("`{sub}` must be a relative path without `..`"),
            );
        }
        check_containers(
            &m.containers,
            containers,
            &format!("{here}.mounts[{j}].containers"),
            c,
        );
    }
}

/// Every volume of a part needs the first one's retention policy: the StatefulSet has one.
fn check_retention(part: &PartSpec, at: &str, c: &mut Checker) {
    let volumes = &part.state.persistent;
    let Some(first) = volumes.first() else {
        return;
    };
    for (i, v) in volumes.iter().enumerate().skip(1) {
        let fields = [
            (
                "whenScaled",
                v.retention.when_scaled,
                first.retention.when_scaled,
            ),
            (
                "whenDeleted",
                v.retention.when_deleted,
                first.retention.when_deleted,
            ),
        ];
        for (field, this, theirs) in fields {
            c.require(
                this == theirs,
                format!("{at}.persistent[{i}].retention.{field}"),
                format!(
                    "`{this:?}` differs from `{theirs:?}` of volume `{}` \
                     ({at}.persistent[0].retention.{field}); a StatefulSet has one retention \
                     policy for all its volumes",
                    first.name
                ),
            );
        }
    }
}

fn check_config(part: &PartSpec, containers: &[String], at: &str, c: &mut Checker) {
    let config = &part.state.config;
    c.unique(
        "config file name",
        config
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (format!("{at}.config.files[{i}].name"), f.name.as_str())),
    );
    for (i, f) in config.files.iter().enumerate() {
        let here = format!("{at}.config.files[{i}]");
        let key_ok = !f.name.is_empty()
            && f.name.len() <= 253
            && f.name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch));
        c.require(
            key_ok,
            format!("{here}.name"),
            format!(
                "`{}` is not a valid file name: expected letters, digits, '-', '_' and '.'",
                f.name
            ),
        );
        if let Some(mode) = &f.mode {
            c.require(
                f.mode_bits().is_some(),
                format!("{here}.mode"),
                format!(
                    "expected an octal file mode such as \"0644\" or \"0755\", found \"{mode}\""
                ),
            );
        }
        check_containers(&f.containers, containers, &format!("{here}.containers"), c);
    }
    for (i, s) in config.secrets.iter().enumerate() {
        let here = format!("{at}.config.secrets[{i}]");
        c.require(
            names::is_dns_subdomain(&s.secret_name),
            format!("{here}.secretName"),
            format!("`{}` is not a valid Secret name", s.secret_name),
        );
        check_containers(&s.containers, containers, &format!("{here}.containers"), c);
    }
}

fn check_topology(part: &PartSpec, at: &str, c: &mut Checker) {
    let t = &part.state.topology;
    let at = format!("{at}.topology");
    check_ports(t, &at, c);
    if let Some(h) = &t.headless_service {
        c.dns_label(h, 63, format!("{at}.headlessService"), "Service name");
    }
    c.unique(
        "role name",
        t.roles
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{at}.roles[{i}].name"), r.name.as_str())),
    );
    for (i, r) in t.roles.iter().enumerate() {
        c.dns_label(&r.name, 63, format!("{at}.roles[{i}].name"), "role name");
    }
    check_writers(t, &at, c);
    if let Some(probe) = &t.role_probe {
        c.require(
            !probe.exec.is_empty(),
            format!("{at}.roleProbe.exec"),
            "a role probe needs a command",
        );
        c.require(
            !t.roles.is_empty(),
            format!("{at}.roleProbe"),
            "a role probe needs roles: declare them in roles",
        );
    }
    check_actions(t, &at, c);
}

/// Port names and numbers: unique, valid names, numbers in range.
fn check_ports(t: &TopologyState, at: &str, c: &mut Checker) {
    c.unique(
        "port name",
        t.ports
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("{at}.ports[{i}].name"), p.name.as_str())),
    );
    let numbers: Vec<String> = t
        .ports
        .iter()
        .map(|p| format!("{}/{:?}", p.port, p.protocol))
        .collect();
    c.unique(
        "port number",
        numbers
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("{at}.ports[{i}].port"), n.as_str())),
    );
    for (i, p) in t.ports.iter().enumerate() {
        c.require(names::is_port_name(&p.name), format!("{at}.ports[{i}].name"), format!("`{}` is not a valid port name: expected at most 15 lowercase letters, digits and '-', with at least one letter", p.name));
        c.require(
            (1..=65535).contains(&p.port),
            format!("{at}.ports[{i}].port"),
            format!("expected a port from 1 to 65535, found {}", p.port),
        );
    }
}

/// Each action has a command and a sane timeout; a switchover needs a writable role and a
/// role probe to find the leader.
fn check_actions(t: &TopologyState, at: &str, c: &mut Checker) {
    let Some(actions) = &t.actions else { return };
    let all = [
        ("switchover", &actions.switchover),
        ("memberJoin", &actions.member_join),
        ("memberLeave", &actions.member_leave),
    ];
    for (name, action) in all {
        let Some(action) = action else { continue };
        let here = format!("{at}.actions.{name}");
        c.require(
            !action.exec.is_empty() && !action.exec[0].trim().is_empty(),
            format!("{here}.exec"),
            "an action needs a command",
        );
        c.require(
            (1..=3600).contains(&action.timeout_seconds),
            format!("{here}.timeoutSeconds"),
            format!(
                "expected 1 to 3600 seconds, found {}",
                action.timeout_seconds
            ),
        );
    }
    if actions.switchover.is_some() {
        c.require(
            t.roles.iter().any(|r| r.writable),
            format!("{at}.actions.switchover"),
            "a switchover needs a writable role: declare it in roles",
        );
        c.require(
            t.role_probe.is_some(),
            format!("{at}.actions.switchover"),
            "a switchover needs a role probe to find the leader: declare roleProbe",
        );
    }
}

/// At most one writable role, unless the part says it has several writers.
fn check_writers(t: &TopologyState, at: &str, c: &mut Checker) {
    if t.multiple_writers {
        return;
    }
    let writable: Vec<(usize, &str)> = t
        .roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.writable)
        .map(|(i, r)| (i, r.name.as_str()))
        .collect();
    let Some((first, first_name)) = writable.first() else {
        return;
    };
    for (i, name) in &writable[1..] {
        c.problems.push(
            format!("{at}.roles[{i}].writable"),
            format!("`{name}` is a second writable role (`{first_name}` at {at}.roles[{first}] is one): set {at}.multipleWriters: true if members really take writes in both roles"),
        );
    }
}

pub(super) fn check_session(session: &SessionState, at: &str, c: &mut Checker) {
    if let Some(t) = session.timeout_seconds {
        c.require(
            (1..=86400).contains(&t),
            format!("{at}.timeoutSeconds"),
            format!("expected 1 to 86400 seconds, found {t}"),
        );
        c.require(
            session.affinity == Affinity::ClientIP,
            format!("{at}.timeoutSeconds"),
            "a timeout needs affinity ClientIP",
        );
    }
}

fn check_connection(part: &PartSpec, at: &str, c: &mut Checker) {
    let ports = part.state.topology.port_names();
    let endpoints = &part.state.connection.endpoints;
    c.unique(
        "endpoint port",
        endpoints.iter().enumerate().map(|(i, e)| {
            (
                format!("{at}.connection.endpoints[{i}].port"),
                e.port.as_str(),
            )
        }),
    );
    for (i, e) in endpoints.iter().enumerate() {
        c.require(
            ports.contains(&e.port.as_str()),
            format!("{at}.connection.endpoints[{i}].port"),
            format!(
                "unknown port `{}`; declared ports: {}",
                e.port,
                list(&ports)
            ),
        );
    }
}

/// Volume mounts, config files and secrets must not land on the same path in one container.
fn check_mount_paths(part: &PartSpec, at: &str, c: &mut Checker) {
    let mut paths: Vec<(String, String)> = Vec::new();
    for (i, v) in part.state.persistent.iter().enumerate() {
        if let Some(p) = &v.mount_path {
            c.absolute_path(p, format!("{at}.persistent[{i}].mountPath"));
            paths.push((format!("{at}.persistent[{i}].mountPath"), p.clone()));
        }
        for (j, m) in v.mounts.iter().enumerate() {
            c.absolute_path(&m.path, format!("{at}.persistent[{i}].mounts[{j}].path"));
            paths.push((
                format!("{at}.persistent[{i}].mounts[{j}].path"),
                m.path.clone(),
            ));
        }
    }
    for (i, f) in part.state.config.files.iter().enumerate() {
        c.absolute_path(&f.path, format!("{at}.config.files[{i}].path"));
        paths.push((format!("{at}.config.files[{i}].path"), f.path.clone()));
    }
    for (i, s) in part.state.config.secrets.iter().enumerate() {
        c.absolute_path(&s.path, format!("{at}.config.secrets[{i}].path"));
        paths.push((format!("{at}.config.secrets[{i}].path"), s.path.clone()));
    }
    c.unique(
        "mount path",
        paths.iter().map(|(p, v)| (p.clone(), v.as_str())),
    );
}

#[cfg(test)]
mod tests {
    use crate::load::{Inputs, load};

    fn problems(topology: &str) -> String {
        let text = format!(
            r#"apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {{name: kv}}
spec:
  parts:
    - name: kv
      template:
        spec:
          containers: [{{name: kv, image: "kv:1", command: [kv]}}]
      state:
        topology:
{topology}
"#
        );
        let inputs = Inputs {
            app_file: "kv.yaml".into(),
            app_text: text,
            ..Default::default()
        };
        match load(&inputs) {
            Ok(_) => String::new(),
            Err(d) => d.to_string(),
        }
    }

    #[test]
    fn actions_need_commands_and_a_switchover_needs_roles() {
        let ok = "          roles: [{name: leader, writable: true}]\n          roleProbe: {exec: [role]}\n          actions:\n            switchover: {exec: [sh, -c, move]}\n";
        assert_eq!(problems(ok), "");
        let no_roles = "          actions:\n            switchover: {exec: [move]}\n";
        let found = problems(no_roles);
        assert!(
            found.contains("a switchover needs a writable role"),
            "{found}"
        );
        assert!(found.contains("needs a role probe"), "{found}");
        let empty = "          actions:\n            memberJoin: {exec: []}\n";
        assert!(problems(empty).contains("an action needs a command"));
        let unknown = "          actions:\n            failover: {exec: [x]}\n";
        assert!(problems(unknown).contains("failover"));
    }

    #[test]
    fn several_writable_roles_need_multiple_writers() {
        let two = "          roles: [{name: a, writable: true}, {name: b, writable: true}]\n";
        assert!(problems(two).contains("second writable role"));
        let allowed = format!("{two}          multipleWriters: true\n");
        assert_eq!(problems(&allowed), "");
    }
}
