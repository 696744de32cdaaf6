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
}
