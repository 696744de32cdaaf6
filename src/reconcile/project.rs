//! Step 3b (act): the projections. The Kubernetes Secret carries the token, so it is written in
//! the rotation that minted it; everything token-free (the SecretProviderClass, removing what a
//! disabled or renamed projection left behind) converges on any reconcile, and only when status
//! says it is out of date, so a reconcile with nothing to do still writes nothing.

use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, DynamicObject};
use tracing::warn;

use super::Context;
use super::validate::ValidCredential;
use crate::api::{DsqlCredentialStatus, ProjectionStatus};
use crate::aws::{ConnectionInfo, CredentialValues};
use crate::projection::secret::{claim_body, secret_body};
use crate::projection::{ObjectOwner, ProjectionError, objects, provider_class};
use crate::token::MintedToken;

const SECRET: &str = "Secret";
const PROVIDER_CLASS: &str = "SecretProviderClass";

fn secrets(ctx: &Context, owner: &ObjectOwner) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &owner.namespace)
}

fn provider_classes(ctx: &Context, owner: &ObjectOwner) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client.clone(), &owner.namespace, &provider_class::api_resource())
}

/// The uid of the Secret `name` this credential created, as status (or, until status records
/// it, this process) knows it. `Err(())`: status names the Secret without a uid (written by an
/// operator version that read Secrets instead of recording uids).
fn created_uid(
    ctx: &Context,
    owner: &ObjectOwner,
    current: &DsqlCredentialStatus,
    name: &str,
) -> Result<Option<String>, ()> {
    let recorded = current.kubernetes_secret.as_ref().filter(|p| p.name == name);
    match recorded.and_then(|p| p.created_uid.clone()) {
        Some(uid) => Ok(Some(uid)),
        None => match ctx.created_secret(&owner.uid, name) {
            Some(uid) => Ok(Some(uid)),
            None if recorded.is_some() => Err(()),
            None => Ok(None),
        },
    }
}

/// Before minting: claims the Secret's name by creating it empty (POST), unless this credential
/// created it already. The operator cannot read Secrets, so a name taken by anyone else shows
/// only as 409 AlreadyExists, which stalls the credential before anything is minted. Returns the
/// uid every later write carries (`None` only for a Secret recorded without one, see
/// [`created_uid`]).
pub async fn claim_secret(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    current: &DsqlCredentialStatus,
) -> Result<Option<String>, ProjectionError> {
    let Some(target) = &valid.kubernetes_secret else {
        return Ok(None);
    };
    match created_uid(ctx, owner, current, &target.name) {
        Ok(Some(uid)) => Ok(Some(uid)),
        Err(()) => Ok(None),
        Ok(None) => create_secret(ctx, owner, &target.name, &claim_body(owner, &target.name))
            .await
            .map(Some),
    }
}

async fn create_secret<B>(ctx: &Context, owner: &ObjectOwner, name: &str, body: &B) -> Result<String, ProjectionError>
where
    B: serde::Serialize + std::fmt::Debug,
{
    let path = Secret::url_path(&(), Some(&owner.namespace));
    let uid = objects::create(&ctx.client, &path, SECRET, name, owner, body).await?;
    ctx.remember_created_secret(&owner.uid, name, &uid);
    Ok(uid)
}

/// Records a claimed Secret in status before it carries a token, so a failed rotation does not
/// lose its uid.
pub fn note_claim(next: &mut DsqlCredentialStatus, valid: &ValidCredential, created_uid: Option<&str>) {
    let (Some(target), Some(uid)) = (&valid.kubernetes_secret, created_uid) else {
        return;
    };
    match &mut next.kubernetes_secret {
        Some(p) if p.name == target.name => p.created_uid = Some(uid.to_owned()),
        slot => {
            *slot = Some(ProjectionStatus {
                name: target.name.clone(),
                version_id: None,
                synced: false,
                message: Some("created; no token written yet".to_owned()),
                created_uid: Some(uid.to_owned()),
            });
        }
    }
}

/// Records a Secret whose write with a new token failed: out of sync, still naming the version
/// it last carried, with the error and the uid the retry's write carries.
pub fn note_write_failure(
    next: &mut DsqlCredentialStatus,
    valid: &ValidCredential,
    current: &DsqlCredentialStatus,
    created_uid: Option<String>,
    error: &ProjectionError,
) {
    if let Some(target) = &valid.kubernetes_secret {
        next.kubernetes_secret = Some(ProjectionStatus {
            name: target.name.clone(),
            version_id: current.kubernetes_secret.as_ref().and_then(|p| p.version_id.clone()),
            synced: false,
            message: Some(error.to_string()),
            created_uid,
        });
    }
}

/// Writes the Secret with the freshly minted token: a server-side apply naming the uid of the
/// Secret this credential created, so a replacement is never written ([`ProjectionError::Replaced`]);
/// a Secret deleted since is created again, and its new uid recorded.
pub async fn write_secret(
    ctx: &Context,
    owner: &ObjectOwner,
    valid: &ValidCredential,
    info: &ConnectionInfo,
    minted: &MintedToken,
    version_id: &str,
    created_uid: Option<&str>,
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
    let body = |uid: Option<&str>| {
        secret_body(owner, &target.name, &values, &target.extra_keys, version_id, uid).map_err(|message| {
            ProjectionError::Api {
                kind: SECRET,
                name: target.name.clone(),
                source: kube::Error::Service(message.into()),
            }
        })
    };
    let api = secrets(ctx, owner);
    let uid = match created_uid {
        Some(uid) => {
            if objects::apply_to_uid(&api, SECRET, &target.name, &body(Some(uid))?).await? {
                Some(uid.to_owned())
            } else {
                Some(create_secret(ctx, owner, &target.name, &body(None)?).await?)
            }
        }
        // Recorded by an earlier operator version without a uid: the apply's answer names it.
        None => {
            objects::apply(
                &api,
                SECRET,
                &target.name,
                &body(None)?,
                "the core Secret API is always served",
            )
            .await?
        }
    };
    Ok(Some(ProjectionStatus {
        name: target.name.clone(),
        version_id: Some(version_id.to_owned()),
        synced: true,
        message: None,
        created_uid: uid,
    }))
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
            // Without a recorded uid (an older operator version's status) it cannot be deleted
            // safely without reading it: it is left behind.
            let deleted = match &old.created_uid {
                Some(uid) => objects::delete_uid(&secrets(ctx, owner), SECRET, &old.name, uid).await,
                None => Ok(false),
            };
            match deleted {
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
        created_uid: None,
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
    objects::apply(&api, PROVIDER_CLASS, name, &body, provider_class::MISSING_HINT)
        .await
        .map(|_| ())
}
