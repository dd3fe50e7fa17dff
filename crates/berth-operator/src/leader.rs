//! Leader election: replicas compete for a Lease; only its holder reconciles. The decisions are
//! `berth_k8s::lease`'s; this module reads and writes the Lease and tells the rest of the
//! operator when leadership is lost (it then stops, and a restart competes again).

use std::time::Duration;

use berth_k8s::lease::{LeaseDecision, claim, decide};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

use crate::{Error, Result};

/// Where the lease is and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// Seconds a lease stays valid without renewal.
    pub duration_seconds: i32,
}

/// Tries once to take or renew the lease; `Ok(true)` when we hold it afterwards.
async fn try_hold(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool> {
    let current = api
        .get_opt(&config.name)
        .await
        .map_err(Error::kube("read the leader lease"))?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let acquired = match decide(spec, &config.identity, Timestamp::now()) {
        LeaseDecision::Wait { .. } => return Ok(false),
        LeaseDecision::Acquire => true,
        LeaseDecision::Renew => false,
    };
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..Default::default()
        },
        spec: Some(claim(
            spec,
            &config.identity,
            Timestamp::now(),
            config.duration_seconds,
            acquired,
        )),
    };
    let written = match current {
        None => api.create(&PostParams::default(), &lease).await,
        Some(_) => {
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
        }
    };
    match written {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::kube("write the leader lease")(e)),
    }
}

/// Waits until this replica leads, then keeps renewing in the background. The returned channel
/// turns `false` when leadership is lost.
pub async fn lead(client: Client, config: LeaseConfig) -> Result<watch::Receiver<bool>> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let retry = Duration::from_secs(
        u64::try_from(config.duration_seconds / 3)
            .unwrap_or(5)
            .max(1),
    );
    loop {
        match try_hold(&api, &config).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = %config.name, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep(retry).await;
    }
    tracing::info!(lease = %config.name, identity = %config.identity, "became the leader");
    let (tx, rx) = watch::channel(true);
    // A failed renewal is retried; leadership is given up only when the lease may have expired.
    let valid_for =
        Duration::from_secs(u64::try_from(config.duration_seconds).unwrap_or(15)) - retry;
    tokio::spawn(async move {
        let mut renewed = std::time::Instant::now();
        loop {
            tokio::time::sleep(retry).await;
            match try_hold(&api, &config).await {
                Ok(true) => renewed = std::time::Instant::now(),
                Ok(false) => break,
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease"),
            }
            if renewed.elapsed() > valid_for {
                break;
            }
        }
        tracing::error!("lost the leader lease; stopping");
        let _ = tx.send(false);
    });
    Ok(rx)
}
