//! Wiring: the client, telemetry, leader election, and one controller per watched namespace
//! (or one for the whole cluster), each with its own caches, and beside each the backup
//! controller of the same scope (under the same lease).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_core::names;
use berth_core::spec::StatefulApp;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use crate::apply::Applier;
use crate::leader::{self, LeaseConfig};
use crate::reconcile::{Context, error_policy, reconcile};
use crate::telemetry::{self, Metrics};
use crate::watch::{self, Stores};
use crate::{Error, MANAGER, Result};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespaces to watch; all when empty.
    pub namespaces: Vec<String>,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    pub health_addr: SocketAddr,
    /// JSON log lines.
    pub json_logs: bool,
    /// Compete for a Lease before reconciling (for more than one replica).
    pub leader_election: bool,
    /// Namespace of the Lease.
    pub lease_namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// The image whose `berth` binary runs as the role agent in members' pods (the
    /// operator's own, under Helm); without it, the operator runs role probes itself.
    pub agent_image: Option<String>,
}

/// Runs the operator until a signal arrives or leadership is lost.
///
/// # Errors
/// When the client cannot be built or the HTTP endpoints cannot listen.
pub async fn run(options: Options) -> Result<()> {
    telemetry::init_logs(options.json_logs);
    let metrics = Arc::new(Metrics::default());
    let client = counting_client(metrics.api_requests.clone()).await?;
    let server = tokio::spawn(telemetry::serve(
        options.metrics_addr,
        options.health_addr,
        metrics.clone(),
    ));
    // A standby replica is ready too: it serves health and metrics, and waits for the lease.
    metrics.ready.store(true, Ordering::Relaxed);
    let mut lost = tokio::select! {
        lost = wait_for_lease(&client, &options) => lost?,
        () = signalled() => {
            tracing::info!("stopped while waiting for the leader lease");
            return Ok(());
        }
    };
    let scopes: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let controllers = futures::future::join_all(
        scopes
            .into_iter()
            .map(|ns| run_scope(client.clone(), ns, metrics.clone(), &options)),
    );
    tracing::info!(namespaces = ?options.namespaces, "berth operator started");
    tokio::select! {
        _ = controllers => {}
        r = server => return r.map_err(|e| Error::Startup(e.to_string()))?,
        _ = leadership_lost(&mut lost) => return Err(Error::Startup("lost the leader lease".into())),
        () = past_shutdown_grace() => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "reconciles still running after the shutdown grace period; exiting");
        }
    }
    Ok(())
}

/// How long reconciles in flight may take to finish after SIGTERM or SIGINT (each controller
/// stops taking new work at once). Kubernetes kills a pod 30 s after SIGTERM by default.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Resolves on the first SIGTERM or SIGINT.
async fn signalled() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the operator");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves [`SHUTDOWN_GRACE`] after a stop signal.
async fn past_shutdown_grace() {
    signalled().await;
    tracing::info!(grace = ?SHUTDOWN_GRACE, "graceful shutdown requested");
    tokio::time::sleep(SHUTDOWN_GRACE).await;
}

/// With leader election, waits until this replica holds the Lease and returns the channel that
/// says when it stops holding it; without, returns at once.
async fn wait_for_lease(
    client: &Client,
    options: &Options,
) -> Result<Option<tokio::sync::watch::Receiver<bool>>> {
    if !options.leader_election {
        return Ok(None);
    }
    let config = LeaseConfig {
        namespace: options.lease_namespace.clone(),
        name: options.lease_name.clone(),
        identity: options.identity.clone(),
        duration_seconds: 15,
    };
    Ok(Some(leader::lead(client.clone(), config).await?))
}

/// A client that counts every request it sends (the `berth_api_requests` metric).
async fn counting_client(counter: prometheus_client::metrics::counter::Counter) -> Result<Client> {
    let startup = |e: &dyn std::fmt::Display| {
        Error::Startup(format!("no usable Kubernetes client configuration: {e}"))
    };
    let config = kube::Config::infer().await.map_err(|e| startup(&e))?;
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| startup(&e))?;
    let count =
        tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
            counter.inc();
            request
        });
    Ok(builder.with_layer(&count).build())
}

async fn leadership_lost(lost: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match lost {
        Some(rx) => {
            let _ = rx.wait_for(|leading| !leading).await;
        }
        None => futures::future::pending::<()>().await,
    }
}

/// The app a pod belongs to, from its labels.
fn app_of(pod: Pod) -> Option<ObjectRef<StatefulApp>> {
    let app = pod.labels().get(names::LABEL_INSTANCE)?.clone();
    Some(ObjectRef::new(&app).within(&pod.namespace()?))
}

async fn run_scope(
    client: Client,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    options: &Options,
) {
    let ns = namespace.as_deref();
    let (stateful_sets, sts) = watch::reflect::<StatefulSet>(&client, ns);
    let (deployments, deploy) = watch::reflect::<Deployment>(&client, ns);
    let (daemon_sets, ds) = watch::reflect::<DaemonSet>(&client, ns);
    let (services, svc) = watch::reflect::<Service>(&client, ns);
    let (config_maps, cm) = watch::reflect::<ConfigMap>(&client, ns);
    let (budgets, pdb) = watch::reflect::<PodDisruptionBudget>(&client, ns);
    let (pods, pod) = watch::reflect::<Pod>(&client, ns);
    let stores = Stores {
        stateful_sets,
        deployments,
        daemon_sets,
        services,
        config_maps,
        budgets,
        pods,
    };
    let context = context(&client, stores, metrics, options);
    let probes = crate::prober::run(
        client.clone(),
        context.prober.clone(),
        context.stores.pods.clone(),
    );
    let (apps, app) = watch::reflect_apps(&client, ns);
    let backups = crate::backup::run(
        client.clone(),
        namespace.clone(),
        context.recorder.clone(),
        context.metrics.clone(),
        (
            context.stores.pods.clone(),
            apps.clone(),
            context.caches_ready.clone(),
        ),
    );
    let controller = Controller::for_stream(app, apps)
        .owns_stream(sts)
        .owns_stream(deploy)
        .owns_stream(ds)
        .owns_stream(svc)
        .owns_stream(cm)
        .owns_stream(pdb)
        .watches_stream(pod, app_of)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        });
    tokio::select! {
        () = controller => {}
        () = probes => {}
        () = backups => {}
    }
}

/// The reconciler's context over `stores`: clients, the caches' readiness gate (its opener
/// spawned), the event recorder, and the operator's in-process memory.
fn context(
    client: &Client,
    stores: Stores,
    metrics: Arc<Metrics>,
    options: &Options,
) -> Arc<Context> {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(options.identity.clone()),
    };
    let (caches_ready, open_gate) = watch::CachesReady::watch(stores.clone());
    tokio::spawn(open_gate);
    Arc::new(Context {
        client: client.clone(),
        applier: Applier::new(client.clone()),
        stores,
        caches_ready,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        failures: Default::default(),
        applied: Default::default(),
        prober: Default::default(),
        switchovers: Default::default(),
        admitted: Default::default(),
        restores: Default::default(),
        agent_image: options.agent_image.clone(),
    })
}
