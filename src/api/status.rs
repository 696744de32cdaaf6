//! Status of `DsqlCredential`: rotation bookkeeping the controller resumes from after a restart.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a DsqlCredential: where the current token is published, when it expires,
/// when it is rotated next, and rotation health as conditions (`Ready`, `Degraded`, `Stalled`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DsqlCredentialStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the Secrets Manager secret holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// ARN of the Secrets Manager secret holding the token; rotations write to it directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,

    /// Secrets Manager version id holding the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,

    /// Number of successful rotations; with the object's uid it makes each write idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_count: Option<i64>,

    /// When the published token stops working (the earlier of its lifetime and the signing
    /// credentials' expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expiration_time: Option<Time>,

    /// When the published token was minted and written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<Time>,

    /// When the operator rotates next (or retries, after a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<Time>,

    /// Rotation attempts that failed in a row since the last success.
    #[serde(default)]
    pub consecutive_failures: i32,

    /// The last value of the `dsql.credentials.dev/rotate` annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_forced_rotation: Option<String>,

    /// The Kubernetes Secret projection, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_secret: Option<ProjectionStatus>,

    /// The SecretProviderClass projection, when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_provider_class: Option<ProjectionStatus>,

    /// Workloads restarted after rotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollout_restarts: Vec<RolloutRestartStatus>,

    /// `Ready`, `Degraded` and `Stalled` conditions (kstatus-compatible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Where a projection stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectionStatus {
    /// Name of the object the operator writes.
    pub name: String,
    /// The Secrets Manager version the object carries (for the SecretProviderClass, the version
    /// current when it was last written; it always points at the current version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// Whether the object is in sync with `status.versionId`.
    pub synced: bool,
    /// Why it is not in sync, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The uid of the object this credential created under `name` (Kubernetes Secret only).
    /// The operator cannot read Secrets: every later write carries this uid (`metadata.uid` in
    /// the server-side apply, `preconditions.uid` in a delete), so an object deleted and
    /// re-created by someone else under the same name is never written or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_uid: Option<String>,
}

/// The last restart of one `rolloutRestart` target.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutRestartStatus {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// The Secrets Manager version the workload was restarted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_for_version: Option<String>,
    /// Why the restart failed (e.g. the workload does not exist), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set while a restart the API server refused is retried on the failure backoff (`Degraded`
    /// says `RolloutRestartFailed`): the Secrets Manager version it is for. A workload that
    /// does not exist is not retried (its restart waits for the next rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_for_version: Option<String>,
}

impl DsqlCredentialStatus {
    /// The condition of the given type, if set.
    pub fn condition(&self, type_: super::ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
    }
}
