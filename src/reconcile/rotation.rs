//! One rotation, step by step: claim the Kubernetes Secret's name (validate) → the token (the
//! waiting one, or a new one minted, held back or login-checked, and written to Secrets Manager)
//! → what status records for it (pure) → the Secret and the rollout restarts (apply) → the
//! token-free projections (converge) → one status write, then Events. [`rotate_now`] and
//! [`Run::publish`] show that order on one screen; each step is a small method of [`Run`].

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use kube::Resource;
use kube::api::Api;
use kube::runtime::controller::Action;
use tracing::{info, warn};

use super::clamp::Hold;
use super::mint_and_write::{Rotation, RotationError};
use super::pending::{self, PendingRotation, ToPublish};
use super::plan::RotationCause;
use super::status::{self, Failure, Published};
use super::validate::ValidCredential;
use super::{
    Context, Error, earliest, object_key, project, requeue_at, restarts, retry_projections, wake_at_expiry,
    was_degraded_with, was_stalled_with, write_status,
};
use crate::api::{ConditionReason, DsqlCredential, DsqlCredentialStatus};
use crate::aws::OwnerRef;
use crate::projection::ObjectOwner;
use crate::schedule::{self, RenewalPlan};

/// What a rotation came to before the token-free projections converge and status is written.
/// A held-back token is an outcome of its own, not a failure: the published token stays valid.
enum RotationOutcome {
    /// The token is in Secrets Manager and the Kubernetes Secret, and its workloads were asked
    /// to restart.
    Published {
        /// The status recording it (`Ready` and the restart condition are set when it is written).
        next: DsqlCredentialStatus,
        /// What was published, as status and the Event describe it.
        published: Published,
        /// When refused rollout restarts are retried, if one was refused.
        restart_retry: Option<Timestamp>,
    },
    /// The new token was held back (see [`super::clamp::decide`]): nothing was written.
    Held(Hold),
    /// A step failed.
    Failed {
        /// The status as far as the rotation got: a claimed Secret's uid, or the version Secrets
        /// Manager took before the Secret write failed.
        next: DsqlCredentialStatus,
        /// Why.
        error: RotationError,
    },
}

/// One rotation: mint, write Secrets Manager, write the Secret, restart workloads, converge the
/// rest, one status write. A token already in Secrets Manager whose Secret or status write failed
/// is published again instead, while it is worth it (see [`super::plan::retry_or_remint`]).
pub(super) async fn rotate_now(
    credential: &DsqlCredential,
    api: &Api<DsqlCredential>,
    ctx: &Context,
    valid: &ValidCredential,
    owner: &ObjectOwner,
    cause: RotationCause,
    annotation: Option<&str>,
) -> Result<Action, Error> {
    let run = Run::new(credential, api, ctx, valid, owner, cause, annotation);
    match run.publish().await {
        RotationOutcome::Published {
            mut next,
            published,
            restart_retry,
        } => {
            let pending = run.converge(&mut next).await;
            run.record_published(next, &published, restart_retry, pending).await
        }
        RotationOutcome::Held(hold) => run.hold_back(&hold).await,
        RotationOutcome::Failed { mut next, error } => {
            run.converge(&mut next).await;
            run.record_failure(&next, &error).await
        }
    }
}

/// What every step of one rotation reads: the object, the clients, the validated spec, and the
/// status and clock as the rotation found them.
struct Run<'a> {
    /// The object rotated, for Events.
    credential: &'a DsqlCredential,
    /// Where status is written.
    api: &'a Api<DsqlCredential>,
    /// Clients, clock, metrics and per-object memory.
    ctx: &'a Context,
    /// The validated spec.
    valid: &'a ValidCredential,
    /// Owner of the objects the rotation writes.
    owner: &'a ObjectOwner,
    /// Why the rotation happens.
    cause: RotationCause,
    /// The `dsql.credentials.dev/rotate` annotation's value.
    annotation: Option<&'a str>,
    /// The clock when the rotation started.
    now: Timestamp,
    /// `namespace/name`, for log lines.
    key: String,
    /// The spec generation the rotation acts on.
    generation: Option<i64>,
    /// The stored status: every step builds on it, and it is written only where it differs.
    current: DsqlCredentialStatus,
    /// Times the rotation for its log line and metric.
    started: Instant,
}

impl<'a> Run<'a> {
    /// Reads the clock and the stored status once, for every step.
    fn new(
        credential: &'a DsqlCredential,
        api: &'a Api<DsqlCredential>,
        ctx: &'a Context,
        valid: &'a ValidCredential,
        owner: &'a ObjectOwner,
        cause: RotationCause,
        annotation: Option<&'a str>,
    ) -> Self {
        Self {
            now: ctx.clock.now(),
            key: object_key(&owner.namespace, &owner.name),
            generation: credential.meta().generation,
            current: credential.status.clone().unwrap_or_default(),
            started: Instant::now(),
            credential,
            api,
            ctx,
            valid,
            owner,
            cause,
            annotation,
        }
    }

    /// Claim → token → what status records (pure) → Secret → rollout restarts; stops at the
    /// first step that fails or holds the token back.
    async fn publish(&self) -> RotationOutcome {
        let created_uid = match self.claim_secret().await {
            Ok(uid) => uid,
            Err(error) => return self.failed(None, error),
        };
        let (rotation, republished) = match self.token().await {
            Ok(ToPublish::Waiting(rotation)) => (rotation, true),
            Ok(ToPublish::New(rotation)) => (rotation, false),
            Ok(ToPublish::Held(hold)) => return RotationOutcome::Held(hold),
            Err(error) => return self.failed(created_uid.as_deref(), error),
        };
        let (published, mut next) = self.desired(&rotation);
        self.keep_pending(&rotation, published.next_rotation);
        self.ctx.metrics.token_expiry(
            &self.owner.namespace,
            &self.owner.name,
            published.expires_at.as_second(),
        );
        let version = &published.version.version_id;
        if let Err(error) = self.write_secret(&mut next, &rotation, version, created_uid).await {
            return RotationOutcome::Failed { next, error };
        }
        let restart_retry = self.restart_workloads(&mut next, version).await;
        self.log_rotated(&published, republished);
        RotationOutcome::Published {
            next,
            published,
            restart_retry,
        }
    }

    /// Step 1 (validate): claims the Secret's name before anything is minted, so a name taken by
    /// someone else stalls the credential with nothing written. Returns the uid every later write
    /// of the Secret carries.
    async fn claim_secret(&self) -> Result<Option<String>, RotationError> {
        project::claim_secret(self.ctx, self.owner, self.valid, &self.current)
            .await
            .map_err(RotationError::ClaimSecret)
    }

    /// Step 2 (act): the token to publish: the waiting one, or a new one minted, held back or
    /// login-checked, and written to Secrets Manager.
    async fn token(&self) -> Result<ToPublish, RotationError> {
        let sm_owner = OwnerRef {
            namespace: self.owner.namespace.clone(),
            name: self.owner.name.clone(),
            uid: self.owner.uid.clone(),
        };
        pending::waiting_or_new(
            self.ctx,
            &sm_owner,
            self.valid,
            &self.current,
            &self.cause,
            self.generation,
        )
        .await
    }

    /// A failure up to the Secrets Manager write: status keeps what it had, plus the Secret
    /// claimed (if it was), so a failed rotation does not lose its uid.
    fn failed(&self, created_uid: Option<&str>, error: RotationError) -> RotationOutcome {
        let mut next = self.current.clone();
        project::note_claim(&mut next, self.valid, created_uid);
        RotationOutcome::Failed { next, error }
    }

    /// Step 3 (pure): what is published for `rotation` and the status recording it, renewed at a
    /// time jittered per object and rotation (so a restart computes the same time).
    fn desired(&self, rotation: &Rotation) -> (Published, DsqlCredentialStatus) {
        let valid = self.valid;
        let jitter = schedule::renewal_jitter(valid.renew_before, seed(&self.owner.uid, rotation.rotation_count));
        let next_rotation = schedule::next_rotation_time(
            &RenewalPlan {
                issued_at: rotation.minted.issued_at,
                expires_at: rotation.minted.expires_at,
                renew_before: valid.renew_before,
                schedule: valid.schedule.as_ref(),
            },
            jitter,
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
            rotate_annotation: self.annotation.map(str::to_owned),
            warning: short_lived_warning(&rotation.minted),
        };
        let next = status::after_rotation(&self.current, self.generation, &published, self.now);
        (published, next)
    }

    /// Until the Secret and status carry it, a failed write retries with this token.
    fn keep_pending(&self, rotation: &Arc<Rotation>, next_rotation: Timestamp) {
        self.ctx.pending.keep(
            &self.owner.uid,
            Arc::new(PendingRotation {
                rotation: rotation.clone(),
                secret_name: self.valid.secret_name.clone(),
                generation: self.generation,
                next_rotation,
            }),
        );
    }

    /// Step 4 (apply): the Kubernetes Secret with the token, recorded in `next`. When it fails,
    /// Secrets Manager has the new version (status records it) but the Secret does not: the retry
    /// publishes this same token (kept in `ctx.pending`), not a new one.
    async fn write_secret(
        &self,
        next: &mut DsqlCredentialStatus,
        rotation: &Rotation,
        version: &str,
        created_uid: Option<String>,
    ) -> Result<(), RotationError> {
        let valid = self.valid;
        let written = project::write_secret(
            self.ctx,
            self.owner,
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
                Ok(())
            }
            Err(error) => {
                project::note_write_failure(next, valid, &self.current, created_uid, &error);
                Err(RotationError::WriteSecret(error))
            }
        }
    }

    /// Step 5 (apply): restarts the `rolloutRestart` workloads for `version`, recorded in `next`;
    /// returns when refused ones are retried.
    async fn restart_workloads(&self, next: &mut DsqlCredentialStatus, version: &str) -> Option<Timestamp> {
        let (restarted, retry_at) = restarts::after_rotation(self.ctx, self.owner, self.valid, version).await;
        next.rollout_restarts = restarted;
        retry_at
    }

    /// The INFO line and the success metric, timed when the token is in every place that
    /// carries it (before the token-free projections and status).
    fn log_rotated(&self, published: &Published, republished: bool) {
        info!(
            credential = %self.key,
            cause = self.cause.describe(),
            version = %published.version.version_id,
            republished,
            expires_at = %published.expires_at,
            next_rotation = %published.next_rotation,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "rotated token"
        );
        self.ctx.metrics.rotation(true, self.started.elapsed().as_secs_f64());
    }

    /// Step 6 (apply): the token-free projections; returns whether one is still out of sync.
    async fn converge(&self, next: &mut DsqlCredentialStatus) -> bool {
        project::converge(self.ctx, self.owner, self.valid, &self.current, next).await
    }

    /// Step 7 (status) of a published token: one status write, then the pending token is dropped,
    /// the rotation remembered, restarts reported and, for a transition, an Event sent.
    async fn record_published(
        &self,
        mut next: DsqlCredentialStatus,
        published: &Published,
        restart_retry: Option<Timestamp>,
        pending: bool,
    ) -> Result<Action, Error> {
        let (ctx, now) = (self.ctx, self.now);
        status::set_restart_condition(&mut next, restart_retry, now);
        status::set_ready(&mut next, self.valid.targets(), now);
        write_status(self.api, &self.owner.name, &self.current, &next).await?;
        ctx.pending.forget(&self.owner.uid);
        ctx.record_rotation(&self.owner.uid, published.rotation_count);
        self.report_restarts(&next, restart_retry).await;
        // Events mark transitions. A routine renewal is not one: it shows in status and
        // metrics, and an Event for each would be one more API write per rotation (four a
        // second at 10,000 credentials) for etcd to keep an hour.
        if self.cause != RotationCause::Due {
            ctx.events
                .rotated(
                    self.credential,
                    &self.cause,
                    published,
                    self.current.consecutive_failures,
                )
                .await;
        }
        let wake = earliest(Some(published.next_rotation), restart_retry).unwrap_or(published.next_rotation);
        Ok(requeue_at(retry_projections(wake, pending, now), now))
    }

    /// Step 7 (status) of a failure: counted, then stalled (no retry until the spec changes) or
    /// degraded (retried with backoff).
    async fn record_failure(&self, next: &DsqlCredentialStatus, error: &RotationError) -> Result<Action, Error> {
        self.ctx.metrics.rotation(false, 0.0);
        let (reason, stalls) = error.reason();
        if stalls {
            self.stall(next, reason, error.to_string()).await
        } else {
            self.degrade(next, reason, error).await
        }
    }

    /// `Stalled` until the spec changes; the Event only when it starts.
    async fn stall(
        &self,
        next: &DsqlCredentialStatus,
        reason: ConditionReason,
        message: String,
    ) -> Result<Action, Error> {
        let now = self.now;
        warn!(credential = %self.key, reason = reason.as_str(), error = %message, "credential stalled");
        // A stall waits for a spec change, which needs a new token anyway.
        self.ctx.pending.forget(&self.owner.uid);
        let mut stalled = status::after_stall(next, self.generation, reason, &message, now);
        status::set_ready(&mut stalled, self.valid.targets(), now);
        if !was_stalled_with(&self.current, reason) {
            self.ctx.events.stalled(self.credential, reason, &message).await;
        }
        write_status(self.api, &self.owner.name, &self.current, &stalled).await?;
        Ok(wake_at_expiry(&stalled, now))
    }

    /// `Degraded` with a retry on the failure backoff (before the published token expires); the
    /// Event only when the reason changes.
    async fn degrade(
        &self,
        next: &DsqlCredentialStatus,
        reason: ConditionReason,
        error: &RotationError,
    ) -> Result<Action, Error> {
        let now = self.now;
        let message = error.to_string();
        let expiry = next.token_expiration_time.as_ref().map(|t| t.0);
        let failures_before = self.current.consecutive_failures.max(0);
        let retry_at = schedule::retry_time(now, failures_before as u32 + 1, rand::random::<f64>(), expiry);
        warn!(credential = %self.key, reason = reason.as_str(), error = %message, retry_at = %retry_at, "rotation failed");
        let failure = Failure {
            reason,
            message,
            retry_at,
        };
        let mut failed = status::after_failure(next, self.generation, &failure, failures_before, now);
        status::set_ready(&mut failed, self.valid.targets(), now);
        write_status(self.api, &self.owner.name, &self.current, &failed).await?;
        if let Some(count) = failed
            .rotation_count
            .filter(|c| Some(*c) != self.current.rotation_count)
        {
            // Secrets Manager took the version although a projection failed.
            self.ctx.record_rotation(&self.owner.uid, count);
        }
        if !was_degraded_with(&self.current, reason) {
            self.ctx
                .events
                .rotation_failed(self.credential, &failure, &error_kind(error))
                .await;
        }
        Ok(requeue_at(retry_at, now))
    }

    /// The held-back arm (see [`super::clamp::decide`]): nothing is written to Secrets Manager,
    /// `Degraded` says why, the projections converge and refused restarts are retried as between
    /// rotations, and the credential source is asked again at `hold.wake`.
    async fn hold_back(&self, hold: &Hold) -> Result<Action, Error> {
        // Read again rather than `self.now`: `hold.wake` was computed after minting.
        let now = self.ctx.clock.now();
        let current = &self.current;
        let message = hold.message();
        if !was_degraded_with(current, ConditionReason::SigningCredentialsExpiring) {
            warn!(
                credential = %self.key,
                credentials_expire = %hold.credentials_expire,
                published_until = %hold.published_until,
                "signing credentials expire before renewBefore; keeping the published token and asking for renewed credentials"
            );
        }
        self.ctx.metrics.rotation_held();
        let mut next = status::after_hold(current, self.generation, &message, now);
        let pending = self.converge(&mut next).await;
        let version = next.version_id.clone();
        let restart_retry = restarts::retry(
            self.ctx,
            self.owner,
            self.valid,
            version.as_deref(),
            &mut next.rollout_restarts,
            now,
        )
        .await;
        status::set_ready(&mut next, self.valid.targets(), now);
        write_status(self.api, &self.owner.name, current, &next).await?;
        self.report_restarts(&next, restart_retry).await;
        let wake = earliest(Some(hold.wake), restart_retry).unwrap_or(hold.wake);
        Ok(requeue_at(retry_projections(wake, pending, now), now))
    }

    /// Logs and announces what changed in the rollout restarts between stored and written status.
    async fn report_restarts(&self, next: &DsqlCredentialStatus, retry_at: Option<Timestamp>) {
        restarts::report(
            self.ctx,
            self.credential,
            &self.key,
            &self.current.rollout_restarts,
            &next.rollout_restarts,
            retry_at,
        )
        .await;
    }
}

/// The action a `RotationFailed` Event names: the call that failed.
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

/// The `Degraded` warning for a token the signing credentials cut shorter than the minimum write
/// interval: it is nearly dead at birth, and only the operator's credential source can fix that.
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
