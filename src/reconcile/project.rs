//! Step 3b (act): the projections. The Kubernetes Secret carries the token, so it is written in
//! the rotation that minted it; everything token-free (the SecretProviderClass, removing what a
//! disabled or renamed projection left behind) converges on any reconcile, and only when status
//! says it is out of date, so a reconcile with nothing to do still writes nothing.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use tracing::warn;

use super::Context;
use super::validate::ValidCredential;
use crate::api::{DsqlCredentialStatus, ProjectionStatus, RolloutRestartStatus};
use crate::aws::{ConnectionInfo, CredentialValues};
use crate::projection::secret::secret_body;
use crate::projection::{ObjectOwner, ProjectionError, objects, provider_class, restart};
use crate::token::MintedToken;

const SECRET: &str = "Secret";
const PROVIDER_CLASS: &str = "SecretProviderClass";

fn secrets(ctx: &Context, owner: &ObjectOwner) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &owner.namespace)
}

fn provider_classes(ctx: &Context, owner: &ObjectOwner) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), &owner.namespace, &provider_class::api_resource())
}

/// Before minting: a Secret the operator has not written yet must not belong to someone else.
pub async fn check_secret_owner(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    current: &DsqlCredentialStatus,
) -> Result<(), ProjectionError> {
    let Some(target) = &valid.kubernetes_secret else {
        return Ok(());
    };
    if current
        .kubernetes_secret
        .as_ref()
        .is_some_and(|p| p.name == target.name)
    {
        return Ok(());
    }
    objects::ensure_owned(&secrets(ctx, owner), SECRET, &target.name, owner).await
}

/// Writes the Secret with the freshly minted token.
pub async fn write_secret(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    info: &ConnectionInfo,
    minted: &MintedToken,
    version_id: &str,
) -> Result<Option<ProjectionStatus>, ProjectionError> {
    let Some(target) = &valid.kubernetes_secret else {
        return Ok(None);
    };
    let values = CredentialValues {
        info,
        token: &minted.token,
        expires_at: minted.expires_at,
    };
    // Templates were validated with the spec; a failure here would be a bug, reported as such.
    let body = secret_body(owner, &target.name, &values, &target.extra_keys, version_id).map_err(|message| {
        ProjectionError::Api {
            kind: SECRET,
            name: target.name.clone(),
            source: kube::Error::Service(message.into()),
        }
    })?;
    objects::apply(
        &secrets(ctx, owner),
        SECRET,
        &target.name,
        &body,
        "the core Secret API is always served",
    )
    .await?;
    Ok(Some(ProjectionStatus {
        name: target.name.clone(),
        version_id: Some(version_id.to_owned()),
        synced: true,
        message: None,
    }))
}

/// Restarts the `rolloutRestart` workloads for a new version.
pub async fn restart_workloads(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    version_id: &str,
) -> Vec<RolloutRestartStatus> {
    let mut results = Vec::with_capacity(valid.rollout_restart.len());
    for target in &valid.rollout_restart {
        let now = ctx.clock.now();
        results.push(
            restart::restart(
                &ctx.client,
                &owner.namespace,
                target,
                version_id,
                now,
                &ctx.restart_limiter,
            )
            .await,
        );
    }
    results
}

/// Brings the token-free projections in line with the spec; returns whether something is still
/// out of sync (to be retried later).
pub async fn converge(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    prev: &DsqlCredentialStatus,
    next: &mut DsqlCredentialStatus,
) -> bool {
    let mut pending = false;

    // A disabled or renamed Secret projection leaves its old Secret behind: remove it.
    if let Some(old) = &prev.kubernetes_secret {
        let still_wanted = valid.kubernetes_secret.as_ref().is_some_and(|s| s.name == old.name);
        if !still_wanted {
            match objects::delete_if_owned(&secrets(ctx, owner), SECRET, &old.name, owner).await {
                Ok(_) => {
                    if next.kubernetes_secret.as_ref().is_some_and(|p| p.name == old.name) {
                        next.kubernetes_secret = None;
                    }
                }
                Err(error) => {
                    warn!(secret = %old.name, error = %error, "could not remove a Secret of a disabled projection");
                    pending = true;
                }
            }
        }
    }

    let desired = valid.secret_provider_class.as_deref();
    if let Some(old) = &prev.secret_provider_class
        && desired != Some(old.name.as_str())
    {
        match objects::delete_if_owned(&provider_classes(ctx, owner), PROVIDER_CLASS, &old.name, owner).await {
            // Without the CRD, the read finds nothing: there is nothing left to delete.
            Ok(_) => next.secret_provider_class = None,
            Err(error) => {
                warn!(provider_class = %old.name, error = %error, "could not remove a SecretProviderClass of a disabled projection");
                pending = true;
            }
        }
    }
    let (Some(name), Some(arn)) = (desired, next.secret_arn.clone()) else {
        return pending;
    };
    let up_to_date = prev
        .secret_provider_class
        .as_ref()
        .is_some_and(|p| p.name == name && p.synced)
        && prev.secret_arn.as_deref() == Some(arn.as_str());
    if up_to_date {
        return pending;
    }
    let result = write_provider_class(ctx, owner, name, &arn, prev).await;
    let (synced, message) = match result {
        Ok(()) => (true, None),
        Err(error) => {
            pending = true;
            (false, Some(error.to_string()))
        }
    };
    next.secret_provider_class = Some(ProjectionStatus {
        name: name.to_owned(),
        version_id: next.version_id.clone(),
        synced,
        message,
    });
    pending
}

async fn write_provider_class(
    ctx: &Context,
    owner: &ObjectOwner,
    name: &str,
    arn: &str,
    prev: &DsqlCredentialStatus,
) -> Result<(), ProjectionError> {
    let api = provider_classes(ctx, owner);
    if prev.secret_provider_class.as_ref().is_none_or(|p| p.name != name) {
        // A missing API reads as "not found" here; the apply below says what to install.
        objects::ensure_owned(&api, PROVIDER_CLASS, name, owner).await?;
    }
    let region = provider_class::arn_region(arn).unwrap_or_default();
    let body = provider_class::provider_class_body(owner, name, arn, region);
    objects::apply(&api, PROVIDER_CLASS, name, &body, provider_class::MISSING_HINT).await
}
