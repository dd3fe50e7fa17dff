//! The rollout planner's view of a StatefulSet part on Kubernetes: each member's revision,
//! readiness and role read from its pod, so the operator can run `berth_core::rollout::plan`
//! and delete pods in the planned order (StatefulSets use `OnDelete` under the operator).

use berth_core::names;
use berth_core::rollout::MemberState;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The label the StatefulSet controller puts on each pod with the revision it runs.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The size membership actions last admitted for `set`: what berth recorded on it
/// ([`names::ANNOTATION_ADMITTED_REPLICAS`], written as soon as an action succeeds and before
/// the size is applied), else its `spec.replicas`.
pub fn admitted_size(set: &StatefulSet) -> i32 {
    let recorded = set
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(names::ANNOTATION_ADMITTED_REPLICAS))
        .and_then(|v| v.parse().ok());
    recorded.unwrap_or_else(|| set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

/// The members of `set` as the planner sees them, or `None` before the controller has computed
/// the update revision. A missing or terminating pod counts as updated and unready: the
/// controller recreates it at the update revision.
pub fn member_states(set: &StatefulSet, pods: &[Pod], now: Timestamp) -> Option<Vec<MemberState>> {
    let update_revision = set.status.as_ref()?.update_revision.clone()?;
    let name = set.metadata.name.clone().unwrap_or_default();
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let members = (0..replicas)
        .map(|ordinal| {
            let pod = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(&names::member_name(&name, ordinal)));
            match pod {
                Some(pod) if pod.metadata.deletion_timestamp.is_none() => {
                    member_of(pod, ordinal, &update_revision, now)
                }
                _ => MemberState {
                    ordinal,
                    updated: true,
                    ready: false,
                    role: None,
                    unready_seconds: 0,
                    ready_seconds: 0,
                },
            }
        })
        .collect();
    Some(members)
}

fn member_of(pod: &Pod, ordinal: i32, update_revision: &str, now: Timestamp) -> MemberState {
    let label = |k: &str| pod.metadata.labels.as_ref().and_then(|l| l.get(k)).cloned();
    let ready_condition = crate::member::ready_condition(pod);
    // The kubelet folds readiness gates into Ready; the shared rule checks the gate too, which
    // keeps a member in an in-place update unready even where nothing does that (kwok).
    let ready = crate::member::is_ready(pod);
    let unready_since = match ready_condition {
        Some(c) if !ready => c.last_transition_time.as_ref().map(|t| t.0),
        None => pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        _ => None,
    };
    let seconds_since = |t: Timestamp| u64::try_from(now.as_second() - t.as_second()).unwrap_or(0);
    MemberState {
        ordinal,
        updated: label(REVISION_LABEL).as_deref() == Some(update_revision),
        ready,
        role: label(names::LABEL_ROLE),
        unready_seconds: unready_since.map_or(0, seconds_since),
        ready_seconds: crate::member::ready_since(pod).map_or(0, |t| surely_since(t, now)),
    }
}

/// Whole seconds surely elapsed since `t`, a condition's transition time: those carry whole
/// seconds only, so the transition may have happened up to a second after `t`. Counting that
/// second out keeps `minReadySeconds` a lower bound.
fn surely_since(t: Timestamp, now: Timestamp) -> u64 {
    let millis = now.as_millisecond() - t.as_millisecond() - 1000;
    u64::try_from(millis / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn set(replicas: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("db".into()),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(StatefulSetStatus {
                update_revision: Some("db-new".into()),
                ..Default::default()
            }),
        }
    }

    fn pod(ordinal: i32, revision: &str, ready: bool, role: Option<&str>) -> Pod {
        let mut labels = BTreeMap::from([(REVISION_LABEL.to_string(), revision.to_string())]);
        if let Some(r) = role {
            labels.insert(names::LABEL_ROLE.to_string(), r.to_string());
        }
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("db-{ordinal}")),
                labels: Some(labels),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn members_carry_revision_readiness_and_role_and_missing_pods_count_as_coming_back() {
        let pods = [
            pod(0, "db-old", true, Some("leader")),
            pod(2, "db-new", false, None),
        ];
        let members = member_states(&set(3), &pods, Timestamp::UNIX_EPOCH).unwrap();
        assert_eq!(
            members[0],
            MemberState {
                ordinal: 0,
                updated: false,
                ready: true,
                role: Some("leader".into()),
                unready_seconds: 0,
                ready_seconds: 0
            }
        );
        assert_eq!(
            members[1],
            MemberState {
                ordinal: 1,
                updated: true,
                ready: false,
                role: None,
                unready_seconds: 0,
                ready_seconds: 0
            }
        );
        assert!(members[2].updated && !members[2].ready);
    }

    #[test]
    fn ready_seconds_count_only_what_surely_elapsed() {
        let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap();
        assert_eq!(surely_since(at(10_000), at(15_999)), 4);
        assert_eq!(surely_since(at(10_000), at(16_000)), 5);
        assert_eq!(surely_since(at(10_000), at(10_500)), 0);
    }

    #[test]
    fn no_update_revision_means_no_plan_yet() {
        let mut s = set(1);
        s.status = None;
        assert_eq!(member_states(&s, &[], Timestamp::UNIX_EPOCH), None);
    }

    #[test]
    fn the_admitted_size_is_the_recorded_one_else_the_replicas() {
        let mut s = set(3);
        assert_eq!(admitted_size(&s), 3);
        s.metadata.annotations = Some(BTreeMap::from([(
            names::ANNOTATION_ADMITTED_REPLICAS.to_string(),
            "4".to_string(),
        )]));
        assert_eq!(admitted_size(&s), 4);
    }
}
