//! End to end: a rollout restart the API server refuses (issue 18: the chart's admission policy
//! read `request.subResource`, which a real server leaves out, and every restart got a 422). It
//! must be loud (Degraded=RolloutRestartFailed with Ready still True, one Warning Event, one WARN
//! line, the failure metric and gauge) and retried on the failure backoff with no AWS call and no
//! Secret write, until the denial is lifted and the restart goes through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use support::credential::admin_spec_with;
use support::env::{TestEnv, condition};
use support::rbac::RbacMode;

/// The denying policy's (and binding's) name: per test namespace, since a real API server is
/// shared by the whole run (the policy confines only this test's ServiceAccount).
fn policy_name(env: &TestEnv) -> String {
    format!("restart-confinement-{}", env.namespace)
}
/// The restart check of the chart's policy before issue 18: an evaluation error on a real server
/// (and now on the fake), where `request.subResource` is absent.
const OLD_RESTART_EXPRESSION: &str =
    "request.resource.group == 'apps' && request.operation == 'UPDATE' && request.subResource == ''";

fn admission_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// A policy confining the operator's ServiceAccount to restarts the way the chart's did before
/// the fix, and its Deny binding.
async fn install_old_policy(env: &TestEnv) {
    let user = format!(
        "system:serviceaccount:{}:{}",
        env.namespace, env.operator_identity.fullname
    );
    let policy: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": policy_name(env)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"],
                "resources": ["deployments", "deployments/*"],
            }]},
            "matchConditions": [{"name": "operator", "expression": format!("request.userInfo.username == '{user}'")}],
            "variables": [{"name": "restart", "expression": OLD_RESTART_EXPRESSION}],
            "validations": [{"expression": "variables.restart", "message": "only restarts", "reason": "Forbidden"}],
        },
    }))
    .unwrap();
    admission_api(&env.kube, "ValidatingAdmissionPolicy", "validatingadmissionpolicies")
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let binding: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name(env)},
        "spec": {"policyName": policy_name(env), "validationActions": ["Deny"]},
    }))
    .unwrap();
    admission_api(
        &env.kube,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    )
    .create(&PostParams::default(), &binding)
    .await
    .unwrap();
}

/// Waits (bounded: 15 s) until the old policy is `enforced` or not for the operator: a real API
/// server picks a binding's write or delete up about a second later (the fake at once). Probes
/// with a dry-run restart patch as the operator's ServiceAccount.
async fn wait_enforcement(env: &TestEnv, enforced: bool) {
    let deployments: Api<Deployment> = Api::namespaced(env.operator_kube.clone(), &env.namespace);
    let restart = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    for _ in 0..150 {
        let refused = matches!(
            deployments.patch("api", &dry_run, &Patch::Merge(&restart)).await,
            Err(kube::Error::Api(status)) if status.code == 422
        );
        if refused == enforced {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the old restart policy was still {} after 15 s",
        if enforced { "not enforced" } else { "enforced" }
    );
}

/// The resourceVersion of every Secret in the test's namespace: unchanged means no Secret write,
/// on a real server too (where requests are not recorded).
async fn secret_versions(env: &TestEnv) -> Vec<(String, Option<String>)> {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(env.kube.clone(), &env.namespace);
    let mut versions: Vec<(String, Option<String>)> = secrets
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.name_any(), s.resource_version()))
        .collect();
    versions.sort();
    versions
}

fn metric(env: &TestEnv, series: &str) -> f64 {
    env.metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

async fn wait_metric(env: &TestEnv, series: &str, at_least: f64) {
    for _ in 0..400 {
        if metric(env, series) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{series} did not reach {at_least}; metrics:\n{}\nlast log lines:\n{}",
        env.metrics.encode(),
        support::logs::tail(60)
    );
}

const FAILED: &str = r#"dsql_operator_rollout_restarts_total{result="failure"}"#;
const SUCCEEDED: &str = r#"dsql_operator_rollout_restarts_total{result="success"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_restart_is_degraded_announced_and_retried_without_a_new_token_until_it_passes() {
    let env = TestEnv::with_rbac("restart-refused", RbacMode::WatchedNamespace).await;
    let deployments = env.create_deployment("api").await;
    install_old_policy(&env).await;
    wait_enforcement(&env, true).await;

    let operator = env.start_operator();
    env.create_credential(
        "orders",
        admin_spec_with(serde_json::json!({"rolloutRestart": [{"kind": "Deployment", "name": "api"}]})),
    )
    .await
    .unwrap();
    let degraded = env
        .wait_for(
            "orders",
            Duration::from_secs(30),
            "Degraded=RolloutRestartFailed",
            |c| condition(c, "Degraded").is_some_and(|d| d.status == "True" && d.reason == "RolloutRestartFailed"),
        )
        .await;
    let status = degraded.status.clone().unwrap();
    let version = status.version_id.clone().unwrap();
    let ready = condition(&degraded, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "TokenPublished"),
        "the token is published"
    );
    let message = &condition(&degraded, "Degraded").unwrap().message;
    assert!(message.contains(r#"restarting Deployment "api" failed"#), "{message}");
    assert!(
        message.contains("resulted in error: composited variable \"restart\" fails to evaluate: no such key: subResource (422 Invalid)"),
        "the server's answer: {message}"
    );
    assert!(message.contains("retrying at"), "{message}");
    assert_eq!(status.rollout_restarts.len(), 1);
    assert_eq!(
        status.rollout_restarts[0].pending_for_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(status.rollout_restarts[0].restarted_for_version, None);
    env.assert_event("orders", "RolloutRestartFailed: restarting Deployment \"api\" failed")
        .await;
    wait_metric(&env, FAILED, 1.0).await;
    let gauge = format!(
        r#"dsql_operator_credential_rollout_restarts_failing{{namespace="{}",name="orders"}}"#,
        env.namespace
    );
    assert_eq!(metric(&env, &gauge), 1.0);
    let rotations_failing = format!(
        r#"dsql_operator_credential_failing_since_timestamp_seconds{{namespace="{}",name="orders"}}"#,
        env.namespace
    );
    assert!(
        !env.metrics.encode().contains(&rotations_failing),
        "a refused restart does not start the rotation-failing clock"
    );

    // Retries: on the backoff, each with no AWS call and no Secret write.
    env.clear_recorded();
    let secrets_before = secret_versions(&env).await;
    let failed_before = metric(&env, FAILED);
    let retries = 3;
    for n in 1..=retries {
        env.clock.advance(Duration::from_secs(60));
        wait_metric(&env, FAILED, failed_before + f64::from(n)).await;
    }
    let aws_calls = env.aws.calls();
    assert!(aws_calls.is_empty(), "retries make no AWS call: {aws_calls:?}");
    assert_eq!(secret_versions(&env).await, secrets_before, "retries write no Secret");
    // The fake also shows each request.
    if let Some(writes) = env.kube_writes() {
        let secret_writes: Vec<&String> = writes.iter().filter(|w| w.contains("/secrets")).collect();
        assert!(secret_writes.is_empty(), "retries write no Secret: {secret_writes:?}");
        let restart_patches = writes.iter().filter(|w| w.contains("/deployments/api")).count();
        assert!(restart_patches >= retries as usize, "{writes:?}");
        println!(
            "{retries} retries: {} AWS calls, {} Secret writes, {restart_patches} restart patches, {} Kubernetes writes in all: {writes:?}",
            aws_calls.len(),
            secret_writes.len(),
            writes.len()
        );
    }
    let after_retries = env.credentials().get("orders").await.unwrap();
    let still = after_retries.status.clone().unwrap();
    assert_eq!(still.version_id.as_deref(), Some(version.as_str()), "no new version");
    assert_eq!(still.rotation_count, status.rotation_count);
    assert_eq!(
        condition(&after_retries, "Degraded").unwrap().reason,
        "RolloutRestartFailed"
    );

    // Loud once, not per retry: one Warning Event, one WARN line.
    let events: Vec<String> = env
        .events_for("orders")
        .await
        .into_iter()
        .filter(|e| e.starts_with("RolloutRestartFailed"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let key = format!("{}/orders", env.namespace);
    let logs = support::logs::captured();
    let warn_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(" WARN ") && l.contains(&key) && l.contains("rollout restart"))
        .collect();
    assert_eq!(warn_lines.len(), 1, "{warn_lines:#?}");
    println!("WARN line: {}", warn_lines[0]);

    // The denial is lifted: the next retry restarts the workload and Degraded clears.
    admission_api(
        &env.kube,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    )
    .delete(&policy_name(&env), &DeleteParams::default())
    .await
    .unwrap();
    wait_enforcement(&env, false).await;
    env.clock.advance(Duration::from_secs(60));
    let healed = env
        .wait_for("orders", Duration::from_secs(30), "Degraded=False", |c| {
            condition(c, "Degraded").is_some_and(|d| d.status == "False")
        })
        .await;
    let status = healed.status.clone().unwrap();
    assert_eq!(
        status.rollout_restarts[0].restarted_for_version.as_deref(),
        Some(version.as_str())
    );
    assert_eq!(status.rollout_restarts[0].pending_for_version, None);
    assert_eq!(condition(&healed, "Ready").unwrap().status, "True");
    let annotations = deployments
        .get("api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .annotations
        .unwrap_or_default();
    assert!(
        annotations.contains_key("kubectl.kubernetes.io/restartedAt"),
        "{annotations:?}"
    );
    wait_metric(&env, SUCCEEDED, 1.0).await;
    assert!(
        !env.metrics.encode().contains(&gauge),
        "the gauge is gone once none fails"
    );
    assert!(
        env.aws.calls().is_empty(),
        "the successful retry made no AWS call either"
    );
    assert_eq!(
        secret_versions(&env).await,
        secrets_before,
        "the restart wrote no Secret either"
    );
    if let Some(writes) = env.kube_writes() {
        assert!(!writes.iter().any(|w| w.contains("/secrets")), "{writes:?}");
    }
    operator.stop().await;
    env.assert_operator_calls_permitted();
}
