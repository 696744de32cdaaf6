//! AWS Secrets Manager: the few calls the operator makes, ownership tags, idempotency tokens,
//! error classification and a write-rate limiter shared by all credentials.

mod errors;
pub(crate) mod payload;
mod rate_limit;
mod secrets;

pub use errors::{AwsError, AwsErrorKind};
pub use payload::{CREDENTIAL_KEYS, ConnectionInfo, CredentialValues, secret_json};
pub use rate_limit::WriteRateLimiter;
pub use secrets::{
    OwnerRef, SecretDescription, SecretsManager, WrittenVersion, arn_names_secret, client_request_token,
};
