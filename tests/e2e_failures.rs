//! End to end: Secrets Manager failures degrade without dropping Ready while the token is valid,
//! and recover; invalid specs are refused at admission or Stalled, without harming others; a
//! secret owned by someone else is never overwritten; a Kubernetes outage after the Secrets
//! Manager write does not write Secrets Manager again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::clock::Clock;
use support::aws_proxy::AwsError;
use support::credential::{ENDPOINT, admin_spec, admin_spec_with, admin_spec_with_secret};
use support::env::{TestEnv, condition};
use support::moto::test_credentials;
use support::secret::decoded;
use support::token_check::{ExpectedToken, signing_minute, token_query_param, verify_dsql_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_errors_degrade_keep_ready_and_recover() {
    let env = TestEnv::new("degraded").await;
    let operator = env.start_operator();
    let first = env.create_ready("orders", admin_spec()).await;
    let status = first.status.clone().unwrap();
    let secret_name = status.secret_name.clone().unwrap();

    env.aws
        .inject_error("secretsmanager.PutSecretValue", AwsError::ThrottlingException, 2);
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let degraded = env.wait_condition("orders", "Degraded", Duration::from_secs(20)).await;
    let d = condition(&degraded, "Degraded").unwrap();
    assert_eq!(d.reason, "Throttled");
    assert!(
        d.message.contains("PutSecretValue") && d.message.contains("retrying at"),
        "{}",
        d.message
    );
    assert_eq!(
        condition(&degraded, "Ready").unwrap().status,
        "True",
        "the published token is still valid"
    );
    assert!(degraded.status.as_ref().unwrap().consecutive_failures >= 1);
    env.assert_event("orders", "RotationFailed: Throttled").await;

    // Retries come on the backoff schedule recorded in status; move time to them until it heals.
    let mut recovered = None;
    for _ in 0..10 {
        let current = env.credentials().get("orders").await.unwrap();
        if current.status.as_ref().and_then(|s| s.rotation_count) == Some(2) {
            recovered = Some(current);
            break;
        }
        if let Some(retry) = current.status.as_ref().and_then(|s| s.next_rotation_time.clone()) {
            env.clock.advance_to(retry.0);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let recovered = recovered.expect("recovered after the injected errors ran out");
    let recovered = env
        .wait_ready("orders", recovered.status.unwrap().rotation_count.unwrap())
        .await;
    assert_eq!(condition(&recovered, "Degraded").unwrap().status, "False");
    assert_eq!(recovered.status.as_ref().unwrap().consecutive_failures, 0);
    assert_eq!(
        env.secret_versions(&secret_name).await.len(),
        2,
        "failed attempts wrote no version"
    );
    assert_eq!(env.aws.pending_errors("secretsmanager.PutSecretValue"), 0);

    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_expires_while_rotation_keeps_failing_turns_ready_false() {
    let env = TestEnv::new("expired").await;
    let operator = env.start_operator();
    let first = env
        .create_ready(
            "orders",
            admin_spec_with(serde_json::json!({"token": {"lifetime": "15m"}, "rotation": {"renewBefore": "5m"}})),
        )
        .await;
    env.aws
        .inject_error("secretsmanager.PutSecretValue", AwsError::AccessDeniedException, 1000);
    env.clock
        .advance_to(first.status.as_ref().unwrap().token_expiration_time.clone().unwrap().0);
    let expired = env
        .wait_for("orders", Duration::from_secs(20), "expired", |c| {
            condition(c, "Ready").is_some_and(|r| r.reason == "TokenExpired")
        })
        .await;
    assert_eq!(condition(&expired, "Ready").unwrap().status, "False");
    assert_eq!(condition(&expired, "Degraded").unwrap().reason, "AccessDenied");
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_specs_are_rejected_or_stalled_and_other_credentials_are_unaffected() {
    let env = TestEnv::new("invalid").await;
    let operator = env.start_operator();

    // Refused at admission by the CRD's schema and CEL rules.
    let rejected = [
        serde_json::json!({"cluster": {"endpoint": ENDPOINT, "identifier": "abc", "region": "us-east-1"}, "role": "admin"}),
        serde_json::json!({"cluster": {"identifier": "abc"}, "role": "admin"}),
        serde_json::json!({"cluster": {"endpoint": "db.example.com"}, "role": "admin"}),
        admin_spec_with(serde_json::json!({"token": {"lifetime": "5m"}})),
        admin_spec_with(serde_json::json!({"rotation": {"renewBefore": "2h"}})),
        admin_spec_with(serde_json::json!({"secretsManager": {"deletionPolicy": "Orphan"}})),
        admin_spec_with(serde_json::json!({"secretsManager": {"recoveryWindowDays": 3}})),
        serde_json::json!({"cluster": {"endpoint": ENDPOINT}, "role": "robert'); DROP TABLE x;--"}),
        serde_json::json!({"cluster": {"endpoint": ENDPOINT}}),
    ];
    for (i, spec) in rejected.iter().enumerate() {
        let err = env
            .create_credential(&format!("bad-{i}"), spec.clone())
            .await
            .expect_err(&format!("{spec} must be refused"));
        match err {
            kube::Error::Api(status) => assert_eq!(status.code, 422, "{spec}: {status:?}"),
            other => panic!("{spec}: unexpected error {other}"),
        }
    }

    // Only the controller can judge a schedule: Stalled with a message saying what to change.
    env.create_credential(
        "bad-schedule",
        admin_spec_with(serde_json::json!({"rotation": {"schedule": "rate(5 minutes)"}})),
    )
    .await
    .unwrap();
    env.create_credential("good", admin_spec()).await.unwrap();
    let stalled = env
        .wait_condition("bad-schedule", "Stalled", Duration::from_secs(20))
        .await;
    let s = condition(&stalled, "Stalled").unwrap();
    assert_eq!(s.reason, "InvalidSchedule");
    assert!(
        s.message.contains("10 minutes") || s.message.contains("10m"),
        "{}",
        s.message
    );
    assert_eq!(condition(&stalled, "Ready").unwrap().reason, "NotPublished");
    env.wait_ready("good", 1).await;

    // Fixing the spec un-stalls it.
    let fix = serde_json::json!({"spec": {"rotation": {"schedule": "rate(30 minutes)"}}});
    env.credentials()
        .patch("bad-schedule", &Default::default(), &kube::api::Patch::Merge(&fix))
        .await
        .unwrap();
    let fixed = env.wait_ready("bad-schedule", 1).await;
    assert_eq!(condition(&fixed, "Stalled").unwrap().status, "False");
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_owned_by_someone_else_is_never_overwritten() {
    let env = TestEnv::new("conflict").await;
    let foreign = format!("dsql-e2e/{}/taken", env.namespace);
    env.create_foreign_secret(&foreign).await;
    let operator = env.start_operator();
    env.create_credential("taken", admin_spec()).await.unwrap();
    let stalled = env.wait_condition("taken", "Stalled", Duration::from_secs(20)).await;
    let s = condition(&stalled, "Stalled").unwrap();
    assert_eq!(s.reason, "SecretOwnedByOther");
    assert!(s.message.contains(&foreign), "{}", s.message);
    assert_eq!(
        env.secret_document(&foreign).await,
        serde_json::json!({"owner": "someone else"})
    );
    assert_eq!(env.secret_versions(&foreign).await.len(), 1);

    // Deleting the credential leaves the foreign secret alone.
    env.delete_credential("taken").await;
    env.wait_deleted("taken").await;
    let described = env.describe_secret(&foreign).await.unwrap();
    assert!(described.deleted_date().is_none(), "foreign secret must not be deleted");
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

/// Creates `orders` with Secrets Manager answering its first write with `error`, and waits until
/// it is Degraded.
async fn degraded_by_first_write(env: &TestEnv, error: AwsError) -> DsqlCredential {
    env.aws.inject_error("secretsmanager.CreateSecret", error, 1);
    env.create_credential("orders", admin_spec()).await.unwrap();
    env.wait_condition("orders", "Degraded", Duration::from_secs(20)).await
}

/// Moves the clock to the retry of `degraded` and waits until it is Ready and no longer Degraded;
/// returns its secret's name.
async fn recovered(env: &TestEnv, degraded: &DsqlCredential) -> String {
    let retry = degraded.status.as_ref().unwrap().next_rotation_time.clone().unwrap();
    env.clock.advance_to(retry.0);
    let ready = env.wait_condition("orders", "Ready", Duration::from_secs(60)).await;
    assert_eq!(condition(&ready, "Degraded").unwrap().status, "False");
    ready.status.unwrap().secret_name.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_responses_from_aws_and_the_api_server_degrade_without_crashing() {
    let env = TestEnv::new("hostile").await;
    let operator = env.start_operator();
    // A load balancer's HTML page instead of JSON, on the very first write.
    let degraded = degraded_by_first_write(&env, AwsError::MalformedInternalError).await;
    assert_eq!(condition(&degraded, "Degraded").unwrap().reason, "SecretsManagerError");
    assert_eq!(condition(&degraded, "Ready").unwrap().reason, "NotPublished");

    // The API server fails the status writes for a while: the operator backs off and recovers.
    if let Some(fake) = &env.fake {
        fake.inject_fault(Some("PATCH"), "/dsqlcredentials/orders/status", 500, 3);
    }
    let secret_name = recovered(&env, &degraded).await;
    assert!(!operator.is_finished(), "the operator survived");
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_secrets_manager_response_holds_up_only_its_own_credential() {
    let env = TestEnv::new("slow-aws").await;
    let operator = env.start_operator();
    let gate = env.aws.hold_next("secretsmanager.CreateSecret");
    env.create_credential("slow", admin_spec()).await.unwrap();
    for _ in 0..600 {
        if env.aws.count("secretsmanager.CreateSecret") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        env.aws.count("secretsmanager.CreateSecret"),
        1,
        "the slow call is in flight"
    );

    // While that response hangs, another credential is created, rotated and made Ready.
    env.create_ready("fast", admin_spec()).await;
    let slow = env.credentials().get("slow").await.unwrap();
    assert_eq!(slow.status.and_then(|s| s.rotation_count), None, "still waiting on AWS");

    // The response arrives: the slow credential completes normally, with one version.
    gate.notify_one();
    let slow = env.wait_ready("slow", 1).await;
    let secret = slow.status.unwrap().secret_name.unwrap();
    assert_eq!(env.secret_versions(&secret).await.len(), 1);
    assert!(!operator.is_finished());
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_huge_responses_degrade_without_crashing() {
    let env = TestEnv::new("garbage").await;
    let operator = env.start_operator();
    // Secrets Manager answers the first write with 4 MiB of unterminated JSON.
    let degraded = degraded_by_first_write(&env, AwsError::TruncatedHugeSuccess).await;
    let message = &condition(&degraded, "Degraded").unwrap().message;
    assert!(
        message.len() < 1024,
        "the huge body is not copied into status: {} bytes",
        message.len()
    );
    assert!(message.contains("CreateSecret"), "{message}");

    // A broken proxy in front of the API server: truncated JSON for status writes, a huge
    // non-JSON page for one, and garbage instead of a watch stream.
    if let Some(fake) = &env.fake {
        let truncated = r#"{"apiVersion":"dsql.credentials.dev/v1alpha1","kind":"DsqlCred"#.to_owned();
        fake.inject_garbage(Some("PATCH"), "/dsqlcredentials/orders/status", 200, truncated, 2);
        fake.inject_garbage(
            Some("PATCH"),
            "/dsqlcredentials/orders/status",
            502,
            format!("<html>{}</html>", "x".repeat(8 << 20)),
            1,
        );
        fake.inject_garbage(
            Some("GET"),
            "watch=true",
            200,
            "this is not a watch stream\n".to_owned(),
            2,
        );
        // Make the operator's watch reconnect into the garbage.
        fake.expire_watches();
    }
    let secret_name = recovered(&env, &degraded).await;
    // The watch recovered too: a new credential is picked up.
    env.create_ready("after", admin_spec()).await;
    if let Some(fake) = &env.fake {
        assert_eq!(
            fake.pending_faults(),
            Vec::<String>::new(),
            "every garbage response was served"
        );
    }
    assert!(!operator.is_finished(), "the operator survived");
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_minute_secret_outage_writes_secrets_manager_once_and_then_publishes_that_token() {
    let env = TestEnv::new("secret-outage").await;
    let Some(fake) = env.fake_or_skip("injecting API server faults needs the fake API server") else {
        return;
    };
    let operator = env.start_operator();
    let first = env.create_ready("orders", admin_spec_with_secret("orders-db")).await;
    let status = first.status.clone().unwrap();
    let secret_name = status.secret_name.clone().unwrap();

    // From the next rotation on, every server-side apply of the Secret fails.
    fake.inject_fault(Some("PATCH"), "/secrets/orders-db", 500, 100_000);
    env.aws.clear();
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let failed = env
        .wait_for("orders", Duration::from_secs(20), "Degraded by the Secret write", |c| {
            condition(c, "Degraded").is_some_and(|d| d.status == "True" && d.reason == "KubernetesError")
        })
        .await;
    let outage_end = env.clock.now() + jiff::SignedDuration::from_secs(600);
    let new_version = failed.status.as_ref().unwrap().version_id.clone().unwrap();
    assert_ne!(
        Some(&new_version),
        status.version_id.as_ref(),
        "status records the new Secrets Manager version while the Secret lags"
    );

    // Ten minutes of outage: the clock steps to each backoff retry, so every retry happens.
    env.step_through_failing_retries("orders", outage_end).await;
    env.clock.advance_to(outage_end);
    assert!(env.clock.now() >= outage_end);
    let failed_applies = fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/secrets/orders-db") && r.status == 500)
        .count();
    let put_calls = env.aws.count("secretsmanager.PutSecretValue");
    let versions = env.secret_versions(&secret_name).await.len();
    eprintln!(
        "10-minute Secret outage: {failed_applies} failed Secret applies, {put_calls} PutSecretValue calls, {versions} versions in Secrets Manager (1 before the outage)"
    );
    assert!(failed_applies >= 6, "the backoff retried: {failed_applies} attempts");
    assert_eq!(put_calls, 1, "one Secrets Manager write for the whole outage");
    assert_eq!(env.aws.count("secretsmanager.CreateSecret"), 0);
    assert_eq!(versions, 2, "exactly one new version");

    // The API server heals: the next retry publishes the token written at the outage's start.
    fake.clear_faults();
    let retry = env
        .credentials()
        .get("orders")
        .await
        .unwrap()
        .status
        .unwrap()
        .next_rotation_time
        .unwrap()
        .0;
    env.clock.advance_to(retry);
    let ready = env.wait_ready("orders", 2).await;
    let healed = ready.status.clone().unwrap();
    assert_eq!(healed.version_id.as_deref(), Some(new_version.as_str()));
    assert_eq!(healed.consecutive_failures, 0);
    assert_eq!(condition(&ready, "Degraded").unwrap().status, "False");
    assert_eq!(
        healed.kubernetes_secret.as_ref().unwrap().version_id.as_deref(),
        Some(new_version.as_str())
    );
    let secret = env.secrets().get("orders-db").await.unwrap();
    assert_eq!(
        secret.metadata.annotations.clone().unwrap_or_default()["dsql.credentials.dev/version-id"],
        new_version
    );
    let password = decoded(&secret)["password"].clone();
    assert_eq!(
        password,
        env.secret_document(&secret_name).await["password"].as_str().unwrap(),
        "the Secret carries the token of the one version written"
    );
    verify_dsql_token(
        &password,
        &ExpectedToken::new(ENDPOINT, "us-east-1", true, &test_credentials()),
    )
    .unwrap();
    // Tokens are signed at the rotation's time rounded down to the minute.
    let signed_at = token_query_param(&password, "X-Amz-Date").unwrap();
    assert_eq!(
        signed_at,
        signing_minute(healed.last_rotation_time.unwrap().0)
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string(),
        "minted at the outage's start, not at recovery"
    );
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 1);
    assert_eq!(env.secret_versions(&secret_name).await.len(), 2);

    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
    env.assert_operator_calls_permitted();
}
