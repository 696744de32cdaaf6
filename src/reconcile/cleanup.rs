//! The finalizer's work: apply `deletionPolicy` to the Secrets Manager secret. Owned Kubernetes
//! objects go by ownerReference.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use tracing::info;

use super::{Context, Error};
use crate::api::{DeletionPolicy, DsqlCredential};
use crate::aws::{AwsErrorKind, OwnerRef};

/// Deletes the secret (if the policy says so and the operator owns it), then lets the object go.
pub(super) async fn apply_deletion_policy(credential: &DsqlCredential, ctx: &Context) -> Result<Action, Error> {
    ctx.forget(&credential.uid().unwrap_or_default());
    ctx.metrics
        .forget_credential(&credential.namespace().unwrap_or_default(), &credential.name_any());
    let namespace = credential.namespace().unwrap_or_default();
    let name = credential.name_any();
    let object = format!("{namespace}/{name}");
    let sm = &credential.spec.secrets_manager;
    let status = credential.status.clone().unwrap_or_default();
    let secret_id = status
        .secret_arn
        .clone()
        .or(status.secret_name.clone())
        .or(sm.name.clone())
        .unwrap_or_else(|| ctx.config.default_secret_name(&namespace, &name));

    if sm.deletion_policy == DeletionPolicy::Retain {
        info!(credential = %object, secret = %secret_id, "deletionPolicy Retain: keeping the secret");
        ctx.events
            .cleaned_up(
                credential,
                "SecretRetained",
                format!("Kept Secrets Manager secret {secret_id} (deletionPolicy Retain)"),
            )
            .await;
        return Ok(Action::await_change());
    }

    let owner = OwnerRef {
        namespace,
        name,
        uid: credential.uid().unwrap_or_default(),
    };
    let description = match ctx.secrets.describe(&secret_id).await {
        Ok(description) => description,
        // Never created, or already gone: nothing to delete.
        Err(e) if e.kind == AwsErrorKind::NotFound => return Ok(Action::await_change()),
        Err(source) => return Err(Error::Cleanup { object, source }),
    };
    if !description.is_owned_by(&owner) {
        info!(credential = %object, secret = %secret_id, "secret not owned by this credential: not deleting it");
        ctx.events
            .cleaned_up(
                credential,
                "SecretNotOwned",
                format!(
                    "Did not delete Secrets Manager secret {secret_id}: it belongs to {}",
                    description.owner_description()
                ),
            )
            .await;
        return Ok(Action::await_change());
    }
    if !description.scheduled_for_deletion {
        ctx.secrets
            .delete(&description.arn, sm.recovery_window_days)
            .await
            .map_err(|source| Error::Cleanup {
                object: object.clone(),
                source,
            })?;
    }
    let when = if sm.recovery_window_days == 0 {
        "at once".to_owned()
    } else {
        format!("with a {}-day recovery window", sm.recovery_window_days)
    };
    info!(credential = %object, secret = %secret_id, "deleted the secret {when}");
    ctx.events
        .cleaned_up(
            credential,
            "SecretDeleted",
            format!("Deleted Secrets Manager secret {secret_id} {when}"),
        )
        .await;
    Ok(Action::await_change())
}
