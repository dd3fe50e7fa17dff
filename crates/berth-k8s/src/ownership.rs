//! Whose an existing object is, decided before berth applies over it or deletes it: berth
//! takes over an object only if it created it for this app, or the spec says so explicitly.
//!
//! - Namespaced objects berth creates carry the app as their controller owner reference.
//! - Cluster-scoped extra objects cannot have a namespaced owner: they carry the app's UID in
//!   the annotation [`OWNER_UID_ANNOTATION`].
//! - An extra object annotated [`ADOPT_ANNOTATION`]`: "true"` in the spec may be taken over
//!   although berth did not create it (it is then the app's, and is pruned with it).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::prune::ObjectKey;

/// On an extra object in the spec: berth may take over an object of that name that exists
/// already (and later delete it with the app).
pub const ADOPT_ANNOTATION: &str = "berth.io/adopt";
/// On a cluster-scoped object berth created: the UID of the app it belongs to.
pub const OWNER_UID_ANNOTATION: &str = "berth.io/owner-uid";

/// What an existing object is to the app about to apply an object of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing of that name exists.
    Free,
    /// berth created it for this app.
    Ours,
    /// Someone else's, but the spec asks to adopt it.
    Adopted,
    /// Another app's (by its name).
    OtherApp(String),
    /// Created by someone else (a user, another controller).
    Foreign,
}

/// Whose `existing` is, for the app with UID `app_uid`; `adopt` when the spec allows taking it.
pub fn claim(existing: Option<&ObjectMeta>, app_uid: &str, adopt: bool) -> Claim {
    let Some(meta) = existing else {
        return Claim::Free;
    };
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    let owner_annotation = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_UID_ANNOTATION));
    match (controller, owner_annotation) {
        (Some(o), _) if o.uid == app_uid => Claim::Ours,
        (_, Some(uid)) if uid == app_uid => Claim::Ours,
        (Some(o), _) if o.kind == "StatefulApp" => Claim::OtherApp(o.name.clone()),
        (None, Some(_)) => Claim::OtherApp(instance_label(meta)),
        _ if adopt => Claim::Adopted,
        _ => Claim::Foreign,
    }
}

fn instance_label(meta: &ObjectMeta) -> String {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(berth_core::names::LABEL_INSTANCE))
        .cloned()
        .unwrap_or_else(|| "another app".to_string())
}

/// Whether a rendered object asks to be adopted ([`ADOPT_ANNOTATION`] is `"true"`).
pub fn wants_adoption(object: &Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ADOPT_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

/// What to tell the user when `claim` forbids applying `key`; `None` when berth may apply it.
pub fn conflict(key: &ObjectKey, claim: &Claim) -> Option<String> {
    let object = format!("{} {}", key.kind, key.name);
    match claim {
        Claim::Free | Claim::Ours | Claim::Adopted => None,
        Claim::OtherApp(app) => Some(format!(
            "{object} belongs to app {app}; rename it in one of the two apps"
        )),
        Claim::Foreign => Some(format!(
            "{object} exists and was not created by berth for this app; berth leaves it alone \
             (delete or rename it, or annotate the extra object `{ADOPT_ANNOTATION}: \"true\"` \
             to let this app take it over)"
        )),
    }
}

/// Whether `object` can be dry-run before any of `batch` (the objects applied with it, in
/// order) exists. A RoleBinding to a Role of the same batch cannot: the API server's check
/// that the binder holds the Role's permissions needs the Role, which only the apply creates
/// (just before the binding). Such a binding is checked by its apply alone.
pub fn dry_runnable(object: &Value, batch: &[&Value]) -> bool {
    let role_ref = &object["roleRef"];
    let binds_batch_role = object["kind"] == "RoleBinding"
        && role_ref["kind"] == "Role"
        && batch
            .iter()
            .any(|o| o["kind"] == "Role" && o["metadata"]["name"] == role_ref["name"]);
    !binds_batch_role
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn owned_by(kind: &str, name: &str, uid: &str) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                kind: kind.into(),
                name: name.into(),
                uid: uid.into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn only_what_berth_created_for_this_app_is_ours() {
        assert_eq!(claim(None, "u1", false), Claim::Free);
        let ours = owned_by("StatefulApp", "web", "u1");
        assert_eq!(claim(Some(&ours), "u1", false), Claim::Ours);
        let other = owned_by("StatefulApp", "blog", "u2");
        assert_eq!(
            claim(Some(&other), "u1", true),
            Claim::OtherApp("blog".into()),
            "adoption never takes another app's object"
        );
        let user = ObjectMeta::default();
        assert_eq!(claim(Some(&user), "u1", false), Claim::Foreign);
        assert_eq!(claim(Some(&user), "u1", true), Claim::Adopted);
        let replica_set = owned_by("ReplicaSet", "x", "u3");
        assert_eq!(claim(Some(&replica_set), "u1", false), Claim::Foreign);
    }

    #[test]
    fn cluster_scoped_objects_are_claimed_by_annotation() {
        let meta = |uid: &str| ObjectMeta {
            annotations: Some(BTreeMap::from([(
                OWNER_UID_ANNOTATION.to_string(),
                uid.to_string(),
            )])),
            ..Default::default()
        };
        assert_eq!(claim(Some(&meta("u1")), "u1", false), Claim::Ours);
        assert_eq!(
            claim(Some(&meta("u2")), "u1", false),
            Claim::OtherApp("another app".into())
        );
    }

    #[test]
    fn conflicts_name_the_object_and_the_way_out() {
        let key = ObjectKey {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "user-data".into(),
        };
        let message = conflict(&key, &Claim::Foreign).unwrap();
        assert!(message.starts_with("ConfigMap user-data exists and was not created by berth"));
        assert!(message.contains("berth.io/adopt"));
        assert_eq!(
            conflict(&key, &Claim::OtherApp("blog".into())).unwrap(),
            "ConfigMap user-data belongs to app blog; rename it in one of the two apps"
        );
        assert_eq!(conflict(&key, &Claim::Ours), None);
    }

    #[test]
    fn a_binding_to_a_role_of_the_same_batch_is_not_dry_run() {
        let role = serde_json::json!({"kind": "Role", "metadata": {"name": "a-berth-agent"}});
        let binding = serde_json::json!({"kind": "RoleBinding",
            "roleRef": {"kind": "Role", "name": "a-berth-agent"}});
        let other = serde_json::json!({"kind": "RoleBinding",
            "roleRef": {"kind": "Role", "name": "theirs"}});
        assert!(!dry_runnable(&binding, &[&role, &binding]));
        assert!(dry_runnable(&other, &[&role, &other]));
        assert!(dry_runnable(&role, &[&role, &binding]));
    }
}
