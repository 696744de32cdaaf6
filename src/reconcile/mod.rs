//! The reconcile pipeline: validate → plan (pure) → rotate (AWS) → status, plus the finalizer
//! that applies `deletionPolicy`.

mod clamp;
mod cleanup;
mod context;
mod events;
mod pending;
pub mod plan;
mod project;
mod restarts;
pub mod rotate;
pub mod status;
mod unreadable;
pub mod validate;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

pub use context::Context;

use crate::api::ProjectionStatus;
use crate::api::{
    ConditionReason, ConditionType, DsqlCredential, DsqlCredentialStatus, FINALIZER, MANAGER_NAME, ROTATE_ANNOTATION,
};
use crate::aws::OwnerRef;
use crate::cache::WatchedCredential;
use crate::projection::ObjectOwner;
use crate::schedule::{self, RenewalPlan};
use pending::{PendingRotation, ToPublish};
use plan::{Plan, RotationCause};
use rotate::RotationError;
use status::{Failure, Published, Targets};
use validate::ValidCredential;

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
        Ok(credential) => reconcile_credential(credential.clone(), ctx).await,
        Err(invalid) => unreadable::report(invalid, &ctx).await,
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
        Plan::Rotate(cause) => return rotate_now(credential, api, ctx, &valid, &owner, cause, annotation).await,
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

/// One rotation: mint, write Secrets Manager, write the Secret, restart workloads, converge the
/// rest, one status write. A token already in Secrets Manager whose Secret or status write failed
/// is published again instead, while it is worth it (see [`plan::retry_or_remint`]).
async fn rotate_now(
    credential: &DsqlCredential,
    api: &Api<DsqlCredential>,
    ctx: &Context,
    valid: &ValidCredential,
    owner: &ObjectOwner,
    cause: RotationCause,
    annotation: Option<&str>,
) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let name = &owner.name;
    let key = object_key(&owner.namespace, name);
    let generation = credential.meta().generation;
    let current = credential.status.clone().unwrap_or_default();
    let started = std::time::Instant::now();
    let sm_owner = OwnerRef {
        namespace: owner.namespace.clone(),
        name: name.clone(),
        uid: owner.uid.clone(),
    };

    // When refused rollout restarts of this rotation are retried.
    let mut restart_retry = None;
    let claimed = project::claim_secret(ctx, owner, valid, &current).await;
    let created_uid = claimed.as_ref().ok().cloned().flatten();
    let rotated = match claimed {
        Ok(_) => pending::waiting_or_new(ctx, &sm_owner, valid, &current, &cause, generation).await,
        Err(error) => Err(RotationError::ClaimSecret(error)),
    };
    // A held-back token is an outcome, not a failure: nothing was written, the published token
    // stays, and the credential source is asked again.
    let rotated = match rotated {
        Ok(ToPublish::Held(hold)) => return hold_back(credential, api, ctx, valid, owner, &hold).await,
        Ok(ToPublish::Waiting(rotation)) => Ok((rotation, true)),
        Ok(ToPublish::New(rotation)) => Ok((rotation, false)),
        Err(error) => Err(error),
    };
    let (mut next, outcome) = match rotated {
        Ok((rotation, republished)) => {
            let jitter = schedule::renewal_jitter(valid.renew_before, seed(&owner.uid, rotation.rotation_count));
            let next_rotation = schedule::next_rotation_time(
                &RenewalPlan {
                    issued_at: rotation.minted.issued_at,
                    expires_at: rotation.minted.expires_at,
                    renew_before: valid.renew_before,
                    schedule: valid.schedule.as_ref(),
                },
                jitter,
            );
            // Until the Secret and status carry it, a failed write retries with this token.
            ctx.pending.keep(
                &owner.uid,
                Arc::new(PendingRotation {
                    rotation: rotation.clone(),
                    secret_name: valid.secret_name.clone(),
                    generation,
                    next_rotation,
                }),
            );
            let published = Published {
                version: rotation.version.clone(),
                secret_name: valid.secret_name.clone(),
                rotation_count: rotation.rotation_count,
                issued_at: rotation.minted.issued_at,
                expires_at: rotation.minted.expires_at,
                next_rotation,
                // Any rotation satisfies the annotation's current value, so a value present at
                // creation does not force a second rotation a minute later.
                rotate_annotation: annotation.map(str::to_owned),
                warning: short_lived_warning(&rotation.minted),
            };
            let mut next = status::after_rotation(&current, generation, &published, now);
            ctx.metrics
                .token_expiry(&owner.namespace, name, published.expires_at.as_second());
            let version = &published.version.version_id;
            let written = project::write_secret(
                ctx,
                owner,
                valid,
                &valid.connection,
                &rotation.minted,
                version,
                created_uid.as_deref(),
            )
            .await;
            match written {
                Ok(secret) => {
                    next.kubernetes_secret = secret;
                    let (restarted, retry_at) = restarts::after_rotation(ctx, owner, valid, version).await;
                    next.rollout_restarts = restarted;
                    restart_retry = retry_at;
                    info!(
                        credential = %key,
                        cause = cause.describe(),
                        version = %version,
                        republished,
                        expires_at = %published.expires_at,
                        next_rotation = %next_rotation,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "rotated token"
                    );
                    ctx.metrics.rotation(true, started.elapsed().as_secs_f64());
                    (next, Ok((published, next_rotation)))
                }
                // Secrets Manager has the new version (status records it) but the Secret does not:
                // the retry publishes this same token (kept in `ctx.pending`), not a new one.
                Err(error) => {
                    if let Some(target) = &valid.kubernetes_secret {
                        next.kubernetes_secret = Some(ProjectionStatus {
                            name: target.name.clone(),
                            version_id: current.kubernetes_secret.as_ref().and_then(|p| p.version_id.clone()),
                            synced: false,
                            message: Some(error.to_string()),
                            created_uid: created_uid.clone(),
                        });
                    }
                    (next, Err(RotationError::WriteSecret(error)))
                }
            }
        }
        Err(error) => {
            let mut next = current.clone();
            project::note_claim(&mut next, valid, created_uid.as_deref());
            (next, Err(error))
        }
    };
    let pending = project::converge(ctx, owner, valid, &current, &mut next).await;

    let action = match outcome {
        Ok((published, next_rotation)) => {
            status::set_restart_condition(&mut next, restart_retry, now);
            status::set_ready(&mut next, valid.targets(), now);
            write_status(api, name, &current, &next).await?;
            ctx.pending.forget(&owner.uid);
            ctx.record_rotation(&owner.uid, published.rotation_count);
            restarts::report(
                ctx,
                credential,
                &key,
                &current.rollout_restarts,
                &next.rollout_restarts,
                restart_retry,
            )
            .await;
            // Events mark transitions. A routine renewal is not one: it shows in status and
            // metrics, and an Event for each would be one more API write per rotation (four a
            // second at 10,000 credentials) for etcd to keep an hour.
            if cause != RotationCause::Due {
                ctx.events
                    .rotated(credential, &cause, &published, current.consecutive_failures)
                    .await;
            }
            let wake = earliest(Some(next_rotation), restart_retry).unwrap_or(next_rotation);
            requeue_at(retry_projections(wake, pending, now), now)
        }
        Err(error) => {
            ctx.metrics.rotation(false, 0.0);
            let (reason, stalls) = error.reason();
            let message = error.to_string();
            if stalls {
                warn!(credential = %key, reason = reason.as_str(), error = %message, "credential stalled");
                // A stall waits for a spec change, which needs a new token anyway.
                ctx.pending.forget(&owner.uid);
                let mut stalled = status::after_stall(&next, generation, reason, &message, now);
                status::set_ready(&mut stalled, valid.targets(), now);
                if !was_stalled_with(&current, reason) {
                    ctx.events.stalled(credential, reason, &message).await;
                }
                write_status(api, name, &current, &stalled).await?;
                return Ok(wake_at_expiry(&stalled, now));
            }
            let expiry = next.token_expiration_time.as_ref().map(|t| t.0);
            let failures_before = current.consecutive_failures.max(0);
            let retry_at = schedule::retry_time(now, failures_before as u32 + 1, rand::random::<f64>(), expiry);
            warn!(credential = %key, reason = reason.as_str(), error = %message, retry_at = %retry_at, "rotation failed");
            let failure = Failure {
                reason,
                message,
                retry_at,
            };
            let mut failed = status::after_failure(&next, generation, &failure, failures_before, now);
            status::set_ready(&mut failed, valid.targets(), now);
            write_status(api, name, &current, &failed).await?;
            if let Some(count) = failed.rotation_count.filter(|c| Some(*c) != current.rotation_count) {
                // Secrets Manager took the version although a projection failed.
                ctx.record_rotation(&owner.uid, count);
            }
            if !was_degraded_with(&current, reason) {
                ctx.events
                    .rotation_failed(credential, &failure, &error_kind(&error))
                    .await;
            }
            requeue_at(retry_at, now)
        }
    };
    Ok(action)
}

/// A new token was held back (see [`clamp::decide`]): nothing is written to Secrets Manager,
/// `Degraded` says why, and the credential source is asked again at `hold.wake`.
async fn hold_back(
    credential: &DsqlCredential,
    api: &Api<DsqlCredential>,
    ctx: &Context,
    valid: &ValidCredential,
    owner: &ObjectOwner,
    hold: &clamp::Hold,
) -> Result<Action, Error> {
    let now = ctx.clock.now();
    let current = credential.status.clone().unwrap_or_default();
    let message = hold.message();
    if !was_degraded_with(&current, ConditionReason::SigningCredentialsExpiring) {
        warn!(
            credential = %object_key(&owner.namespace, &owner.name),
            credentials_expire = %hold.credentials_expire,
            published_until = %hold.published_until,
            "signing credentials expire before renewBefore; keeping the published token and asking for renewed credentials"
        );
    }
    ctx.metrics.rotation_held();
    let mut next = status::after_hold(&current, credential.meta().generation, &message, now);
    let pending = project::converge(ctx, owner, valid, &current, &mut next).await;
    let version = next.version_id.clone();
    let restart_retry = restarts::retry(ctx, owner, valid, version.as_deref(), &mut next.rollout_restarts, now).await;
    status::set_ready(&mut next, valid.targets(), now);
    write_status(api, &owner.name, &current, &next).await?;
    let key = object_key(&owner.namespace, &owner.name);
    restarts::report(
        ctx,
        credential,
        &key,
        &current.rollout_restarts,
        &next.rollout_restarts,
        restart_retry,
    )
    .await;
    let wake = earliest(Some(hold.wake), restart_retry).unwrap_or(hold.wake);
    Ok(requeue_at(retry_projections(wake, pending, now), now))
}

fn error_kind(error: &RotationError) -> String {
    match error {
        RotationError::Mint(crate::token::MintError::AssumeRole { .. }) => "AssumeRole".to_owned(),
        RotationError::Mint(_) => "MintToken".to_owned(),
        RotationError::Aws(e) => e.operation.to_owned(),
        RotationError::OwnedByOther { .. } => "CheckOwnership".to_owned(),
        // The Event names the Kubernetes Secret write; claiming the name is its first half.
        RotationError::ClaimSecret(_) | RotationError::WriteSecret(_) => "WriteSecret".to_owned(),
        RotationError::LoginCheck(_) => "LoginCheck".to_owned(),
    }
}

/// A deterministic jitter seed per object and rotation, so a restart computes the same time.
fn seed(uid: &str, rotation: i64) -> u64 {
    let mut hasher = DefaultHasher::new();
    (uid, rotation).hash(&mut hasher);
    hasher.finish()
}

fn short_lived_warning(minted: &crate::token::MintedToken) -> Option<String> {
    let life = minted.expires_at.duration_since(minted.issued_at);
    (minted.clamped_by_credentials && life < jiff::SignedDuration::from_secs(schedule::MIN_WRITE_INTERVAL.as_secs() as i64)).then(|| {
        format!(
            "the operator's AWS credentials expire at {}, so the new token lives only {}s; check the operator's credential source",
            minted.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            life.as_secs()
        )
    })
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
