//! Per-credential series, derived from each credential's status (never from an AWS call), so
//! they exist from the first reconcile after a restart or leader change instead of only after
//! the next rotation. Labels are namespace, name and, for conditions, a fixed set of types and
//! statuses: never a token.

use std::collections::BTreeMap;
use std::sync::RwLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;

use crate::api::{ConditionReason, ConditionType, DsqlCredential, DsqlCredentialStatus};
use crate::schedule;

/// Labels naming one credential. They live here, with the series keyed by them, so that
/// `metrics` depends on this module and not the other way round.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The condition types exported, in a fixed order.
const CONDITION_TYPES: [ConditionType; 3] = [ConditionType::Ready, ConditionType::Degraded, ConditionType::Stalled];
/// The values a condition status can take: anything else is exported as `Unknown`.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// What the metrics say about one credential, read from its spec and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSnapshot {
    /// `status.tokenExpirationTime` (Unix seconds), once a token is published.
    pub expires_at: Option<i64>,
    /// The effective `rotation.renewBefore` in seconds, when the spec's durations parse.
    pub renew_before_seconds: Option<i64>,
    /// `status.consecutiveFailures`.
    pub consecutive_failures: i64,
    /// When the current failure streak started (the Degraded condition's last transition to
    /// True), while it lasts.
    pub failing_since: Option<i64>,
    /// Whether `Degraded` says the signing credentials expire too soon for a full-length token.
    pub signing_credentials_expiring: bool,
    /// Rollout restarts the API server refused that are being retried
    /// (`status.rolloutRestarts[].pendingForVersion`).
    pub rollout_restarts_failing: i64,
    /// Status of each exported condition type (`Unknown` when absent), in `CONDITION_TYPES` order.
    pub conditions: [&'static str; 3],
}

impl CredentialSnapshot {
    /// Reads a credential's spec and status.
    pub fn of(credential: &DsqlCredential) -> Self {
        let empty = DsqlCredentialStatus::default();
        let status = credential.status.as_ref().unwrap_or(&empty);
        let degraded = status.condition(ConditionType::Degraded).filter(|c| c.status == "True");
        let signing_credentials_expiring =
            degraded.is_some_and(|c| c.reason == ConditionReason::SigningCredentialsExpiring.as_str());
        // A refused rollout restart is Degraded too, but the rotation succeeded: it has its own
        // gauge and alert, and must not start the RotationFailing alert's clock.
        let restart_failing = degraded.is_some_and(|c| c.reason == ConditionReason::RolloutRestartFailed.as_str());
        // A held-back rotation is Degraded but not failing: the published token is kept on purpose
        // and renewed credentials are polled for, so it must not start the RotationFailing
        // alert's clock (it has its own gauge).
        let failing_since = degraded
            .filter(|_| !signing_credentials_expiring && !restart_failing)
            .map(|c| c.last_transition_time.0.as_second());
        Self {
            expires_at: status.token_expiration_time.as_ref().map(|t| t.0.as_second()),
            renew_before_seconds: renew_before_seconds(credential),
            consecutive_failures: i64::from(status.consecutive_failures.max(0)),
            failing_since,
            signing_credentials_expiring,
            rollout_restarts_failing: status
                .rollout_restarts
                .iter()
                .filter(|r| r.pending_for_version.is_some())
                .count() as i64,
            conditions: CONDITION_TYPES.map(|type_| condition_status(status.condition(type_))),
        }
    }
}

/// The renewBefore the reconciler uses: the spec's, or a third of the lifetime. An unparsable
/// spec has none (the credential is Stalled with InvalidSpec, which has its own alert).
fn renew_before_seconds(credential: &DsqlCredential) -> Option<i64> {
    let spec = &credential.spec;
    let renew_before = match &spec.rotation.renew_before {
        Some(text) => schedule::parse_duration(text).ok()?,
        None => schedule::parse_duration(&spec.token.lifetime).ok()? / 3,
    };
    i64::try_from(renew_before.as_secs()).ok()
}

fn condition_status(condition: Option<&Condition>) -> &'static str {
    let status = condition.map(|c| c.status.as_str()).unwrap_or("Unknown");
    CONDITION_STATUSES
        .into_iter()
        .find(|known| *known == status)
        .unwrap_or("Unknown")
}

/// One credential's series, kept as one small map entry (about 250 bytes) and written out at
/// scrape time: a `Family` per metric would keep seven label sets of owned strings per
/// credential (well over a KiB), against 8 MiB of headroom under the 64 MiB target at 10,000
/// credentials (docs/performance.md).
#[derive(Debug, Default)]
pub(super) struct CredentialSeries {
    states: RwLock<States>,
}

/// Snapshots by (namespace, name), sorted so the exposition is stable.
type States = BTreeMap<(Box<str>, Box<str>), CredentialSnapshot>;

impl Default for CredentialSnapshot {
    fn default() -> Self {
        Self {
            expires_at: None,
            renew_before_seconds: None,
            consecutive_failures: 0,
            failing_since: None,
            signing_credentials_expiring: false,
            rollout_restarts_failing: 0,
            conditions: ["Unknown"; 3],
        }
    }
}

impl CredentialSeries {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, States> {
        self.states.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces one credential's series with `snapshot`.
    pub(super) fn observe(&self, labels: &CredentialLabels, snapshot: CredentialSnapshot) {
        self.write().insert(key(labels), snapshot);
    }

    /// Sets one credential's expiry (right after a rotation, before its status comes back).
    pub(super) fn set_expiry(&self, labels: &CredentialLabels, unix_seconds: i64) {
        self.write().entry(key(labels)).or_default().expires_at = Some(unix_seconds);
    }

    /// Drops one credential's series.
    pub(super) fn forget(&self, labels: &CredentialLabels) {
        self.write().remove(&key(labels));
    }

    /// Drops every credential's series.
    pub(super) fn clear(&self) {
        self.write().clear();
    }
}

fn key(labels: &CredentialLabels) -> (Box<str>, Box<str>) {
    (labels.namespace.as_str().into(), labels.name.as_str().into())
}

/// The gauges written per credential: name, help, and the value (none: no series).
type GaugeOf = fn(&CredentialSnapshot) -> Option<i64>;
const GAUGES: [(&str, &str, GaugeOf); 6] = [
    (
        "token_expiry_timestamp_seconds",
        "Expiry of each credential's published token (Unix time)",
        |s| s.expires_at,
    ),
    (
        "credential_renew_before_seconds",
        "How long before expiry each credential's token is rotated",
        |s| s.renew_before_seconds,
    ),
    (
        "credential_consecutive_failures",
        "Rotation attempts that failed in a row since the last success",
        |s| Some(s.consecutive_failures),
    ),
    (
        "credential_failing_since_timestamp_seconds",
        "When the current streak of failed rotations started (Unix time); absent while rotations succeed",
        |s| s.failing_since,
    ),
    (
        "signing_credentials_expiring",
        "1 while the operator's AWS credentials expire too soon for a full-length token, so scheduled rotations are held back until renewed credentials come; absent otherwise",
        |s| s.signing_credentials_expiring.then_some(1),
    ),
    (
        "credential_rollout_restarts_failing",
        "Rollout restarts of each credential's workloads that the API server refused and that are being retried; absent while none is",
        |s| (s.rollout_restarts_failing > 0).then_some(s.rollout_restarts_failing),
    ),
];

impl Collector for CredentialSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let states = self.states.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        for (name, help, value_of) in GAUGES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for ((namespace, credential), snapshot) in states.iter() {
                if let Some(value) = value_of(snapshot) {
                    let labels = [("namespace", &**namespace), ("name", &**credential)];
                    metric.encode_family(&labels)?.encode_gauge(&value)?;
                }
            }
        }
        let mut metric = encoder.encode_descriptor(
            "credential_condition",
            "1 for each credential's current status of each condition type (Ready, Degraded, Stalled)",
            None,
            MetricType::Gauge,
        )?;
        for ((namespace, credential), snapshot) in states.iter() {
            // One series per type, carrying the current status: a flip is a new series rather
            // than a 0 left behind, and a credential costs three series, not nine.
            for (type_, status) in CONDITION_TYPES.into_iter().zip(snapshot.conditions) {
                let labels = [
                    ("namespace", &**namespace),
                    ("name", &**credential),
                    ("type", type_.as_str()),
                    ("status", status),
                ];
                metric.encode_family(&labels)?.encode_gauge(&1i64)?;
            }
        }
        Ok(())
    }
}

/// The labels of a credential object.
pub(super) fn labels_of(credential: &DsqlCredential) -> CredentialLabels {
    CredentialLabels {
        namespace: credential.namespace().unwrap_or_default(),
        name: credential.name_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Metrics;
    use crate::api::DsqlCredential;

    fn credential(renew_before: Option<&str>, status: serde_json::Value) -> DsqlCredential {
        let mut spec = serde_json::json!({
            "cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"},
            "role": "reporting",
        });
        if let Some(renew_before) = renew_before {
            spec["rotation"] = serde_json::json!({"renewBefore": renew_before});
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dsql.credentials.dev/v1alpha1",
            "kind": "DsqlCredential",
            "metadata": {"namespace": "shop", "name": "orders"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn condition(type_: &str, status: &str, since: &str) -> serde_json::Value {
        serde_json::json!({
            "type": type_, "status": status, "reason": "AsExpected", "message": "",
            "lastTransitionTime": since,
        })
    }

    /// The exposition lines that mention the credential, without comments.
    fn series(metrics: &Metrics) -> Vec<String> {
        let mut lines: Vec<String> = metrics
            .encode()
            .lines()
            .filter(|line| line.contains(r#"name="orders""#))
            .map(str::to_owned)
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn a_healthy_credential_exports_expiry_renew_before_and_one_series_per_condition() {
        let metrics = Metrics::default();
        metrics.observe_credential(&credential(
            Some("20m"),
            serde_json::json!({
                "tokenExpirationTime": "2026-11-29T11:00:00Z",
                "consecutiveFailures": 0,
                "conditions": [
                    condition("Ready", "True", "2026-11-29T10:00:00Z"),
                    condition("Degraded", "False", "2026-11-29T10:00:00Z"),
                    condition("Stalled", "False", "2026-11-29T10:00:00Z"),
                ],
            }),
        ));
        let eleven = "2026-11-29T11:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
        assert_eq!(
            series(&metrics),
            vec![
                r#"dsql_operator_credential_condition{namespace="shop",name="orders",type="Degraded",status="False"} 1"#.to_owned(),
                r#"dsql_operator_credential_condition{namespace="shop",name="orders",type="Ready",status="True"} 1"#.to_owned(),
                r#"dsql_operator_credential_condition{namespace="shop",name="orders",type="Stalled",status="False"} 1"#.to_owned(),
                r#"dsql_operator_credential_consecutive_failures{namespace="shop",name="orders"} 0"#.to_owned(),
                r#"dsql_operator_credential_renew_before_seconds{namespace="shop",name="orders"} 1200"#.to_owned(),
                format!(r#"dsql_operator_token_expiry_timestamp_seconds{{namespace="shop",name="orders"}} {eleven}"#),
            ]
        );
    }

    #[test]
    fn a_failure_streak_exports_its_start_and_a_flip_replaces_the_old_status_series() {
        let metrics = Metrics::default();
        let since = "2026-11-29T10:05:00Z";
        metrics.observe_credential(&credential(
            None,
            serde_json::json!({
                "consecutiveFailures": 3,
                "conditions": [condition("Ready", "True", since), condition("Degraded", "True", since)],
            }),
        ));
        let text = series(&metrics).join("\n");
        let since_seconds = since.parse::<jiff::Timestamp>().unwrap().as_second();
        for expected in [
            r#"dsql_operator_credential_condition{namespace="shop",name="orders",type="Degraded",status="True"} 1"#
                .to_owned(),
            // Absent conditions are Unknown, not missing: "is it Stalled?" always has an answer.
            r#"dsql_operator_credential_condition{namespace="shop",name="orders",type="Stalled",status="Unknown"} 1"#
                .to_owned(),
            r#"dsql_operator_credential_consecutive_failures{namespace="shop",name="orders"} 3"#.to_owned(),
            // The default renewBefore is a third of the default 1h lifetime.
            r#"dsql_operator_credential_renew_before_seconds{namespace="shop",name="orders"} 1200"#.to_owned(),
            format!(
                r#"dsql_operator_credential_failing_since_timestamp_seconds{{namespace="shop",name="orders"}} {since_seconds}"#
            ),
        ] {
            assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
        }
        assert!(
            !text.contains("token_expiry"),
            "no expiry before a token is published:\n{text}"
        );

        metrics.observe_credential(&credential(
            None,
            serde_json::json!({
                "consecutiveFailures": 0,
                "conditions": [condition("Ready", "True", since), condition("Degraded", "False", since)],
            }),
        ));
        let text = series(&metrics).join("\n");
        assert!(text.contains(r#"type="Degraded",status="False"} 1"#), "{text}");
        assert!(
            !text.contains(r#"type="Degraded",status="True""#),
            "old status series left:\n{text}"
        );
        assert!(!text.contains("failing_since"), "streak over:\n{text}");
        assert_eq!(
            series(&metrics).len(),
            5,
            "three conditions, failures, renewBefore:\n{text}"
        );
    }

    #[test]
    fn held_back_rotations_export_signing_credentials_expiring_only_while_they_last() {
        let metrics = Metrics::default();
        let since = "2026-11-29T10:05:00Z";
        let degraded = |reason: &str| {
            let mut degraded = condition("Degraded", "True", since);
            degraded["reason"] = reason.into();
            credential(
                None,
                serde_json::json!({"conditions": [condition("Ready", "True", since), degraded]}),
            )
        };
        let gauge = r#"dsql_operator_signing_credentials_expiring{namespace="shop",name="orders"} 1"#;
        metrics.observe_credential(&degraded("SigningCredentialsExpiring"));
        let text = series(&metrics).join("\n");
        assert!(text.contains(gauge), "missing {gauge:?} in:\n{text}");
        assert!(
            !text.contains("failing_since"),
            "a hold is not a failure streak:\n{text}"
        );
        metrics.observe_credential(&degraded("Throttled"));
        let text = series(&metrics).join("\n");
        assert!(
            !text.contains("signing_credentials_expiring"),
            "another failure:\n{text}"
        );
        assert!(
            text.contains("failing_since"),
            "a real failure starts the streak:\n{text}"
        );
    }

    #[test]
    fn deleted_and_no_longer_led_credentials_have_no_series() {
        let metrics = Metrics::default();
        let status = serde_json::json!({"tokenExpirationTime": "2026-11-29T11:00:00Z"});
        metrics.observe_credential(&credential(None, status.clone()));
        assert!(!series(&metrics).is_empty());
        metrics.forget_credential("shop", "orders");
        assert_eq!(series(&metrics), Vec::<String>::new());

        let mut deleting = credential(None, status.clone());
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        metrics.observe_credential(&deleting);
        assert_eq!(
            series(&metrics),
            Vec::<String>::new(),
            "a deleting object is not re-added"
        );

        metrics.observe_credential(&credential(None, status));
        metrics.set_leader(true);
        metrics.clear_credentials();
        assert_eq!(series(&metrics), Vec::<String>::new());
        assert!(
            metrics.encode().contains("dsql_operator_leader 1"),
            "process series stay"
        );
    }

    #[test]
    fn an_unparsable_renew_before_exports_no_renew_before() {
        let metrics = Metrics::default();
        metrics.observe_credential(&credential(Some("soon"), serde_json::json!({})));
        let text = series(&metrics).join("\n");
        assert!(!text.contains("renew_before"), "{text}");
        assert!(text.contains(r#"type="Ready",status="Unknown"} 1"#), "{text}");
    }
}
