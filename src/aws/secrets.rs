//! The Secrets Manager calls the operator makes. Steady rotations are one `PutSecretValue` to the
//! ARN recorded in status; `DescribeSecret` is only used to check ownership when a secret is first
//! created or adopted and before it is deleted. The operator never reads secret values.

use std::collections::BTreeMap;

use std::sync::Arc;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::Tag;
use secrecy::{ExposeSecret, SecretString};

use super::{AwsError, AwsErrorKind, WriteRateLimiter};
use crate::api::MANAGER_NAME;
use crate::ops::Metrics;

/// Named in error messages.
const SERVICE: &str = "Secrets Manager";

/// Tag keys the operator puts on every secret it creates; ownership is judged by them, and the
/// IAM policy in deploy/ makes AWS refuse writes to secrets without them.
pub mod tag_keys {
    /// Always `dsql-credential-operator`.
    pub const MANAGED_BY: &str = "dsql.credentials.dev/managed-by";
    /// Namespace of the owning DsqlCredential.
    pub const NAMESPACE: &str = "dsql.credentials.dev/namespace";
    /// Name of the owning DsqlCredential.
    pub const NAME: &str = "dsql.credentials.dev/name";
    /// uid of the DsqlCredential that created the secret (audit only: a recreated object with the
    /// same namespace and name adopts the secret).
    pub const UID: &str = "dsql.credentials.dev/uid";
}

/// The DsqlCredential a secret belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
}

/// A version written by `CreateSecret` or `PutSecretValue`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenVersion {
    /// Secret ARN.
    pub arn: String,
    /// Version id (equals the client request token).
    pub version_id: String,
}

/// What `DescribeSecret` says about ownership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDescription {
    /// Secret ARN.
    pub arn: String,
    /// Secret tags.
    pub tags: BTreeMap<String, String>,
    /// Whether the secret is scheduled for deletion.
    pub scheduled_for_deletion: bool,
}

impl SecretDescription {
    /// Whether the tags say the secret belongs to `owner` (same namespace and name).
    pub fn is_owned_by(&self, owner: &OwnerRef) -> bool {
        self.tags.get(tag_keys::MANAGED_BY).map(String::as_str) == Some(MANAGER_NAME)
            && self.tags.get(tag_keys::NAMESPACE) == Some(&owner.namespace)
            && self.tags.get(tag_keys::NAME) == Some(&owner.name)
    }

    /// Who the tags say owns the secret, for conflict messages.
    pub fn owner_description(&self) -> String {
        match (
            self.tags.get(tag_keys::MANAGED_BY),
            self.tags.get(tag_keys::NAMESPACE),
            self.tags.get(tag_keys::NAME),
        ) {
            (Some(m), Some(ns), Some(n)) if m == MANAGER_NAME => format!("DsqlCredential {ns}/{n}"),
            _ => "something other than this operator (it lacks the operator's ownership tags)".to_owned(),
        }
    }
}

/// Whether `arn` is the ARN of the secret named `name`: `...:secret:<name>-<6 characters>`.
/// Status is the only place the ARN is kept, and whoever can write an object's status could
/// point it elsewhere; a write goes to the recorded ARN only when it matches the name the access
/// policy judged.
pub fn arn_names_secret(arn: &str, name: &str) -> bool {
    arn.rsplit_once(":secret:")
        .and_then(|(_, rest)| rest.strip_prefix(name))
        .and_then(|suffix| suffix.strip_prefix('-'))
        .is_some_and(|random| random.len() == 6 && random.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The idempotency token for rotation number `rotation` of the object with `uid`: a retried or
/// repeated write of the same rotation never makes a second version.
pub fn client_request_token(uid: &str, rotation: i64) -> String {
    format!("{uid}-{rotation:010}")
}

/// Secrets Manager client with the operator's write pacing and call metrics.
#[derive(Debug)]
pub struct SecretsManager {
    client: Client,
    limiter: WriteRateLimiter,
    metrics: Arc<Metrics>,
}

impl SecretsManager {
    /// Wraps `client`; writes are paced by `limiter`, calls counted in `metrics`.
    pub fn new(client: Client, limiter: WriteRateLimiter, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            limiter,
            metrics,
        }
    }

    /// Counts the call and classifies its error.
    fn observe<T, E, R>(&self, operation: &'static str, result: Result<T, SdkError<E, R>>) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match result {
            Ok(out) => {
                self.metrics.aws_call("secretsmanager", operation, "success");
                Ok(out)
            }
            Err(e) => {
                let error = AwsError::from_sdk(SERVICE, operation, e);
                self.metrics
                    .aws_call("secretsmanager", operation, error.kind.as_label());
                Err(error)
            }
        }
    }

    /// Creates the secret with its first value and the operator's ownership tags.
    pub async fn create_secret(
        &self,
        name: &str,
        value: &SecretString,
        owner: &OwnerRef,
        kms_key_id: Option<&str>,
        user_tags: &BTreeMap<String, String>,
        request_token: &str,
    ) -> Result<WrittenVersion, AwsError> {
        let mut tags: Vec<Tag> = user_tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        for (k, v) in [
            (tag_keys::MANAGED_BY, MANAGER_NAME),
            (tag_keys::NAMESPACE, owner.namespace.as_str()),
            (tag_keys::NAME, owner.name.as_str()),
            (tag_keys::UID, owner.uid.as_str()),
        ] {
            tags.push(Tag::builder().key(k).value(v).build());
        }
        self.limiter.acquire().await;
        let out = self
            .client
            .create_secret()
            .name(name)
            .description(format!(
                "Aurora DSQL IAM auth token for Kubernetes DsqlCredential {}/{}, rotated by {MANAGER_NAME}. Do not edit: the next rotation overwrites it.",
                owner.namespace, owner.name
            ))
            .set_kms_key_id(kms_key_id.map(str::to_owned))
            .secret_string(value.expose_secret())
            .client_request_token(request_token)
            .set_tags(Some(tags))
            .send().await;
        let out = self.observe("CreateSecret", out)?;
        Ok(WrittenVersion {
            arn: out.arn.unwrap_or_default(),
            version_id: out.version_id.unwrap_or_else(|| request_token.to_owned()),
        })
    }

    /// Writes a new current version of the secret at `secret_id` (ARN or name).
    pub async fn put_secret_value(
        &self,
        secret_id: &str,
        value: &SecretString,
        request_token: &str,
    ) -> Result<WrittenVersion, AwsError> {
        self.limiter.acquire().await;
        let out = self
            .client
            .put_secret_value()
            .secret_id(secret_id)
            .secret_string(value.expose_secret())
            .client_request_token(request_token)
            .send()
            .await;
        let out = self.observe("PutSecretValue", out)?;
        Ok(WrittenVersion {
            arn: out.arn.unwrap_or_else(|| secret_id.to_owned()),
            version_id: out.version_id.unwrap_or_else(|| request_token.to_owned()),
        })
    }

    /// Reads the secret's tags and deletion state (never its value).
    pub async fn describe(&self, secret_id: &str) -> Result<SecretDescription, AwsError> {
        let out = self.client.describe_secret().secret_id(secret_id).send().await;
        let out = self.observe("DescribeSecret", out)?;
        let tags = out
            .tags
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect();
        Ok(SecretDescription {
            arn: out.arn.unwrap_or_else(|| secret_id.to_owned()),
            tags,
            scheduled_for_deletion: out.deleted_date.is_some(),
        })
    }

    /// Cancels a scheduled deletion of a secret the operator owns.
    pub async fn restore(&self, secret_id: &str) -> Result<(), AwsError> {
        self.limiter.acquire().await;
        let out = self.client.restore_secret().secret_id(secret_id).send().await;
        self.observe("RestoreSecret", out).map(|_| ())
    }

    /// Deletes the secret after `recovery_window_days`, or at once when that is 0.
    /// A secret that is already gone counts as deleted.
    pub async fn delete(&self, secret_id: &str, recovery_window_days: i64) -> Result<(), AwsError> {
        self.limiter.acquire().await;
        let request = self.client.delete_secret().secret_id(secret_id);
        let request = if recovery_window_days == 0 {
            request.force_delete_without_recovery(true)
        } else {
            request.recovery_window_in_days(recovery_window_days)
        };
        match self.observe("DeleteSecret", request.send().await) {
            Ok(_) => Ok(()),
            Err(e) if e.kind == AwsErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_distinct_and_within_aws_limits() {
        let uid = "fa546eaa-02d3-442e-8957-68252b389104";
        let first = client_request_token(uid, 1);
        assert_eq!(first, client_request_token(uid, 1));
        assert_ne!(first, client_request_token(uid, 2));
        assert!((32..=64).contains(&first.len()), "{} chars", first.len());
        assert!(client_request_token(uid, i64::MAX).len() <= 64);
    }

    #[test]
    fn ownership_needs_the_operator_tag_and_the_same_namespace_and_name() {
        let owner = OwnerRef {
            namespace: "shop".into(),
            name: "orders".into(),
            uid: "u1".into(),
        };
        let mut desc = SecretDescription {
            arn: "arn".into(),
            tags: BTreeMap::new(),
            scheduled_for_deletion: false,
        };
        assert!(!desc.is_owned_by(&owner));
        desc.tags.insert(tag_keys::MANAGED_BY.into(), MANAGER_NAME.into());
        desc.tags.insert(tag_keys::NAMESPACE.into(), "shop".into());
        desc.tags.insert(tag_keys::NAME.into(), "orders".into());
        assert!(desc.is_owned_by(&owner));
        let other = OwnerRef {
            name: "payments".into(),
            ..owner.clone()
        };
        assert!(!desc.is_owned_by(&other));
        assert_eq!(desc.owner_description(), "DsqlCredential shop/orders");
    }

    #[test]
    fn an_arn_names_its_secret_only_with_the_random_suffix() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dsql/shop/orders-AbC123";
        assert!(arn_names_secret(arn, "dsql/shop/orders"));
        assert!(!arn_names_secret(arn, "dsql/shop/order"));
        assert!(!arn_names_secret(arn, "dsql/shop"));
        assert!(!arn_names_secret(arn, "dsql/billing/orders"));
        assert!(!arn_names_secret(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:dsql/shop/orders",
            "dsql/shop/orders"
        ));
        assert!(!arn_names_secret("dsql/shop/orders-AbC123", "dsql/shop/orders"));
    }
}
