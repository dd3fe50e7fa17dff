//! The supervisor's published state: one [`AppState`] behind a mutex, written to `state.json`
//! on every change, with a watch channel that wakes whoever waits for a change.

use std::path::PathBuf;
use std::sync::Mutex;

use tokio::sync::watch;

use berth_core::phase::{self, Health};

use crate::home::{AppState, MemberState, write_atomic};
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
        let health = health(&state);
        if state.phase.follows_health() {
            state.phase = phase::phase(Some(state.phase), &health);
        }
        state.conditions = phase::conditions(state.phase, &health, &not_ready(&state));
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

/// What the core's phase needs to know of the published state: every member ready with no
/// rollout or apply under way; a member started; a rollout or apply under way; the rollout's
/// Degraded verdict (stuck members, a failing switchover).
fn health(state: &AppState) -> Health {
    let changing = state.rollout.is_some() || state.reconciling;
    let degraded = state.rollout.as_ref().and_then(|r| {
        let reason = if r.stuck.is_empty() {
            "SwitchoverFailed"
        } else {
            "MemberStuck"
        };
        let why = r
            .degraded
            .clone()
            .or_else(|| (!r.stuck.is_empty()).then(|| format!("stuck: {}", r.stuck.join(", "))))?;
        Some((reason.to_string(), format!("{}: {why}", r.part)))
    });
    Health {
        settled: !changing && state.members.iter().all(|m| m.ready),
        started: state.members.iter().any(|m| m.pid.is_some()),
        changing,
        degraded,
    }
}

/// The members not ready, and what each waits for.
fn not_ready(state: &AppState) -> String {
    let waiting: Vec<String> = state
        .members
        .iter()
        .filter(|m| !m.ready)
        .map(|m| format!("{} ({})", m.name, m.waiting))
        .collect();
    if waiting.is_empty() {
        String::new()
    } else {
        format!("not ready: {}", waiting.join(", "))
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

    use crate::home::{Phase, RolloutState};

    fn state(ready: &[bool]) -> AppState {
        AppState {
            members: ready
                .iter()
                .enumerate()
                .map(|(i, r)| MemberState {
                    name: format!("m-{i}"),
                    pid: Some(100 + u32::try_from(i).unwrap()),
                    ready: *r,
                    waiting: if *r { String::new() } else { "probe".into() },
                    ..MemberState::default()
                })
                .collect(),
            ..AppState::default()
        }
    }

    #[test]
    fn the_published_health_is_the_cores_input() {
        let s = state(&[true, true]);
        assert!(health(&s).settled && health(&s).started && !health(&s).changing);
        let mut s = state(&[true, false]);
        assert!(!health(&s).settled);
        assert_eq!(not_ready(&s), "not ready: m-1 (probe)");
        s.reconciling = true;
        assert!(health(&s).changing);
        s.rollout = Some(RolloutState {
            part: "m".into(),
            stuck: vec!["m-1".into()],
            ..RolloutState::default()
        });
        let (reason, message) = health(&s).degraded.unwrap();
        assert_eq!(
            (reason.as_str(), message.as_str()),
            ("MemberStuck", "m: stuck: m-1")
        );
        assert_eq!(
            phase::phase(Some(Phase::Ready), &health(&s)),
            Phase::Degraded
        );
    }
}
