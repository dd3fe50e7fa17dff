//! Which existing objects the operator deletes: those it created for this app (its controller
//! owner reference) that are no longer rendered. Volume claims are never in this set: their
//! fate is the retention policy's, applied by the StatefulSet controller.

use std::collections::BTreeSet;

/// An object as the operator lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectKey {
    /// `apiVersion`, e.g. `apps/v1`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
}

/// The kinds berth renders for parts, which the operator lists to find leftovers.
pub const OWNED_KINDS: [(&str, &str); 6] = [
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "DaemonSet"),
    ("policy/v1", "PodDisruptionBudget"),
];

/// The objects to delete: owned by the app, not desired any more, never a volume claim.
/// Workloads go first so members stop before their config and Services disappear.
pub fn leftovers(desired: &BTreeSet<ObjectKey>, owned: &[ObjectKey]) -> Vec<ObjectKey> {
    let mut out: Vec<ObjectKey> = owned
        .iter()
        .filter(|o| !desired.contains(o) && o.kind != "PersistentVolumeClaim")
        .cloned()
        .collect();
    out.sort_by_key(|o| (deletion_rank(&o.kind), o.name.clone()));
    out.dedup();
    out
}

/// Order in which kinds are deleted.
pub fn deletion_rank(kind: &str) -> u8 {
    match kind {
        "StatefulSet" | "Deployment" | "DaemonSet" => 0,
        "PodDisruptionBudget" => 1,
        "Service" => 2,
        "ConfigMap" => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[test]
    fn only_undesired_objects_go_and_workloads_first() {
        let desired = BTreeSet::from([key("ConfigMap", "a-config"), key("StatefulSet", "a")]);
        let owned = [
            key("ConfigMap", "a-config"),
            key("ConfigMap", "old"),
            key("StatefulSet", "a"),
            key("StatefulSet", "b"),
            key("PersistentVolumeClaim", "data-b-0"),
        ];
        assert_eq!(
            leftovers(&desired, &owned),
            vec![key("StatefulSet", "b"), key("ConfigMap", "old")]
        );
    }
}
