//! AWS Secrets Manager: the few calls the operator makes, ownership tags, idempotency tokens,
//! error classification and a write-rate limiter shared by all credentials.

pub(crate) mod payload;
mod rate_limit;
mod secrets;

// Below `token` (which classifies STS errors with it) and so outside this module: `aws` uses
// `token` for the secret value.
pub use crate::aws_error::{AwsError, AwsErrorKind};
pub use payload::{CREDENTIAL_KEYS, ConnectionInfo, CredentialValues, secret_json};
pub use rate_limit::WriteRateLimiter;
pub use secrets::{
    OwnerRef, SecretDescription, SecretsManager, WrittenVersion, arn_names_secret, client_request_token,
};
