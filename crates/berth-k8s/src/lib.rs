//! # berth-k8s
//!
//! berth's Kubernetes engine, pure: turning a validated app into native Kubernetes objects
//! (`berth render`) and the CRD (`berth crd`), and the decisions the operator (`berth-operator`)
//! carries out with the same renderer, so what you preview is what runs.
//!
//! ## Layout
//! - [`render`]: a validated app to an ordered list of objects, and those to YAML.
//! - [`render_dir`]: `berth render -o DIR`: files to write, and files of an earlier render to remove (pure).
//! - `pod`: the pod template berth builds from the user's one (env, mounts, volumes, affinity).
//! - `services`: the headless and client Services.
//! - [`crd`]: the `StatefulApp` CustomResourceDefinition.
//! - [`reference`]: the spec's field reference (`docs/reference.md`), from the same schema.
//! - [`status`]: the app's status from observed workloads and pods (pure).
//! - [`partition`]: canaries under the operator: members below a partition keep the old revision (pure).
//! - [`prune`]: which owned objects are no longer wanted (pure).
//! - [`lease`]: leader-election decisions (pure).
//! - [`member`]: whether a member's pod is ready, one rule for status and rollouts (pure).
//! - [`rollout`]: the rollout planner's view of a StatefulSet's members, from its pods (pure).
//! - [`inplace`]: in-place updates: the template hash, readiness gate and pod patches (pure).
//! - [`ownership`]: whose an existing object is, before berth applies over or deletes it (pure).
//! - [`roles`]: role labels from probe results, and switchover commands (pure).
//! - [`agent`]: the in-pod role agent the operator adds to parts with a role probe (pure).

pub mod agent;
pub mod backup;
pub mod crd;
pub mod inplace;
pub mod lease;
pub mod member;
pub mod ownership;
pub mod partition;
mod pod;
pub mod preview;
pub mod prune;
pub mod reference;
pub mod render;
pub mod render_dir;
pub mod restore;
pub mod roles;
pub mod rollout;
mod services;
pub mod status;
