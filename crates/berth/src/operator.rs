//! `berth operator`: reconcile StatefulApps on a Kubernetes cluster (see `berth-operator`).

use std::net::SocketAddr;

use clap::{Args, ValueEnum};

use crate::error::CliError;

/// Log line format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `berth operator`.
#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// Namespace to watch (repeat for several); all namespaces when none is given.
    #[arg(long = "namespace", value_name = "NAMESPACE")]
    pub namespaces: Vec<String>,
    /// Address of the Prometheus `/metrics` endpoint.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Address of the `/healthz` and `/readyz` endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub health_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Compete for a Lease so that only one of several replicas reconciles.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "berth-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "berth-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run role probes and backups inside members' pods: the `berth` binary of this image (the
    /// operator's own) becomes a sidecar of every StatefulSet part with a role probe or
    /// backups; it labels its member's role itself, and moves backups' bytes between the pod and
    /// the store. Without it, the operator execs every probe and carries every backup.
    #[arg(long, env = "BERTH_AGENT_IMAGE", value_name = "IMAGE")]
    pub agent_image: Option<String>,
}

/// Runs the operator until it is signalled to stop.
///
/// # Errors
/// The reason it could not start or had to stop.
pub fn run(args: &OperatorArgs) -> Result<(), CliError> {
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("berth-{}", std::process::id()));
    let options = berth_operator::Options {
        namespaces: args.namespaces.clone(),
        metrics_addr: args.metrics_addr,
        health_addr: args.health_addr,
        json_logs: args.log_format == LogFormat::Json,
        leader_election: args.leader_elect,
        lease_namespace: args.lease_namespace.clone(),
        lease_name: args.lease_name.clone(),
        identity,
        agent_image: args.agent_image.clone().filter(|i| !i.is_empty()),
    };
    let runtime = tokio::runtime::Runtime::new().map_err(CliError::Runtime)?;
    runtime
        .block_on(berth_operator::run(options))
        .map_err(CliError::Operator)
}
