//! Roles and actions on Kubernetes, as pure decisions the operator carries out: which label a
//! member's pod should carry after a role probe, and the commands the operator execs in pods:
//! the role probe and the actions (switchover, memberJoin, memberLeave), rendered by the core
//! (`berth_core::exec`) with Kubernetes addressing; an action's `BERTH_TARGET*` variables,
//! which the local engine passes as environment, are set with `env`, since an exec cannot set
//! environment variables.

use berth_core::agent::{Observation, Report, next_label};
use berth_core::exec::{ActionTarget, ExecError, ExecKind};
use berth_core::load::ValidatedApp;
use berth_core::names;
use berth_core::spec::PartSpec;
use berth_core::topology::{KubernetesAddressing, MemberRef};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;

/// The merge patch that makes the pod's role label (and term) follow a probe the operator
/// exec'd, if it must change, by the agent's rule (`berth_core::agent::next_label`: a report
/// from an older term changes nothing). One difference: a member whose exec reports nothing
/// keeps its last role while it is ready (one failed exec through the API server must not move
/// a write Service away from a working leader) and loses it once unready.
pub fn role_label_patch(pod: &Pod, detected: Option<&Report>) -> Option<Value> {
    let seen = match detected {
        Some(report) => Observation::Reported(report.clone()),
        None if is_ready(pod) => return None,
        None => Observation::Failed,
    };
    next_label(&crate::agent::labelled(pod), &seen).map(|wanted| crate::agent::label_patch(&wanted))
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

/// The `kind` command of part `index` as it runs in the part's pods: rendered once for every
/// member with Kubernetes addressing, as the pod template's commands are.
///
/// # Errors
/// The first word that does not render.
pub fn exec_command(
    app: &ValidatedApp,
    index: usize,
    kind: ExecKind,
) -> Result<Option<Vec<String>>, ExecError> {
    let addressing = KubernetesAddressing::new(&app.namespace());
    app.exec_command(index, kind, &addressing, None)
}

/// Member `ordinal` of `part` as the target of an action, addressed by its stable DNS name.
pub fn action_target(app: &ValidatedApp, part: &PartSpec, ordinal: i32) -> ActionTarget {
    let workload = names::workload_name(&app.name(), &part.name);
    let headless = names::headless_service_name(&workload, part);
    let member = MemberRef {
        part: part.name.clone(),
        workload,
        ordinal,
    };
    ActionTarget::new(
        &member,
        &headless,
        &KubernetesAddressing::new(&app.namespace()),
    )
}

/// The argv that runs a rendered action `command` in a member's pod with the target's
/// variables ([`ActionTarget::env`]) set through `env`, since an exec cannot set environment.
pub fn action_command(command: &[String], target: &ActionTarget) -> Vec<String> {
    let env = target.env().into_iter().map(|(k, v)| format!("{k}={v}"));
    std::iter::once("env".to_string())
        .chain(env)
        .chain(command.iter().cloned())
        .collect()
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

    fn report(role: &str, term: Option<u64>) -> Report {
        Report {
            role: role.into(),
            term,
        }
    }

    #[test]
    fn a_detected_role_is_labelled_once() {
        let leader = report("leader", None);
        let patch = role_label_patch(&pod(None, true), Some(&leader)).unwrap();
        assert_eq!(patch["metadata"]["labels"][names::LABEL_ROLE], "leader");
        assert_eq!(
            role_label_patch(&pod(Some("leader"), true), Some(&leader)),
            None
        );
        let follower = report("follower", None);
        let moved = role_label_patch(&pod(Some("leader"), true), Some(&follower)).unwrap();
        assert_eq!(moved["metadata"]["labels"][names::LABEL_ROLE], "follower");
    }

    #[test]
    fn an_exec_report_carries_its_term_and_an_older_one_changes_nothing() {
        let mut labelled = pod(Some("follower"), true);
        let patch = role_label_patch(&labelled, Some(&report("leader", Some(6)))).unwrap();
        assert_eq!(
            patch["metadata"]["annotations"][names::ANNOTATION_ROLE_TERM],
            "6"
        );
        labelled.metadata.annotations = Some(BTreeMap::from([(
            names::ANNOTATION_ROLE_TERM.to_string(),
            "6".to_string(),
        )]));
        assert_eq!(
            role_label_patch(&labelled, Some(&report("leader", Some(5)))),
            None
        );
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

    #[test]
    fn the_redis_switchover_runs_rendered_with_its_target() {
        let inputs = berth_core::load::Inputs {
            app_file: "redis.yaml".into(),
            app_text: include_str!("../../../examples/redis.yaml").into(),
            ..Default::default()
        };
        let app = berth_core::load::load(&inputs).unwrap();
        let command = exec_command(&app, 0, ExecKind::Switchover)
            .unwrap()
            .unwrap();
        let target = action_target(&app, &app.parts()[0], 2);
        assert_eq!(
            action_command(&command, &target),
            [
                "env",
                "BERTH_TARGET=redis-2.redis-headless.default.svc.cluster.local",
                "BERTH_TARGET_MEMBER=redis-2",
                "BERTH_TARGET_ORDINAL=2",
                "/bin/sh",
                "/etc/redis/switchover.sh"
            ]
        );
        let probe = exec_command(&app, 0, ExecKind::RoleProbe).unwrap().unwrap();
        assert!(probe[2].contains("-p 6379 info replication"), "{probe:?}");
    }
}
