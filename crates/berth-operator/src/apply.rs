//! Server-side apply of rendered objects under the field manager `berth`, so only fields berth
//! renders are berth's: a user's annotation or an autoscaler's replicas survive. Kinds are
//! resolved once through discovery (extra objects may be of any kind) and cached.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_k8s::prune::ObjectKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use serde_json::Value;

use crate::{Error, MANAGER, Result};

/// Applies and deletes objects of any kind.
pub struct Applier {
    client: Client,
    kinds: Mutex<HashMap<(String, String), (ApiResource, bool)>>,
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

impl Applier {
    /// An applier using `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// The API resource of a kind and whether it is namespaced.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool)> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self
            .kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let (group, version) = split_api_version(api_version);
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = pinned_kind(&self.client, &gvk)
            .await
            .map_err(Error::kube(format!("discover {api_version} {kind}")))?;
        let found = (resource, caps.scope == Scope::Namespaced);
        self.kinds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    fn api(&self, resource: &ApiResource, namespaced: bool, namespace: &str) -> Api<DynamicObject> {
        if namespaced {
            Api::namespaced_with(self.client.clone(), namespace, resource)
        } else {
            Api::all_with(self.client.clone(), resource)
        }
    }

    /// Applies `object` (a rendered object, owner reference already set when namespaced).
    pub async fn apply(&self, object: &Value, namespace: &str) -> Result<DynamicObject> {
        self.patch(object, namespace, PatchParams::apply(MANAGER).force())
            .await
    }

    /// Server-side applies `object` as a dry run: the API server checks it (schema, admission,
    /// RBAC) and stores nothing; returns the object as the apply would leave it.
    pub async fn dry_run(&self, object: &Value, namespace: &str) -> Result<DynamicObject> {
        let params = PatchParams::apply(MANAGER).force().dry_run();
        self.patch(object, namespace, params).await
    }

    async fn patch(
        &self,
        object: &Value,
        namespace: &str,
        params: PatchParams,
    ) -> Result<DynamicObject> {
        let key = key_of(object).ok_or_else(|| {
            Error::Render(format!("object without apiVersion, kind or name: {object}"))
        })?;
        let (resource, namespaced) = self.resolve(&key.api_version, &key.kind).await?;
        let api = self.api(&resource, namespaced, namespace);
        api.patch(&key.name, &params, &Patch::Apply(object))
            .await
            .map_err(Error::kube(format!("apply {} {}", key.kind, key.name)))
    }

    /// The metadata of an existing object, `None` when there is none.
    pub async fn metadata(&self, key: &ObjectKey, namespace: &str) -> Result<Option<ObjectMeta>> {
        Ok(self.get(key, namespace).await?.map(|o| o.metadata))
    }

    /// Lists the objects of a kind in `namespace` that match the label `selector`.
    ///
    /// # Errors
    /// When the kind is unknown or the API refuses the list.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<DynamicObject>> {
        let (resource, namespaced) = self.resolve(api_version, kind).await?;
        let params = kube::api::ListParams::default().labels(selector);
        self.api(&resource, namespaced, namespace)
            .list(&params)
            .await
            .map(|list| list.items)
            .map_err(Error::kube(format!("list {kind} objects")))
    }

    /// Reads the object `key` as it is on the cluster, if it exists.
    ///
    /// # Errors
    /// When the kind is unknown or the API refuses the read.
    pub async fn get(&self, key: &ObjectKey, namespace: &str) -> Result<Option<DynamicObject>> {
        let (resource, namespaced) = self.resolve(&key.api_version, &key.kind).await?;
        self.api(&resource, namespaced, namespace)
            .get_opt(&key.name)
            .await
            .map_err(Error::kube(format!("read {} {}", key.kind, key.name)))
    }

    /// Deletes an object only while it is the one with `uid` (a precondition), so an object
    /// re-created by someone else meanwhile is left alone; one already gone is not an error.
    pub async fn delete_exactly(
        &self,
        key: &ObjectKey,
        namespace: &str,
        uid: String,
    ) -> Result<()> {
        let (resource, namespaced) = self.resolve(&key.api_version, &key.kind).await?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self
            .api(&resource, namespaced, namespace)
            .delete(&key.name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => Ok(()),
            Err(e) => Err(Error::kube(format!("delete {} {}", key.kind, key.name))(e)),
        }
    }

    /// Whether a kind is namespaced.
    pub async fn is_namespaced(&self, api_version: &str, kind: &str) -> Result<bool> {
        Ok(self.resolve(api_version, kind).await?.1)
    }
}

/// The identity of a rendered object.
pub fn key_of(object: &Value) -> Option<ObjectKey> {
    Some(ObjectKey {
        api_version: object.get("apiVersion")?.as_str()?.to_string(),
        kind: object.get("kind")?.as_str()?.to_string(),
        name: object.pointer("/metadata/name")?.as_str()?.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}
