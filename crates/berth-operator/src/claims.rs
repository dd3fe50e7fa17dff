//! Checks made before anything of an app is applied, so that a failure leaves nothing
//! half-made: every object must be the app's to write (`berth_k8s::ownership`: berth created
//! it for this app, nothing of that name exists, or the spec adopts it), and the API server
//! must accept every object (a server-side dry run: schema, admission, RBAC).

use berth_core::spec::StatefulApp;
use berth_k8s::ownership;
use berth_k8s::prune::ObjectKey;
use futures::future::try_join_all;
use kube::ResourceExt;
use serde_json::Value;

use crate::reconcile::Context;
use crate::{Result, watch};

/// Why an app's objects may not be applied.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// An object belongs to someone else (the message names it and its owner).
    Conflict(String),
    /// The API server refused an object in a dry run (the message is the server's).
    Rejected(String),
}

/// The first reason not to apply `objects`, if any. An object berth may not even read (RBAC)
/// or whose kind the API server does not know is refused like one the dry run rejects.
pub(crate) async fn check(
    app: &StatefulApp,
    ctx: &Context,
    objects: &[(ObjectKey, Value)],
    namespace: &str,
) -> Option<Refusal> {
    match first_conflict(app, ctx, objects, namespace).await {
        Ok(Some(conflict)) => return Some(Refusal::Conflict(conflict)),
        Ok(None) => {}
        Err(e) => return Some(Refusal::Rejected(e.user_message())),
    }
    let batch: Vec<&Value> = objects.iter().map(|(_, o)| o).collect();
    let dry_runs = objects
        .iter()
        .filter(|(_, object)| ownership::dry_runnable(object, &batch))
        .map(|(_, object)| ctx.applier.dry_run(object, namespace));
    try_join_all(dry_runs)
        .await
        .err()
        .map(|e| Refusal::Rejected(e.user_message()))
}

/// The conflict message of the first object this app may not write.
async fn first_conflict(
    app: &StatefulApp,
    ctx: &Context,
    objects: &[(ObjectKey, Value)],
    namespace: &str,
) -> Result<Option<String>> {
    let uid = app.uid().unwrap_or_default();
    // berth caches only what it labels as its own; anything else needs a read.
    let existing = try_join_all(objects.iter().map(|(key, _)| async move {
        match watch::cached_metadata(&ctx.stores, key, namespace) {
            Some(meta) => Ok(Some(meta)),
            None => ctx.applier.metadata(key, namespace).await,
        }
    }))
    .await?;
    Ok(objects
        .iter()
        .zip(&existing)
        .find_map(|((key, object), meta)| {
            let claim = ownership::claim(meta.as_ref(), &uid, ownership::wants_adoption(object));
            ownership::conflict(key, &claim)
        }))
}
