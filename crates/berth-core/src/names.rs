//! The names and labels berth gives to everything it creates, in one place so that the
//! renderer, the operator and the local engine always agree.

use std::collections::BTreeMap;

use crate::spec::PartSpec;

/// Label with the app's name (Kubernetes recommended label).
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label with the app instance; part of every selector.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label with the part; part of every selector.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Label naming the tool that manages the object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the app an object belongs to.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label carrying a member's current role.
pub const LABEL_ROLE: &str = "berth.io/role";
/// Pod annotation with the term a member's role was reported in (`berth_core::agent`).
pub const ANNOTATION_ROLE_TERM: &str = "berth.io/role-term";
/// Pod template annotation holding the hash of the part's config files.
pub const ANNOTATION_CONFIG_HASH: &str = "berth.io/config-hash";
/// Annotation on Services whose clients must balance over members themselves.
pub const ANNOTATION_CLIENT_SIDE_BALANCING: &str = "berth.io/client-side-balancing";
/// StatefulSet annotation (operator): the size membership actions have admitted. Written right
/// after a memberJoin or memberLeave succeeds, before the new size is applied, so an operator
/// restarted in between never runs that action again.
pub const ANNOTATION_ADMITTED_REPLICAS: &str = "berth.io/admitted-replicas";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGER: &str = "berth";

/// The workload (and member-name prefix) of a part: `<app>-<part>`, or `<app>` when the part is
/// named like the app, so that a one-part app `web` has members `web-0`, `web-1`...
pub fn workload_name(app: &str, part: &str) -> String {
    if app == part {
        app.to_string()
    } else {
        format!("{app}-{part}")
    }
}

/// The stable name of member `ordinal` of a workload.
pub fn member_name(workload: &str, ordinal: i32) -> String {
    format!("{workload}-{ordinal}")
}

/// The headless Service that gives members their DNS names.
pub fn headless_service_name(workload: &str, part: &PartSpec) -> String {
    part.state
        .topology
        .headless_service
        .clone()
        .unwrap_or_else(|| format!("{workload}-headless"))
}

/// A client Service of a part.
pub fn service_name(workload: &str, service: &str) -> String {
    format!("{workload}-{service}")
}

/// The ConfigMap holding a part's rendered config files.
pub fn config_map_name(workload: &str) -> String {
    format!("{workload}-config")
}

/// The ConfigMap publishing a part's members, peers and endpoints.
pub fn topology_map_name(workload: &str) -> String {
    format!("{workload}-topology")
}

/// Labels selecting the members of a part.
pub fn selector_labels(app: &str, part: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_INSTANCE.to_string(), app.to_string()),
        (LABEL_COMPONENT.to_string(), part.to_string()),
    ])
}

/// Labels on every object berth creates for a part (a superset of the selector).
pub fn part_labels(app: &str, part: &str) -> BTreeMap<String, String> {
    let mut labels = app_labels(app);
    labels.extend(selector_labels(app, part));
    labels
}

/// Labels on every object berth creates for an app.
pub fn app_labels(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), app.to_string()),
        (LABEL_INSTANCE.to_string(), app.to_string()),
        (LABEL_PART_OF.to_string(), app.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// Whether `name` is an RFC 1123 DNS label of at most `max` characters.
pub fn is_dns_label(name: &str, max: usize) -> bool {
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && ends_ok(name.chars().next())
        && ends_ok(name.chars().last())
}

/// Whether `name` is an RFC 1123 DNS subdomain (dot-separated labels, at most 253 characters).
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(|label| is_dns_label(label, 63))
}

/// Whether `name` is an IANA service name, as Kubernetes requires of port names.
pub fn is_port_name(name: &str) -> bool {
    is_dns_label(name, 15) && name.chars().any(|c| c.is_ascii_lowercase()) && !name.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_named_like_its_app_gives_short_member_names() {
        assert_eq!(member_name(&workload_name("web", "web"), 0), "web-0");
        assert_eq!(
            member_name(&workload_name("zk", "server"), 2),
            "zk-server-2"
        );
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("zoo-1", 63));
        assert!(!is_dns_label("Zoo", 63));
        assert!(!is_dns_label("-a", 63));
        assert!(!is_dns_label("", 63));
        assert!(is_port_name("client"));
        assert!(!is_port_name("2181"));
        assert!(!is_port_name("leader-election-port"));
        assert!(is_dns_subdomain("my.secret-1"));
    }
}
