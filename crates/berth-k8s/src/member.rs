//! What a member's pod says about the member: whether it is ready, since when, and if not, why.
//! One rule for the status the operator writes and the rollout planner's view, so that a member
//! the status shows as ready is one the planner counts as available, and the other way round.

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

/// Why a member is not ready, as a CamelCase reason and a message (possibly empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// e.g. `Unschedulable`, `ImagePullBackOff`, `CrashLoopBackOff`, `Terminating`.
    pub reason: String,
    /// Details, e.g. the scheduler's message.
    pub message: String,
}

impl NotReady {
    fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// The reason of a member whose pod does not exist (yet).
    pub fn no_pod() -> Self {
        Self::new("NoPod", "its pod has not been created yet")
    }
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.message)
        }
    }
}

/// Why the member of `pod` is not ready, or `None` when it is. In order: being deleted; not
/// scheduled (the scheduler's message, which names unbound volume claims); a container waiting
/// (image pull failures, a crash loop with the last exit code); else the `Ready` condition's
/// own reason.
pub fn not_ready(pod: &Pod) -> Option<NotReady> {
    if is_ready(pod) {
        return None;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(NotReady::new("Terminating", "the pod is being deleted"));
    }
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let unscheduled = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        let reason = c.reason.as_deref().unwrap_or("Unschedulable");
        return Some(NotReady::new(reason, c.message.clone().unwrap_or_default()));
    }
    if let Some(waiting) = waiting_container(pod) {
        return Some(waiting);
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
    Some(match ready_condition(pod) {
        Some(c) if !crate::inplace::gate_open(pod) && c.status == "True" => NotReady::new(
            "InPlaceUpdating",
            "its in-place update readiness gate is closed",
        ),
        Some(c) => NotReady::new(
            c.reason.as_deref().unwrap_or("NotReady"),
            c.message.clone().unwrap_or_default(),
        ),
        None => NotReady::new(
            "NotReady",
            phase.map_or(String::new(), |p| format!("pod {p}")),
        ),
    })
}

/// The first container waiting for a reason the kubelet names; a crash loop also says how the
/// last run ended.
fn waiting_container(pod: &Pod) -> Option<NotReady> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        let mut message = format!("container {}", c.name);
        if let Some(m) = waiting.message.as_deref().filter(|m| !m.is_empty()) {
            message = format!("{message}: {m}");
        }
        let exit = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
        if let Some(t) = exit {
            message = format!("{message}; last exit code {}", t.exit_code);
        }
        Some(NotReady::new(reason, message))
    })
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

    #[test]
    fn an_unschedulable_pod_gets_the_schedulers_message() {
        let mut pod = ready_pod();
        let status = pod.status.as_mut().unwrap();
        status.phase = Some("Pending".into());
        status.conditions = Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(
                "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims.".into(),
            ),
            ..Default::default()
        }]);
        let why = not_ready(&pod).unwrap();
        assert_eq!(why.reason, "Unschedulable");
        assert!(
            why.message
                .contains("unbound immediate PersistentVolumeClaims")
        );
    }

    #[test]
    fn a_crash_loop_names_the_container_and_the_last_exit_code() {
        use k8s_openapi::api::core::v1::{
            ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
        };
        let mut pod = ready_pod();
        let status = pod.status.as_mut().unwrap();
        status.conditions.as_mut().unwrap()[0].status = "False".into();
        status.container_statuses = Some(vec![ContainerStatus {
            name: "zk".into(),
            state: Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("CrashLoopBackOff".into()),
                    message: Some("back-off 40s".into()),
                }),
                ..Default::default()
            }),
            last_state: Some(ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 3,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let why = not_ready(&pod).unwrap();
        assert_eq!(
            why.to_string(),
            "CrashLoopBackOff: container zk: back-off 40s; last exit code 3"
        );
    }

    #[test]
    fn a_ready_pod_has_no_reason_and_a_terminating_one_says_so() {
        let mut pod = ready_pod();
        assert_eq!(not_ready(&pod), None);
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(200).unwrap()));
        assert_eq!(not_ready(&pod).unwrap().reason, "Terminating");
    }
}
