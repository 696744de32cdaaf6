//! Minting Aurora DSQL auth tokens, and the redacting type that holds them.
//!
//! A token is a bearer credential: from the moment it is minted it lives in [`DsqlToken`], whose
//! `Debug` never shows it and which has no `Display` or `Serialize`. The only way to read it is
//! [`DsqlToken::expose`], called where it is written to its destination.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config as TokenConfig};
use aws_sdk_dsql::config::Region;
use aws_smithy_async::time::StaticTimeSource;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};

use crate::aws_error::AwsError;
use crate::clock::{Clock, ClockTimeSource};

const STS: &str = "STS";
const ASSUME_ROLE: &str = "AssumeRole";

/// A DSQL auth token. Redacted in `Debug`; read it only with [`DsqlToken::expose`].
pub struct DsqlToken(SecretString);

impl DsqlToken {
    /// Wraps freshly minted token text.
    pub(crate) fn from_minted(text: String) -> Self {
        Self(SecretString::from(text))
    }

    /// The token text, for writing it to its destination. Never log or format it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DsqlToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DsqlToken(<redacted>)")
    }
}

/// What to mint a token for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Cluster endpoint host name.
    pub hostname: String,
    /// Cluster region.
    pub region: String,
    /// `true` for the `admin` role (DbConnectAdmin), `false` for custom roles (DbConnect).
    pub admin: bool,
    /// Requested lifetime.
    pub lifetime: Duration,
    /// The role that signs, when not the operator's own identity.
    pub signing_role: Option<SigningRole>,
}

/// An IAM role the operator assumes to sign one credential's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningRole {
    /// The role's ARN.
    pub role_arn: String,
    /// Namespace of the DsqlCredential, sent as the session tag `dsql-namespace`.
    pub namespace: String,
    /// Name of the DsqlCredential, sent as the session tag `dsql-credential`.
    pub credential: String,
}

/// Session tag naming the credential's namespace; the signing role's trust policy can require it
/// (`aws:RequestTag/dsql-namespace`) and its permissions can use it (`aws:PrincipalTag/...`).
pub const NAMESPACE_SESSION_TAG: &str = "dsql-namespace";
/// Session tag naming the DsqlCredential.
pub const CREDENTIAL_SESSION_TAG: &str = "dsql-credential";

impl SigningRole {
    /// `dsql-<namespace>-<name>`, cut to STS's 64 characters, so CloudTrail shows which
    /// credential the session signed for.
    pub fn session_name(&self) -> String {
        let mut name = format!("dsql-{}-{}", self.namespace, self.credential);
        name.truncate(64);
        name
    }
}

/// Tokens are signed at the current time rounded down to a whole minute (`X-Amz-Date`), so an
/// attempt repeated after a crash can sign the very same token again: a retried Secrets Manager
/// write then carries the same value under the same idempotency token and is answered with the
/// version the lost attempt wrote, instead of becoming a second version (see
/// `reconcile::mint_and_write`). A token lives up to this much less than its lifetime.
pub const SIGNING_STEP_SECS: i64 = 60;

/// A freshly minted token and when it stops working.
#[derive(Debug)]
pub struct MintedToken {
    /// The token.
    pub token: DsqlToken,
    /// When it was minted (whole seconds): the rotation's time.
    pub issued_at: Timestamp,
    /// Its signing time (`X-Amz-Date`): `issued_at` rounded down to [`SIGNING_STEP_SECS`], or
    /// earlier when an earlier attempt's token is signed again.
    pub signed_at: Timestamp,
    /// The earlier of `signed_at + lifetime` and the signing credentials' expiry.
    pub expires_at: Timestamp,
    /// Whether the signing credentials' expiry cut the lifetime short.
    pub clamped_by_credentials: bool,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The default credential chain has no credentials for the operator.
    #[error("no AWS credentials to sign the token with: {0}")]
    NoCredentials(String),
    /// Signing itself failed.
    #[error("could not sign the DSQL auth token: {0}")]
    Signing(String),
    /// The signing role could not be assumed.
    #[error("assuming signing role {role_arn}: {source}")]
    AssumeRole {
        /// The role.
        role_arn: String,
        /// The STS error.
        #[source]
        source: AwsError,
    },
}

/// Mints tokens with the operator's own AWS credentials (default chain, e.g. EKS Pod Identity),
/// or with a signing role it assumes with them.
#[derive(Debug, Clone)]
pub struct TokenMinter {
    sdk_config: SdkConfig,
    sts: aws_sdk_sts::Client,
    clock: Arc<dyn Clock>,
}

impl TokenMinter {
    /// A minter signing with `sdk_config`'s credentials at `clock`'s time.
    pub fn new(sdk_config: &SdkConfig, clock: Arc<dyn Clock>) -> Self {
        let sdk_config = sdk_config
            .to_builder()
            .time_source(ClockTimeSource(clock.clone()))
            .build();
        let sts = aws_sdk_sts::Client::new(&sdk_config);
        Self { sdk_config, sts, clock }
    }

    /// The time tokens are signed at.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The credentials that sign `request`: the operator's own, or a fresh session of the signing
    /// role. A fresh session per rotation is one STS call and gives the token the longest life.
    async fn signing_credentials(&self, request: &TokenRequest) -> Result<Credentials, MintError> {
        let Some(role) = &request.signing_role else {
            let provider = self
                .sdk_config
                .credentials_provider()
                .ok_or_else(|| MintError::NoCredentials("no credentials provider is configured".into()))?;
            return provider
                .provide_credentials()
                .await
                .map_err(|e| MintError::NoCredentials(aws_sdk_dsql::error::DisplayErrorContext(e).to_string()));
        };
        let failed = |source| MintError::AssumeRole {
            role_arn: role.role_arn.clone(),
            source,
        };
        let tag = |key: &str, value: &str| {
            aws_sdk_sts::types::Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| failed(AwsError::unusable_response(STS, ASSUME_ROLE, e.to_string())))
        };
        // STS refuses a session shorter than 15 minutes; the lifetime floor is the same.
        let duration = i32::try_from(request.lifetime.as_secs()).unwrap_or(i32::MAX).max(900);
        let output = self
            .sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(role.session_name())
            .duration_seconds(duration)
            .tags(tag(NAMESPACE_SESSION_TAG, &role.namespace)?)
            .tags(tag(CREDENTIAL_SESSION_TAG, &role.credential)?)
            .send()
            .await
            .map_err(|e| failed(AwsError::from_sdk(STS, ASSUME_ROLE, e)))?;
        let session = output.credentials.ok_or_else(|| {
            failed(AwsError::unusable_response(
                STS,
                ASSUME_ROLE,
                "the response has no credentials",
            ))
        })?;
        let expiry = std::time::SystemTime::try_from(session.expiration)
            .map_err(|e| failed(AwsError::unusable_response(STS, ASSUME_ROLE, e.to_string())))?;
        Ok(Credentials::new(
            session.access_key_id,
            session.secret_access_key,
            Some(session.session_token),
            Some(expiry),
            "AssumeRole",
        ))
    }

    /// Resolves the credentials that sign `request`'s tokens, once per rotation.
    pub async fn signer(&self, request: &TokenRequest) -> Result<Signer, MintError> {
        let credentials = self.signing_credentials(request).await?;
        let expiry = credentials.expiry().and_then(|t| Timestamp::try_from(t).ok());
        Ok(Signer {
            credentials,
            expiry,
            // A signing role is assumed afresh for every rotation: another process's session
            // has other keys, so its token cannot be signed again.
            reproducible: request.signing_role.is_none(),
        })
    }

    /// The signing time of a token minted now: now rounded down to [`SIGNING_STEP_SECS`].
    pub fn signing_time(&self) -> Timestamp {
        let now = self.clock.now().as_second();
        Timestamp::from_second(now - now.rem_euclid(SIGNING_STEP_SECS)).unwrap_or_else(|_| self.clock.now())
    }

    /// Signs `request`'s token with `signer`'s credentials at `signed_at`. The same credentials,
    /// request and time always give the same token.
    pub async fn sign(
        &self,
        request: &TokenRequest,
        signer: &Signer,
        signed_at: Timestamp,
    ) -> Result<MintedToken, MintError> {
        let now = self.clock.now();
        let issued_at = Timestamp::from_second(now.as_second()).unwrap_or(now);
        let lifetime_secs = request.lifetime.as_secs();
        let config = TokenConfig::builder()
            .hostname(&request.hostname)
            .region(Region::new(request.region.clone()))
            .expires_in(lifetime_secs)
            .credentials(signer.credentials.clone())
            .build()
            .map_err(|e| MintError::Signing(e.to_string()))?;
        let at = u64::try_from(signed_at.as_second())
            .map_err(|_| MintError::Signing(format!("signing time {signed_at} is before 1970")))?;
        let sdk_config = self
            .sdk_config
            .to_builder()
            .time_source(StaticTimeSource::from_secs(at))
            .build();
        let generator = AuthTokenGenerator::new(config);
        let signed = if request.admin {
            generator.db_connect_admin_auth_token(&sdk_config).await
        } else {
            generator.db_connect_auth_token(&sdk_config).await
        }
        .map_err(|e| MintError::Signing(e.to_string()))?;
        // `AuthToken` derives Debug with the token in it: move the text into the redacting type
        // at once and drop the SDK value.
        let token = DsqlToken::from_minted(signed.as_str().to_owned());
        drop(signed);

        let signed_at = Timestamp::from_second(signed_at.as_second()).unwrap_or(signed_at);
        let by_lifetime = signed_at + jiff::SignedDuration::from_secs(lifetime_secs as i64);
        let (expires_at, clamped_by_credentials) = match signer.expiry {
            Some(expiry) if expiry < by_lifetime => (expiry, true),
            _ => (by_lifetime, false),
        };
        Ok(MintedToken {
            token,
            issued_at,
            signed_at,
            expires_at,
            clamped_by_credentials,
        })
    }

    /// Mints one token, signed at [`Self::signing_time`]. The credentials are resolved once and
    /// handed to the signer so the expiry recorded is the expiry of the very credentials that
    /// signed.
    pub async fn mint(&self, request: &TokenRequest) -> Result<MintedToken, MintError> {
        let signer = self.signer(request).await?;
        self.sign(request, &signer, self.signing_time()).await
    }
}

/// The credentials that sign one rotation's tokens, kept so a token can be signed again.
pub struct Signer {
    credentials: Credentials,
    expiry: Option<Timestamp>,
    reproducible: bool,
}

impl Signer {
    /// Whether another process signing with the same source would hold the same credentials,
    /// so the token an earlier attempt wrote can be signed again (not with a signing role).
    pub fn reproducible(&self) -> bool {
        self.reproducible
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("expiry", &self.expiry)
            .field("reproducible", &self.reproducible)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use aws_credential_types::provider::SharedCredentialsProvider;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[derive(Debug)]
    struct FixedClock(Timestamp);
    impl Clock for FixedClock {
        fn now(&self) -> Timestamp {
            self.0
        }
    }

    fn minter(expiry: Option<SystemTime>) -> TokenMinter {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), expiry, "test");
        let sdk = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        TokenMinter::new(&sdk, Arc::new(FixedClock("2024-08-27T00:00:00.750Z".parse().unwrap())))
    }

    fn request(admin: bool) -> TokenRequest {
        TokenRequest {
            hostname: "peccy.dsql.us-east-1.on.aws".into(),
            region: "us-east-1".into(),
            admin,
            lifetime: Duration::from_secs(3600),
            signing_role: None,
        }
    }

    #[tokio::test]
    async fn signs_at_the_clock_time_with_the_requested_action_and_lifetime() {
        let minted = minter(None).mint(&request(true)).await.unwrap();
        let text = minted.token.expose();
        assert!(text.starts_with("peccy.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&"));
        assert!(text.contains("X-Amz-Date=20240827T000000Z"));
        assert!(text.contains("X-Amz-Expires=3600"));
        assert!(text.contains("X-Amz-Security-Token=session"));
        assert_eq!(minted.issued_at, "2024-08-27T00:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(minted.expires_at, "2024-08-27T01:00:00Z".parse::<Timestamp>().unwrap());
        assert!(!minted.clamped_by_credentials);
        let custom = minter(None).mint(&request(false)).await.unwrap();
        assert!(custom.token.expose().contains("?Action=DbConnect&"));
    }

    #[tokio::test]
    async fn tokens_are_signed_at_the_minute_and_signing_again_gives_the_same_token() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("session".into()), None, "test");
        let sdk = SdkConfig::builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        let clock = Arc::new(FixedClock("2024-08-27T00:07:42.250Z".parse().unwrap()));
        let minter = TokenMinter::new(&sdk, clock);
        let minted = minter.mint(&request(false)).await.unwrap();
        assert!(minted.token.expose().contains("X-Amz-Date=20240827T000700Z"));
        assert_eq!(minted.signed_at, "2024-08-27T00:07:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(minted.issued_at, "2024-08-27T00:07:42Z".parse::<Timestamp>().unwrap());
        assert_eq!(minted.expires_at, "2024-08-27T01:07:00Z".parse::<Timestamp>().unwrap());

        let signer = minter.signer(&request(false)).await.unwrap();
        assert!(signer.reproducible());
        let again = minter.sign(&request(false), &signer, minted.signed_at).await.unwrap();
        assert_eq!(again.token.expose(), minted.token.expose());
        let earlier: Timestamp = "2024-08-27T00:06:00Z".parse().unwrap();
        let other = minter.sign(&request(false), &signer, earlier).await.unwrap();
        assert_ne!(other.token.expose(), minted.token.expose());
        assert!(other.token.expose().contains("X-Amz-Date=20240827T000600Z"));
        assert_eq!(other.expires_at, "2024-08-27T01:06:00Z".parse::<Timestamp>().unwrap());
    }

    #[tokio::test]
    async fn expiry_is_clamped_to_the_signing_credentials() {
        let creds_expiry = UNIX_EPOCH + Duration::from_secs(1_724_716_800 + 1200);
        let minted = minter(Some(creds_expiry)).mint(&request(true)).await.unwrap();
        assert_eq!(minted.expires_at, "2024-08-27T00:20:00Z".parse::<Timestamp>().unwrap());
        assert!(minted.clamped_by_credentials);
    }

    #[tokio::test]
    async fn debug_never_shows_the_token() {
        let minted = minter(None).mint(&request(true)).await.unwrap();
        let debug = format!("{minted:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains("X-Amz-Signature"));
        assert!(!debug.contains("peccy"));
    }
}
