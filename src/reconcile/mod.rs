//! The reconcile pipeline: validate → plan (pure) → rotate (mint and write, then publish) → status, plus the finalizer
//! that applies `deletionPolicy`. A due rotation runs as the steps in `rotation.rs`.

mod clamp;
mod cleanup;
mod context;
mod events;
pub mod mint_and_write;
mod pending;
pub mod plan;
mod project;
mod recent;
mod restarts;
mod rotation;
pub mod status;
mod unreadable;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

pub use context::Context;
pub(crate) use recent::WATCH_LAG;

use crate::api::{
    ConditionReason, ConditionType, DsqlCredential, DsqlCredentialStatus, FINALIZER, MANAGER_NAME, ROTATE_ANNOTATION,
};
use crate::cache::WatchedCredential;
use crate::projection::ObjectOwner;
use crate::schedule;
use plan::Plan;
use status::Targets;

/// Errors that end a reconcile early; the controller retries them with per-object backoff.
/// Rotation failures are not among them: they are recorded in status and retried on schedule.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing status failed.
    #[error("writing status of {object}: {source}")]
    StatusWrite {
        /// namespace/name.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Applying the deletion policy failed.
    #[error("applying deletionPolicy of {object}: {source}")]
    Cleanup {
        /// namespace/name.
        object: String,
        /// The AWS error.
        #[source]
        source: crate::aws::AwsError,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Reporting (or releasing) an object that cannot be decoded failed.
    #[error("reporting unreadable {object}: {source}")]
    Unreadable {
        /// namespace/name.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Reconciles one watched object: a DsqlCredential, or one that cannot be decoded.
pub async fn reconcile(object: Arc<WatchedCredential>, ctx: Arc<Context>) -> Result<Action, Error> {
    match object.decoded() {
        Ok(credential) => reconcile_credential(Arc::new(credential), ctx).await,
        Err(invalid) => unreadable::report(&invalid, &ctx).await,
    }
}

async fn reconcile_credential(credential: Arc<DsqlCredential>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Every status write comes back as a watch event and a reconcile, so this keeps the
    // per-credential series current, and after a restart sets them before any rotation.
    ctx.metrics.observe_credential(&credential);
    let namespace = credential.namespace().unwrap_or_default();
    let key = object_key(&namespace, &credential.name_any());
    let api: Api<DsqlCredential> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, credential, |event| async {
        match event {
            FinalizerEvent::Apply(credential) => apply(&credential, &api, &ctx).await,
            FinalizerEvent::Cleanup(credential) => cleanup::apply_deletion_policy(&credential, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.clear_failures(&key);
    }
    result
}

/// Backoff for errors that escaped the pipeline (Kubernetes writes, cleanup).
pub fn error_policy(object: Arc<WatchedCredential>, error: &Error, ctx: Arc<Context>) -> Action {
    let meta = object.meta();
    let key = object_key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    ctx.metrics.reconcile_error();
    let failures = ctx.record_failure(&key);
    let delay = schedule::failure_backoff(failures, rand::random::<f64>());
    warn!(credential = %key, error = %error, retry_in_secs = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

fn object_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

async fn apply(credential: &DsqlCredential, api: &Api<DsqlCredential>, ctx: &Context) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let name = credential.name_any();
    let generation = credential.meta().generation;
    let current = credential.status.clone().unwrap_or_default();
    let uid = credential.uid().unwrap_or_default();
    if ctx.is_stale(&uid, current.rotation_count.unwrap_or(0)) {
        // The watch event carrying our own last status write is still on its way; it triggers
        // the next reconcile, this requeue is only a fallback.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }

    let valid = match validate::validate(credential, &ctx.config, now) {
        Ok(valid) => valid,
        Err(invalid) => {
            let mut next = status::after_stall(&current, generation, invalid.reason, &invalid.message, now);
            if !was_stalled_with(&current, invalid.reason) {
                ctx.events.stalled(credential, invalid.reason, &invalid.message).await;
            }
            // Without a valid spec, which projections are wanted is unknown: judge the token alone.
            status::set_ready(&mut next, Targets::default(), now);
            write_status(api, &name, &current, &next).await?;
            return Ok(wake_at_expiry(&next, now));
        }
    };
    let owner = ObjectOwner {
        namespace: credential.namespace().unwrap_or_default(),
        name: name.clone(),
        uid: uid.clone(),
    };

    let annotation = credential.annotations().get(ROTATE_ANNOTATION).map(String::as_str);
    let mut deferral = None;
    let wake = match plan::plan(generation, annotation, &current, now) {
        Plan::Rotate(cause) => {
            return rotation::rotate_now(credential, api, ctx, &valid, &owner, cause, annotation).await;
        }
        Plan::Deferred { cause, until } => {
            deferral = Some(status::deferral_note(&cause, until));
            Some(until)
        }
        Plan::Wait { until } => Some(until),
        Plan::Stalled => None,
    };
    let mut next = current.clone();
    let pending = project::converge(ctx, &owner, &valid, &current, &mut next).await;
    // While Stalled the operator does not act; otherwise refused rollout restarts are retried
    // here, between rotations, without a new token.
    let restart_retry = if wake.is_some() {
        let version = next.version_id.clone();
        let retry = restarts::retry(ctx, &owner, &valid, version.as_deref(), &mut next.rollout_restarts, now).await;
        status::set_restart_condition(&mut next, retry, now);
        retry
    } else {
        None
    };
    status::set_ready(&mut next, valid.targets(), now);
    if let Some(note) = &deferral {
        status::add_deferral_note(&mut next, note);
    }
    write_status(api, &name, &current, &next).await?;
    restarts::report(
        ctx,
        credential,
        &object_key(&owner.namespace, &name),
        &current.rollout_restarts,
        &next.rollout_restarts,
        restart_retry,
    )
    .await;
    // Announced once per requested value: the stored status already carries a note announced.
    if let Some(note) = deferral.filter(|note| !status::has_deferral_note(&current, note)) {
        ctx.events.rotation_deferred(credential, &note).await;
    }
    let wake = earliest(wake, restart_retry);
    Ok(match wake {
        Some(until) => requeue_at(retry_projections(until, pending, now), now),
        None if pending => requeue_at(retry_projections(now + PROJECTION_RETRY, true, now), now),
        None => wake_at_expiry(&next, now),
    })
}

/// How soon an out-of-sync token-free projection (e.g. a missing SecretProviderClass CRD) is
/// tried again.
const PROJECTION_RETRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// The earlier of two optional wake-up times.
fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn retry_projections(until: Timestamp, pending: bool, now: Timestamp) -> Timestamp {
    if pending {
        until.min(now + PROJECTION_RETRY)
    } else {
        until
    }
}

fn was_stalled_with(status: &DsqlCredentialStatus, reason: ConditionReason) -> bool {
    status
        .condition(ConditionType::Stalled)
        .is_some_and(|c| c.status == "True" && c.reason == reason.as_str())
}

fn was_degraded_with(status: &DsqlCredentialStatus, reason: ConditionReason) -> bool {
    status
        .condition(ConditionType::Degraded)
        .is_some_and(|c| c.status == "True" && c.reason == reason.as_str())
}

fn requeue_at(until: Timestamp, now: Timestamp) -> Action {
    let wait = until.duration_since(now);
    // A small floor keeps a clock skew or a just-passed deadline from spinning.
    Action::requeue(
        Duration::try_from(wait)
            .unwrap_or_default()
            .max(Duration::from_millis(500)),
    )
}

fn wake_at_expiry(status: &DsqlCredentialStatus, now: Timestamp) -> Action {
    match status.token_expiration_time.as_ref().map(|t| t.0) {
        Some(expiry) if expiry > now => requeue_at(expiry, now),
        _ => Action::await_change(),
    }
}

/// Writes status by server-side apply, only when it changed.
async fn write_status(
    api: &Api<DsqlCredential>,
    name: &str,
    current: &DsqlCredentialStatus,
    next: &DsqlCredentialStatus,
) -> Result<(), Error> {
    if current == next {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "dsql.credentials.dev/v1alpha1",
        "kind": "DsqlCredential",
        "metadata": {"name": name},
        "status": next,
    });
    api.patch_status(name, &PatchParams::apply(MANAGER_NAME).force(), &Patch::Apply(&patch))
        .await
        .map(|_| ())
        .map_err(|source| Error::StatusWrite {
            object: name.to_owned(),
            source,
        })
}
