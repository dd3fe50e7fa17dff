//! Reflector stores of everything berth owns in one scope (a namespace or the whole cluster),
//! and the streams that wake the controller when any of it changes. Reconciles read these
//! caches instead of listing from the API server.

use std::fmt::Debug;

use berth_core::names;
use berth_core::spec::StatefulApp;
use berth_k8s::prune::ObjectKey;
use futures::Stream;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// berth's own annotations (a pod's template hash and in-place record) stay in the caches.
const BERTH_PREFIX: &str = "berth.io/";

/// Only what berth manages is watched, so caches stay small. Pods are the exception: they are
/// members by the workload's selector (which every pod berth renders carries, and which a user
/// cannot remove without the workload controller letting the pod go), so pods are watched by
/// that selector's keys, never by the `managed-by` label a user may remove.
fn watched<K: Resource<DynamicType = ()>>() -> watcher::Config {
    if K::kind(&()) == "Pod" {
        let keys = [names::LABEL_INSTANCE, names::LABEL_COMPONENT];
        watcher::Config::default().labels(&keys.join(","))
    } else {
        watcher::Config::default().labels(&format!(
            "{}={}",
            names::LABEL_MANAGED_BY,
            names::MANAGER
        ))
    }
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
    let stream = watcher(api::<K>(client, namespace), watched::<K>())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.annotations_mut()
                .retain(|k, _| k.starts_with(BERTH_PREFIX));
            o.slim();
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// The copy of the whole object that a client-side `kubectl apply` keeps in an annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The controller's own cache of the scope's StatefulApps, and the stream that triggers their
/// reconciles. Specs and statuses stay whole (reconciles validate and render them); what goes is
/// what no reconcile reads: `managedFields` and the `last-applied-configuration` copy of the
/// object, each as large as the spec itself.
pub fn reflect_apps(
    client: &Client,
    namespace: Option<&str>,
) -> (
    Store<StatefulApp>,
    impl Stream<Item = Result<StatefulApp, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let stream = watcher(
        api::<StatefulApp>(client, namespace),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|app: &mut StatefulApp| {
        app.managed_fields_mut().clear();
        app.annotations_mut().remove(LAST_APPLIED);
    })
    .reflect(writer)
    .applied_objects();
    (reader, stream)
}

/// Drops the parts of a watched object the operator never reads, so that caches of thousands of
/// objects stay small. What stays: metadata (names, labels, owners, versions, berth's
/// annotations), workload replicas and status, a pod's node, conditions, gates, containers'
/// images and why they wait.
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
    /// Keeps the node, conditions, readiness gates, and each container's name and image with
    /// the status fields an in-place update is judged by, and what a not-ready member's reason
    /// is made of (`berth_k8s::member::not_ready`): the waiting state's reason and message and
    /// the last termination's exit code (the scheduler's message is in the conditions);
    /// whether the `berth-restore` init container runs; and whether the pod has a role agent
    /// and how it runs (`berth_k8s::agent::state` and `trouble`).
    fn slim(&mut self) {
        use k8s_openapi::api::core::v1::{
            Container, ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec,
            PodStatus,
        };
        let spec = self.spec.take().unwrap_or_default();
        let berth_own = |c: &Container| c.name == berth_k8s::agent::CONTAINER;
        let init_containers = spec.init_containers.map(|all| {
            all.into_iter()
                .filter(berth_own)
                .map(|c| Container {
                    name: c.name,
                    ..Default::default()
                })
                .collect()
        });
        self.spec = Some(PodSpec {
            node_name: spec.node_name,
            init_containers,
            readiness_gates: spec.readiness_gates,
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    image: c.image,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        if let Some(status) = self.status.as_mut() {
            let containers = status.container_statuses.take().map(|all| {
                all.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        image: c.image,
                        image_id: c.image_id,
                        ready: c.ready,
                        restart_count: c.restart_count,
                        state: c.state.map(|s| ContainerState {
                            running: s.running,
                            waiting: s.waiting,
                            ..Default::default()
                        }),
                        last_state: c.last_state.and_then(|s| s.terminated).map(|t| {
                            ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: t.exit_code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }
                        }),
                        ..Default::default()
                    })
                    .collect()
            });
            // Whether a member waits for its restore (`berth_k8s::restore::waiting`), and how
            // its agent runs.
            let watched = [
                berth_k8s::restore::INIT_CONTAINER,
                berth_k8s::agent::CONTAINER,
            ];
            let restore = status.init_container_statuses.take().map(|all| {
                all.into_iter()
                    .filter(|c| watched.contains(&c.name.as_str()))
                    .map(|c| ContainerStatus {
                        name: c.name,
                        ready: c.ready,
                        restart_count: c.restart_count,
                        state: c.state.map(|s| ContainerState {
                            running: s.running,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect()
            });
            *status = PodStatus {
                conditions: status.conditions.take(),
                phase: status.phase.take(),
                container_statuses: containers,
                init_container_statuses: restore,
                ..Default::default()
            };
        }
    }
}

/// The cached metadata of an object of one of berth's own kinds (`None`: not cached, or a kind
/// berth does not cache).
pub fn cached_metadata(stores: &Stores, key: &ObjectKey, namespace: &str) -> Option<ObjectMeta> {
    fn meta<K: Resource<DynamicType = ()> + Clone>(
        store: &Store<K>,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectMeta> {
        find(store, namespace, name).map(|o| o.meta().clone())
    }
    let (s, name) = (stores, key.name.as_str());
    match key.kind.as_str() {
        "ConfigMap" => meta(&s.config_maps, namespace, name),
        "Service" => meta(&s.services, namespace, name),
        "StatefulSet" => meta(&s.stateful_sets, namespace, name),
        "Deployment" => meta(&s.deployments, namespace, name),
        "DaemonSet" => meta(&s.daemon_sets, namespace, name),
        "PodDisruptionBudget" => meta(&s.budgets, namespace, name),
        _ => None,
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

/// Whether the caches of a scope hold their first full lists, for any number of waiters.
///
/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (its one-shot
/// receiver keeps one waker), so reconciles must not await it directly: an operator started
/// with many apps would reconcile one of them and leave the rest waiting forever. One task
/// awaits the stores ([`CachesReady::watch`]) and opens this gate for everyone.
#[derive(Clone)]
pub struct CachesReady(tokio::sync::watch::Receiver<bool>);

impl CachesReady {
    /// The gate, and the task that opens it once every store of `stores` is ready (run it
    /// beside the controller that polls the stores' streams).
    pub fn watch(stores: Stores) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let opener = async move {
            match ready(&stores).await {
                Ok(()) => {
                    let _ = tx.send(true);
                }
                Err(e) => tracing::error!(error = %e, "a cache stopped before its first list"),
            }
        };
        (Self(rx), opener)
    }

    /// Waits until the caches are ready.
    ///
    /// # Errors
    /// When the task that watches them ended without opening the gate.
    pub async fn wait(&self) -> Result<(), tokio::sync::watch::error::RecvError> {
        self.0.clone().wait_for(|ready| *ready).await.map(|_| ())
    }
}

/// Waits until every store has its first full list (one waiter only: see [`CachesReady`]).
async fn ready(stores: &Stores) -> Result<(), reflector::store::WriterDropped> {
    stores.stateful_sets.wait_until_ready().await?;
    stores.deployments.wait_until_ready().await?;
    stores.daemon_sets.wait_until_ready().await?;
    stores.services.wait_until_ready().await?;
    stores.config_maps.wait_until_ready().await?;
    stores.budgets.wait_until_ready().await?;
    stores.pods.wait_until_ready().await
}

#[cfg(test)]
mod tests {
    use super::Slim as _;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStatus, Pod, PodStatus,
    };

    fn running(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            image: "redis:7".into(),
            state: Some(ContainerState {
                running: Some(ContainerStateRunning::default()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A slimmed pod still tells whether its member waits for its restore (the operator never
    /// restored a member before this was kept).
    #[test]
    fn a_slim_pod_keeps_whether_its_restore_init_container_runs() {
        let mut pod = Pod {
            status: Some(PodStatus {
                init_container_statuses: Some(vec![
                    running(berth_k8s::restore::INIT_CONTAINER),
                    running("users-own"),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.metadata.name = Some("redis-0".into());
        pod.slim();
        assert_eq!(berth_k8s::restore::waiting(&[pod.clone()], "redis"), [0]);
        let kept = pod.status.unwrap().init_container_statuses.unwrap();
        assert_eq!(kept.len(), 1, "only berth's init container is kept");
        assert!(kept[0].image.is_empty());
    }

    /// A slimmed pod still tells whether it has a role agent and how it runs (the operator
    /// probed every agent's member itself before this was kept).
    #[test]
    fn a_slim_pod_keeps_its_agent_and_how_it_runs() {
        use berth_k8s::agent::{AgentState, CONTAINER, state};
        use k8s_openapi::api::core::v1::{Container, PodSpec};
        let mut agent = running(CONTAINER);
        agent.ready = true;
        agent.restart_count = 2;
        let mut pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![
                    Container {
                        name: CONTAINER.into(),
                        image: Some("redis:7".into()),
                        ..Default::default()
                    },
                    Container {
                        name: "users-own".into(),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                init_container_statuses: Some(vec![agent, running("users-own")]),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.slim();
        assert_eq!(state(&pod), AgentState::Running);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1);
        let status = pod.status.as_ref().unwrap();
        let kept = &status.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!((kept.ready, kept.restart_count), (true, 2));
    }
}
