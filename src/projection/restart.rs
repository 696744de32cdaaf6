//! Rollout restarts of workloads that read the credential once at start: the same template
//! annotation `kubectl rollout restart` sets, after each rotation. Paced operator-wide so many
//! credentials rotating together do not restart a fleet at once. A missing target is reported,
//! never fatal.

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

/// Restarts `target` for Secrets Manager version `version_id`, and says how it went.
pub async fn restart(
    client: &kube::Client,
    namespace: &str,
    target: &RolloutTarget,
    version_id: &str,
    at: Timestamp,
    limiter: &WriteRateLimiter,
) -> RolloutRestartStatus {
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
    let message = match api.patch(&target.name, &params, &Patch::Merge(&patch)).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) if status.code == 404 => Some(format!("{kind} {:?} not found", target.name)),
        Err(error) => Some(format!("restarting {kind} {:?} failed: {error}", target.name)),
    };
    RolloutRestartStatus {
        kind,
        name: target.name.clone(),
        restarted_for_version: message.is_none().then(|| version_id.to_owned()),
        message,
    }
}
