//! Operator-wide settings (from the command line / Helm values).

use crate::policy::AccessPolicy;

/// Settings that apply to every DsqlCredential the operator manages.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorConfig {
    /// Prefix of default secret names: `<prefix>/<namespace>/<name>`. The IAM policy in deploy/
    /// scopes the operator to secrets under this prefix.
    pub secret_name_prefix: String,
    /// Namespaces to watch; empty means all namespaces.
    pub namespaces: Vec<String>,
    /// How many credentials are reconciled at once.
    pub concurrency: u16,
    /// Ceiling on the operator's Secrets Manager writes per second (0 = unlimited). Writes share
    /// a 50/s account-and-region quota with every other writer.
    pub secrets_manager_writes_per_second: f64,
    /// Ceiling on rollout restarts per second across all credentials (0 = unlimited), so many
    /// credentials rotating together do not restart a fleet at once.
    pub rollout_restarts_per_second: f64,
    /// Which namespaces may mint what (see [`AccessPolicy`]).
    pub access_policy: AccessPolicy,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            secret_name_prefix: "dsql".to_owned(),
            namespaces: Vec::new(),
            concurrency: 16,
            secrets_manager_writes_per_second: 5.0,
            rollout_restarts_per_second: 0.2,
            access_policy: AccessPolicy::default(),
        }
    }
}

impl OperatorConfig {
    /// The secret name used when the spec does not name one.
    pub fn default_secret_name(&self, namespace: &str, name: &str) -> String {
        let prefix = self.secret_name_prefix.trim_end_matches('/');
        if prefix.is_empty() {
            format!("{namespace}/{name}")
        } else {
            format!("{prefix}/{namespace}/{name}")
        }
    }
}
