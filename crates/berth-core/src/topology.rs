//! Members and how they are reached. A member's identity (part, ordinal, name) is the same on
//! every engine; how it is addressed is supplied by the engine through [`Addressing`]: stable DNS
//! names through the headless Service on Kubernetes, a loopback address per member locally.

use serde::Serialize;

use crate::names;
use crate::spec::{PartSpec, StatefulApp, WorkloadKind};

/// The identity of one member.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MemberRef {
    /// The part's name.
    pub part: String,
    /// The part's workload name, the members' name prefix.
    pub workload: String,
    /// The member's ordinal.
    pub ordinal: i32,
}

impl MemberRef {
    /// The member's stable name, `<workload>-<ordinal>`.
    pub fn name(&self) -> String {
        names::member_name(&self.workload, self.ordinal)
    }
}

/// How a member is reached from other members and clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberAddress {
    /// A short host name (the pod's hostname on Kubernetes, its IP locally).
    pub host: String,
    /// The fully qualified name (through the headless Service on Kubernetes, the IP locally).
    pub fqdn: String,
}

/// How an engine addresses members and where it puts their files.
pub trait Addressing {
    /// The address of `member` of a part whose headless Service is `headless`.
    fn address(&self, member: &MemberRef, headless: &str) -> MemberAddress;

    /// Where a path inside a container is for `member` (`None`: the path shared by all members).
    fn container_path(&self, _member: Option<&MemberRef>, path: &str) -> String {
        path.to_string()
    }
}

/// Kubernetes addressing: `<member>.<headless>.<namespace>.svc.<cluster domain>`.
#[derive(Clone, Debug)]
pub struct KubernetesAddressing {
    /// The app's namespace.
    pub namespace: String,
    /// The cluster's DNS domain, `cluster.local` by default.
    pub cluster_domain: String,
}

impl KubernetesAddressing {
    /// Addressing in `namespace` of a cluster with the default domain.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            cluster_domain: "cluster.local".to_string(),
        }
    }

    /// The stable DNS name of pod `host` behind the headless Service `headless`. `host` and
    /// the namespace may be `$(VAR)` references that Kubernetes expands in env values.
    pub fn stable_name(
        host: &str,
        headless: &str,
        namespace: &str,
        cluster_domain: &str,
    ) -> String {
        format!("{host}.{headless}.{namespace}.svc.{cluster_domain}")
    }
}

impl Addressing for KubernetesAddressing {
    fn address(&self, member: &MemberRef, headless: &str) -> MemberAddress {
        let host = member.name();
        let fqdn = Self::stable_name(&host, headless, &self.namespace, &self.cluster_domain);
        MemberAddress { host, fqdn }
    }
}

/// The members a part has when it runs `replicas` members: ordinals `0..replicas` for a
/// StatefulSet; none for Deployments and DaemonSets, whose pods have no stable identity.
pub fn members(app: &StatefulApp, part: &PartSpec, replicas: i32) -> Vec<MemberRef> {
    if part.kind != WorkloadKind::StatefulSet {
        return Vec::new();
    }
    let workload = names::workload_name(&app_name(app), &part.name);
    (0..replicas.max(0))
        .map(|ordinal| MemberRef {
            part: part.name.clone(),
            workload: workload.clone(),
            ordinal,
        })
        .collect()
}

/// The app's name (empty when the manifest has none; validation reports that).
pub fn app_name(app: &StatefulApp) -> String {
    app.metadata.name.clone().unwrap_or_default()
}

/// The app's namespace, `default` when the manifest names none.
pub fn app_namespace(app: &StatefulApp) -> String {
    app.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string())
}

/// Where the value of a standard member environment variable comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvSource {
    /// A fixed value.
    Literal(String),
    /// The member's name (the pod name).
    MemberName,
    /// The member's ordinal.
    Ordinal,
    /// The namespace.
    Namespace,
    /// The member's own IP address.
    PodIp,
    /// The member's stable address as other members reach it.
    StableAddress {
        /// The headless Service the address goes through.
        headless: String,
    },
}

/// The `BERTH_*` environment every member gets, the same on every engine, so start scripts can
/// derive per-member values (e.g. ZooKeeper's `myid` from `BERTH_ORDINAL`).
pub fn member_env(app: &str, part: &PartSpec, headless: &str) -> Vec<(&'static str, EnvSource)> {
    let mut env = vec![
        ("BERTH_APP", EnvSource::Literal(app.to_string())),
        ("BERTH_PART", EnvSource::Literal(part.name.clone())),
        ("BERTH_NAMESPACE", EnvSource::Namespace),
        ("BERTH_MEMBER", EnvSource::MemberName),
        ("BERTH_POD_IP", EnvSource::PodIp),
    ];
    if part.kind == WorkloadKind::StatefulSet {
        env.push(("BERTH_ORDINAL", EnvSource::Ordinal));
        env.push((
            "BERTH_ADDRESS",
            EnvSource::StableAddress {
                headless: headless.to_string(),
            },
        ));
    } else {
        env.push(("BERTH_ADDRESS", EnvSource::PodIp));
    }
    env
}

/// The role a role probe reports: the first word of the first non-empty line it printed.
/// `None` when it printed nothing (a failed probe reports nothing either). Both engines read
/// probes this way.
pub fn role_from_probe_output(stdout: &str) -> Option<String> {
    report_from_probe_output(stdout).map(|r| r.role)
}

/// A role probe's whole report: the first non-empty line's first word is the role, and a
/// second word, when it is a whole number, the term the role is held in (`leader 7`).
pub fn report_from_probe_output(stdout: &str) -> Option<crate::agent::Report> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut words = line.split_whitespace();
    let role = words.next()?.to_string();
    let term = words.next().and_then(|w| w.parse().ok());
    Some(crate::agent::Report { role, term })
}

#[cfg(test)]
mod tests {
    use super::{report_from_probe_output, role_from_probe_output};

    #[test]
    fn a_term_may_follow_the_role() {
        let report = report_from_probe_output("\n leader 7\n").unwrap();
        assert_eq!((report.role.as_str(), report.term), ("leader", Some(7)));
        let report = report_from_probe_output("master\n").unwrap();
        assert_eq!((report.role.as_str(), report.term), ("master", None));
        assert_eq!(report_from_probe_output("leader x").unwrap().term, None);
    }

    #[test]
    fn the_role_is_the_first_non_empty_line() {
        assert_eq!(
            role_from_probe_output("\n  master \nslave\n").as_deref(),
            Some("master")
        );
        assert_eq!(role_from_probe_output(" \n\n"), None);
    }
}
