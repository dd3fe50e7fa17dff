//! # berth-local
//!
//! The local engine: runs the members of a `StatefulApp` as real processes on this machine,
//! each on its own loopback address, under a background supervisor.
//!
//! ## Layout
//! - [`addressing`]: loopback addresses and member directories (pure).
//! - [`expand`]: Kubernetes-style `$(VAR)` expansion (pure).
//! - [`decide`]: start order, restart backoff and revisions (pure).
//! - [`plan`]: what each member runs: argv, env, files, probe (pure).
//! - [`preview`]: what an `apply` would do, for `berth plan` (pure).
//! - [`home`]: the home directory layout, slots, lock and published state.
//! - [`slots`]: the machine-wide registry of address slots.
//! - [`os`]: process liveness, signals, programs, packages and ports.
//! - [`probe`]: readiness checks.
//! - [`proxy`]: role-selecting services (a stable address forwarding to the role's holder).
//! - `runas`: running members as their `securityContext` user.
//! - [`secrets`]: Secrets' data from local sources (`berth up --secret`).
//! - [`shared`]: the supervisor's published state.
//! - [`member`]: one member under supervision.
//! - `membership`: scaling through the part's memberJoin and memberLeave actions.
//! - `rolling`: rollouts on `apply`, driven by the core planner.
//! - [`supervisor`]: the background supervisor of one app; it adopts the members an earlier one
//!   left running.
//! - [`keeper`]: the process that runs the supervisor and starts it again when it dies.
//! - [`control`]: `up`, `status`, `logs` and `down` as the CLI runs them.
//! - [`error`]: the typed errors of all of these; they become text only where published
//!   (`state.json`) or printed.

pub mod addressing;
pub mod backup;
pub mod control;
pub mod decide;
pub mod error;
pub mod expand;
pub mod home;
pub mod keeper;
pub mod member;
mod membership;
pub mod os;
pub mod plan;
pub mod preview;
pub mod probe;
pub mod proxy;
mod rolling;
mod runas;
pub mod secrets;
pub mod shared;
pub mod slots;
pub mod supervisor;
