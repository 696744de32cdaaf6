//! Step 4 (pure): the status each outcome leads to. The controller writes it only when it differs
//! from what is stored, so a reconcile with nothing due writes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ConditionReason, ConditionType, DsqlCredentialStatus, set_condition};
use crate::aws::WrittenVersion;

/// A successful rotation, as status records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The version written.
    pub version: WrittenVersion,
    /// The secret's name.
    pub secret_name: String,
    /// The rotation number used for the idempotency token.
    pub rotation_count: i64,
    /// When the token was minted.
    pub issued_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    /// When to rotate next.
    pub next_rotation: Timestamp,
    /// The `dsql.credentials.dev/rotate` annotation's value at the rotation.
    pub rotate_annotation: Option<String>,
    /// A warning to surface as `Degraded` although the write succeeded (e.g. the signing
    /// credentials expire so soon that the token is nearly dead at birth).
    pub warning: Option<String>,
}

/// A failed attempt, as status records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `Degraded` reason.
    pub reason: ConditionReason,
    /// What failed (never contains the token).
    pub message: String,
    /// When the next attempt happens.
    pub retry_at: Timestamp,
}

fn fmt_time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Status after a successful rotation.
pub fn after_rotation(
    prev: &DsqlCredentialStatus,
    generation: Option<i64>,
    published: &Published,
    now: Timestamp,
) -> DsqlCredentialStatus {
    let mut status = DsqlCredentialStatus {
        observed_generation: generation,
        secret_name: Some(published.secret_name.clone()),
        secret_arn: Some(published.version.arn.clone()),
        version_id: Some(published.version.version_id.clone()),
        rotation_count: Some(published.rotation_count),
        token_expiration_time: Some(Time(published.expires_at)),
        last_rotation_time: Some(Time(published.issued_at)),
        next_rotation_time: Some(Time(published.next_rotation)),
        consecutive_failures: 0,
        last_forced_rotation: published
            .rotate_annotation
            .clone()
            .or_else(|| prev.last_forced_rotation.clone()),
        conditions: prev.conditions.clone(),
    };
    match &published.warning {
        Some(warning) => set(
            &mut status,
            ConditionType::Degraded,
            true,
            ConditionReason::SigningCredentialsExpiring,
            warning.clone(),
            now,
        ),
        None => set(
            &mut status,
            ConditionType::Degraded,
            false,
            ConditionReason::AsExpected,
            "the last rotation succeeded",
            now,
        ),
    }
    set(
        &mut status,
        ConditionType::Stalled,
        false,
        ConditionReason::AsExpected,
        "",
        now,
    );
    set_ready(&mut status, now);
    status
}

/// Status after a failed attempt: the published token (if any) stays, `Degraded` says why.
pub fn after_failure(
    prev: &DsqlCredentialStatus,
    generation: Option<i64>,
    failure: &Failure,
    now: Timestamp,
) -> DsqlCredentialStatus {
    let mut status = prev.clone();
    status.observed_generation = generation;
    status.consecutive_failures = prev.consecutive_failures.saturating_add(1);
    status.next_rotation_time = Some(Time(failure.retry_at));
    let message = format!("{}; retrying at {}", failure.message, fmt_time(failure.retry_at));
    set(&mut status, ConditionType::Degraded, true, failure.reason, message, now);
    set(
        &mut status,
        ConditionType::Stalled,
        false,
        ConditionReason::AsExpected,
        "",
        now,
    );
    set_ready(&mut status, now);
    status
}

/// Status when the operator will not act until the spec (or a conflicting resource) changes.
pub fn after_stall(
    prev: &DsqlCredentialStatus,
    generation: Option<i64>,
    reason: ConditionReason,
    message: &str,
    now: Timestamp,
) -> DsqlCredentialStatus {
    let mut status = prev.clone();
    status.observed_generation = generation;
    status.next_rotation_time = None;
    set(&mut status, ConditionType::Stalled, true, reason, message, now);
    set(
        &mut status,
        ConditionType::Degraded,
        false,
        ConditionReason::AsExpected,
        "no rotation is attempted while Stalled",
        now,
    );
    set_ready(&mut status, now);
    status
}

/// Status with nothing done: only time-dependent parts (the token expiring) can change.
pub fn refreshed(prev: &DsqlCredentialStatus, now: Timestamp) -> DsqlCredentialStatus {
    let mut status = prev.clone();
    set_ready(&mut status, now);
    status
}

fn set(
    status: &mut DsqlCredentialStatus,
    type_: ConditionType,
    value: bool,
    reason: ConditionReason,
    message: impl Into<String>,
    now: Timestamp,
) {
    let generation = status.observed_generation;
    set_condition(&mut status.conditions, type_, value, reason, message, generation, now);
}

fn set_ready(status: &mut DsqlCredentialStatus, now: Timestamp) {
    let expiry = status.token_expiration_time.as_ref().map(|t| t.0);
    let (ready, reason, message) = match (&status.version_id, expiry) {
        (Some(_), Some(expiry)) if expiry > now => (
            true,
            ConditionReason::TokenPublished,
            format!(
                "a valid token is published to Secrets Manager, valid until {}",
                fmt_time(expiry)
            ),
        ),
        (Some(_), Some(expiry)) => (
            false,
            ConditionReason::TokenExpired,
            format!(
                "the published token expired at {}; see the Degraded condition",
                fmt_time(expiry)
            ),
        ),
        _ => (
            false,
            ConditionReason::NotPublished,
            "no token has been published yet".to_owned(),
        ),
    };
    set(status, ConditionType::Ready, ready, reason, message, now);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn published() -> Published {
        Published {
            version: WrittenVersion {
                arn: "arn:aws:secretsmanager:us-east-1:1:secret:x".into(),
                version_id: "u-0000000001".into(),
            },
            secret_name: "dsql/ns/x".into(),
            rotation_count: 1,
            issued_at: t("2026-11-23T17:00:00Z"),
            expires_at: t("2026-11-23T18:00:00Z"),
            next_rotation: t("2026-11-23T17:40:00Z"),
            rotate_annotation: None,
            warning: None,
        }
    }

    fn condition(
        s: &DsqlCredentialStatus,
        type_: ConditionType,
    ) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.condition(type_).unwrap()
    }

    #[test]
    fn a_rotation_publishes_and_clears_failures() {
        let prev = DsqlCredentialStatus {
            consecutive_failures: 3,
            ..Default::default()
        };
        let s = after_rotation(&prev, Some(4), &published(), t("2026-11-23T17:00:01Z"));
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(condition(&s, ConditionType::Ready).status, "True");
        assert_eq!(condition(&s, ConditionType::Ready).reason, "TokenPublished");
        assert_eq!(condition(&s, ConditionType::Degraded).status, "False");
        assert_eq!(condition(&s, ConditionType::Stalled).status, "False");
        assert_eq!(condition(&s, ConditionType::Ready).observed_generation, Some(4));
    }

    #[test]
    fn a_failure_keeps_ready_while_the_token_is_valid_and_says_when_it_retries() {
        let ok = after_rotation(
            &DsqlCredentialStatus::default(),
            Some(1),
            &published(),
            t("2026-11-23T17:00:01Z"),
        );
        let failure = Failure {
            reason: ConditionReason::Throttled,
            message: "Secrets Manager PutSecretValue failed: ThrottlingException: Rate exceeded".into(),
            retry_at: t("2026-11-23T17:41:00Z"),
        };
        let s = after_failure(&ok, Some(1), &failure, t("2026-11-23T17:40:00Z"));
        assert_eq!(s.consecutive_failures, 1);
        assert_eq!(condition(&s, ConditionType::Ready).status, "True");
        let degraded = condition(&s, ConditionType::Degraded);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "Throttled")
        );
        assert!(
            degraded.message.ends_with("retrying at 2026-11-23T17:41:00Z"),
            "{}",
            degraded.message
        );
        assert_eq!(s.version_id, ok.version_id);
        assert_eq!(s.next_rotation_time, Some(Time(t("2026-11-23T17:41:00Z"))));

        let expired = refreshed(&s, t("2026-11-23T18:00:00Z"));
        assert_eq!(condition(&expired, ConditionType::Ready).reason, "TokenExpired");
        assert_eq!(condition(&expired, ConditionType::Ready).status, "False");
    }

    #[test]
    fn refreshing_an_unchanged_status_changes_nothing() {
        let ok = after_rotation(
            &DsqlCredentialStatus::default(),
            Some(1),
            &published(),
            t("2026-11-23T17:00:01Z"),
        );
        assert_eq!(refreshed(&ok, t("2026-11-23T17:20:00Z")), ok);
    }

    #[test]
    fn a_stall_is_reported_without_touching_the_published_token() {
        let ok = after_rotation(
            &DsqlCredentialStatus::default(),
            Some(1),
            &published(),
            t("2026-11-23T17:00:01Z"),
        );
        let s = after_stall(
            &ok,
            Some(2),
            ConditionReason::InvalidSchedule,
            "bad schedule",
            t("2026-11-23T17:05:00Z"),
        );
        assert_eq!(condition(&s, ConditionType::Stalled).status, "True");
        assert_eq!(condition(&s, ConditionType::Stalled).reason, "InvalidSchedule");
        assert_eq!(condition(&s, ConditionType::Ready).status, "True");
        assert_eq!(s.next_rotation_time, None);
        assert_eq!(s.secret_arn, ok.secret_arn);
    }
}
