//! A simulation of role-aware rollouts driven by the same function the engines call
//! (`berth_core::lifecycle::decide`), with the world misbehaving at random: switchover actions
//! that fail, role probes that take long or never show the move, members that take long to get
//! ready, and engines restarted mid-rollout (their memory then comes back from where they keep
//! it, as JSON). Properties, whatever happens:
//! - a switchover starts only while every other member serves (ready), and never twice for one
//!   leader before the settle time or the retry backoff has passed;
//! - the leader is never updated while it still leads after a failed switchover, unless the
//!   part says `onSwitchoverFailure: UpdateLeader`;
//! - while a switchover keeps failing the part is Degraded;
//! - the leader is updated last, and a rollout whose switchovers eventually succeed completes.

use berth_core::lifecycle::{
    self, ActionFailure, Command, SWITCHOVER_SETTLE_SECONDS, SwitchoverRecord,
};
use berth_core::rollout::{MemberState, Policy};
use berth_core::spec::{RoleSpec, UpdateStrategy};
use proptest::prelude::*;

/// What the world does in the simulation.
#[derive(Clone, Debug)]
struct World {
    /// Seconds each update takes until the member is ready again, per ordinal.
    restart_seconds: Vec<i64>,
    /// Per switchover attempt: `None` fails it; `Some(d)` succeeds, the probe showing the move
    /// after `d` seconds (past the settle time: the probe never showed it in time).
    switchovers: Vec<Option<i64>>,
    /// Seconds between two decisions.
    ticks: Vec<i64>,
    /// Decisions after which the engine restarts (its memory comes back through JSON).
    restarts: Vec<bool>,
    /// `onSwitchoverFailure: UpdateLeader`.
    update_leader: bool,
}

prop_compose! {
    fn world()(n in 2usize..6)(
        restart_seconds in prop::collection::vec(1i64..40, n),
        switchovers in prop::collection::vec(prop::option::weighted(0.6, 0i64..45), 1..6),
        ticks in prop::collection::vec(1i64..25, 1..40),
        restarts in prop::collection::vec(prop::bool::weighted(0.1), 1..40),
        update_leader in any::<bool>(),
    ) -> World {
        World { restart_seconds, switchovers, ticks, restarts, update_leader }
    }
}

fn roles() -> Vec<RoleSpec> {
    serde_json::from_str(r#"[{"name": "leader", "writable": true}, {"name": "follower"}]"#).unwrap()
}

/// One member as the simulation tracks it.
#[derive(Clone, Debug)]
struct Sim {
    state: MemberState,
    /// When it gets ready again after an update.
    ready_at: Option<i64>,
}

/// A role move the probe will show at `at`.
#[derive(Clone, Copy, Debug)]
struct PendingMove {
    from: i32,
    to: i32,
    at: i64,
}

struct Run {
    world: World,
    policy: Policy,
    members: Vec<Sim>,
    memory: Option<SwitchoverRecord>,
    now: i64,
    attempts: usize,
    moving: Option<PendingMove>,
    /// When each switchover for a leader started, with whether the one before had failed.
    switchover_times: Vec<(i32, i64)>,
}

impl Run {
    fn new(world: World) -> Self {
        let n = world.restart_seconds.len();
        let members = (0..n)
            .map(|i| Sim {
                state: MemberState {
                    ordinal: i as i32,
                    updated: false,
                    ready: true,
                    role: Some(if i == 0 { "leader" } else { "follower" }.into()),
                    unready_seconds: 0,
                    ready_seconds: 10_000,
                },
                ready_at: None,
            })
            .collect();
        let policy = Policy {
            strategy: UpdateStrategy::RoleAware,
            partition: 0,
            max_unavailable: 1,
            roles: roles(),
            switchover: true,
            progress_deadline_seconds: 600,
            min_ready_seconds: 0,
            update_leader_without_switchover: world.update_leader,
        };
        Self {
            world,
            policy,
            members,
            memory: None,
            now: 1_000_000,
            attempts: 0,
            moving: None,
            switchover_times: Vec::new(),
        }
    }

    fn states(&self) -> Vec<MemberState> {
        self.members.iter().map(|m| m.state.clone()).collect()
    }

    fn leader(&self) -> Option<i32> {
        self.members
            .iter()
            .find(|m| m.state.role.as_deref() == Some("leader"))
            .map(|m| m.state.ordinal)
    }

    /// Time passes: members get ready, a pending role move shows.
    fn advance(&mut self, seconds: i64) {
        self.now += seconds;
        for m in &mut self.members {
            if m.ready_at.is_some_and(|t| t <= self.now) {
                (m.state.ready, m.ready_at) = (true, None);
                m.state.ready_seconds = 10_000;
                m.state.unready_seconds = 0;
            }
        }
        if let Some(mv) = self.moving.filter(|mv| mv.at <= self.now) {
            self.members[mv.from as usize].state.role = Some("follower".into());
            self.members[mv.to as usize].state.role = Some("leader".into());
            self.moving = None;
        }
    }

    /// One decision and its execution, checking the properties; whether the rollout completed.
    fn step(&mut self, tick: usize) -> Result<bool, TestCaseError> {
        let states = self.states();
        let name = |o: i32| format!("m-{o}");
        let d = lifecycle::decide(&self.policy, &states, self.memory.as_ref(), self.now, &name);
        if d.complete {
            return Ok(true);
        }
        let failing = d.switchover.as_ref().is_some_and(|r| r.failure.is_some());
        if failing && !self.policy.update_leader_without_switchover {
            prop_assert!(
                d.degraded.is_some(),
                "a failing switchover must degrade: {d:?}"
            );
        }
        self.memory = d.switchover.clone();
        for command in d.commands {
            match command {
                Command::Update { ordinal } => self.update(ordinal, &states)?,
                Command::Switchover { from, to } => self.switchover(from, to, &states)?,
            }
        }
        if self.world.restarts[tick % self.world.restarts.len()] {
            let json = serde_json::to_string(&self.memory).unwrap();
            self.memory = serde_json::from_str(&json).unwrap();
        }
        Ok(false)
    }

    fn update(&mut self, ordinal: i32, states: &[MemberState]) -> Result<(), TestCaseError> {
        let leads = self.leader() == Some(ordinal);
        if leads {
            prop_assert!(
                states.iter().all(|m| m.ordinal == ordinal || m.updated),
                "the leader was updated before the others: {states:?}"
            );
            let failed = self
                .memory
                .as_ref()
                .is_some_and(|r| r.from == ordinal && r.failure.is_some());
            prop_assert!(
                !failed || self.policy.update_leader_without_switchover,
                "the leader was updated after a failed switchover"
            );
        }
        let m = &mut self.members[ordinal as usize];
        m.state.updated = true;
        m.state.ready = false;
        m.state.ready_seconds = 0;
        m.ready_at = Some(self.now + self.world.restart_seconds[ordinal as usize]);
        Ok(())
    }

    fn switchover(
        &mut self,
        from: i32,
        to: i32,
        states: &[MemberState],
    ) -> Result<(), TestCaseError> {
        prop_assert!(
            states.iter().all(|m| m.ordinal == from || m.ready),
            "a switchover started while a member was not serving: {states:?}"
        );
        prop_assert!(
            states
                .iter()
                .any(|m| m.ordinal == to && m.updated && m.ready)
        );
        if let Some((_, last)) = self.switchover_times.iter().rev().find(|(f, _)| *f == from) {
            let attempts = self.memory.as_ref().map_or(1, |r| r.attempts);
            let wait = SWITCHOVER_SETTLE_SECONDS.min(lifecycle::retry_delay(attempts));
            prop_assert!(
                self.now - last >= wait,
                "a switchover of m-{from} ran again after {}s",
                self.now - last
            );
        }
        self.switchover_times.push((from, self.now));
        let outcome = self.world.switchovers[self.attempts % self.world.switchovers.len()];
        self.attempts += 1;
        let result = match outcome {
            None => Err(ActionFailure {
                exit_code: Some(1),
                message: "refused".into(),
            }),
            Some(delay) => {
                self.moving = Some(PendingMove {
                    from,
                    to,
                    at: self.now + delay,
                });
                Ok(())
            }
        };
        self.memory = Some(lifecycle::switchover_ran(
            self.memory.as_ref(),
            (from, to),
            self.now,
            result,
        ));
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn rollouts_protect_the_leader_whatever_the_world_does(world in world()) {
        let mut run = Run::new(world.clone());
        let mut completed = false;
        for tick in 0..400 {
            if run.step(tick)? {
                completed = true;
                break;
            }
            let seconds = world.ticks[tick % world.ticks.len()];
            run.advance(seconds);
        }
        // Switchovers that eventually succeed within the settle time let the rollout finish.
        let succeeds = world
            .switchovers
            .iter()
            .all(|s| s.is_some_and(|d| d < SWITCHOVER_SETTLE_SECONDS - 25));
        if succeeds || world.update_leader {
            prop_assert!(completed, "the rollout did not complete: {:?}", run.states());
        }
        if completed {
            prop_assert!(run.members.iter().all(|m| m.state.updated));
        }
    }
}
