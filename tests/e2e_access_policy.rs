#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The cluster administrator's access policy and per-credential signing roles, end to end: a
//! denied credential is Stalled with `PolicyDenied` naming the rule, and nothing is minted or
//! written for it; an allowed signing role signs the token with a session tagged with the
//! credential's namespace and name.

mod support;

use std::time::Duration;

use dsql_credential_operator::policy::AccessPolicy;
use serde_json::json;
use support::aws_proxy::AwsError;
use support::credential::ENDPOINT;
use support::env::{TestEnv, condition};
use support::token_check::{ExpectedToken, token_query_param, verify_dsql_token};

const OTHER_ENDPOINT: &str = "zzzzzzzzzzzzzzzzzzzzzzzzzz.dsql.us-east-1.on.aws";
const SIGNING_ROLE: &str = "arn:aws:iam::123456789012:role/dsql-signing-orders";

/// What a platform team's namespace typically gets: one cluster, application roles, its own
/// secret path, its own signing roles; no admin.
fn team_policy(namespace: &str, allow_admin: bool) -> AccessPolicy {
    AccessPolicy::parse(&format!(
        "rules:
  - name: team
    namespaces: [{namespace}]
    clusters: [abcdefghijklmnopqrstuvwxyz]
    roles: ['app_*']
    allowAdmin: {allow_admin}
    signingRoles: ['arn:aws:iam::123456789012:role/dsql-signing-*']
"
    ))
    .unwrap()
}

fn spec(patch: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"cluster": {"endpoint": ENDPOINT}, "role": "app_reader"});
    for (k, v) in patch.as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_credentials_stall_with_policy_denied_and_nothing_is_minted_or_written() {
    let mut env = TestEnv::new("policy-denied").await;
    env.config.access_policy = team_policy(&env.namespace, false);
    let operator = env.start_operator();

    env.create_ready("allowed", spec(json!({}))).await;
    let allowed_secret = format!("dsql-e2e/{}/allowed", env.namespace);

    let denied = [
        (
            "admin",
            spec(json!({"role": "admin"})),
            "rule \"team\" does not allow the admin role",
        ),
        (
            "reporting",
            spec(json!({"role": "reporting"})),
            "rule \"team\" does not allow role \"reporting\"",
        ),
        (
            "other-cluster",
            spec(json!({"cluster": {"endpoint": OTHER_ENDPOINT}})),
            "does not allow cluster \"zzzzzzzzzzzzzzzzzzzzzzzzzz\"",
        ),
        (
            "squatter",
            spec(json!({"secretsManager": {"name": "dsql-e2e/other-namespace/victim"}})),
            "does not allow secret name \"dsql-e2e/other-namespace/victim\"",
        ),
        (
            "outside-prefix",
            spec(json!({"secretsManager": {"name": "prod/payments/db"}})),
            "does not allow secret name \"prod/payments/db\"",
        ),
        (
            "foreign-signer",
            spec(
                json!({"token": {"lifetime": "30m", "signingRoleArn": "arn:aws:iam::123456789012:role/platform-admin"}}),
            ),
            "does not allow signing role",
        ),
    ];
    env.aws.clear();
    for (name, spec, _) in &denied {
        env.create_credential(name, spec.clone()).await.unwrap();
    }
    for (name, _, message) in &denied {
        let c = env
            .wait_for(name, Duration::from_secs(30), "Stalled/PolicyDenied", |c| {
                condition(c, "Stalled").is_some_and(|s| s.status == "True" && s.reason == "PolicyDenied")
            })
            .await;
        let stalled = condition(&c, "Stalled").unwrap();
        assert!(stalled.message.contains(message), "{name}: {}", stalled.message);
        assert_eq!(condition(&c, "Ready").unwrap().status, "False", "{name}");
        let status = c.status.unwrap();
        assert_eq!(status.rotation_count, None, "{name}: nothing was rotated");
        assert_eq!(status.secret_arn, None, "{name}: no secret was written");
        env.assert_event(name, "PolicyDenied").await;
    }
    // Nothing was minted (no AssumeRole) or written for any of them.
    assert_eq!(
        env.aws.calls(),
        Vec::<String>::new(),
        "no AWS call for a denied credential"
    );
    for missing in ["dsql-e2e/other-namespace/victim", "prod/payments/db"] {
        assert!(
            env.describe_secret(missing).await.is_none(),
            "{missing} was never created"
        );
    }
    assert_eq!(env.secret_versions(&allowed_secret).await.len(), 1);

    // The administrator widens the policy (the chart restarts the operator on a policy change):
    // the admin credential is minted, the others stay denied.
    operator.stop().await;
    env.config.access_policy = team_policy(&env.namespace, true);
    let operator = env.start_operator();
    env.wait_ready("admin", 1).await;
    let reporting = env
        .wait_for("reporting", Duration::from_secs(10), "still denied", |c| {
            condition(c, "Stalled").is_some_and(|s| s.reason == "PolicyDenied")
        })
        .await;
    assert_eq!(reporting.status.unwrap().rotation_count, None);

    assert!(!operator.is_finished());
    operator.stop().await;
    let admin_secret = format!("dsql-e2e/{}/admin", env.namespace);
    env.assert_no_token_leaks(&[&allowed_secret, &admin_secret]).await;
}

/// The value of `<name>...</name>` in an STS XML response.
fn xml_value(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<{name}>"))
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + name.len()
        + 2;
    let end = start + xml[start..].find(&format!("</{name}>")).unwrap();
    xml[start..end].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_role_signs_the_token_with_a_session_tagged_for_the_credential() {
    let mut env = TestEnv::new("signing-role").await;
    env.config.access_policy = team_policy(&env.namespace, false);
    let operator = env.start_operator();

    let c = env
        .create_ready(
            "orders",
            spec(json!({"token": {"lifetime": "30m", "signingRoleArn": SIGNING_ROLE}})),
        )
        .await;

    // One AssumeRole for the rotation, naming the role, the credential and its tags.
    let exchanges = env.aws.exchanges("AssumeRole");
    assert_eq!(exchanges.len(), 1, "{:?}", env.aws.calls());
    let request: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(exchanges[0].request.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(request["RoleArn"], SIGNING_ROLE);
    assert_eq!(request["RoleSessionName"], format!("dsql-{}-orders", env.namespace));
    assert_eq!(request["DurationSeconds"], "1800");
    assert_eq!(request["Tags.member.1.Key"], "dsql-namespace");
    assert_eq!(request["Tags.member.1.Value"], env.namespace);
    assert_eq!(request["Tags.member.2.Key"], "dsql-credential");
    assert_eq!(request["Tags.member.2.Value"], "orders");

    // The token recomputes with botocore from the session's credentials, not the operator's.
    let response = &exchanges[0].response;
    let session = aws_credential_types::Credentials::new(
        xml_value(response, "AccessKeyId"),
        xml_value(response, "SecretAccessKey"),
        Some(xml_value(response, "SessionToken")),
        None,
        "moto AssumeRole",
    );
    let secret_name = c.status.as_ref().unwrap().secret_name.clone().unwrap();
    let doc = env.secret_document(&secret_name).await;
    let token = doc["password"].as_str().unwrap();
    verify_dsql_token(token, &ExpectedToken::new(ENDPOINT, "us-east-1", false, &session)).unwrap();
    let credential_scope = token_query_param(token, "X-Amz-Credential").unwrap();
    assert!(
        credential_scope.starts_with(session.access_key_id()),
        "signed by the session"
    );

    // The recorded expiry is no later than the session's.
    let session_expiry: jiff::Timestamp = xml_value(response, "Expiration").parse().unwrap();
    let expires = c.status.as_ref().unwrap().token_expiration_time.as_ref().unwrap().0;
    assert!(
        expires <= session_expiry,
        "{expires} after the session's {session_expiry}"
    );

    assert!(!operator.is_finished());
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_pointing_at_another_credentials_secret_is_not_written_through() {
    let mut env = TestEnv::new("status-tamper").await;
    env.config.access_policy = team_policy(&env.namespace, false);
    let operator = env.start_operator();
    let victim = env.create_ready("victim", spec(json!({}))).await.status.unwrap();
    let attacker = env.create_ready("attacker", spec(json!({}))).await.status.unwrap();

    // Someone allowed to write status points the attacker's record at the victim's secret.
    let tampered = json!({"status": {"secretArn": victim.secret_arn.clone().unwrap()}});
    env.credentials()
        .patch_status(
            "attacker",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&tampered),
        )
        .await
        .unwrap();
    env.clock.advance(Duration::from_secs(120));
    env.annotate("attacker", "dsql.credentials.dev/rotate", "tampered")
        .await;
    let after = env.wait_ready("attacker", 2).await.status.unwrap();

    let victim_secret = victim.secret_name.unwrap();
    let attacker_secret = attacker.secret_name.unwrap();
    assert_eq!(
        env.secret_versions(&victim_secret).await.len(),
        1,
        "the victim's secret is untouched"
    );
    assert_eq!(env.secret_versions(&attacker_secret).await.len(), 2);
    assert_eq!(
        after.secret_arn, attacker.secret_arn,
        "the record points at its own secret again"
    );
    assert!(!operator.is_finished());
    operator.stop().await;
    env.assert_no_token_leaks(&[&victim_secret, &attacker_secret]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_role_that_cannot_be_assumed_degrades_and_writes_nothing() {
    let mut env = TestEnv::new("signing-denied").await;
    env.config.access_policy = team_policy(&env.namespace, false);
    let operator = env.start_operator();
    env.aws.inject_error("AssumeRole", AwsError::StsAccessDenied, 1);
    env.create_credential(
        "orders",
        spec(json!({"token": {"lifetime": "30m", "signingRoleArn": SIGNING_ROLE}})),
    )
    .await
    .unwrap();
    let c = env.wait_condition("orders", "Degraded", Duration::from_secs(20)).await;
    let degraded = condition(&c, "Degraded").unwrap();
    assert_eq!(degraded.reason, "AccessDenied");
    assert!(
        degraded.message.contains(SIGNING_ROLE) && degraded.message.contains("STS AssumeRole failed"),
        "{}",
        degraded.message
    );
    assert_eq!(
        env.aws.count("secretsmanager.CreateSecret"),
        0,
        "nothing written without a token"
    );
    env.assert_event("orders", "RotationFailed").await;

    // The retry assumes the role and publishes.
    let retry = c.status.as_ref().unwrap().next_rotation_time.clone().unwrap();
    env.clock.advance_to(retry.0);
    let ready = env.wait_condition("orders", "Ready", Duration::from_secs(30)).await;
    assert_eq!(env.aws.count("AssumeRole"), 2);
    let secret_name = ready.status.unwrap().secret_name.unwrap();
    assert!(!operator.is_finished());
    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}
