//! The supervisor's published state: one [`AppState`] behind a mutex, written to `state.json`
//! on every change, with a watch channel that wakes whoever waits for a change.

use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::home::{AppState, MemberState, Phase, write_atomic};
use crate::plan::MemberPlan;

/// The state shared by the supervisor's tasks.
pub struct Shared {
    state: Mutex<AppState>,
    path: PathBuf,
    changed: watch::Sender<()>,
    reprobe: watch::Sender<u64>,
}

impl Shared {
    /// The state of `app` with `plans` not started yet, published to `path`.
    pub fn new(app: &str, path: PathBuf, plans: &[MemberPlan]) -> Self {
        let state = AppState {
            app: app.to_string(),
            supervisor_pid: std::process::id(),
            members: plans.iter().map(initial_member).collect(),
            ..AppState::default()
        };
        let shared = Self {
            state: Mutex::new(state),
            path,
            changed: watch::channel(()).0,
            reprobe: watch::channel(0).0,
        };
        shared.update(|_| {});
        shared
    }

    /// Applies `change`, recomputes the phase and publishes.
    pub fn update(&self, change: impl FnOnce(&mut AppState)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state);
        // A rollout the core calls Degraded (stuck members, a failing switchover) is, whatever
        // the members' readiness.
        let rollout_healthy = state
            .rollout
            .as_ref()
            .is_none_or(|r| r.degraded.is_none() && r.stuck.is_empty());
        let healthy = rollout_healthy && state.members.iter().all(|m| m.ready);
        state.phase = next_phase(state.phase, healthy);
        if let Ok(json) = serde_json::to_vec_pretty(&*state) {
            let _ = write_atomic(&self.path, &json);
        }
        self.changed.send_replace(());
    }

    /// Applies `change` to member `name` (if it is still listed).
    pub fn member(&self, name: &str, change: impl FnOnce(&mut MemberState)) {
        self.update(|s| {
            if let Some(m) = s.members.iter_mut().find(|m| m.name == name) {
                change(m);
            }
        });
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> AppState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether member `name` is ready.
    pub fn is_ready(&self, name: &str) -> bool {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.members.iter().any(|m| m.name == name && m.ready)
    }

    /// Lists exactly the members of `plans`, in their order, keeping what is known of each.
    pub fn set_members(&self, plans: &[MemberPlan]) {
        self.update(|s| {
            let mut old = std::mem::take(&mut s.members);
            s.members = plans
                .iter()
                .map(|p| match old.iter().position(|m| m.name == p.name) {
                    Some(i) => old.swap_remove(i),
                    None => initial_member(p),
                })
                .collect();
        });
    }

    /// Asks every role probe to run now (after a switchover), not at its next period.
    pub fn reprobe_roles(&self) {
        self.reprobe.send_modify(|n| *n += 1);
    }

    /// A receiver woken by [`Shared::reprobe_roles`].
    pub fn reprobe_requests(&self) -> watch::Receiver<u64> {
        self.reprobe.subscribe()
    }

    /// A receiver woken on every change.
    pub fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// The phase after a change: health (every member ready, no Degraded rollout) moves
/// Starting/Ready/Degraded; the rest is explicit.
pub fn next_phase(phase: Phase, healthy: bool) -> Phase {
    match (phase, healthy) {
        (Phase::Starting | Phase::Ready | Phase::Degraded, true) => Phase::Ready,
        (Phase::Ready | Phase::Degraded, false) => Phase::Degraded,
        (other, _) => other,
    }
}

fn initial_member(plan: &MemberPlan) -> MemberState {
    MemberState {
        name: plan.name.clone(),
        part: plan.member.part.clone(),
        address: plan.ip.to_string(),
        revision: plan.revision.clone(),
        waiting: "start".to_string(),
        grace_seconds: plan.grace.as_secs(),
        log: plan.dir.join("log"),
        ..MemberState::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_follows_readiness_until_stopping() {
        assert_eq!(next_phase(Phase::Starting, false), Phase::Starting);
        assert_eq!(next_phase(Phase::Starting, true), Phase::Ready);
        assert_eq!(next_phase(Phase::Ready, false), Phase::Degraded);
        assert_eq!(next_phase(Phase::Stopping, true), Phase::Stopping);
    }
}
