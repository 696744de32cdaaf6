//! Tokens already in Secrets Manager whose projections (or status) could not be written yet.
//!
//! Secrets Manager bills every call and keeps about 100 versions a secret, so a Kubernetes
//! outage after the Secrets Manager write must not mint and write again on every retry: the
//! token is kept here, in memory only, and the retry publishes it. Nothing here is persisted or
//! logged; the token stays in [`crate::token::DsqlToken`], zeroized when the last holder drops it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

use super::Context;
use super::clamp::Hold;
use super::mint_and_write::{self, Rotated, Rotation, RotationError};
use super::plan::{Retry, RotationCause, Unpublished, retry_or_remint};
use super::validate::ValidCredential;
use crate::api::DsqlCredentialStatus;
use crate::aws::OwnerRef;

/// A rotation written to Secrets Manager and not yet to every projection and status.
#[derive(Debug)]
pub struct PendingRotation {
    /// The token and the version that holds it.
    pub rotation: Arc<Rotation>,
    /// The Secrets Manager secret written.
    pub secret_name: String,
    /// The credential's generation the token was minted for.
    pub generation: Option<i64>,
    /// The token's own renewal time, computed when it was minted.
    pub next_rotation: Timestamp,
}

impl PendingRotation {
    /// What the pure decision in [`retry_or_remint`] looks at.
    pub fn facts(&self) -> Unpublished<'_> {
        Unpublished {
            version_id: &self.rotation.version.version_id,
            rotation_count: self.rotation.rotation_count,
            secret_name: &self.secret_name,
            generation: self.generation,
            next_rotation: self.next_rotation,
        }
    }
}

/// Pending rotations by credential uid. The entry names its Secrets Manager version, and
/// [`retry_or_remint`] accepts it only for that uid's status naming that version
/// (or an older one, when the status write was lost), so a token is never published to another
/// object or under another version.
#[derive(Debug, Default)]
pub struct PendingRotations(Mutex<HashMap<String, Arc<PendingRotation>>>);

impl PendingRotations {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PendingRotation>>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps `pending` for the credential `uid` until [`forget`](Self::forget) (replacing an
    /// older one: only the newest version is worth publishing).
    pub fn keep(&self, uid: &str, pending: Arc<PendingRotation>) {
        self.map().insert(uid.to_owned(), pending);
    }

    /// The pending rotation of `uid`, if any.
    pub fn get(&self, uid: &str) -> Option<Arc<PendingRotation>> {
        self.map().get(uid).cloned()
    }

    /// Drops the pending rotation of `uid` (published, superseded, stalled or deleted).
    pub fn forget(&self, uid: &str) {
        self.map().remove(uid);
    }
}

/// The token a rotation publishes, as [`waiting_or_new`] found it.
#[derive(Debug)]
pub enum ToPublish {
    /// The waiting one: already in Secrets Manager, its projections or status not written yet.
    Waiting(Arc<Rotation>),
    /// A new one, just written to Secrets Manager.
    New(Arc<Rotation>),
    /// A new one held back (see [`super::clamp::decide`]): nothing was written, the published
    /// token stays.
    Held(Hold),
}

/// The rotation to publish now: the waiting one while [`retry_or_remint`] says it is still worth
/// publishing, else a new token written to Secrets Manager (or held back).
pub async fn waiting_or_new(
    ctx: &Context,
    owner: &OwnerRef,
    valid: &ValidCredential,
    current: &DsqlCredentialStatus,
    cause: &RotationCause,
    generation: Option<i64>,
) -> Result<ToPublish, RotationError> {
    if let Some(waiting) = ctx.pending.get(&owner.uid) {
        let now = ctx.clock.now();
        match retry_or_remint(&waiting.facts(), cause, generation, &valid.secret_name, current, now) {
            Retry::Projections => return Ok(ToPublish::Waiting(waiting.rotation.clone())),
            Retry::Remint => ctx.pending.forget(&owner.uid),
        }
    }
    let may_hold = matches!(cause, RotationCause::Due | RotationCause::Retry);
    let rotated =
        mint_and_write::rotate(&ctx.secrets, &ctx.minter, &ctx.login, owner, valid, current, may_hold).await?;
    Ok(match rotated {
        Rotated::Written(rotation) => ToPublish::New(Arc::new(rotation)),
        Rotated::Held(hold) => ToPublish::Held(hold),
    })
}
