//! Step 2 (pure): is a rotation due now, and if not, when to look again.

use jiff::{SignedDuration, Timestamp};

use crate::api::{ConditionReason, ConditionType, DsqlCredentialStatus};

/// Forced and spec-change rotations are limited to one per credential per this interval.
pub const MIN_FORCED_INTERVAL: SignedDuration = SignedDuration::from_secs(60);

/// Why a rotation happens now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationCause {
    /// Nothing has been published yet.
    Initial,
    /// The spec changed since the last rotation.
    SpecChanged,
    /// The rotate annotation has a new value.
    Forced(String),
    /// The scheduled rotation time has come.
    Due,
    /// Retrying after a failed attempt.
    Retry,
    /// It was stalled by a check the spec now passes (the access policy or the operator changed).
    Unstalled,
}

impl RotationCause {
    /// Short text for logs and Events.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Initial => "first token",
            Self::SpecChanged => "spec changed",
            Self::Forced(_) => "rotation requested by annotation",
            Self::Due => "scheduled rotation",
            Self::Retry => "retry after failure",
            Self::Unstalled => "no longer stalled",
        }
    }
}

/// What the controller should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Rotate now.
    Rotate(RotationCause),
    /// Stalled and nothing changed since: do nothing until the spec changes or a rotation is
    /// forced by annotation.
    Stalled,
    /// A rotation was asked for (a new rotate annotation value, or a spec change) within
    /// [`MIN_FORCED_INTERVAL`] of the last one: it happens at `until`. Status and an Event say
    /// so, so the request does not look lost.
    Deferred {
        /// What asked for the rotation.
        cause: RotationCause,
        /// When the limit allows it.
        until: Timestamp,
    },
    /// Nothing is due; look again at `until`.
    Wait {
        /// When something next falls due (a rotation, a retry, or the token's expiry).
        until: Timestamp,
    },
}

/// Stall reasons that come from validating the spec (and the access policy). The plan is made
/// only for a spec that passed validation, so such a stall is stale: the operator's policy or
/// version changed since. Other stalls (a secret owned by someone else) persist until the spec
/// changes, so a refused write is not retried forever.
const VALIDATION_STALLS: [ConditionReason; 3] = [
    ConditionReason::InvalidSpec,
    ConditionReason::InvalidSchedule,
    ConditionReason::PolicyDenied,
];

/// Decides, for a spec that passed validation, from the object's generation, its rotate
/// annotation and its status.
pub fn plan(
    generation: Option<i64>,
    rotate_annotation: Option<&str>,
    status: &DsqlCredentialStatus,
    now: Timestamp,
) -> Plan {
    let next = status.next_rotation_time.as_ref().map(|t| t.0);
    let retry_pending = status.consecutive_failures > 0 && next.is_some_and(|t| t > now);
    let published = status.version_id.is_some() && status.token_expiration_time.is_some();
    let forced = rotate_annotation
        .filter(|value| status.last_forced_rotation.as_deref() != Some(*value))
        .map(str::to_owned);
    let spec_changed = generation.is_some() && status.observed_generation != generation;
    let stall = status
        .condition(ConditionType::Stalled)
        .filter(|c| c.status == "True")
        .map(|c| VALIDATION_STALLS.iter().any(|r| r.as_str() == c.reason));
    match stall {
        Some(false) if !spec_changed && forced.is_none() => return Plan::Stalled,
        Some(true) if published && !spec_changed && forced.is_none() => {
            return Plan::Rotate(RotationCause::Unstalled);
        }
        _ => {}
    }

    if !published {
        return match (retry_pending && !spec_changed && forced.is_none(), next) {
            (true, Some(until)) => Plan::Wait { until },
            _ if status.consecutive_failures > 0 => Plan::Rotate(RotationCause::Retry),
            _ => Plan::Rotate(RotationCause::Initial),
        };
    }

    if forced.is_some() || spec_changed {
        let earliest = status.last_rotation_time.as_ref().map(|t| t.0 + MIN_FORCED_INTERVAL);
        let cause = forced.map_or(RotationCause::SpecChanged, RotationCause::Forced);
        return match earliest {
            Some(earliest) if earliest > now => Plan::Deferred { cause, until: earliest },
            _ => Plan::Rotate(cause),
        };
    }

    match next {
        Some(next) if next <= now => {
            if status.consecutive_failures > 0 {
                Plan::Rotate(RotationCause::Retry)
            } else {
                Plan::Rotate(RotationCause::Due)
            }
        }
        Some(next) => {
            // Also wake at expiry, so Ready turns False on time if rotations keep failing.
            let expiry = status.token_expiration_time.as_ref().map(|t| t.0).filter(|e| *e > now);
            Plan::Wait {
                until: expiry.map_or(next, |e| e.min(next)),
            }
        }
        None => Plan::Rotate(RotationCause::Due),
    }
}

/// A token already written to Secrets Manager whose projections or status write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unpublished<'a> {
    /// The Secrets Manager version holding it.
    pub version_id: &'a str,
    /// The rotation number it was written under.
    pub rotation_count: i64,
    /// The Secrets Manager secret it was written to.
    pub secret_name: &'a str,
    /// The credential's generation it was minted for.
    pub generation: Option<i64>,
    /// Its own renewal time (never later than `expiresAt - renewBefore`).
    pub next_rotation: Timestamp,
}

/// What a due rotation does when a token is already waiting to be published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Publish the waiting token: write the projections and status again, not Secrets Manager.
    Projections,
    /// Drop it; mint a new token and write Secrets Manager.
    Remint,
}

/// Decides whether a rotation that falls due republishes the waiting token or mints a new one.
///
/// The waiting token is republished while it is still the credential's current token and is not
/// yet due for renewal itself: same generation (the spec, hence endpoint, role and secret, is
/// unchanged), not a forced rotation (after a suspected leak only a new token will do), the same
/// Secrets Manager secret, status naming its version (or an older one, when the status write
/// after the Secrets Manager write was lost) and `now` before its own renewal time. Past its
/// renewal time, publishing it would only start a rotation at once, so a new token is minted.
pub fn retry_or_remint(
    pending: &Unpublished<'_>,
    cause: &RotationCause,
    generation: Option<i64>,
    secret_name: &str,
    status: &DsqlCredentialStatus,
    now: Timestamp,
) -> Retry {
    let cause_allows = !matches!(cause, RotationCause::Forced(_) | RotationCause::SpecChanged);
    let status_matches = status.version_id.as_deref() == Some(pending.version_id)
        || status.rotation_count.unwrap_or(0) < pending.rotation_count;
    let usable = cause_allows
        && pending.generation == generation
        && pending.secret_name == secret_name
        && status_matches
        && now < pending.next_rotation;
    if usable { Retry::Projections } else { Retry::Remint }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn published() -> DsqlCredentialStatus {
        DsqlCredentialStatus {
            observed_generation: Some(1),
            version_id: Some("v1".into()),
            rotation_count: Some(1),
            token_expiration_time: Some(Time(t("2026-11-23T18:00:00Z"))),
            last_rotation_time: Some(Time(t("2026-11-23T17:00:00Z"))),
            next_rotation_time: Some(Time(t("2026-11-23T17:40:00Z"))),
            ..Default::default()
        }
    }

    #[test]
    fn first_reconcile_rotates() {
        let plan = plan(
            Some(1),
            None,
            &DsqlCredentialStatus::default(),
            t("2026-11-23T17:00:00Z"),
        );
        assert_eq!(plan, Plan::Rotate(RotationCause::Initial));
    }

    #[test]
    fn nothing_due_waits_for_the_next_rotation() {
        let plan = plan(Some(1), None, &published(), t("2026-11-23T17:10:00Z"));
        assert_eq!(
            plan,
            Plan::Wait {
                until: t("2026-11-23T17:40:00Z")
            }
        );
    }

    #[test]
    fn due_rotates() {
        assert_eq!(
            plan(Some(1), None, &published(), t("2026-11-23T17:40:00Z")),
            Plan::Rotate(RotationCause::Due)
        );
    }

    #[test]
    fn failed_first_attempt_waits_for_its_retry_time() {
        let status = DsqlCredentialStatus {
            observed_generation: Some(1),
            consecutive_failures: 2,
            next_rotation_time: Some(Time(t("2026-11-23T17:00:30Z"))),
            ..Default::default()
        };
        assert_eq!(
            plan(Some(1), None, &status, t("2026-11-23T17:00:10Z")),
            Plan::Wait {
                until: t("2026-11-23T17:00:30Z")
            }
        );
        assert_eq!(
            plan(Some(1), None, &status, t("2026-11-23T17:00:30Z")),
            Plan::Rotate(RotationCause::Retry)
        );
    }

    #[test]
    fn a_new_annotation_value_forces_one_rotation_at_most_once_a_minute() {
        let status = published();
        assert_eq!(
            plan(Some(1), Some("now"), &status, t("2026-11-23T17:00:30Z")),
            Plan::Deferred {
                cause: RotationCause::Forced("now".into()),
                until: t("2026-11-23T17:01:00Z")
            }
        );
        assert_eq!(
            plan(Some(1), Some("now"), &status, t("2026-11-23T17:05:00Z")),
            Plan::Rotate(RotationCause::Forced("now".into()))
        );
        let acted = DsqlCredentialStatus {
            last_forced_rotation: Some("now".into()),
            ..status
        };
        assert_eq!(
            plan(Some(1), Some("now"), &acted, t("2026-11-23T17:05:00Z")),
            Plan::Wait {
                until: t("2026-11-23T17:40:00Z")
            }
        );
    }

    #[test]
    fn a_stalled_credential_waits_for_a_spec_change_or_a_forced_rotation() {
        let mut status = DsqlCredentialStatus {
            observed_generation: Some(1),
            ..Default::default()
        };
        crate::api::set_condition(
            &mut status.conditions,
            ConditionType::Stalled,
            true,
            crate::api::ConditionReason::SecretOwnedByOther,
            "taken",
            Some(1),
            t("2026-11-23T17:00:00Z"),
        );
        let now = t("2026-11-23T17:05:00Z");
        assert_eq!(plan(Some(1), None, &status, now), Plan::Stalled);
        assert_eq!(plan(Some(2), None, &status, now), Plan::Rotate(RotationCause::Initial));
        assert_eq!(
            plan(Some(1), Some("retry"), &status, now),
            Plan::Rotate(RotationCause::Initial)
        );
    }

    #[test]
    fn a_stall_from_validation_is_lifted_once_the_spec_passes_it() {
        let now = t("2026-11-23T17:05:00Z");
        let stall = |mut status: DsqlCredentialStatus| {
            crate::api::set_condition(
                &mut status.conditions,
                ConditionType::Stalled,
                true,
                crate::api::ConditionReason::PolicyDenied,
                "denied",
                Some(1),
                t("2026-11-23T17:00:00Z"),
            );
            status
        };
        let never_published = stall(DsqlCredentialStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        assert_eq!(
            plan(Some(1), None, &never_published, now),
            Plan::Rotate(RotationCause::Initial)
        );
        assert_eq!(
            plan(Some(1), None, &stall(published()), now),
            Plan::Rotate(RotationCause::Unstalled)
        );
    }

    #[test]
    fn a_spec_change_skips_a_pending_retry_of_a_first_attempt() {
        let status = DsqlCredentialStatus {
            observed_generation: Some(1),
            consecutive_failures: 4,
            next_rotation_time: Some(Time(t("2026-11-23T17:05:00Z"))),
            ..Default::default()
        };
        assert_eq!(
            plan(Some(2), None, &status, t("2026-11-23T17:01:00Z")),
            Plan::Rotate(RotationCause::Retry)
        );
    }

    #[test]
    fn a_spec_change_within_the_minute_is_deferred_then_rotates() {
        assert_eq!(
            plan(Some(2), None, &published(), t("2026-11-23T17:00:20Z")),
            Plan::Deferred {
                cause: RotationCause::SpecChanged,
                until: t("2026-11-23T17:01:00Z")
            }
        );
        assert_eq!(
            plan(Some(2), None, &published(), t("2026-11-23T17:01:00Z")),
            Plan::Rotate(RotationCause::SpecChanged)
        );
    }

    #[test]
    fn a_spec_change_rotates() {
        assert_eq!(
            plan(Some(2), None, &published(), t("2026-11-23T17:05:00Z")),
            Plan::Rotate(RotationCause::SpecChanged)
        );
    }

    #[test]
    fn waking_at_expiry_when_it_comes_before_the_next_retry() {
        let status = DsqlCredentialStatus {
            consecutive_failures: 3,
            next_rotation_time: Some(Time(t("2026-11-23T18:05:00Z"))),
            ..published()
        };
        assert_eq!(
            plan(Some(1), None, &status, t("2026-11-23T17:50:00Z")),
            Plan::Wait {
                until: t("2026-11-23T18:00:00Z")
            }
        );
    }

    fn waiting() -> Unpublished<'static> {
        Unpublished {
            version_id: "v2",
            rotation_count: 2,
            secret_name: "dsql/shop/orders",
            generation: Some(1),
            next_rotation: t("2026-11-23T18:20:00Z"),
        }
    }

    /// Status after the Secret write of rotation 2 failed: it names the new version.
    fn projection_failed() -> DsqlCredentialStatus {
        DsqlCredentialStatus {
            version_id: Some("v2".into()),
            rotation_count: Some(2),
            consecutive_failures: 3,
            ..published()
        }
    }

    #[test]
    fn a_failed_projection_is_retried_with_the_waiting_token_until_its_renewal_time() {
        let decide = |cause: &RotationCause, generation, status: &DsqlCredentialStatus, now| {
            retry_or_remint(&waiting(), cause, generation, "dsql/shop/orders", status, now)
        };
        let status = projection_failed();
        let during_outage = t("2026-11-23T17:50:00Z");
        assert_eq!(
            decide(&RotationCause::Retry, Some(1), &status, during_outage),
            Retry::Projections
        );
        assert_eq!(
            decide(&RotationCause::Retry, Some(1), &status, t("2026-11-23T18:20:00Z")),
            Retry::Remint,
            "at its own renewal time the waiting token is not worth publishing"
        );
        // The status write after the Secrets Manager write was lost: status names rotation 1.
        assert_eq!(
            decide(&RotationCause::Due, Some(1), &published(), during_outage),
            Retry::Projections
        );
        assert_eq!(
            decide(&RotationCause::Forced("leak".into()), Some(1), &status, during_outage),
            Retry::Remint,
            "a forced rotation always mints"
        );
        assert_eq!(
            decide(&RotationCause::SpecChanged, Some(2), &status, during_outage),
            Retry::Remint
        );
        assert_eq!(
            decide(&RotationCause::Retry, Some(2), &status, during_outage),
            Retry::Remint,
            "minted for another generation"
        );
        let newer = DsqlCredentialStatus {
            version_id: Some("v3".into()),
            rotation_count: Some(3),
            ..status.clone()
        };
        assert_eq!(
            decide(&RotationCause::Retry, Some(1), &newer, during_outage),
            Retry::Remint,
            "status names another version"
        );
        assert_eq!(
            retry_or_remint(
                &waiting(),
                &RotationCause::Retry,
                Some(1),
                "dsql/shop/other",
                &status,
                during_outage
            ),
            Retry::Remint,
            "another Secrets Manager secret"
        );
    }
}
