//! The app's phase and its `Ready`, `Progressing` and `Degraded` conditions, decided once for
//! both engines from what each observed ([`Health`]). The operator shows them in the
//! `StatefulApp`'s status, the local engine in `state.json` and `berth status`. Engines add
//! only the phases that describe themselves, never the members' health: the operator
//! [`Phase::Invalid`] and [`Phase::Blocked`] (nothing of the spec applied), the local engine
//! [`Phase::Failed`], [`Phase::Stopping`], [`Phase::Stopped`] and [`Phase::Unsupervised`] (its
//! supervisor's own state).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::spec::Condition;

/// Where the app as a whole is. (Lower-case names are read too: `state.json` files of
/// earlier local engines wrote them, and `starting` is now `Progressing`.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// No member runs yet.
    #[default]
    #[serde(alias = "pending")]
    Pending,
    /// Members are being created, updated or removed (a rollout, a scale, a first start).
    #[serde(alias = "progressing")]
    #[serde(alias = "starting")]
    Progressing,
    /// Every member runs, ready, on the revision it should.
    #[serde(alias = "ready")]
    Ready,
    /// A member is stuck past its progress deadline, a switchover keeps failing, or a member
    /// lost its readiness while nothing was changing.
    #[serde(alias = "degraded")]
    Degraded,
    /// The spec does not validate; nothing was applied (operator).
    #[serde(alias = "invalid")]
    Invalid,
    /// berth may not apply the spec: an object belongs to someone else or the API server
    /// refused one; nothing of it was applied (operator).
    #[serde(alias = "blocked")]
    Blocked,
    /// The supervisor gave up before members could run (local engine).
    #[serde(alias = "failed")]
    Failed,
    /// Members are being stopped (local engine).
    #[serde(alias = "stopping")]
    Stopping,
    /// Every member is stopped (local engine).
    #[serde(alias = "stopped")]
    Stopped,
    /// The supervisor is gone while members still run: nobody restarts, probes or rolls them,
    /// and their readiness is unknown (local engine).
    #[serde(alias = "unsupervised")]
    Unsupervised,
}

impl Phase {
    /// Every phase, in declaration order.
    pub const ALL: [Self; 10] = [
        Self::Pending,
        Self::Progressing,
        Self::Ready,
        Self::Degraded,
        Self::Invalid,
        Self::Blocked,
        Self::Failed,
        Self::Stopping,
        Self::Stopped,
        Self::Unsupervised,
    ];

    /// The name shown to users (`kubectl get sapp`, `berth status`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Progressing => "Progressing",
            Self::Ready => "Ready",
            Self::Degraded => "Degraded",
            Self::Invalid => "Invalid",
            Self::Blocked => "Blocked",
            Self::Failed => "Failed",
            Self::Stopping => "Stopping",
            Self::Stopped => "Stopped",
            Self::Unsupervised => "Unsupervised",
        }
    }

    /// Whether the phase follows the members' health ([`phase`] decides it), rather than
    /// being set by an engine for a reason of its own.
    pub const fn follows_health(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Progressing | Self::Ready | Self::Degraded
        )
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A phase name that is none of [`Phase::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown phase `{0}`")]
pub struct UnknownPhase(String);

impl FromStr for Phase {
    type Err = UnknownPhase;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPhase(s.to_string()))
    }
}

/// What an engine observed of an app, as far as its phase goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    /// Every member that should run runs, ready, on the revision it should (for the
    /// operator: and every workload's controller has seen the applied spec).
    pub settled: bool,
    /// Some member runs (or is being started).
    pub started: bool,
    /// A change is under way: a rollout, a scale, an apply being worked on.
    pub changing: bool,
    /// The core lifecycle's verdict when it calls the app Degraded: the condition's reason
    /// (`MemberStuck`, `SwitchoverFailed`) and message.
    pub degraded: Option<(String, String)>,
}

/// The phase of an app whose health is `health`, after `previous`. A member that loses its
/// readiness while nothing changes degrades a Ready app (it is not "progressing" anywhere);
/// during a change the same member is part of the change until the lifecycle calls it stuck.
pub fn phase(previous: Option<Phase>, health: &Health) -> Phase {
    if health.degraded.is_some() {
        return Phase::Degraded;
    }
    if health.settled {
        return Phase::Ready;
    }
    if !health.started {
        return Phase::Pending;
    }
    let was_healthy = matches!(previous, Some(Phase::Ready | Phase::Degraded));
    if was_healthy && !health.changing {
        Phase::Degraded
    } else {
        Phase::Progressing
    }
}

/// The reason of the Degraded condition when a member lost its readiness outside a change.
pub const MEMBER_NOT_READY: &str = "MemberNotReady";

/// The `Ready`, `Progressing` and `Degraded` conditions of an app in `phase` with `health`;
/// `not_ready` says what keeps it from Ready. Times and generations are the engine's to add.
pub fn conditions(phase: Phase, health: &Health, not_ready: &str) -> Vec<Condition> {
    let ready_reason = if health.settled {
        "AllMembersReady"
    } else {
        "MembersNotReady"
    };
    let progressing = matches!(phase, Phase::Pending | Phase::Progressing);
    let progressing_reason = if progressing { "RollingOut" } else { "Stable" };
    let (degraded_reason, degraded_message) = match (&health.degraded, phase) {
        (Some((reason, message)), _) => (reason.as_str(), message.as_str()),
        (None, Phase::Degraded) => (MEMBER_NOT_READY, not_ready),
        (None, _) => ("AsExpected", ""),
    };
    vec![
        condition("Ready", health.settled, ready_reason, not_ready),
        condition("Progressing", progressing, progressing_reason, not_ready),
        condition(
            "Degraded",
            phase == Phase::Degraded,
            degraded_reason,
            degraded_message,
        ),
    ]
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: if status || type_ != "Degraded" {
            message.to_string()
        } else {
            String::new()
        },
        last_transition_time: None,
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(settled: bool, started: bool, changing: bool) -> Health {
        Health {
            settled,
            started,
            changing,
            degraded: None,
        }
    }

    #[test]
    fn the_lifecycle_verdict_wins_then_readiness_then_whether_anything_runs() {
        let mut h = health(true, true, false);
        assert_eq!(phase(None, &h), Phase::Ready);
        h.degraded = Some(("MemberStuck".into(), "web: web-2".into()));
        assert_eq!(phase(Some(Phase::Ready), &h), Phase::Degraded);
        assert_eq!(phase(None, &health(false, false, true)), Phase::Pending);
        assert_eq!(phase(None, &health(false, true, true)), Phase::Progressing);
    }

    #[test]
    fn a_member_lost_outside_a_change_degrades_and_during_one_progresses() {
        let lost = health(false, true, false);
        assert_eq!(phase(Some(Phase::Ready), &lost), Phase::Degraded);
        assert_eq!(phase(Some(Phase::Degraded), &lost), Phase::Degraded);
        assert_eq!(phase(Some(Phase::Progressing), &lost), Phase::Progressing);
        let rolling = health(false, true, true);
        assert_eq!(phase(Some(Phase::Ready), &rolling), Phase::Progressing);
    }

    #[test]
    fn conditions_agree_with_the_phase() {
        let lost = health(false, true, false);
        let c = conditions(Phase::Degraded, &lost, "web-1 not ready");
        let status = |t: &str| c.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(status("Ready").status, "False");
        assert_eq!(status("Progressing").status, "False");
        assert_eq!(status("Degraded").reason, MEMBER_NOT_READY);
        assert_eq!(status("Degraded").message, "web-1 not ready");
        let c = conditions(Phase::Ready, &health(true, true, false), "");
        assert!(
            c.iter()
                .all(|c| (c.type_ == "Ready") == (c.status == "True"))
        );
    }

    #[test]
    fn every_phase_reads_back_from_its_name_in_any_case() {
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), p);
            assert_eq!(p.as_str().to_lowercase().parse::<Phase>().unwrap(), p);
        }
        assert!("Sideways".parse::<Phase>().is_err());
    }
}
