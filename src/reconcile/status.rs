//! Step 4 (pure): the status each outcome leads to. The controller writes it only when it differs
//! from what is stored, so a reconcile with nothing due writes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{ConditionReason, ConditionType, DsqlCredentialStatus, ROTATE_ANNOTATION, set_condition};
use crate::aws::WrittenVersion;
use crate::reconcile::plan::RotationCause;

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

/// Which projections the spec enables: `Ready` needs each of them in sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    /// The Kubernetes Secret projection is enabled.
    pub kubernetes_secret: bool,
    /// The SecretProviderClass projection is enabled.
    pub secret_provider_class: bool,
}

/// Status after a successful rotation (`Ready` is set by [`set_ready`] once the projections
/// are written).
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
        kubernetes_secret: prev.kubernetes_secret.clone(),
        secret_provider_class: prev.secret_provider_class.clone(),
        rollout_restarts: prev.rollout_restarts.clone(),
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
    status
}

/// Status after a failed attempt: the published token (if any) stays, `Degraded` says why.
/// `failures_before` is the count of failed attempts in a row before this one.
pub fn after_failure(
    prev: &DsqlCredentialStatus,
    generation: Option<i64>,
    failure: &Failure,
    failures_before: i32,
    now: Timestamp,
) -> DsqlCredentialStatus {
    let mut status = prev.clone();
    status.observed_generation = generation;
    status.consecutive_failures = failures_before.saturating_add(1);
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
    status
}

/// Status while a new token is held back because the signing credentials cut it short: the
/// published token stays, `Degraded` says until when it is valid and when the credentials
/// expire. The next rotation time stays where it was (due), so every wake asks the credential
/// source again without a status write.
pub fn after_hold(
    prev: &DsqlCredentialStatus,
    generation: Option<i64>,
    message: &str,
    now: Timestamp,
) -> DsqlCredentialStatus {
    let mut status = prev.clone();
    status.observed_generation = generation;
    set(
        &mut status,
        ConditionType::Degraded,
        true,
        ConditionReason::SigningCredentialsExpiring,
        message,
        now,
    );
    status
}

/// Reports failed rollout restarts (`status.rolloutRestarts[]` with `pendingForVersion`) in
/// `Degraded` with reason `RolloutRestartFailed`, naming each workload and the server's answer
/// and when they are retried (`retry_at`), and clears that once none is pending. A rotation
/// failure or a signing-credentials warning already in `Degraded` keeps it: it says more about
/// the token, and the restarts stay in `status.rolloutRestarts`, the Event, the log and metrics.
/// `Ready` is not touched: the token is published.
pub fn set_restart_condition(status: &mut DsqlCredentialStatus, retry_at: Option<Timestamp>, now: Timestamp) {
    let failed: Vec<&str> = status
        .rollout_restarts
        .iter()
        .filter(|r| r.pending_for_version.is_some())
        .filter_map(|r| r.message.as_deref())
        .collect();
    let degraded = status.condition(ConditionType::Degraded);
    let ours =
        degraded.is_some_and(|c| c.status == "True" && c.reason == ConditionReason::RolloutRestartFailed.as_str());
    let other = degraded.is_some_and(|c| c.status == "True") && !ours;
    if failed.is_empty() {
        if ours {
            set(
                status,
                ConditionType::Degraded,
                false,
                ConditionReason::AsExpected,
                "the last rotation and its rollout restarts succeeded",
                now,
            );
        }
        return;
    }
    if other {
        return;
    }
    let mut message = format!("the token is published, but {}", failed.join("; "));
    if let Some(at) = retry_at {
        message.push_str(&format!("; retrying at {} without a new token", fmt_time(at)));
    }
    set(
        status,
        ConditionType::Degraded,
        true,
        ConditionReason::RolloutRestartFailed,
        message,
        now,
    );
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

/// Sets `Ready`: a valid token is published to Secrets Manager and to every enabled projection.
/// The only part of status that changes with time alone (a token expiring).
pub fn set_ready(status: &mut DsqlCredentialStatus, targets: Targets, now: Timestamp) {
    let expiry = status.token_expiration_time.as_ref().map(|t| t.0);
    let unsynced = unsynced_projections(status, targets);
    let (ready, reason, message) = match (&status.version_id, expiry) {
        (Some(_), Some(expiry)) if expiry > now && !unsynced.is_empty() => (
            false,
            ConditionReason::NotPublished,
            format!("the token is in Secrets Manager but not in: {}", unsynced.join("; ")),
        ),
        (Some(_), Some(expiry)) if expiry > now => (
            true,
            ConditionReason::TokenPublished,
            format!(
                "a valid token is published to every enabled target, valid until {}",
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

/// Longest part of a rotate annotation value quoted back in status and Events.
const QUOTED_VALUE_CHARS: usize = 64;

/// What `Ready`'s message says while a requested rotation waits for the one-a-minute limit
/// (`kubectl describe` shows it). Being in the stored status is also how a later reconcile knows
/// the deferral was already announced, so its Event goes out once per requested value.
pub fn deferral_note(cause: &RotationCause, until: Timestamp) -> String {
    let what = match cause {
        RotationCause::Forced(value) => {
            let mut quoted: String = value.chars().take(QUOTED_VALUE_CHARS).collect();
            if quoted.len() < value.len() {
                quoted.push('…');
            }
            format!("Rotation requested by {ROTATE_ANNOTATION}={quoted:?}")
        }
        _ => "Rotation for the spec change".to_owned(),
    };
    format!(
        "{what} deferred until {} (at most one forced or spec-change rotation per credential per minute)",
        fmt_time(until)
    )
}

/// Appends `note` (see [`deferral_note`]) to `Ready`'s message. [`set_ready`] rewrites that
/// message on every reconcile, so the note is gone once the rotation has happened.
pub fn add_deferral_note(status: &mut DsqlCredentialStatus, note: &str) {
    if let Some(ready) = status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == ConditionType::Ready.as_str())
    {
        ready.message = format!("{}. {note}", ready.message);
    }
}

/// Whether `Ready`'s message already carries `note`.
pub fn has_deferral_note(status: &DsqlCredentialStatus, note: &str) -> bool {
    status
        .condition(ConditionType::Ready)
        .is_some_and(|ready| ready.message.contains(note))
}

/// Enabled projections that do not carry the current token, with why.
fn unsynced_projections(status: &DsqlCredentialStatus, targets: Targets) -> Vec<String> {
    let mut unsynced = Vec::new();
    let checks = [
        (targets.kubernetes_secret, "Secret", &status.kubernetes_secret, true),
        (
            targets.secret_provider_class,
            "SecretProviderClass",
            &status.secret_provider_class,
            false,
        ),
    ];
    for (enabled, kind, projection, carries_token) in checks {
        match projection {
            _ if !enabled => {}
            Some(p) if p.synced && (!carries_token || p.version_id == status.version_id) => {}
            Some(p) => unsynced.push(format!(
                "{kind} {} ({})",
                p.name,
                p.message.as_deref().unwrap_or("out of date")
            )),
            None => unsynced.push(format!("{kind} (not written yet)")),
        }
    }
    unsynced
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::api::ProjectionStatus;

    const NO_PROJECTIONS: Targets = Targets {
        kubernetes_secret: false,
        secret_provider_class: false,
    };

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

    fn rotated(targets: Targets) -> DsqlCredentialStatus {
        let mut s = after_rotation(
            &DsqlCredentialStatus::default(),
            Some(1),
            &published(),
            t("2026-11-23T17:00:01Z"),
        );
        set_ready(&mut s, targets, t("2026-11-23T17:00:01Z"));
        s
    }

    fn condition(
        s: &DsqlCredentialStatus,
        type_: ConditionType,
    ) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.condition(type_).unwrap()
    }

    #[test]
    fn holding_back_keeps_the_published_token_and_says_so_in_degraded_once() {
        let prev = rotated(NO_PROJECTIONS);
        let now = t("2026-11-23T17:45:00Z");
        let held = after_hold(&prev, Some(1), "credentials expire soon", now);
        assert_eq!(held.version_id, prev.version_id);
        assert_eq!(held.token_expiration_time, prev.token_expiration_time);
        assert_eq!(
            held.next_rotation_time, prev.next_rotation_time,
            "still due: the next wake asks again"
        );
        assert_eq!(held.consecutive_failures, 0, "holding back is not a failure");
        let degraded = condition(&held, ConditionType::Degraded);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "SigningCredentialsExpiring")
        );
        let mut ready = held.clone();
        set_ready(&mut ready, NO_PROJECTIONS, now);
        assert_eq!(condition(&ready, ConditionType::Ready).status, "True");
        assert_eq!(
            after_hold(&held, Some(1), "credentials expire soon", t("2026-11-23T17:45:15Z")),
            held,
            "a poll in the same window changes nothing, so nothing is written"
        );
    }

    #[test]
    fn a_rotation_publishes_and_clears_failures() {
        let prev = DsqlCredentialStatus {
            consecutive_failures: 3,
            ..Default::default()
        };
        let mut s = after_rotation(&prev, Some(4), &published(), t("2026-11-23T17:00:01Z"));
        set_ready(&mut s, NO_PROJECTIONS, t("2026-11-23T17:00:01Z"));
        assert_eq!(s.consecutive_failures, 0);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(condition(&s, ConditionType::Ready).status, "True");
        assert_eq!(condition(&s, ConditionType::Ready).reason, "TokenPublished");
        assert_eq!(condition(&s, ConditionType::Degraded).status, "False");
        assert_eq!(condition(&s, ConditionType::Stalled).status, "False");
        assert_eq!(condition(&s, ConditionType::Ready).observed_generation, Some(4));
    }

    #[test]
    fn ready_needs_every_enabled_projection_on_the_current_version() {
        let targets = Targets {
            kubernetes_secret: true,
            secret_provider_class: true,
        };
        let mut s = rotated(targets);
        assert_eq!(condition(&s, ConditionType::Ready).status, "False");
        assert!(
            condition(&s, ConditionType::Ready)
                .message
                .contains("Secret (not written yet)")
        );
        s.kubernetes_secret = Some(ProjectionStatus {
            name: "x".into(),
            version_id: Some("old".into()),
            synced: true,
            message: None,
            created_uid: None,
        });
        s.secret_provider_class = Some(ProjectionStatus {
            name: "x".into(),
            version_id: None,
            synced: true,
            message: None,
            created_uid: None,
        });
        set_ready(&mut s, targets, t("2026-11-23T17:00:02Z"));
        assert_eq!(
            condition(&s, ConditionType::Ready).status,
            "False",
            "the Secret carries an old token"
        );
        s.kubernetes_secret = Some(ProjectionStatus {
            name: "x".into(),
            version_id: s.version_id.clone(),
            synced: true,
            message: None,
            created_uid: None,
        });
        set_ready(&mut s, targets, t("2026-11-23T17:00:02Z"));
        assert_eq!(condition(&s, ConditionType::Ready).status, "True");
        s.secret_provider_class = Some(ProjectionStatus {
            name: "x".into(),
            version_id: None,
            synced: false,
            message: Some("CRD missing".into()),
            created_uid: None,
        });
        set_ready(&mut s, targets, t("2026-11-23T17:00:03Z"));
        assert!(
            condition(&s, ConditionType::Ready)
                .message
                .contains("SecretProviderClass x (CRD missing)")
        );
    }

    #[test]
    fn a_failure_keeps_ready_while_the_token_is_valid_and_says_when_it_retries() {
        let ok = rotated(NO_PROJECTIONS);
        let failure = Failure {
            reason: ConditionReason::Throttled,
            message: "Secrets Manager PutSecretValue failed: ThrottlingException: Rate exceeded".into(),
            retry_at: t("2026-11-23T17:41:00Z"),
        };
        let mut s = after_failure(&ok, Some(1), &failure, 0, t("2026-11-23T17:40:00Z"));
        set_ready(&mut s, NO_PROJECTIONS, t("2026-11-23T17:40:00Z"));
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

        set_ready(&mut s, NO_PROJECTIONS, t("2026-11-23T18:00:00Z"));
        assert_eq!(condition(&s, ConditionType::Ready).reason, "TokenExpired");
        assert_eq!(condition(&s, ConditionType::Ready).status, "False");
    }

    #[test]
    fn refreshing_an_unchanged_status_changes_nothing() {
        let ok = rotated(NO_PROJECTIONS);
        let mut again = ok.clone();
        set_ready(&mut again, NO_PROJECTIONS, t("2026-11-23T17:20:00Z"));
        assert_eq!(again, ok);
    }

    #[test]
    fn a_stall_is_reported_without_touching_the_published_token() {
        let ok = rotated(NO_PROJECTIONS);
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

    #[test]
    fn a_deferral_is_noted_on_ready_until_the_next_reconcile_rewrites_it() {
        let until = t("2026-11-23T17:01:01Z");
        let note = deferral_note(&RotationCause::Forced("v2".into()), until);
        assert_eq!(
            note,
            "Rotation requested by dsql.credentials.dev/rotate=\"v2\" deferred until 2026-11-23T17:01:01Z (at most one forced or spec-change rotation per credential per minute)"
        );
        let mut s = rotated(NO_PROJECTIONS);
        assert!(!has_deferral_note(&s, &note));
        add_deferral_note(&mut s, &note);
        let ready = condition(&s, ConditionType::Ready);
        assert_eq!(ready.status, "True", "a deferral does not make the credential unready");
        assert!(
            ready.message.starts_with("a valid token is published"),
            "{}",
            ready.message
        );
        assert!(has_deferral_note(&s, &note));
        let other = deferral_note(&RotationCause::Forced("v3".into()), until);
        assert!(!has_deferral_note(&s, &other), "a new value is announced again");
        set_ready(&mut s, NO_PROJECTIONS, t("2026-11-23T17:01:02Z"));
        assert!(!has_deferral_note(&s, &note), "gone once Ready is recomputed");
    }

    #[test]
    fn a_long_annotation_value_is_shortened_in_the_note() {
        let value = "x".repeat(500);
        let note = deferral_note(&RotationCause::Forced(value), t("2026-11-23T17:01:01Z"));
        assert!(note.contains(&format!("{}…", "x".repeat(QUOTED_VALUE_CHARS))), "{note}");
        assert!(note.len() < 250, "{note}");
        let spec = deferral_note(&RotationCause::SpecChanged, t("2026-11-23T17:01:01Z"));
        assert!(
            spec.starts_with("Rotation for the spec change deferred until"),
            "{spec}"
        );
    }
}
