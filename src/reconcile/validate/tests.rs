#![allow(clippy::unwrap_used)]
use super::*;
use crate::api::{ClusterRef, DsqlCredentialSpec};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn credential(spec: serde_json::Value) -> DsqlCredential {
    let mut full = serde_json::json!({
        "apiVersion": "dsql.credentials.dev/v1alpha1",
        "kind": "DsqlCredential",
        "metadata": {"name": "orders", "namespace": "shop", "uid": "u1"},
        "spec": {"cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}, "role": "admin"}
    });
    if let (Some(base), Some(extra)) = (full["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(full).unwrap()
}

/// An operator whose access policy lets namespace `shop` mint anything, so these tests see the
/// spec checks alone.
fn config() -> OperatorConfig {
    OperatorConfig {
        access_policy: crate::policy::AccessPolicy::parse(
            "rules:\n  - {name: shop, namespaces: [shop], allowAdmin: true, secretNames: ['*'], signingRoles: ['*']}\n",
        )
        .unwrap(),
        ..OperatorConfig::default()
    }
}

fn check(spec: serde_json::Value) -> Result<ValidCredential, InvalidSpec> {
    validate(&credential(spec), &config(), t("2026-11-23T17:00:00Z"))
}

#[test]
fn defaults_resolve_to_a_complete_credential() {
    let valid = check(serde_json::json!({})).unwrap();
    assert_eq!(valid.token.hostname, "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws");
    assert_eq!(valid.token.region, "us-east-1");
    assert!(valid.token.admin);
    assert_eq!(valid.token.lifetime, Duration::from_secs(3600));
    assert_eq!(valid.renew_before, Duration::from_secs(1200));
    assert_eq!(valid.secret_name, "dsql/shop/orders");
    assert_eq!(valid.connection.dbname, "postgres");
    assert_eq!(valid.recovery_window_days, 7);
}

#[test]
fn identifier_and_region_build_the_endpoint_and_custom_roles_are_not_admin() {
    let valid = check(serde_json::json!({
        "cluster": {"identifier": "abcdefghijklmnopqrstuvwxyz", "region": "eu-west-2"},
        "role": "app_reader"
    }))
    .unwrap();
    assert_eq!(valid.token.hostname, "abcdefghijklmnopqrstuvwxyz.dsql.eu-west-2.on.aws");
    assert!(!valid.token.admin);
    assert_eq!(valid.connection.username, "app_reader");
}

#[test]
fn rejects_bad_input_with_a_message_naming_the_field() {
    let cases = [
        (serde_json::json!({"cluster": {}}), "exactly one of cluster.endpoint"),
        (
            serde_json::json!({"cluster": {"identifier": "abc"}}),
            "cluster.region is required",
        ),
        (
            serde_json::json!({"cluster": {"endpoint": "db.example.com"}}),
            "not an Aurora DSQL endpoint",
        ),
        (
            serde_json::json!({"cluster": {"endpoint": "abc.dsql.us-east-1.on.aws", "region": "us-west-2"}}),
            "does not match",
        ),
        (serde_json::json!({"token": {"lifetime": "5m"}}), "token.lifetime is 5m"),
        (
            serde_json::json!({"token": {"lifetime": "169h"}}),
            "between 15m and 168h",
        ),
        (serde_json::json!({"token": {"lifetime": "-1h"}}), "token.lifetime"),
        (
            serde_json::json!({"token": {"lifetime": "2h-1h"}}),
            "token.lifetime: \"2h-1h\" is not a duration",
        ),
        (
            serde_json::json!({"rotation": {"renewBefore": "1h junk"}}),
            "rotation.renewBefore",
        ),
        (
            serde_json::json!({"rotation": {"renewBefore": "1h"}}),
            "shorter than token.lifetime",
        ),
        (serde_json::json!({"rotation": {"renewBefore": "55m"}}), "under 10m"),
        (
            serde_json::json!({"secretsManager": {"name": "bad name!"}}),
            "Secrets Manager name",
        ),
        (
            serde_json::json!({"secretsManager": {"recoveryWindowDays": 3}}),
            "recoveryWindowDays",
        ),
        (
            serde_json::json!({"secretsManager": {"tags": {"aws:owner": "x"}}}),
            "reserved prefix",
        ),
    ];
    for (spec, expected) in cases {
        let err = check(spec.clone()).unwrap_err();
        assert_eq!(err.reason, ConditionReason::InvalidSpec, "{spec}");
        assert!(
            err.message.contains(expected),
            "{spec}: {:?} lacks {expected:?}",
            err.message
        );
    }
}

#[test]
fn bad_schedules_are_reported_as_invalid_schedules() {
    for schedule in ["rate(5 minutes)", "cron(0 10 * * * *)", "every hour"] {
        let err = check(serde_json::json!({"rotation": {"schedule": schedule}})).unwrap_err();
        assert_eq!(
            err.reason,
            ConditionReason::InvalidSchedule,
            "{schedule}: {}",
            err.message
        );
    }
    assert!(
        check(serde_json::json!({"rotation": {"schedule": "rate(30 minutes)"}}))
            .unwrap()
            .schedule
            .is_some()
    );
}

#[test]
fn the_secret_name_recorded_in_status_wins() {
    let mut c = credential(serde_json::json!({"secretsManager": {"name": "custom/name"}}));
    assert_eq!(
        validate(&c, &config(), t("2026-11-23T17:00:00Z")).unwrap().secret_name,
        "custom/name"
    );
    c.status = Some(crate::api::DsqlCredentialStatus {
        secret_name: Some("from/status".into()),
        ..Default::default()
    });
    assert_eq!(
        validate(&c, &config(), t("2026-11-23T17:00:00Z")).unwrap().secret_name,
        "from/status"
    );
}

#[test]
fn spec_types_round_trip() {
    let spec = DsqlCredentialSpec {
        cluster: ClusterRef {
            endpoint: Some("a.dsql.us-east-1.on.aws".into()),
            ..Default::default()
        },
        role: "admin".into(),
        database: "postgres".into(),
        token: Default::default(),
        rotation: Default::default(),
        secrets_manager: Default::default(),
        kubernetes_secret: Default::default(),
        secret_provider_class: Default::default(),
        rollout_restart: Vec::new(),
        login_check: None,
    };
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(json["token"]["lifetime"], "1h");
    let back: DsqlCredentialSpec = serde_json::from_value(json).unwrap();
    assert_eq!(back, spec);
}

#[test]
fn projections_default_to_a_secret_named_after_the_credential() {
    let valid = check(serde_json::json!({})).unwrap();
    assert_eq!(
        valid.kubernetes_secret.as_ref().map(|s| s.name.as_str()),
        Some("orders")
    );
    assert_eq!(valid.secret_provider_class, None);
    let valid = check(serde_json::json!({
        "kubernetesSecret": {"enabled": false},
        "secretProviderClass": {"enabled": true, "name": "orders-spc"},
        "rolloutRestart": [{"kind": "Deployment", "name": "api"}, {"kind": "Deployment", "name": "api"}]
    }))
    .unwrap();
    assert_eq!(valid.kubernetes_secret, None);
    assert_eq!(valid.secret_provider_class.as_deref(), Some("orders-spc"));
    assert_eq!(valid.rollout_restart.len(), 1, "duplicates are restarted once");
}

#[test]
fn the_access_policy_is_applied_last_and_stalls_with_policy_denied() {
    let denied = validate(
        &credential(serde_json::json!({})),
        &OperatorConfig::default(),
        t("2026-11-23T17:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(denied.reason, ConditionReason::PolicyDenied);
    assert!(
        denied
            .message
            .contains("rule \"default\" does not allow the admin role"),
        "{}",
        denied.message
    );
    // Spec errors are reported before the policy is consulted.
    let invalid = validate(
        &credential(serde_json::json!({"token": {"lifetime": "1m"}})),
        &OperatorConfig::default(),
        t("2026-11-23T17:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(invalid.reason, ConditionReason::InvalidSpec);
    let custom_role = validate(
        &credential(serde_json::json!({"role": "app_user"})),
        &OperatorConfig::default(),
        t("2026-11-23T17:00:00Z"),
    )
    .unwrap();
    assert!(!custom_role.token.admin);
}

#[test]
fn a_signing_role_is_checked_and_caps_the_lifetime_at_an_hour() {
    let arn = "arn:aws:iam::123456789012:role/dsql/shop-orders";
    let valid = check(serde_json::json!({"token": {"lifetime": "45m", "signingRoleArn": arn}})).unwrap();
    let role = valid.token.signing_role.unwrap();
    assert_eq!(role.role_arn, arn);
    assert_eq!((role.namespace.as_str(), role.credential.as_str()), ("shop", "orders"));
    assert_eq!(role.session_name(), "dsql-shop-orders");

    let long = check(serde_json::json!({"token": {"lifetime": "2h", "signingRoleArn": arn}})).unwrap_err();
    assert!(long.message.contains("at most 1h"), "{}", long.message);
    for bad in [
        "arn:aws:iam::12345678901:role/x",
        "arn:aws:iam::123456789012:user/x",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:sts::123456789012:role/x",
        "arn:aws:iam::123456789012:role/x y",
        "role/x",
    ] {
        let err = check(serde_json::json!({"token": {"signingRoleArn": bad}})).unwrap_err();
        assert!(err.message.contains("is not an IAM role ARN"), "{bad}: {}", err.message);
    }
    assert!(check(serde_json::json!({"token": {"signingRoleArn": "arn:aws-cn:iam::123456789012:role/x"}})).is_ok());
}

#[test]
fn login_check_is_off_unless_present_and_enabled() {
    assert!(check(serde_json::json!({})).unwrap().login_check.is_none());
    assert!(
        check(serde_json::json!({"loginCheck": {"enabled": false}}))
            .unwrap()
            .login_check
            .is_none()
    );
    let on = check(serde_json::json!({"loginCheck": {}}))
        .unwrap()
        .login_check
        .unwrap();
    assert!(on.ca_bundle.is_none(), "no caBundle: the bundled roots");
}

#[test]
fn a_login_check_ca_bundle_that_does_not_parse_is_invalid_spec_naming_the_field() {
    for bad in [
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ] {
        let err = check(serde_json::json!({"loginCheck": {"caBundle": bad}})).unwrap_err();
        assert_eq!(err.reason, ConditionReason::InvalidSpec, "{bad:?}");
        assert!(err.message.starts_with("loginCheck.caBundle "), "{}", err.message);
    }
}
