//! Step 3 (act), the part of a rotation that reaches AWS: mint a token and write it to Secrets
//! Manager, creating or adopting the secret the first time. One rotation is one token and one
//! write; ownership is read only when a secret is created or adopted. The whole rotation, with
//! the Kubernetes side, is in `rotation.rs`.

use crate::api::{ConditionReason, DsqlCredentialStatus};
use crate::aws::{
    AwsError, AwsErrorKind, CredentialValues, OwnerRef, SecretsManager, WrittenVersion, arn_names_secret,
    client_request_token, secret_json,
};
use crate::login_check::{LoginCheckError, LoginChecker, LoginStep};
use crate::projection::ProjectionError;
use crate::reconcile::clamp::{self, Clamp, Fresh, Hold};
use crate::reconcile::validate::ValidCredential;
use crate::token::{MintError, MintedToken, SIGNING_STEP_SECS, Signer, TokenMinter};
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;

/// A token published to Secrets Manager.
#[derive(Debug)]
pub struct Rotation {
    /// The token and its times.
    pub minted: MintedToken,
    /// The version written.
    pub version: WrittenVersion,
    /// The rotation number its idempotency token was derived from.
    pub rotation_count: i64,
}

/// What became of a freshly minted token: written, or held back. A hold is not a failure (the
/// published token stays valid), so it is an outcome here rather than a [`RotationError`].
#[derive(Debug)]
pub enum Rotated {
    /// Written to Secrets Manager.
    Written(Rotation),
    /// Cut short by the signing credentials' expiry and held back (see [`clamp::decide`]);
    /// nothing was written.
    Held(Hold),
}

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The token could not be minted.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// A Secrets Manager call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The new token failed `spec.loginCheck`; nothing was written.
    #[error(transparent)]
    LoginCheck(#[from] LoginCheckError),
    /// The Kubernetes Secret's name could not be claimed before minting (or belongs to someone
    /// else); nothing was minted.
    #[error(transparent)]
    ClaimSecret(ProjectionError),
    /// The Kubernetes Secret could not be written with the new token (or was replaced by
    /// someone else); Secrets Manager already holds the token.
    #[error(transparent)]
    WriteSecret(ProjectionError),
    /// The secret exists and belongs to someone else.
    #[error(
        "Secrets Manager secret {secret:?} already exists and belongs to {owner}; the operator never overwrites a secret it does not own: choose another secretsManager.name, or delete that secret"
    )]
    OwnedByOther {
        /// Secret name.
        secret: String,
        /// Who the tags say owns it.
        owner: String,
    },
}

impl RotationError {
    /// The condition reason, and whether the failure stalls the credential (no retry until
    /// something changes) rather than degrading it (retry with backoff).
    pub fn reason(&self) -> (ConditionReason, bool) {
        match self {
            Self::Mint(MintError::AssumeRole { source, .. }) => match source.kind {
                AwsErrorKind::Throttled => (ConditionReason::Throttled, false),
                AwsErrorKind::AccessDenied => (ConditionReason::AccessDenied, false),
                _ => (ConditionReason::AssumeRoleFailed, false),
            },
            Self::Mint(_) => (ConditionReason::SigningCredentialsExpiring, false),
            Self::Aws(e) => match e.kind {
                AwsErrorKind::Throttled => (ConditionReason::Throttled, false),
                AwsErrorKind::AccessDenied => (ConditionReason::AccessDenied, false),
                _ => (ConditionReason::SecretsManagerError, false),
            },
            Self::OwnedByOther { .. }
            | Self::ClaimSecret(ProjectionError::OwnedByOther { .. } | ProjectionError::Replaced { .. })
            | Self::WriteSecret(ProjectionError::OwnedByOther { .. } | ProjectionError::Replaced { .. }) => {
                (ConditionReason::SecretOwnedByOther, true)
            }
            Self::ClaimSecret(_) | Self::WriteSecret(_) => (ConditionReason::KubernetesError, false),
            Self::LoginCheck(e) => match e.step {
                LoginStep::Dns => (ConditionReason::LoginCheckDnsFailed, false),
                LoginStep::Connect => (ConditionReason::LoginCheckConnectFailed, false),
                LoginStep::Tls => (ConditionReason::LoginCheckTlsFailed, false),
                LoginStep::Auth => (ConditionReason::LoginCheckAuthFailed, false),
                LoginStep::Other => (ConditionReason::LoginCheckFailed, false),
            },
        }
    }
}

/// How many rotation numbers to skip past versions that already exist (left by an attempt whose
/// status write was lost) before giving up.
const MAX_VERSION_SKIPS: i64 = 3;

/// Mints a token and writes it, returning what status should record. With `may_hold` (a
/// scheduled rotation or a retry, not one asked for), a token the signing credentials cut short
/// is held back ([`Rotated::Held`]) while the published one is worth keeping. With
/// `spec.loginCheck`, the token must log in first ([`RotationError::LoginCheck`]).
pub async fn rotate(
    secrets: &SecretsManager,
    minter: &TokenMinter,
    login: &LoginChecker,
    owner: &OwnerRef,
    valid: &ValidCredential,
    status: &DsqlCredentialStatus,
    may_hold: bool,
) -> Result<Rotated, RotationError> {
    let signer = minter.signer(&valid.token).await?;
    let minted = minter.sign(&valid.token, &signer, minter.signing_time()).await?;
    if may_hold && let Clamp::Hold(hold) = clamp_decision(&minted, valid, status, minter.now()) {
        return Ok(Rotated::Held(hold));
    }
    // After the hold decision (a held token would not be published either) and before any
    // write: a token the cluster refuses must not replace the published one.
    if let Some(settings) = &valid.login_check {
        login.check(&valid.connection, &minted.token, settings).await?;
    }
    write(secrets, minter, &signer, owner, valid, status, minted)
        .await
        .map(Rotated::Written)
}

/// The pure hold decision ([`clamp::decide`]) for `minted`, against the token status says is
/// published (only one with a version counts: status without one published nothing).
fn clamp_decision(
    minted: &MintedToken,
    valid: &ValidCredential,
    status: &DsqlCredentialStatus,
    now: Timestamp,
) -> Clamp {
    let fresh = Fresh {
        issued_at: minted.issued_at,
        expires_at: minted.expires_at,
        clamped: minted.clamped_by_credentials,
    };
    let published_until = status
        .version_id
        .as_ref()
        .and(status.token_expiration_time.as_ref())
        .map(|t| t.0);
    clamp::decide(&fresh, valid.renew_before, published_until, now)
}

/// Writes `minted` to Secrets Manager: `PutSecretValue` to the ARN status records for this
/// secret name, else (first rotation, a renamed secret, or one deleted behind the operator's
/// back) the create-or-adopt path, which checks ownership.
async fn write(
    secrets: &SecretsManager,
    minter: &TokenMinter,
    signer: &Signer,
    owner: &OwnerRef,
    valid: &ValidCredential,
    status: &DsqlCredentialStatus,
    minted: MintedToken,
) -> Result<Rotation, RotationError> {
    let value = secret_json(&CredentialValues {
        info: &valid.connection,
        token: &minted.token,
        expires_at: minted.expires_at,
    });
    let first_rotation = status.rotation_count.unwrap_or(0).saturating_add(1);
    let writer = Writer {
        secrets,
        owner,
        value: &value,
        again: signer.reproducible().then_some(SignAgain {
            minter,
            signer,
            valid,
            tried: minted.signed_at,
            not_before: status.last_rotation_time.as_ref().map(|t| t.0),
        }),
    };

    let known_arn = status.secret_arn.as_deref().filter(|arn| {
        status.secret_name.as_deref() == Some(valid.secret_name.as_str()) && arn_names_secret(arn, &valid.secret_name)
    });
    let (version, rotation_count, recovered) = match known_arn {
        Some(arn) => match writer.put(arn, first_rotation).await {
            // The secret was deleted or scheduled for deletion behind the operator's back:
            // go through the create-or-adopt path, which checks ownership again.
            Err(RotationError::Aws(e))
                if matches!(e.kind, AwsErrorKind::NotFound | AwsErrorKind::MarkedForDeletion) =>
            {
                writer.create_or_adopt(valid, first_rotation).await?
            }
            other => other?,
        },
        None => writer.create_or_adopt(valid, first_rotation).await?,
    };
    Ok(Rotation {
        // The earlier attempt's token, when its version was found again: that is what
        // Secrets Manager holds.
        minted: recovered.unwrap_or(minted),
        version,
        rotation_count,
    })
}

/// How many earlier signing times ([`SIGNING_STEP_SECS`] apart) are tried to sign again the
/// token of an attempt that wrote its version and lost its status (a crash, a kill, a lost
/// response): a restart within this many minutes finds that version instead of writing another.
const SIGN_AGAIN_STEPS: i64 = 15;

/// What signs an earlier attempt's token again: the same credentials and request at an earlier
/// signing time give the same token, so the same value.
struct SignAgain<'a> {
    minter: &'a TokenMinter,
    signer: &'a Signer,
    valid: &'a ValidCredential,
    /// The signing time of this attempt's token.
    tried: Timestamp,
    /// The previous rotation's time: the lost attempt was signed after it.
    not_before: Option<Timestamp>,
}

impl SignAgain<'_> {
    /// The signing times an earlier attempt at this rotation may have used, latest first: whole
    /// steps before this attempt's, after the previous rotation, and still valid now.
    fn candidates(&self) -> Vec<Timestamp> {
        let now = self.minter.now();
        let lifetime = SignedDuration::try_from(self.valid.token.lifetime).unwrap_or(SignedDuration::MAX);
        (1..=SIGN_AGAIN_STEPS)
            .filter_map(|k| {
                self.tried
                    .checked_sub(SignedDuration::from_secs(k * SIGNING_STEP_SECS))
                    .ok()
            })
            .take_while(|t| {
                let after_previous = self.not_before.is_none_or(|prev| {
                    prev.as_second() - prev.as_second().rem_euclid(SIGNING_STEP_SECS) <= t.as_second()
                });
                after_previous && t.saturating_add(lifetime).is_ok_and(|end| end > now)
            })
            .collect()
    }
}

struct Writer<'a> {
    secrets: &'a SecretsManager,
    owner: &'a OwnerRef,
    value: &'a SecretString,
    again: Option<SignAgain<'a>>,
}

/// A written version, its rotation number, and the earlier attempt's token when that is what
/// the version holds.
type Written = (WrittenVersion, i64, Option<MintedToken>);

impl Writer<'_> {
    /// `PutSecretValue` with the idempotency token of `rotation`. A version with that token that
    /// already holds another value means an earlier attempt wrote it and lost its status: its
    /// token is signed again at earlier signing times and written with the same idempotency
    /// token, which Secrets Manager answers with that version when the value is the same. Only
    /// when none matches (other credentials, or too long ago) is the next number used.
    async fn put(&self, secret_id: &str, rotation: i64) -> Result<Written, RotationError> {
        let mut n = rotation;
        loop {
            let token = client_request_token(&self.owner.uid, n);
            match self.secrets.put_secret_value(secret_id, self.value, &token).await {
                Err(e) if e.kind == AwsErrorKind::AlreadyExists && n < rotation + MAX_VERSION_SKIPS => {
                    if n == rotation
                        && let Some(found) = self.find_earlier_attempt(secret_id, &token).await?
                    {
                        return Ok((found.0, n, Some(found.1)));
                    }
                    n += 1;
                }
                result => return Ok(result.map(|v| (v, n, None))?),
            }
        }
    }

    /// Signs the token again at each candidate time and writes it under `request_token`: the
    /// version whose value matches is the earlier attempt's.
    async fn find_earlier_attempt(
        &self,
        secret_id: &str,
        request_token: &str,
    ) -> Result<Option<(WrittenVersion, MintedToken)>, RotationError> {
        let Some(again) = &self.again else {
            return Ok(None);
        };
        for signed_at in again.candidates() {
            let minted = again.minter.sign(&again.valid.token, again.signer, signed_at).await?;
            let value = secret_json(&CredentialValues {
                info: &again.valid.connection,
                token: &minted.token,
                expires_at: minted.expires_at,
            });
            match self.secrets.put_secret_value(secret_id, &value, request_token).await {
                Ok(version) => return Ok(Some((version, minted))),
                Err(e) if e.kind == AwsErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    async fn create_or_adopt(&self, valid: &ValidCredential, rotation: i64) -> Result<Written, RotationError> {
        let token = client_request_token(&self.owner.uid, rotation);
        let created = self
            .secrets
            .create_secret(
                &valid.secret_name,
                self.value,
                self.owner,
                valid.kms_key_id.as_deref(),
                &valid.tags,
                &token,
            )
            .await;
        match created {
            Ok(version) => Ok((version, rotation, None)),
            Err(e) if matches!(e.kind, AwsErrorKind::AlreadyExists | AwsErrorKind::MarkedForDeletion) => {
                let existing = self.secrets.describe(&valid.secret_name).await?;
                if !existing.is_owned_by(self.owner) {
                    return Err(RotationError::OwnedByOther {
                        secret: valid.secret_name.clone(),
                        owner: existing.owner_description(),
                    });
                }
                if existing.scheduled_for_deletion {
                    self.secrets.restore(&existing.arn).await?;
                }
                self.put(&existing.arn, rotation).await
            }
            Err(e) => Err(e.into()),
        }
    }
}
