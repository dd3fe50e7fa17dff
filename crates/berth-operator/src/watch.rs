//! Reflector stores of everything berth owns in one scope (a namespace or the whole cluster),
//! and the streams that wake the controller when any of it changes. Reconciles read these
//! caches instead of listing from the API server.

use std::fmt::Debug;

use berth_core::names;
use futures::Stream;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The caches of one scope.
#[derive(Clone)]
pub struct Stores {
    pub stateful_sets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub daemon_sets: Store<DaemonSet>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub budgets: Store<PodDisruptionBudget>,
    pub pods: Store<Pod>,
}

/// An API for `K` in `namespace`, or across the cluster.
pub fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Only what berth manages is watched, so caches stay small.
fn managed() -> watcher::Config {
    watcher::Config::default().labels(&format!("{}={}", names::LABEL_MANAGED_BY, names::MANAGER))
}

/// A cached, reflected stream of the objects of kind `K` berth manages.
pub fn reflect<K>(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Slim
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api::<K>(client, namespace), managed())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.annotations_mut().clear();
            o.slim();
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Drops the parts of a watched object the operator never reads, so that caches of thousands of
/// objects stay small. What stays: metadata (names, labels, owners, versions), workload replicas
/// and status, a pod's node and conditions.
pub trait Slim {
    /// Removes what is not needed.
    fn slim(&mut self);
}

impl Slim for StatefulSet {
    fn slim(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
            spec.volume_claim_templates = None;
        }
    }
}

impl Slim for Deployment {
    fn slim(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
        }
    }
}

impl Slim for DaemonSet {
    fn slim(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
        }
    }
}

impl Slim for Service {
    fn slim(&mut self) {
        self.spec = None;
        self.status = None;
    }
}

impl Slim for ConfigMap {
    fn slim(&mut self) {
        self.data = None;
        self.binary_data = None;
    }
}

impl Slim for PodDisruptionBudget {
    fn slim(&mut self) {
        self.status = None;
    }
}

impl Slim for Pod {
    fn slim(&mut self) {
        let node_name = self.spec.as_ref().and_then(|s| s.node_name.clone());
        self.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            node_name,
            ..Default::default()
        });
        if let Some(status) = self.status.as_mut() {
            *status = k8s_openapi::api::core::v1::PodStatus {
                conditions: status.conditions.take(),
                phase: status.phase.take(),
                ..Default::default()
            };
        }
    }
}

/// Finds an object in a store by namespace and name.
pub fn find<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&reflector::ObjectRef::new(name).within(namespace))
        .map(|o| (*o).clone())
}

/// Objects of a store in `namespace` carrying every label of `selector`.
pub fn select<K>(
    store: &Store<K>,
    namespace: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .state()
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .filter(|o| selector.iter().all(|(k, v)| o.labels().get(k) == Some(v)))
        .map(|o| (*o).clone())
        .collect()
}

/// Waits until every store has its first full list.
pub async fn ready(stores: &Stores) -> Result<(), reflector::store::WriterDropped> {
    stores.stateful_sets.wait_until_ready().await?;
    stores.deployments.wait_until_ready().await?;
    stores.daemon_sets.wait_until_ready().await?;
    stores.services.wait_until_ready().await?;
    stores.config_maps.wait_until_ready().await?;
    stores.budgets.wait_until_ready().await?;
    stores.pods.wait_until_ready().await
}
