//! Rollout restarts after a rotation, and the retries of those the API server refused. A
//! refused restart leaves a workload that reads the token once on a token that will expire, so
//! it is never silent: `Degraded=RolloutRestartFailed` (see [`status::set_restart_condition`]),
//! a Warning Event and a WARN line when it starts failing, `dsql_operator_rollout_restarts_total`
//! for every attempt. It is retried on the failure backoff with no mint and no write to Secrets
//! Manager or the Secret, until it succeeds, the workload leaves the spec or a newer rotation
//! supersedes it. A workload that does not exist is only reported (its restart waits for the
//! next rotation), as before.
//!
//! [`status::set_restart_condition`]: super::status::set_restart_condition

use jiff::Timestamp;
use tracing::{debug, info, warn};

use super::Context;
use super::validate::ValidCredential;
use crate::api::{DsqlCredential, RolloutRestartStatus, RolloutTarget};
use crate::projection::ObjectOwner;
use crate::projection::restart::{self, Outcome};

fn is_target(status: &RolloutRestartStatus, target: &RolloutTarget) -> bool {
    status.name == target.name && status.kind == format!("{:?}", target.kind)
}

async fn attempt(
    ctx: &Context,
    owner: &ObjectOwner,
    target: &RolloutTarget,
    version: &str,
) -> (RolloutRestartStatus, bool) {
    let (status, outcome) = restart::restart(
        &ctx.client,
        &owner.namespace,
        target,
        version,
        ctx.clock.now(),
        &ctx.restart_limiter,
    )
    .await;
    ctx.metrics.rollout_restart(outcome.metric_result());
    (status, matches!(outcome, Outcome::Failed(_)))
}

/// Restarts every `rolloutRestart` workload for the newly published `version`. Returns their
/// status and, when one failed, when it is retried.
pub(super) async fn after_rotation(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    version: &str,
) -> (Vec<RolloutRestartStatus>, Option<Timestamp>) {
    // A new rotation supersedes the retries of the previous one, and starts its own backoff.
    ctx.clear_restart_retries(&owner.uid);
    let mut results = Vec::with_capacity(valid.rollout_restart.len());
    let mut failed = false;
    for target in &valid.rollout_restart {
        let (status, refused) = attempt(ctx, owner, target, version).await;
        failed |= refused;
        results.push(status);
    }
    let retry_at = failed.then(|| ctx.record_restart_failure(&owner.uid, ctx.clock.now()));
    (results, retry_at)
}

/// Retries, once their backoff is due, the restarts `restarts` lists as pending for the
/// published `version`; drops those whose workload left the spec and stops retrying those of an
/// older version. Returns when the next retry is due while some still fail.
pub(super) async fn retry(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    version: Option<&str>,
    restarts: &mut Vec<RolloutRestartStatus>,
    now: Timestamp,
) -> Option<Timestamp> {
    restarts.retain(|r| r.pending_for_version.is_none() || valid.rollout_restart.iter().any(|t| is_target(r, t)));
    for r in restarts.iter_mut() {
        if r.pending_for_version.is_some() && r.pending_for_version.as_deref() != version {
            // Superseded: the version it was for is no longer the published one, and the
            // rotation that published the current one restarts the workload itself.
            r.pending_for_version = None;
        }
    }
    let Some(version) = version.filter(|_| restarts.iter().any(|r| r.pending_for_version.is_some())) else {
        ctx.clear_restart_retries(&owner.uid);
        return None;
    };
    if let Some(at) = ctx.restart_retry_pending(&owner.uid, now) {
        return Some(at);
    }
    let mut failed = false;
    for entry in restarts.iter_mut().filter(|r| r.pending_for_version.is_some()) {
        let current: &RolloutRestartStatus = entry;
        let Some(target) = valid.rollout_restart.iter().find(|t| is_target(current, t)) else {
            continue;
        };
        let (status, refused) = attempt(ctx, owner, target, version).await;
        failed |= refused;
        *entry = status;
    }
    if failed {
        Some(ctx.record_restart_failure(&owner.uid, now))
    } else {
        ctx.clear_restart_retries(&owner.uid);
        None
    }
}

/// Logs and announces what changed between the stored restarts (`before`) and the written ones
/// (`after`): one WARN line and one Warning Event when a workload's restart for a version starts
/// failing (a retry failing the same way logs at DEBUG; a different answer gets a WARN line),
/// one INFO line when a failing one succeeds.
pub(super) async fn report(
    ctx: &Context,
    credential: &DsqlCredential,
    key: &str,
    before: &[RolloutRestartStatus],
    after: &[RolloutRestartStatus],
    retry_at: Option<Timestamp>,
) {
    let retry_at = retry_at.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let retry_at = retry_at.as_deref().unwrap_or("-");
    for r in after {
        let old = before.iter().find(|b| b.kind == r.kind && b.name == r.name);
        let message = r.message.as_deref().unwrap_or_default();
        match &r.pending_for_version {
            Some(version) => {
                let failing_before = old.filter(|b| b.pending_for_version.as_ref() == Some(version));
                match failing_before {
                    None => {
                        warn!(credential = %key, kind = %r.kind, workload = %r.name, version = %version, error = %message, retry_at, "rollout restart failed");
                        ctx.events.rollout_restart_failed(credential, message, retry_at).await;
                    }
                    Some(b) if b.message != r.message => {
                        warn!(credential = %key, kind = %r.kind, workload = %r.name, version = %version, error = %message, retry_at, "rollout restart failed again, with a different answer");
                    }
                    Some(_) => {
                        debug!(credential = %key, kind = %r.kind, workload = %r.name, retry_at, "rollout restart still failing");
                    }
                }
            }
            None => {
                if old.is_some_and(|b| b.pending_for_version.is_some()) && r.restarted_for_version.is_some() {
                    info!(credential = %key, kind = %r.kind, workload = %r.name, "rollout restart succeeded after failing");
                }
            }
        }
    }
}
