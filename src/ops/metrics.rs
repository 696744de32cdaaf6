//! Prometheus metrics. Labels are object names, operations and outcomes: never a token.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::credential_metrics::{CredentialLabels, CredentialSeries, CredentialSnapshot, labels_of};
use crate::api::DsqlCredential;

/// Labels of a rotation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    /// `success` or `failure`.
    pub result: String,
}

/// Labels of an AWS call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AwsCallLabels {
    /// e.g. `secretsmanager`.
    pub service: String,
    /// e.g. `PutSecretValue`.
    pub operation: String,
    /// `success`, or the failure kind.
    pub outcome: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    rotations: Family<RotationLabels, Counter>,
    rollout_restarts: Family<RotationLabels, Counter>,
    rotation_duration: Histogram,
    aws_calls: Family<AwsCallLabels, Counter>,
    credentials: Arc<CredentialSeries>,
    reconcile_errors: Counter,
    leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dsql_operator");
        let rotations = Family::<RotationLabels, Counter>::default();
        registry.register("rotations", "Token rotations by result", rotations.clone());
        let rollout_restarts = Family::<RotationLabels, Counter>::default();
        registry.register(
            "rollout_restarts",
            "Rollout restarts of rolloutRestart workloads by result: success, failure (refused or failed by the API server; retried), not_found",
            rollout_restarts.clone(),
        );
        let rotation_duration = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]);
        registry.register(
            "rotation_duration_seconds",
            "Time to mint and publish one token",
            rotation_duration.clone(),
        );
        let aws_calls = Family::<AwsCallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome",
            aws_calls.clone(),
        );
        let credentials = Arc::new(CredentialSeries::default());
        registry.register_collector(Box::new(credentials.clone()));
        let reconcile_errors = Counter::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended in an error (retried with backoff)",
            reconcile_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica is the one reconciling (holds the leader lease, or leader election is off)",
            leader.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            rotations,
            rollout_restarts,
            rotation_duration,
            aws_calls,
            credentials,
            reconcile_errors,
            leader,
        }
    }
}

impl Metrics {
    /// Counts a rotation attempt and, for successes, its duration.
    pub fn rotation(&self, success: bool, seconds: f64) {
        let result = if success { "success" } else { "failure" };
        self.rotations
            .get_or_create(&RotationLabels {
                result: result.to_owned(),
            })
            .inc();
        if success {
            self.rotation_duration.observe(seconds);
        }
    }

    /// Counts a scheduled rotation held back because the signing credentials expire too soon
    /// (`rotations_total{result="held"}`): one per poll of the credential source, no write.
    pub fn rotation_held(&self) {
        self.rotations
            .get_or_create(&RotationLabels {
                result: "held".to_owned(),
            })
            .inc();
    }

    /// Counts a rollout restart attempt by `result` (`success`, `failure`, `not_found`).
    pub fn rollout_restart(&self, result: &str) {
        self.rollout_restarts
            .get_or_create(&RotationLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Counts an AWS call.
    pub fn aws_call(&self, service: &str, operation: &str, outcome: &str) {
        let labels = AwsCallLabels {
            service: service.to_owned(),
            operation: operation.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.aws_calls.get_or_create(&labels).inc();
    }

    /// Records a credential's token expiry.
    pub fn token_expiry(&self, namespace: &str, name: &str, unix_seconds: i64) {
        let labels = CredentialLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.credentials.set_expiry(&labels, unix_seconds);
    }

    /// Sets a credential's series from its spec and status as the reconciler sees them, so every
    /// known credential has them from its first reconcile, without an AWS call. Objects being
    /// deleted are left to `forget_credential`.
    pub fn observe_credential(&self, credential: &DsqlCredential) {
        if credential.metadata.deletion_timestamp.is_some() {
            return;
        }
        self.credentials
            .observe(&labels_of(credential), CredentialSnapshot::of(credential));
    }

    /// Forgets a deleted credential.
    pub fn forget_credential(&self, namespace: &str, name: &str) {
        self.credentials.forget(&CredentialLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
    }

    /// Forgets every credential: a replica that stops reconciling (lost the lease, shutting
    /// down) must not keep exporting series that no longer change.
    pub fn clear_credentials(&self) {
        self.credentials.clear();
    }

    /// Counts a reconcile error.
    pub fn reconcile_error(&self) {
        self.reconcile_errors.inc();
    }

    /// Sets the leader gauge.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_every_metric_with_its_labels() {
        let metrics = Metrics::default();
        metrics.rotation(true, 0.2);
        metrics.rotation(false, 0.0);
        metrics.rollout_restart("failure");
        metrics.aws_call("secretsmanager", "PutSecretValue", "success");
        metrics.token_expiry("shop", "orders", 1_795_000_000);
        metrics.reconcile_error();
        metrics.set_leader(true);
        let text = metrics.encode();
        for expected in [
            r#"dsql_operator_rotations_total{result="success"} 1"#,
            r#"dsql_operator_rotations_total{result="failure"} 1"#,
            r#"dsql_operator_rollout_restarts_total{result="failure"} 1"#,
            "dsql_operator_rotation_duration_seconds_count 1",
            r#"dsql_operator_aws_calls_total{service="secretsmanager",operation="PutSecretValue",outcome="success"} 1"#,
            r#"dsql_operator_token_expiry_timestamp_seconds{namespace="shop",name="orders"} 1795000000"#,
            "dsql_operator_reconcile_errors_total 1",
            "dsql_operator_leader 1",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
        metrics.forget_credential("shop", "orders");
        assert!(!metrics.encode().contains(r#"name="orders""#));
    }
}

/// The chart's alert rules and dashboard query only series the operator exports.
#[cfg(test)]
mod chart_queries {
    use std::collections::BTreeSet;

    use super::*;

    const RULES: &str = include_str!("../../charts/dsql-credential-operator/templates/prometheusrule.yaml");
    const DASHBOARD: &str =
        include_str!("../../charts/dsql-credential-operator/dashboards/dsql-credential-operator.json");

    /// Every series name in the exposition once each metric has a value.
    fn exported() -> BTreeSet<String> {
        let metrics = Metrics::default();
        metrics.rotation(true, 0.2);
        metrics.rollout_restart("failure");
        metrics.aws_call("secretsmanager", "PutSecretValue", "throttled");
        metrics.reconcile_error();
        let credential: DsqlCredential = serde_json::from_value(serde_json::json!({
            "apiVersion": "dsql.credentials.dev/v1alpha1",
            "kind": "DsqlCredential",
            "metadata": {"namespace": "shop", "name": "orders"},
            "spec": {"cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}, "role": "reporting"},
            "status": {
                "tokenExpirationTime": "2026-11-29T11:00:00Z",
                "rolloutRestarts": [{"kind": "Deployment", "name": "api", "pendingForVersion": "v1",
                                     "message": "restarting Deployment \"api\" failed: refused"}],
                "conditions": [{"type": "Degraded", "status": "True", "reason": "Throttled", "message": "",
                                "lastTransitionTime": "2026-11-29T10:00:00Z"}],
            },
        }))
        .unwrap();
        metrics.observe_credential(&credential);
        metrics
            .encode()
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect()
    }

    fn queried(text: &str) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("dsql_operator_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
        names
    }

    #[test]
    fn alerts_and_dashboard_query_only_exported_series() {
        let exported = exported();
        assert!(
            exported.contains("dsql_operator_credential_failing_since_timestamp_seconds"),
            "{exported:?}"
        );
        for (what, text, least) in [("alert rules", RULES, 6), ("dashboard", DASHBOARD, 8)] {
            let names = queried(text);
            assert!(names.len() >= least, "{what} query {names:?}");
            let unknown: Vec<_> = names.difference(&exported).collect();
            assert!(
                unknown.is_empty(),
                "{what} query series the operator does not export: {unknown:?}"
            );
        }
    }
}
