//! End to end: `spec.loginCheck` logs in with each new token before publishing it, against a
//! Postgres wire-protocol server over TLS that accepts only valid DSQL tokens for its endpoint
//! and a granted role (tests/support/login_server.rs). A token that logs in is published once; a
//! refused one (expired, role not granted), or an endpoint that cannot be reached (DNS, TCP) or
//! trusted (TLS), degrades the credential with a reason naming the step, writes nothing, and
//! leaves the published token in place; the retry publishes once the login works. A token
//! already in Secrets Manager whose Secret write failed is republished without a second login.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dsql_credential_operator::api::DsqlCredential;
use support::credential::ENDPOINT;
use support::env::{Operator, TestEnv, condition};
use support::login_server::{Login, LoginServer};
use support::secret::decoded;

/// Secrets Manager writes (the only calls that carry a token to AWS).
fn sm_writes(env: &TestEnv) -> usize {
    env.aws.count("secretsmanager.CreateSecret") + env.aws.count("secretsmanager.PutSecretValue")
}

/// The published token in the projected Kubernetes Secret.
async fn projected_password(env: &TestEnv, name: &str) -> Option<String> {
    let secret = env.secrets().get_opt(name).await.unwrap()?;
    decoded(&secret).remove("password")
}

/// Waits until `name` is Degraded=True with `reason` and returns it.
async fn wait_degraded(env: &TestEnv, name: &str, reason: &str) -> DsqlCredential {
    env.wait_for(name, Duration::from_secs(30), &format!("Degraded {reason}"), |c| {
        condition(c, "Degraded").is_some_and(|d| d.status == "True" && d.reason == reason)
    })
    .await
}

/// Moves the clock to the retry time in status until the credential reaches `rotation_count`
/// (bounded), and returns it Ready.
async fn retry_until_rotated(env: &TestEnv, name: &str, rotation_count: i64) -> DsqlCredential {
    for _ in 0..10 {
        let current = env.credentials().get(name).await.unwrap();
        if current.status.as_ref().and_then(|s| s.rotation_count) == Some(rotation_count) {
            break;
        }
        if let Some(retry) = current.status.as_ref().and_then(|s| s.next_rotation_time.clone()) {
            env.clock.advance_to(retry.0);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.wait_ready(name, rotation_count).await
}

fn spec(endpoint: &str, role: &str, ca_bundle: Option<&str>) -> serde_json::Value {
    let mut login_check = serde_json::json!({});
    if let Some(pem) = ca_bundle {
        login_check["caBundle"] = pem.into();
    }
    serde_json::json!({"cluster": {"endpoint": endpoint}, "role": role, "loginCheck": login_check})
}

/// Every token the server received, plus every one written, labelled for the leak scan.
/// A login server for [`ENDPOINT`] granting `admin`, the operator, and credential `orders`
/// checked against it, once it is Ready with its first rotation.
async fn orders_checked_and_ready(env: &TestEnv) -> (LoginServer, Operator, DsqlCredential) {
    let server = LoginServer::start(ENDPOINT, &["admin"], env.clock.clone()).await;
    env.login_resolver.route(ENDPOINT, server.address());
    let operator = env.start_operator();
    let first = env
        .create_ready("orders", spec(ENDPOINT, "admin", Some(server.ca_pem())))
        .await;
    (server, operator, first)
}

fn received(server: &LoginServer) -> Vec<(String, String)> {
    server
        .passwords()
        .into_iter()
        .map(|p| ("the login server".to_owned(), p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_logs_in_is_published_and_a_refused_one_leaves_the_old_one() {
    let env = TestEnv::new("login-ok").await;
    // Valid: checked once, then written once and Ready.
    let (server, operator, first) = orders_checked_and_ready(&env).await;
    let status = first.status.clone().unwrap();
    let secret_name = status.secret_name.clone().unwrap();
    assert_eq!(server.logins(), vec![Login::Accepted { user: "admin".into() }]);
    assert_eq!(sm_writes(&env), 1, "one write for one checked token");
    let published = projected_password(&env, "orders").await.expect("Secret written");
    assert_eq!(
        server.passwords(),
        vec![published.clone()],
        "the token checked is the one published"
    );

    // Expired: the server's clock runs 2h ahead, past the 1h token's expiry.
    env.clear_recorded();
    server.set_clock_skew(Duration::from_secs(2 * 3600));
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let degraded = wait_degraded(&env, "orders", "LoginCheckAuthFailed").await;
    let d = condition(&degraded, "Degraded").unwrap();
    assert!(
        d.message.contains(&format!("{ENDPOINT}:5432"))
            && d.message.contains("28P01")
            && d.message.contains("expired")
            && d.message.contains("retrying at"),
        "{}",
        d.message
    );
    assert_eq!(
        condition(&degraded, "Ready").unwrap().status,
        "True",
        "the old token is still valid"
    );
    assert_eq!(degraded.status.as_ref().unwrap().rotation_count, Some(1));
    assert_eq!(sm_writes(&env), 0, "a refused token is not written");
    assert_eq!(env.secret_document(&secret_name).await["password"], published.as_str());
    assert_eq!(
        projected_password(&env, "orders").await.as_deref(),
        Some(published.as_str())
    );
    assert!(matches!(server.logins().last(), Some(Login::Refused { code, .. }) if code == "28P01"));
    env.assert_event("orders", "RotationFailed: LoginCheckAuthFailed").await;
    let failures = env.metrics.encode();
    assert!(
        failures
            .lines()
            .any(|l| l.starts_with("dsql_operator_rotations_total{result=\"failure\"}") && !l.ends_with(" 0")),
        "counted as a failed rotation:\n{failures}"
    );

    // Recovery: the server's clock is right again; the retry publishes exactly once.
    server.set_clock_skew(Duration::ZERO);
    let recovered = retry_until_rotated(&env, "orders", 2).await;
    assert_eq!(condition(&recovered, "Degraded").unwrap().status, "False");
    assert_eq!(sm_writes(&env), 1, "one write on recovery");
    assert_eq!(env.secret_versions(&secret_name).await.len(), 2);
    let renewed = projected_password(&env, "orders").await.unwrap();
    assert_ne!(renewed, published);
    assert_eq!(
        server.passwords().last(),
        Some(&renewed),
        "the published token logged in"
    );

    env.assert_not_emitted(&received(&server)).await;
    env.assert_no_token_leaks(&[&secret_name]).await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_the_cluster_does_not_grant_is_refused_and_nothing_is_published() {
    let env = TestEnv::new("login-role").await;
    // The server knows the token's IAM identity only as role `writer`.
    let server = LoginServer::start(ENDPOINT, &["writer"], env.clock.clone()).await;
    env.login_resolver.route(ENDPOINT, server.address());
    let operator = env.start_operator();
    env.create_credential("reader", spec(ENDPOINT, "reader", Some(server.ca_pem())))
        .await
        .unwrap();

    let degraded = wait_degraded(&env, "reader", "LoginCheckAuthFailed").await;
    let d = condition(&degraded, "Degraded").unwrap();
    assert!(
        d.message.contains("28000") && d.message.contains("\"reader\""),
        "{}",
        d.message
    );
    assert_eq!(condition(&degraded, "Ready").unwrap().reason, "NotPublished");
    assert_eq!(sm_writes(&env), 0, "nothing written for a refused token");
    assert_eq!(projected_password(&env, "reader").await, None, "no Secret either");
    env.assert_event("reader", "RotationFailed: LoginCheckAuthFailed").await;

    // Granted, but to another IAM identity: the token's signature does not verify (botocore
    // recomputes it with that identity's keys), so it is refused as well.
    server.grant(&["writer", "reader"]);
    server.expect_signer(aws_credential_types::Credentials::new(
        "AKIAOTHERIDENTITY000",
        "otherSecretKeyOfAnotherIdentity000000000",
        None,
        None,
        "another-identity",
    ));
    let retry = degraded.status.unwrap().next_rotation_time.unwrap().0;
    env.clock.advance_to(retry);
    let refused = env
        .wait_for("reader", Duration::from_secs(30), "refused for its signature", |c| {
            condition(c, "Degraded").is_some_and(|d| d.reason == "LoginCheckAuthFailed" && d.message.contains("28P01"))
        })
        .await;
    let message = &condition(&refused, "Degraded").unwrap().message;
    assert!(message.contains("signature differs"), "{message}");
    assert_eq!(sm_writes(&env), 0);

    // With the right identity, the retry's DbConnect token (checked by botocore for a non-admin
    // role) logs in and is written once.
    server.expect_signer(support::moto::test_credentials());
    let ready = retry_until_rotated(&env, "reader", 1).await;
    let secret_name = ready.status.unwrap().secret_name.unwrap();
    assert_eq!(sm_writes(&env), 1);
    assert_eq!(server.logins().last(), Some(&Login::Accepted { user: "reader".into() }));

    env.assert_not_emitted(&received(&server)).await;
    env.assert_no_token_leaks(&[&secret_name]).await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_untrusted_endpoints_name_the_failed_step_and_no_check_without_login_check() {
    let env = TestEnv::new("login-net").await;
    let host = |id: &str| format!("{id}.dsql.us-east-1.on.aws");
    // Trusted only with its CA; a second server whose certificate names another host.
    let server = LoginServer::start(&host("untrusted"), &["admin"], env.clock.clone()).await;
    let misnamed =
        LoginServer::start_with_cert_for(&host("misnamed"), &host("elsewhere"), &["admin"], env.clock.clone()).await;
    let unchecked = LoginServer::start(&host("unchecked"), &["admin"], env.clock.clone()).await;
    let otherdb = LoginServer::start(&host("otherdb"), &["admin"], env.clock.clone()).await;
    env.login_resolver.route(&host("otherdb"), otherdb.address());
    let mut wrong_database = spec(&host("otherdb"), "admin", Some(otherdb.ca_pem()));
    wrong_database["database"] = "orders".into();
    env.login_resolver.route(&host("untrusted"), server.address());
    env.login_resolver.route(&host("misnamed"), misnamed.address());
    env.login_resolver.route(&host("unchecked"), unchecked.address());
    // Bound but not listening: connections are refused, and no one else can take the port.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    env.login_resolver.route(&host("closed"), closed.local_addr().unwrap());

    let operator = env.start_operator();
    let cases = [
        (
            "untrusted",
            spec(&host("untrusted"), "admin", None),
            "LoginCheckTlsFailed",
            "UnknownIssuer",
        ),
        (
            "misnamed",
            spec(&host("misnamed"), "admin", Some(misnamed.ca_pem())),
            "LoginCheckTlsFailed",
            "not valid for name",
        ),
        (
            "closed",
            spec(&host("closed"), "admin", None),
            "LoginCheckConnectFailed",
            "TCP connect",
        ),
        // Logged in, but the database does not exist (SQLSTATE 3D000): not an auth failure.
        ("otherdb", wrong_database, "LoginCheckFailed", "3D000"),
        (
            "unresolvable",
            spec(&host("nowhere"), "admin", None),
            "LoginCheckDnsFailed",
            "does not resolve",
        ),
    ];
    for (name, spec, _, _) in &cases {
        env.create_credential(name, spec.clone()).await.unwrap();
    }
    // Without loginCheck nothing connects, although the endpoint resolves to a server.
    env.create_credential(
        "plain",
        serde_json::json!({"cluster": {"endpoint": host("unchecked")}, "role": "admin"}),
    )
    .await
    .unwrap();

    for (name, _, reason, detail) in &cases {
        let degraded = wait_degraded(&env, name, reason).await;
        let message = &condition(&degraded, "Degraded").unwrap().message;
        assert!(
            message.contains(":5432") && message.contains(detail),
            "{name}: {message}"
        );
        assert_eq!(condition(&degraded, "Ready").unwrap().reason, "NotPublished", "{name}");
        assert_eq!(projected_password(&env, name).await, None, "{name}: no Secret");
    }
    env.wait_ready("plain", 1).await;
    assert_eq!(sm_writes(&env), 1, "only the unchecked credential was written");
    assert_eq!(unchecked.connections(), 0, "no login check without spec.loginCheck");
    assert!(
        server.passwords().is_empty() && misnamed.passwords().is_empty(),
        "no token sent before TLS is verified"
    );
    assert!(
        matches!(otherdb.logins().as_slice(), [Login::Refused { code, .. }, ..] if code == "3D000"),
        "the token itself was accepted: {:?}",
        otherdb.logins()
    );
    env.assert_not_emitted(&received(&otherdb)).await;
    let plain_secret = env
        .credentials()
        .get("plain")
        .await
        .unwrap()
        .status
        .unwrap()
        .secret_name
        .unwrap();
    env.assert_no_token_leaks(&[&plain_secret]).await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_already_in_secrets_manager_is_republished_without_a_second_login() {
    let env = TestEnv::new("login-pending").await;
    let Some(fake) = env.fake_or_skip("injecting API server faults needs the fake API server") else {
        return;
    };
    let (server, operator, first) = orders_checked_and_ready(&env).await;
    let status = first.status.clone().unwrap();
    let secret_name = status.secret_name.clone().unwrap();

    // The next token logs in and reaches Secrets Manager, but the Secret write fails.
    fake.inject_fault(Some("PATCH"), "/secrets/orders", 500, 100_000);
    env.clear_recorded();
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let failed = env
        .wait_for("orders", Duration::from_secs(30), "Degraded by the Secret write", |c| {
            condition(c, "Degraded").is_some_and(|d| d.status == "True" && d.reason == "KubernetesError")
        })
        .await;
    assert_eq!(server.logins().len(), 2, "the new token was checked once");
    assert_eq!(sm_writes(&env), 1);

    // The retry publishes the token already in Secrets Manager: no new token, so no new login.
    fake.clear_faults();
    env.clock
        .advance_to(failed.status.unwrap().next_rotation_time.unwrap().0);
    let republished = env.wait_ready("orders", 2).await;
    assert_eq!(condition(&republished, "Degraded").unwrap().status, "False");
    assert_eq!(server.logins().len(), 2, "no second login for a token already written");
    assert_eq!(sm_writes(&env), 1, "no second write");
    let published = projected_password(&env, "orders").await.unwrap();
    assert_eq!(env.secret_document(&secret_name).await["password"], published.as_str());
    assert_eq!(
        server.passwords().last(),
        Some(&published),
        "the published token is the one checked"
    );

    env.assert_no_token_leaks(&[&secret_name]).await;
    operator.stop().await;
}
