//! # berth-core
//!
//! The pure core of berth: everything that decides, nothing that performs.
//! **Architecture invariant:** no I/O, no async runtime, no Kubernetes client in this crate.
//!
//! ## Layout
//! - [`diag`]: diagnostics with file, line and field path.
//! - [`source`]: YAML text to a value tree plus a line index.
//! - [`spec`]: the `StatefulApp` resource (`berth.io/v1alpha1`) and its five kinds of state.
//! - [`path`]: field paths (`spec.parts[0].replicas`) read and written in a value tree.
//! - [`params`]: delivery parameters: typed keys mapped to spec paths, values files.
//! - [`quantity`]: Kubernetes resource quantities.
//! - [`validate`]: every semantic rule, collecting all problems at once.
//! - [`names`]: the names and labels berth gives to what it creates.
//! - [`topology`]: members, their identities and addresses, per engine.
//! - [`template`]: the template variable set and rendering of config files, env and commands.
//! - [`exec`]: the role probe and actions as run in members: rendered commands, target env.
//! - [`load`]: the pipeline from files to a [`load::ValidatedApp`].
//! - [`phase`]: the app's phase and Ready/Progressing/Degraded conditions, for both engines.
//! - [`rollout`]: the rollout planner: which member to update next, when to switch over.
//! - [`simulate`]: a rollout played through without performing it, for previews.
//! - [`agent`]: the in-pod role agent's decisions: which label to write, stale writers.
//! - [`membership`]: scaling with `memberJoin`/`memberLeave`: the next size and the action first.

pub mod agent;
pub mod backup;
pub mod diag;
pub mod exec;
pub mod lifecycle;
pub mod load;
pub mod membership;
pub mod names;
pub mod params;
pub mod path;
pub mod phase;
pub mod preview;
pub mod quantity;
pub mod restore;
pub mod rollout;
pub mod simulate;
pub mod source;
pub mod spec;
pub mod template;
pub mod topology;
pub mod validate;
