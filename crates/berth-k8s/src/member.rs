//! What a member's pod says about the member: whether it is ready, and since when. One rule for
//! the status the operator writes and the rollout planner's view, so that a member the status
//! shows as ready is one the planner counts as available, and the other way round.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;

/// The pod's `Ready` condition, if the kubelet has reported one.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Whether the member is ready: its pod's `Ready` condition is `True`, its in-place readiness
/// gate (if any) is open, and it is not terminating. A pod being deleted still reports `Ready`
/// until its containers stop (or, held by a finalizer, for as long as the finalizer stays), but
/// it is going away: it serves nothing the app can count on.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && ready_condition(pod).is_some_and(|c| c.status == "True")
        && crate::inplace::gate_open(pod)
}

/// When the member last became ready, or `None` while it is not ready ([`is_ready`]). A ready
/// condition without a transition time counts as ready since the epoch.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    if !is_ready(pod) {
        return None;
    }
    Some(
        ready_condition(pod)
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ready_pod() -> Pod {
        Pod {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(100).unwrap())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_ready_pod_is_ready_since_its_condition_turned_true() {
        let pod = ready_pod();
        assert!(is_ready(&pod));
        assert_eq!(
            ready_since(&pod),
            Some(Timestamp::from_second(100).unwrap())
        );
    }

    #[test]
    fn a_terminating_pod_is_not_ready_whatever_its_condition_says() {
        let mut pod = ready_pod();
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(200).unwrap()));
        assert!(!is_ready(&pod));
        assert_eq!(ready_since(&pod), None);
    }
}
