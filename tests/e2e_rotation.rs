//! End to end: the real controller against the fake API server (or a real cluster when
//! DSQL_OPERATOR_E2E_KUBECONFIG is set) and moto. Create → Ready with a verifiable token;
//! rotation; no-op reconciles; restart; forced rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::credential::{ENDPOINT, admin_spec};
use support::env::{TestEnv, condition};
use support::moto::test_credentials;
use support::rbac::RbacMode;
use support::token_check::{ExpectedToken, signing_minute, verify_dsql_token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_publishes_a_verifiable_token_and_reports_ready() {
    let env = TestEnv::with_rbac("create", RbacMode::WatchedNamespace).await;
    let operator = env.start_operator();
    let started = Instant::now();
    let ready = env.create_ready("orders", admin_spec()).await;
    eprintln!("apply -> Ready took {:?}", started.elapsed());

    let status = ready.status.clone().unwrap();
    let secret_name = format!("dsql-e2e/{}/orders", env.namespace);
    assert_eq!(status.secret_name.as_deref(), Some(secret_name.as_str()));
    assert!(
        status
            .secret_arn
            .as_deref()
            .unwrap()
            .starts_with("arn:aws:secretsmanager:us-east-1:")
    );
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert_eq!(status.consecutive_failures, 0);
    let issued = status.last_rotation_time.clone().unwrap().0;
    let expires = status.token_expiration_time.clone().unwrap().0;
    let next = status.next_rotation_time.clone().unwrap().0;
    let signed = signing_minute(issued);
    assert_eq!(
        expires.duration_since(signed).as_secs(),
        3600,
        "default lifetime 1h from the signing minute"
    );
    let renew_at = expires.duration_since(next).as_secs();
    assert!(
        (1200..=1200 + 120).contains(&renew_at),
        "renews 20m (+ jitter ≤ 2m) before expiry, got {renew_at}s"
    );
    assert_eq!(condition(&ready, "Degraded").unwrap().status, "False");
    assert_eq!(condition(&ready, "Stalled").unwrap().status, "False");
    assert!(
        ready
            .metadata
            .finalizers
            .as_ref()
            .unwrap()
            .iter()
            .any(|f| f == "dsql.credentials.dev/secret-cleanup")
    );

    // The secret JSON is the published sample's shape, and the token verifies with botocore.
    let doc = env.secret_document(&secret_name).await;
    let keys: Vec<&str> = doc.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "dbname",
            "engine",
            "expiresAt",
            "host",
            "password",
            "port",
            "region",
            "username"
        ]
    );
    assert_eq!(doc["engine"], "postgres");
    assert_eq!(doc["host"], ENDPOINT);
    assert_eq!(doc["port"], "5432");
    assert_eq!(doc["dbname"], "postgres");
    assert_eq!(doc["username"], "admin");
    assert_eq!(doc["region"], "us-east-1");
    assert_eq!(doc["expiresAt"], expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    let token = doc["password"].as_str().unwrap();
    verify_dsql_token(
        token,
        &ExpectedToken::new(ENDPOINT, "us-east-1", true, &test_credentials()),
    )
    .unwrap();
    assert!(token.contains(&format!("X-Amz-Date={}", signed.strftime("%Y%m%dT%H%M%SZ"))));

    // Ownership tags and the version the status names.
    let described = env.describe_secret(&secret_name).await.unwrap();
    let tags: std::collections::BTreeMap<_, _> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    assert_eq!(
        tags.get("dsql.credentials.dev/managed-by"),
        Some(&"dsql-credential-operator")
    );
    assert_eq!(
        tags.get("dsql.credentials.dev/namespace"),
        Some(&env.namespace.as_str())
    );
    assert_eq!(tags.get("dsql.credentials.dev/name"), Some(&"orders"));
    assert_eq!(
        tags.get("dsql.credentials.dev/uid").copied(),
        ready.metadata.uid.as_deref()
    );
    assert_eq!(
        env.secret_versions(&secret_name).await,
        vec![status.version_id.clone().unwrap()]
    );

    // One rotation = one CreateSecret, no reads.
    assert_eq!(env.aws.count("secretsmanager.CreateSecret"), 1);
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 0);
    assert_eq!(env.aws.count("secretsmanager.DescribeSecret"), 0);
    assert_eq!(env.aws.count("secretsmanager.GetSecretValue"), 0);
    env.assert_event("orders", "Rotated: Published Secrets Manager version")
        .await;

    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_when_due_writes_exactly_one_version_and_a_no_op_writes_nothing() {
    let env = TestEnv::new("rotate").await;
    let operator = env.start_operator();
    let first = env.create_ready("api", serde_json::json!({"cluster": {"identifier": "abcdefghijklmnopqrstuvwxyz", "region": "us-east-1"}, "role": "app_user", "token": {"lifetime": "30m"}, "rotation": {"renewBefore": "10m"}})).await;
    let secret_name = first.status.as_ref().unwrap().secret_name.clone().unwrap();

    // Let the creation settle (finalizer, status, event), then measure a no-op resync.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.clear_recorded();
    env.clock.resync();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.aws.calls(),
        Vec::<String>::new(),
        "a no-op reconcile makes no AWS call"
    );
    if let Some(writes) = env.kube_writes() {
        assert_eq!(
            writes,
            Vec::<String>::new(),
            "a no-op reconcile makes no Kubernetes write"
        );
    }

    // Move time to the planned rotation: exactly one new version, one write, no reads.
    let next = first.status.as_ref().unwrap().next_rotation_time.clone().unwrap().0;
    env.clear_recorded();
    env.clock.advance_to(next);
    let second = env.wait_ready("api", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.aws.calls(), vec!["secretsmanager.PutSecretValue".to_owned()]);
    if let Some(writes) = env.kube_writes() {
        let status_writes = writes.iter().filter(|w| w.ends_with("/status")).count();
        let event_writes = writes.iter().filter(|w| w.contains("/events")).count();
        assert_eq!(status_writes, 1, "one status write per rotation: {writes:?}");
        let secret_writes = writes.iter().filter(|w| w.contains("/secrets/")).count();
        assert_eq!(event_writes, 0, "a routine renewal is not an Event: {writes:?}");
        assert_eq!(secret_writes, 1, "one write of the projected Secret: {writes:?}");
        assert_eq!(writes.len(), 2, "{writes:?}");
        let reads = env
            .operator_requests()
            .unwrap()
            .iter()
            .filter(|r| r.method == "GET" && !r.query.contains("watch"))
            .count();
        assert_eq!(reads, 0, "a steady rotation reads nothing from the API server");
    }
    let versions = env.secret_versions(&secret_name).await;
    assert_eq!(versions.len(), 2);
    let s2 = second.status.as_ref().unwrap();
    assert_ne!(s2.version_id, first.status.as_ref().unwrap().version_id);
    assert!(versions.contains(s2.version_id.as_ref().unwrap()));
    let doc = env.secret_document(&secret_name).await;
    verify_dsql_token(
        doc["password"].as_str().unwrap(),
        &ExpectedToken::new(ENDPOINT, "us-east-1", false, &test_credentials()),
    )
    .unwrap();
    assert!(doc["password"].as_str().unwrap().contains("Action=DbConnect&"));
    assert_eq!(doc["username"], "app_user");

    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_life_continues_from_status_without_a_new_version() {
    let env = TestEnv::new("restart").await;
    let operator = env.start_operator();
    let before = env
        .create_ready(
            "reports",
            serde_json::json!({"cluster": {"endpoint": ENDPOINT}, "role": "reporting"}),
        )
        .await;
    let secret_name = before.status.as_ref().unwrap().secret_name.clone().unwrap();
    operator.stop().await;

    tokio::time::sleep(Duration::from_millis(300)).await;
    env.clear_recorded();
    env.clock.advance(Duration::from_secs(15 * 60)); // mid-life, nothing due
    let operator = env.start_operator();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.credentials().get("reports").await.unwrap();
    assert_eq!(after.status, before.status, "status untouched by the restart");
    assert_eq!(env.aws.calls(), Vec::<String>::new());
    if let Some(writes) = env.kube_writes() {
        assert_eq!(writes, Vec::<String>::new());
    }
    assert_eq!(env.secret_versions(&secret_name).await.len(), 1);
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotate_annotation_forces_one_rotation_and_is_remembered() {
    let env = TestEnv::with_rbac("forced", RbacMode::WatchedNamespace).await;
    let operator = env.start_operator();
    env.create_ready("ops", admin_spec()).await;
    env.clock.advance(Duration::from_secs(120)); // past the one-per-minute limit
    env.annotate("ops", "dsql.credentials.dev/rotate", "2026-11-23T17:00:00Z")
        .await;
    let forced = env.wait_ready("ops", 2).await;
    assert_eq!(
        forced.status.as_ref().unwrap().last_forced_rotation.as_deref(),
        Some("2026-11-23T17:00:00Z")
    );

    // The same value again does nothing.
    env.clear_recorded();
    env.clock.resync();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 0);
    let secret_name = forced.status.as_ref().unwrap().secret_name.clone().unwrap();
    assert_eq!(env.secret_versions(&secret_name).await.len(), 2);
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_rotation_within_the_minute_is_deferred_visibly_then_happens_once() {
    const ANNOTATION: &str = "dsql.credentials.dev/rotate";
    let env = TestEnv::new("deferred").await;
    let operator = env.start_operator();
    let first = env.create_ready("ops", admin_spec()).await;
    let last = first.status.as_ref().unwrap().last_rotation_time.clone().unwrap().0;
    let until = (last + jiff::SignedDuration::from_secs(60))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();

    // Asked for at once: within the minute, so it waits, and says so.
    env.annotate("ops", ANNOTATION, "again").await;
    let expected = format!("Rotation requested by {ANNOTATION}=\"again\" deferred until {until}");
    let deferred = env
        .wait_for("ops", Duration::from_secs(15), "deferred", |c| {
            condition(c, "Ready").is_some_and(|r| r.message.contains("deferred until"))
        })
        .await;
    let ready = condition(&deferred, "Ready").unwrap();
    assert!(ready.message.contains(&expected), "{}", ready.message);
    assert_eq!(ready.status, "True", "the current token is still good");
    assert_eq!(deferred.status.as_ref().unwrap().rotation_count, Some(1));
    env.assert_event("ops", &format!("RotationDeferred: {expected}")).await;

    // No-op reconciles within the minute neither rotate nor announce it again.
    env.clear_recorded();
    for _ in 0..3 {
        env.clock.resync();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 0);
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(env.kube.clone(), &env.namespace);
    let deferrals: Vec<_> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("RotationDeferred"))
        .collect();
    assert_eq!(deferrals.len(), 1, "{deferrals:?}");
    assert!(
        deferrals[0].series.is_none(),
        "published once, not repeated: {:?}",
        deferrals[0].series
    );

    // The minute passes: one rotation, and the note goes.
    env.clock.advance(Duration::from_secs(61));
    let rotated = env.wait_ready("ops", 2).await;
    let status = rotated.status.as_ref().unwrap();
    assert_eq!(status.last_forced_rotation.as_deref(), Some("again"));
    assert!(
        !condition(&rotated, "Ready").unwrap().message.contains("deferred"),
        "{}",
        condition(&rotated, "Ready").unwrap().message
    );
    env.clock.resync();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 1);
    let secret_name = status.secret_name.clone().unwrap();
    assert_eq!(env.secret_versions(&secret_name).await.len(), 2);
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}
