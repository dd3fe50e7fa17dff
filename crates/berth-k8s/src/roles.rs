//! Roles and actions on Kubernetes, as pure decisions the operator carries out: which label a
//! member's pod should carry after a role probe, and the command that runs a part's action
//! (switchover, memberJoin, memberLeave) in a member's pod (the action's `BERTH_TARGET*`
//! variables, which the local engine passes as environment, are set with `env`, since an exec
//! cannot set environment variables).

use berth_core::names;
use berth_core::topology::KubernetesAddressing;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

/// The merge patch that makes the pod's `berth.io/role` label follow a probe result, if it must
/// change. A member whose probe reports nothing keeps its last role while it is ready (one failed
/// exec must not move a write Service away from a working leader) and loses it once unready.
pub fn role_label_patch(pod: &Pod, detected: Option<&str>) -> Option<Value> {
    let current = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_ROLE))
        .map(String::as_str);
    let wanted = match detected {
        Some(role) => Some(role),
        None if is_ready(pod) => current,
        None => None,
    };
    (wanted != current).then(|| json!({"metadata": {"labels": {names::LABEL_ROLE: wanted}}}))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a role probe should run in the pod: it is running and not being deleted.
pub fn probe_due(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The member an action is about: the one a switchover hands leadership to, or the one that
/// joins or leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionTarget {
    /// Its stable DNS name.
    pub address: String,
    /// Its pod name.
    pub member: String,
    /// Its ordinal.
    pub ordinal: i32,
}

impl ActionTarget {
    /// Member `ordinal` of `workload`, addressed through the `headless` Service of `namespace`.
    pub fn member(workload: &str, ordinal: i32, headless: &str, namespace: &str) -> Self {
        let member = names::member_name(workload, ordinal);
        let domain = KubernetesAddressing::new(namespace).cluster_domain;
        Self {
            address: KubernetesAddressing::stable_name(&member, headless, namespace, &domain),
            member,
            ordinal,
        }
    }
}

/// The argv that runs `action` in a member's pod with the target in `BERTH_TARGET*`.
pub fn action_command(action: &[String], target: &ActionTarget) -> Vec<String> {
    let mut argv = vec![
        "env".to_string(),
        format!("BERTH_TARGET={}", target.address),
        format!("BERTH_TARGET_MEMBER={}", target.member),
        format!("BERTH_TARGET_ORDINAL={}", target.ordinal),
    ];
    argv.extend(action.iter().cloned());
    argv
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use std::collections::BTreeMap;

    fn pod(role: Option<&str>, ready: bool) -> Pod {
        let mut pod = Pod::default();
        if let Some(role) = role {
            pod.metadata.labels = Some(BTreeMap::from([(
                names::LABEL_ROLE.to_string(),
                role.to_string(),
            )]));
        }
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    #[test]
    fn a_detected_role_is_labelled_once() {
        let patch = role_label_patch(&pod(None, true), Some("leader")).unwrap();
        assert_eq!(patch["metadata"]["labels"][names::LABEL_ROLE], "leader");
        assert_eq!(
            role_label_patch(&pod(Some("leader"), true), Some("leader")),
            None
        );
        let moved = role_label_patch(&pod(Some("leader"), true), Some("follower")).unwrap();
        assert_eq!(moved["metadata"]["labels"][names::LABEL_ROLE], "follower");
    }

    #[test]
    fn a_failed_probe_removes_the_role_only_from_an_unready_member() {
        assert_eq!(role_label_patch(&pod(Some("leader"), true), None), None);
        let removed = role_label_patch(&pod(Some("leader"), false), None).unwrap();
        assert_eq!(
            removed["metadata"]["labels"][names::LABEL_ROLE],
            Value::Null
        );
        assert_eq!(role_label_patch(&pod(None, false), None), None);
    }

    #[test]
    fn the_switchover_action_gets_its_target_through_env() {
        let target = ActionTarget {
            address: "db-1.db.ns.svc.cluster.local".into(),
            member: "db-1".into(),
            ordinal: 1,
        };
        let argv = action_command(&["/bin/sh".into(), "/x.sh".into()], &target);
        assert_eq!(
            argv,
            [
                "env",
                "BERTH_TARGET=db-1.db.ns.svc.cluster.local",
                "BERTH_TARGET_MEMBER=db-1",
                "BERTH_TARGET_ORDINAL=1",
                "/bin/sh",
                "/x.sh"
            ]
        );
    }
}
