//! Rollout restarts of workloads that read the credential once at start: the same template
//! annotation `kubectl rollout restart` sets, after each rotation. Paced operator-wide so many
//! credentials rotating together do not restart a fleet at once. A missing target is reported,
//! never fatal; a restart the API server refuses (RBAC, an admission policy, a conflict, an
//! outage) is marked pending, so the reconciler retries it without a new token.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;

use crate::api::{MANAGER_NAME, RolloutRestartStatus, RolloutTarget, WorkloadKind};
use crate::aws::WriteRateLimiter;

/// The pod-template annotation set on restart (the one `kubectl rollout restart` uses).
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";

fn api_resource(kind: WorkloadKind) -> ApiResource {
    match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
    }
}

/// How one restart went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The workload's pod template carries the new `restartedAt`.
    Restarted,
    /// The workload does not exist (404): reported, not retried before the next rotation.
    NotFound,
    /// The API server refused or failed the patch; the text is its answer (no token: the patch
    /// carries none).
    Failed(String),
}

impl Outcome {
    /// The `result` label of `dsql_operator_rollout_restarts_total`.
    pub fn metric_result(&self) -> &'static str {
        match self {
            Outcome::Restarted => "success",
            Outcome::NotFound => "not_found",
            Outcome::Failed(_) => "failure",
        }
    }
}

/// What an API error says, with its code and reason (`deployments.apps "api" is forbidden:
/// ValidatingAdmissionPolicy ... (422 Invalid)`), so status shows the server's answer as is.
fn describe(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({} {})", status.message, status.code, status.reason),
        other => other.to_string(),
    }
}

/// Restarts `target` for Secrets Manager version `version_id`, and says how it went.
pub async fn restart(
    client: &kube::Client,
    namespace: &str,
    target: &RolloutTarget,
    version_id: &str,
    at: Timestamp,
    limiter: &WriteRateLimiter,
) -> (RolloutRestartStatus, Outcome) {
    limiter.acquire().await;
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource(target.kind));
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {
            RESTARTED_AT_ANNOTATION: at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }}}}
    });
    let params = PatchParams {
        field_manager: Some(MANAGER_NAME.to_owned()),
        ..PatchParams::default()
    };
    let kind = format!("{:?}", target.kind);
    let outcome = match api.patch(&target.name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => Outcome::Restarted,
        Err(kube::Error::Api(status)) if status.code == 404 => Outcome::NotFound,
        Err(error) => Outcome::Failed(describe(&error)),
    };
    let status = RolloutRestartStatus {
        kind: kind.clone(),
        name: target.name.clone(),
        restarted_for_version: (outcome == Outcome::Restarted).then(|| version_id.to_owned()),
        message: match &outcome {
            Outcome::Restarted => None,
            Outcome::NotFound => Some(format!("{kind} {:?} not found", target.name)),
            Outcome::Failed(answer) => Some(format!("restarting {kind} {:?} failed: {answer}", target.name)),
        },
        pending_for_version: matches!(outcome, Outcome::Failed(_)).then(|| version_id.to_owned()),
    };
    (status, outcome)
}
