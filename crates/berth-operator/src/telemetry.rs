//! Prometheus metrics (reconciles, errors, reconcile duration, apps by phase), the health and
//! metrics HTTP endpoints, and log setup.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::{Error, Result};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

/// The operator's metrics.
pub struct Metrics {
    registry: Registry,
    reconciles: Counter,
    errors: Family<ErrorLabels, Counter>,
    duration: Histogram,
    phases: Family<PhaseLabels, Gauge>,
    backups: Family<OutcomeLabels, Counter>,
    /// Requests sent to the Kubernetes API.
    pub api_requests: Counter,
    phase_of_app: Mutex<HashMap<String, String>>,
    /// Whether the operator is ready to serve (caches synced, leadership settled).
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let phases = Family::<PhaseLabels, Gauge>::default();
        registry.register("reconciles", "Reconciles started", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            duration.clone(),
        );
        registry.register("apps", "StatefulApps by phase", phases.clone());
        let backups = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "backups",
            "StatefulAppBackups run to the end, by outcome (succeeded, failed)",
            backups.clone(),
        );
        let api_requests = Counter::default();
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API",
            api_requests.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            phases,
            backups,
            api_requests,
            phase_of_app: Mutex::new(HashMap::new()),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Counts a reconcile and returns the moment it started.
    pub fn reconcile_started(&self) -> Instant {
        self.reconciles.inc();
        Instant::now()
    }

    /// Records how a reconcile ended.
    pub fn reconcile_finished(&self, started: Instant, error: Option<&Error>) {
        self.duration.observe(started.elapsed().as_secs_f64());
        if let Some(e) = error {
            self.errors
                .get_or_create(&ErrorLabels {
                    error: e.metric_label().to_string(),
                })
                .inc();
        }
    }

    /// Counts a backup that ended (`succeeded` or `failed`).
    pub fn backup_finished(&self, outcome: &str) {
        let labels = OutcomeLabels {
            outcome: outcome.to_string(),
        };
        self.backups.get_or_create(&labels).inc();
    }

    /// Records the phase of app `key` (`None` once it is gone).
    pub fn set_phase(&self, key: &str, phase: Option<&str>) {
        let mut phases = self.phase_of_app.lock().unwrap_or_else(|e| e.into_inner());
        let old = match phase {
            Some(p) => phases.insert(key.to_string(), p.to_string()),
            None => phases.remove(key),
        };
        if let Some(old) = old {
            self.phases.get_or_create(&PhaseLabels { phase: old }).dec();
        }
        if let Some(p) = phase {
            self.phases
                .get_or_create(&PhaseLabels {
                    phase: p.to_string(),
                })
                .inc();
        }
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> String {
    m.encode()
}

async fn live() -> &'static str {
    "ok"
}

async fn ready(State(m): State<Arc<Metrics>>) -> (StatusCode, &'static str) {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves `/metrics` on `metrics_addr` and `/healthz`, `/readyz` on `health_addr` (both on one
/// listener when the addresses are equal).
pub async fn serve(
    metrics_addr: SocketAddr,
    health_addr: SocketAddr,
    state: Arc<Metrics>,
) -> Result<()> {
    let health = Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready));
    let metric = Router::new().route("/metrics", get(metrics));
    if metrics_addr == health_addr {
        return listen(metrics_addr, health.merge(metric).with_state(state)).await;
    }
    let a = listen(metrics_addr, metric.with_state(state.clone()));
    let b = listen(health_addr, health.with_state(state));
    tokio::try_join!(a, b).map(|_| ())
}

async fn listen(addr: SocketAddr, router: Router) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Startup(format!("cannot listen on {addr}: {e}")))?;
    axum::serve(listener, router)
        .await
        .map_err(|e| Error::Startup(format!("HTTP server on {addr}: {e}")))
}

/// Sets up logging: human-readable by default, JSON lines with `json`. `RUST_LOG` filters.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
