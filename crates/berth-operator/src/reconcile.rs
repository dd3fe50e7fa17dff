//! One reconcile of one `StatefulApp`: validate → render → apply → prune → status, with a
//! finalizer so deletion runs [`cleanup`] in order. Idempotent: running it twice changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::diag::{Diagnostic, Diagnostics};
use berth_core::lifecycle::SwitchoverRecord;
use berth_core::load::{Inputs, ValidatedApp, load};
use berth_core::names;
use berth_core::phase::Phase;
use berth_core::spec::{AppliedObject, StatefulApp, StatefulAppStatus};
use berth_k8s::ownership;
use berth_k8s::prune::{self, ObjectKey};
use berth_k8s::render;
use berth_k8s::status::{self, Observed};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::apply::{Applier, key_of};
use crate::claims::{self, Refusal};
use crate::telemetry::Metrics;
use crate::watch::{self, Stores};
use crate::{Error, FINALIZER, Result};

/// What every reconcile of one scope shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Applies and deletes objects.
    pub applier: Applier,
    /// Caches of owned objects.
    pub stores: Stores,
    /// Opens once the caches hold their first full lists.
    pub caches_ready: watch::CachesReady,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per app, for exponential backoff.
    pub failures: Mutex<HashMap<String, u32>>,
    /// What was last applied per app, to skip applies that would change nothing.
    pub applied: Mutex<HashMap<String, AppliedRecord>>,
    /// The role probes of the scope's apps.
    pub prober: Arc<crate::prober::Prober>,
    /// The switchover each part's lifecycle remembers (by app UID and part), as last decided
    /// by this process: newer than a status the caches may not have caught up with.
    pub switchovers: Mutex<HashMap<String, Option<SwitchoverRecord>>>,
    /// Part sizes admitted after membership actions.
    pub admitted: crate::membership::Admitted,
    /// The apps' restores from backups, as this process last knew them.
    pub restores: Arc<crate::restore::Restores>,
    /// The role agent's image, when members run their role probes themselves.
    pub agent_image: Option<String>,
}

/// Requeue interval of a converged app: a safety net; changes arrive through watches.
const RESYNC: Duration = Duration::from_secs(300);
/// Requeue interval while members are still converging (to notice stuck ones).
const CONVERGING: Duration = Duration::from_secs(15);
/// Requeue interval while the operator is rolling members (pod events usually come first).
const ROLLING: Duration = Duration::from_secs(2);

fn app_key(app: &StatefulApp) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// Reconciles one app.
///
/// # Errors
/// Any API failure; the controller retries with backoff.
pub async fn reconcile(app: Arc<StatefulApp>, ctx: Arc<Context>) -> Result<Action> {
    let started = ctx.metrics.reconcile_started();
    let key = app_key(&app);
    ctx.caches_ready
        .wait()
        .await
        .map_err(|e| Error::Startup(format!("caches: {e}")))?;
    let api: Api<StatefulApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let result = finalizer(&api, FINALIZER, app, |event| async {
        match event {
            Finalizer::Apply(app) => apply_app(&app, &ctx).await,
            Finalizer::Cleanup(app) => cleanup(&app, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_finished(started, result.as_ref().err());
    if result.is_ok() {
        ctx.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    } else {
        // After a failure, apply everything again rather than trust what was recorded.
        ctx.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
    result
}

/// Retries a failed reconcile after 1 s, doubling per consecutive failure, at most 5 minutes.
pub fn error_policy(app: Arc<StatefulApp>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = app_key(&app);
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let n = failures.entry(key.clone()).or_insert(0);
    *n += 1;
    let delay = backoff(*n);
    tracing::warn!(app = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(Duration::from_secs(300))
}

/// The CLI's validation, run on the resource as stored; diagnostics without file and line.
///
/// # Errors
/// Every problem found, each with its field path.
pub fn validate(app: &StatefulApp) -> Result<ValidatedApp, Diagnostics> {
    let mut clean = app.clone();
    clean.status = None;
    clean.metadata.managed_fields = None;
    let text = serde_json::to_string(&clean)
        .map_err(|e| Diagnostics::one(Diagnostic::at("", e.to_string())))?;
    let inputs = Inputs {
        app_file: "StatefulApp".into(),
        app_text: text,
        ..Default::default()
    };
    load(&inputs).map_err(without_locations)
}

fn without_locations(mut d: Diagnostics) -> Diagnostics {
    for x in &mut d.0 {
        x.file = None;
        x.line = None;
    }
    d
}

async fn apply_app(app: &StatefulApp, ctx: &Context) -> Result<Action> {
    let validated = match validate(app) {
        Ok(v) => v,
        Err(problems) => return reject(app, ctx, &problems.to_string()).await,
    };
    let namespace = validated.namespace();
    ctx.prober.register(&app_key(app), &validated);
    let admitted = crate::membership::admit(app, ctx, &validated).await;
    let mut objects = match owned_objects(app, ctx, &admitted).await {
        Ok(objects) => objects,
        // A kind the API server does not know (discovery failed).
        Err(e @ Error::Kube { .. }) => {
            return refuse(app, ctx, &validated, Refusal::Rejected(e.user_message())).await;
        }
        Err(e) => return Err(e),
    };
    let uid = app.uid().unwrap_or_default();
    let holds = crate::partition::hold_parts(ctx, &admitted, &uid, &mut objects);
    crate::partition::set_current_revisions(ctx, &holds).await?;
    let mut applied_generations = BTreeMap::new();
    let agents_down = ctx.agent_image.is_some()
        && berth_k8s::agent::must_reapply(
            &validated,
            || app_pods(ctx, &validated),
            Timestamp::now(),
        );
    if agents_down || !ctx.unchanged_since_last_apply(&app_key(app), &objects, &namespace) {
        if let Some(refusal) = claims::check(app, ctx, &objects, &namespace).await {
            return refuse(app, ctx, &validated, refusal).await;
        }
        applied_generations = match apply_objects(app, ctx, &objects, &namespace).await {
            Ok(generations) => generations,
            Err(e) => {
                return refuse(app, ctx, &validated, Refusal::Rejected(e.user_message())).await;
            }
        };
    }
    let desired: BTreeSet<ObjectKey> = objects.iter().map(|(k, _)| k.clone()).collect();
    prune_leftovers(app, ctx, &desired, &namespace).await?;
    let mut observed = observe(ctx, &validated);
    observed.applied_generations = applied_generations;
    observed.restore = crate::restore::drive(app, ctx, &validated, &observed.pods).await?;
    let restoring = crate::restore::running(observed.restore.as_ref());
    let (rolling, lifecycles) =
        crate::rollout::roll_members(app, ctx, &validated, &objects, &observed).await?;
    observed.lifecycle = lifecycles;
    observed.previous_phase = previous_phase(app);
    let mut new = status::compute(
        &validated,
        app.metadata.generation,
        &observed,
        Timestamp::now(),
    );
    new.extra_objects = applied_extras(&validated, &objects);
    let converged = new.phase.as_deref() == Some(Phase::Ready.as_str());
    write_status(app, ctx, new).await?;
    Ok(Action::requeue(match (converged, rolling || restoring) {
        (_, true) => ROLLING,
        (true, false) => RESYNC,
        (false, false) => CONVERGING,
    }))
}

/// The phase the app's status shows now (what the next phase follows from).
fn previous_phase(app: &StatefulApp) -> Option<Phase> {
    app.status.as_ref()?.phase.as_deref()?.parse().ok()
}

/// The extra objects among `objects` (rendered last), as the status lists them so a later
/// reconcile can prune the ones the spec drops.
fn applied_extras(validated: &ValidatedApp, objects: &[(ObjectKey, Value)]) -> Vec<AppliedObject> {
    let first_extra = objects.len() - validated.app.spec.extra_objects.len();
    objects[first_extra..]
        .iter()
        .map(|(k, _)| AppliedObject {
            api_version: k.api_version.clone(),
            kind: k.kind.clone(),
            name: k.name.clone(),
        })
        .collect()
}

/// The rendered objects (operator mode), each namespaced one owned by the app.
async fn owned_objects(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
) -> Result<Vec<(ObjectKey, Value)>> {
    let namespace = validated.namespace();
    let rendered = render::render_for_operator(validated, ctx.agent_image.as_deref())
        .map_err(|e| Error::Render(e.to_string()))?;
    let mut objects = Vec::with_capacity(rendered.len());
    for mut object in rendered {
        let key =
            key_of(&object).ok_or_else(|| Error::Render("an object without identity".into()))?;
        if ctx
            .applier
            .is_namespaced(&key.api_version, &key.kind)
            .await?
        {
            own(&mut object, app, &namespace);
        } else {
            mark_owner_uid(&mut object, app);
        }
        objects.push((key, object));
    }
    Ok(objects)
}

/// Server-side applies every object, records what was applied, and publishes one Event
/// listing the objects that were created or changed. Returns the workloads' generations as
/// applied, which the caches may not have seen yet.
async fn apply_objects(
    app: &StatefulApp,
    ctx: &Context,
    objects: &[(ObjectKey, Value)],
    namespace: &str,
) -> Result<BTreeMap<String, i64>> {
    let mut changes = Vec::new();
    let mut versions = Vec::with_capacity(objects.len());
    let mut generations = BTreeMap::new();
    for (key, object) in objects {
        let before = cached_version(&ctx.stores, key, namespace);
        let applied = ctx.applier.apply(object, namespace).await?;
        if let (true, Some(generation)) = (is_workload(&key.kind), applied.metadata.generation) {
            generations.insert(key.name.clone(), generation);
        }
        let after = spec_version(&applied.metadata);
        if let Some(change) = change_of(before.as_deref(), after.as_deref(), &applied) {
            changes.push(format!("{change} {} {}", key.kind, key.name));
        }
        versions.push((key.clone(), after));
    }
    ctx.record_apply(&app_key(app), objects, versions);
    if !changes.is_empty() {
        let reason = if changes.iter().all(|c| c.starts_with("created")) {
            "Created"
        } else {
            "Applied"
        };
        publish(ctx, app, EventType::Normal, reason, &changes.join(", ")).await;
    }
    Ok(generations)
}

fn is_workload(kind: &str) -> bool {
    matches!(kind, "StatefulSet" | "Deployment" | "DaemonSet")
}

impl Context {
    /// The switchover the lifecycle remembers for part `part` of `app` (`key`): what this
    /// process last decided, or, after a restart, what the app's status kept.
    pub(crate) fn remembered_switchover(
        &self,
        key: &str,
        app: &StatefulApp,
        part: &str,
    ) -> Option<SwitchoverRecord> {
        let memory = self.switchovers.lock().unwrap_or_else(|e| e.into_inner());
        match memory.get(key) {
            Some(decided) => decided.clone(),
            None => app
                .status
                .as_ref()?
                .parts
                .iter()
                .find(|p| p.name == part)?
                .switchover
                .clone(),
        }
    }

    /// Keeps what the lifecycle decided to remember of a part's switchover; the status written
    /// at the end of the reconcile keeps it too, for a restarted operator.
    pub(crate) fn remember_switchover(&self, key: &str, record: Option<SwitchoverRecord>) {
        self.switchovers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), record);
    }

    /// Whether the same objects were applied before and none of them has changed since (by the
    /// caches' spec versions): then applying again would be a no-op worth skipping, which keeps
    /// pod and status events from costing API writes.
    fn unchanged_since_last_apply(
        &self,
        app: &str,
        objects: &[(ObjectKey, Value)],
        namespace: &str,
    ) -> bool {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = applied.get(app) else {
            return false;
        };
        last.fingerprint == fingerprint(objects)
            && last.versions.iter().all(|(key, version)| {
                is_cached_kind(&key.kind)
                    .then(|| cached_version(&self.stores, key, namespace))
                    .is_none_or(|cached| &cached == version)
            })
    }

    fn record_apply(
        &self,
        app: &str,
        objects: &[(ObjectKey, Value)],
        versions: Vec<(ObjectKey, Option<String>)>,
    ) {
        let record = AppliedRecord {
            fingerprint: fingerprint(objects),
            versions,
        };
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(app.to_string(), record);
    }
}

/// What was last applied for an app.
pub struct AppliedRecord {
    fingerprint: u64,
    versions: Vec<(ObjectKey, Option<String>)>,
}

fn fingerprint(objects: &[(ObjectKey, Value)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (_, object) in objects {
        object.to_string().hash(&mut hasher);
    }
    hasher.finish()
}

fn is_cached_kind(kind: &str) -> bool {
    prune::OWNED_KINDS.iter().any(|(_, k)| *k == kind)
}

/// What changes when an object's spec changes: its generation where it has one (workloads,
/// budgets; status updates leave it alone), else its resource version.
fn spec_version(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.generation
        .map(|g| g.to_string())
        .or_else(|| meta.resource_version.clone())
}

/// The spec version berth last saw of an owned object (`None`: not cached, or not a cached kind).
fn cached_version(stores: &Stores, key: &ObjectKey, namespace: &str) -> Option<String> {
    watch::cached_metadata(stores, key, namespace)
        .as_ref()
        .and_then(spec_version)
}

/// "created" or "updated" when an apply changed an object. Objects berth does not cache (extra
/// objects) count as created when their creation second is now.
fn change_of(
    before: Option<&str>,
    after: Option<&str>,
    applied: &DynamicObject,
) -> Option<&'static str> {
    let created_now = applied
        .metadata
        .creation_timestamp
        .as_ref()
        .is_some_and(|t| t.0.as_second() >= Timestamp::now().as_second() - 1);
    match before {
        Some(v) if Some(v) != after => Some("updated"),
        Some(_) => None,
        None if created_now => Some("created"),
        None => None,
    }
}

/// An invalid app: the condition and an Event, and nothing applied.
async fn reject(app: &StatefulApp, ctx: &Context, messages: &str) -> Result<Action> {
    let new = status::invalid(app.metadata.generation, messages);
    if !status::same_readiness(app.status.as_ref(), &new) {
        publish(ctx, app, EventType::Warning, "Invalid", messages).await;
    }
    write_status(app, ctx, new).await?;
    Ok(Action::await_change())
}

/// berth may not apply the app's objects: the status says why (phase `Blocked`, Ready's reason
/// `Conflict` or `ApplyFailed`), a Warning event says it once, and the reconcile fails so it is
/// retried with backoff (and counted in `berth_reconcile_errors`).
async fn refuse(
    app: &StatefulApp,
    ctx: &Context,
    validated: &ValidatedApp,
    refusal: Refusal,
) -> Result<Action> {
    let (reason, message) = match refusal {
        Refusal::Conflict(m) => ("Conflict", m),
        Refusal::Rejected(m) => ("ApplyFailed", m),
    };
    let mut observed = observe(ctx, validated);
    observed.previous_phase = previous_phase(app);
    let mut new = status::compute(
        validated,
        app.metadata.generation,
        &observed,
        Timestamp::now(),
    );
    status::blocked(&mut new, reason, &message);
    new.extra_objects = app
        .status
        .as_ref()
        .map(|s| s.extra_objects.clone())
        .unwrap_or_default();
    if !status::same_readiness(app.status.as_ref(), &new) {
        publish(ctx, app, EventType::Warning, reason, &message).await;
    }
    write_status(app, ctx, new).await?;
    Err(Error::Refused { reason, message })
}

/// Sets the namespace and berth's controller owner reference on a namespaced object.
pub(crate) fn own(object: &mut Value, app: &StatefulApp, namespace: &str) {
    let owner = app
        .controller_owner_ref(&())
        .expect("a stored StatefulApp has a name and uid");
    let metadata = object
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("rendered objects have metadata");
    metadata
        .entry("namespace")
        .or_insert_with(|| Value::String(namespace.to_string()));
    metadata.insert("ownerReferences".into(), json!([owner]));
}

/// A cluster-scoped object cannot have the (namespaced) app as its owner: it carries the app's
/// UID in an annotation instead, so berth knows it created it.
pub(crate) fn mark_owner_uid(object: &mut Value, app: &StatefulApp) {
    let uid = app.uid().unwrap_or_default();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.insert(ownership::OWNER_UID_ANNOTATION.into(), uid.into());
        }
    }
}

fn owned_by<K: Resource>(object: &K, uid: &str) -> bool {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Everything in the caches that this app owns.
fn owned_keys(app: &StatefulApp, ctx: &Context, namespace: &str) -> Vec<ObjectKey> {
    let uid = app.uid().unwrap_or_default();
    let selector =
        std::collections::BTreeMap::from([(names::LABEL_INSTANCE.to_string(), app.name_any())]);
    let mut keys = Vec::new();
    let mut add = |api_version: &str, kind: &str, names: Vec<String>| {
        keys.extend(names.into_iter().map(|name| ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            name,
        }));
    };
    let s = &ctx.stores;
    macro_rules! owned_names {
        ($store:expr) => {
            watch::select(&$store, namespace, &selector)
                .iter()
                .filter(|o| owned_by(*o, &uid))
                .map(|o| o.name_any())
                .collect()
        };
    }
    add("v1", "ConfigMap", owned_names!(s.config_maps));
    add("v1", "Service", owned_names!(s.services));
    add("apps/v1", "StatefulSet", owned_names!(s.stateful_sets));
    add("apps/v1", "Deployment", owned_names!(s.deployments));
    add("apps/v1", "DaemonSet", owned_names!(s.daemon_sets));
    add("policy/v1", "PodDisruptionBudget", owned_names!(s.budgets));
    keys
}

pub(crate) fn previous_extras(app: &StatefulApp) -> Vec<ObjectKey> {
    let list = app
        .status
        .as_ref()
        .map(|s| s.extra_objects.clone())
        .unwrap_or_default();
    list.into_iter()
        .map(|o| ObjectKey {
            api_version: o.api_version,
            kind: o.kind,
            name: o.name,
        })
        .collect()
}

async fn prune_leftovers(
    app: &StatefulApp,
    ctx: &Context,
    desired: &BTreeSet<ObjectKey>,
    namespace: &str,
) -> Result<()> {
    let mut candidates = owned_keys(app, ctx, namespace);
    candidates.extend(previous_extras(app));
    for key in prune::leftovers(desired, &candidates) {
        if !delete_if_ours(app, ctx, &key, namespace).await? {
            continue;
        }
        publish(
            ctx,
            app,
            EventType::Normal,
            "Pruned",
            &format!("deleted {} {}: no longer in the spec", key.kind, key.name),
        )
        .await;
    }
    Ok(())
}

/// Deletes `key` if it is still what berth created for this app (read first, then deleted
/// with its UID as precondition): an object of that name that someone else made or took over
/// since is never deleted. Whether it was deleted.
async fn delete_if_ours(
    app: &StatefulApp,
    ctx: &Context,
    key: &ObjectKey,
    namespace: &str,
) -> Result<bool> {
    let Some(meta) = ctx.applier.metadata(key, namespace).await? else {
        return Ok(false);
    };
    let uid = app.uid().unwrap_or_default();
    if ownership::claim(Some(&meta), &uid, false) != ownership::Claim::Ours {
        tracing::info!(object = %key.name, kind = %key.kind, "kept: not created by berth for this app");
        return Ok(false);
    }
    let object_uid = meta.uid.unwrap_or_default();
    ctx.applier
        .delete_exactly(key, namespace, object_uid)
        .await?;
    Ok(true)
}

/// Deletion: workloads first, then budgets, Services, ConfigMaps and extra objects. Volume
/// claims stay unless the part's retention says `whenDeleted: Delete` (then the StatefulSet
/// controller removes them with their StatefulSet).
async fn cleanup(app: &StatefulApp, ctx: &Context) -> Result<Action> {
    let namespace = app.namespace().unwrap_or_default();
    ctx.prober.forget(&app_key(app));
    let mut keys = owned_keys(app, ctx, &namespace);
    keys.extend(previous_extras(app));
    for key in prune::leftovers(&BTreeSet::new(), &keys) {
        delete_if_ours(app, ctx, &key, &namespace).await?;
    }
    publish(
        ctx,
        app,
        EventType::Normal,
        "Deleted",
        "deleted the app's objects; volume claims follow the retention policy",
    )
    .await;
    ctx.metrics.set_phase(&app_key(app), None);
    ctx.applied
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&app_key(app));
    Ok(Action::await_change())
}

fn observe(ctx: &Context, app: &ValidatedApp) -> Observed {
    let namespace = app.namespace();
    let s = &ctx.stores;
    let mut observed = Observed::default();
    for part in app.parts() {
        let name = names::workload_name(&app.name(), &part.name);
        if let Some(o) = watch::find(&s.stateful_sets, &namespace, &name) {
            observed.stateful_sets.insert(name.clone(), o);
        }
        if let Some(o) = watch::find(&s.deployments, &namespace, &name) {
            observed.deployments.insert(name.clone(), o);
        }
        if let Some(o) = watch::find(&s.daemon_sets, &namespace, &name) {
            observed.daemon_sets.insert(name, o);
        }
    }
    observed.pods = app_pods(ctx, app);
    observed
}

/// The app's pods, from the cache.
fn app_pods(ctx: &Context, app: &ValidatedApp) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let selector =
        std::collections::BTreeMap::from([(names::LABEL_INSTANCE.to_string(), app.name())]);
    watch::select(&ctx.stores.pods, &app.namespace(), &selector)
}

async fn write_status(app: &StatefulApp, ctx: &Context, mut new: StatefulAppStatus) -> Result<()> {
    status::carry_transition_times(&mut new, app.status.as_ref(), Timestamp::now());
    ctx.metrics.set_phase(&app_key(app), new.phase.as_deref());
    if app.status.as_ref() == Some(&new) {
        return Ok(());
    }
    let api: Api<StatefulApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    // `restore` is written by the restore's own steps only (`crate::restore`).
    let mut patch = json!({ "status": new });
    if let Some(status) = patch["status"].as_object_mut() {
        status.remove("restore");
    }
    api.patch_status(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube("write the status"))?;
    Ok(())
}

/// Publishes an Event on the app ([`publish_on`]).
pub(crate) async fn publish(
    ctx: &Context,
    app: &StatefulApp,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    publish_on(&ctx.recorder, &app.object_ref(&()), type_, reason, note).await;
}

/// Publishes an Event on `object`. The note doubles as the action because the recorder folds
/// events with the same reason and action into one series, keeping only the first note.
pub(crate) async fn publish_on(
    recorder: &Recorder,
    object: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: note.chars().take(128).collect(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, object).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
    }
}
