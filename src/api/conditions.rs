//! Condition types and reasons, and the kstatus rule that `lastTransitionTime` only moves when
//! a condition's status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition types a DsqlCredential reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// A valid token is published to every enabled target.
    Ready,
    /// The last rotation attempt failed; the message says why and when it retries.
    Degraded,
    /// The operator will not retry until the spec (or the conflicting resource) changes.
    Stalled,
}

impl ConditionType {
    /// The condition type as written in status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Degraded => "Degraded",
            Self::Stalled => "Stalled",
        }
    }
}

/// Machine-readable reasons used in conditions and Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionReason {
    /// Ready: a valid token is published.
    TokenPublished,
    /// Ready: nothing has been published yet.
    NotPublished,
    /// Ready: the published token has expired.
    TokenExpired,
    /// Degraded/Stalled False: all is well.
    AsExpected,
    /// Degraded: Secrets Manager throttled the write.
    Throttled,
    /// Degraded: AWS refused the call (IAM, KMS or resource policy).
    AccessDenied,
    /// Degraded: another Secrets Manager failure.
    SecretsManagerError,
    /// Degraded: a Kubernetes API call failed.
    KubernetesError,
    /// Degraded: the token could not be signed, or the signing credentials expire too soon.
    SigningCredentialsExpiring,
    /// Degraded: the operator could not assume `token.signingRoleArn`.
    AssumeRoleFailed,
    /// Degraded: the API server refused a rollout restart of a `rolloutRestart` workload after
    /// the token was published; retried on the failure backoff without a new token.
    RolloutRestartFailed,
    /// Degraded: the login check could not resolve the cluster endpoint.
    LoginCheckDnsFailed,
    /// Degraded: the login check could not open a TCP connection to the endpoint on 5432.
    LoginCheckConnectFailed,
    /// Degraded: the login check's TLS handshake failed (untrusted certificate, wrong host name).
    LoginCheckTlsFailed,
    /// Degraded: the cluster refused the new token (wrong role, expired or invalid token).
    LoginCheckAuthFailed,
    /// Degraded: the login check failed otherwise (query, protocol, timeout after login).
    LoginCheckFailed,
    /// Stalled: the spec is invalid.
    InvalidSpec,
    /// Stalled: the rotation schedule is invalid.
    InvalidSchedule,
    /// Stalled: the target secret belongs to someone else.
    SecretOwnedByOther,
    /// Stalled: the cluster's access policy forbids this credential.
    PolicyDenied,
}

impl ConditionReason {
    /// The reason as written in status and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenPublished => "TokenPublished",
            Self::NotPublished => "NotPublished",
            Self::TokenExpired => "TokenExpired",
            Self::AsExpected => "AsExpected",
            Self::Throttled => "Throttled",
            Self::AccessDenied => "AccessDenied",
            Self::SecretsManagerError => "SecretsManagerError",
            Self::KubernetesError => "KubernetesError",
            Self::SigningCredentialsExpiring => "SigningCredentialsExpiring",
            Self::AssumeRoleFailed => "AssumeRoleFailed",
            Self::RolloutRestartFailed => "RolloutRestartFailed",
            Self::LoginCheckDnsFailed => "LoginCheckDnsFailed",
            Self::LoginCheckConnectFailed => "LoginCheckConnectFailed",
            Self::LoginCheckTlsFailed => "LoginCheckTlsFailed",
            Self::LoginCheckAuthFailed => "LoginCheckAuthFailed",
            Self::LoginCheckFailed => "LoginCheckFailed",
            Self::InvalidSpec => "InvalidSpec",
            Self::InvalidSchedule => "InvalidSchedule",
            Self::SecretOwnedByOther => "SecretOwnedByOther",
            Self::PolicyDenied => "PolicyDenied",
        }
    }
}

/// Sets a condition in `conditions`, keeping its `lastTransitionTime` unless its status flips.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: ConditionReason,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: jiff::Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_.as_str()) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = Time(now);
            }
            existing.status = status;
            existing.reason = reason.as_str().to_owned();
            existing.message = message;
            existing.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.as_str().to_owned(),
            status,
            reason: reason.as_str().to_owned(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        let t0 = at("2026-11-23T17:00:00Z");
        let t1 = at("2026-11-23T17:10:00Z");
        let t2 = at("2026-11-23T17:20:00Z");
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            false,
            ConditionReason::NotPublished,
            "a",
            Some(1),
            t0,
        );
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            false,
            ConditionReason::NotPublished,
            "b",
            Some(2),
            t1,
        );
        assert_eq!(conditions[0].last_transition_time, Time(t0));
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            ConditionType::Ready,
            true,
            ConditionReason::TokenPublished,
            "c",
            Some(2),
            t2,
        );
        assert_eq!(conditions[0].last_transition_time, Time(t2));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions.len(), 1);
    }
}
