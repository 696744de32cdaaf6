#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const PLACEHOLDERS: Placeholders<'static> = Placeholders { prefix: "dsql" };

fn request<'a>(namespace: &'a str, role: &'a str, secret_name: &'a str) -> AccessRequest<'a> {
    AccessRequest {
        namespace,
        name: "orders",
        cluster_identifier: "abcdefghijklmnopqrstuvwxyz",
        cluster_endpoint: "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
        role,
        secret_name,
        signing_role: None,
    }
}

#[test]
fn glob_matches_stars_and_question_marks_only() {
    assert!(glob_match("*", ""));
    assert!(glob_match("*", "any/thing"));
    assert!(glob_match("team-*", "team-a"));
    assert!(!glob_match("team-*", "teams"));
    assert!(glob_match("dsql/shop/*", "dsql/shop/a/b"));
    assert!(!glob_match("dsql/shop/*", "dsql/shop-prod/a"));
    assert!(glob_match("a?c", "abc"));
    assert!(!glob_match("a?c", "ac"));
    assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
    assert!(!glob_match("*a*b*c*", "xxaxxcxxbxx"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exactly"));
    assert!(!glob_match("", "x"));
    assert!(glob_match("ünï*", "ünïcode"));
    // Brackets and regex syntax are literal.
    assert!(glob_match("[a].+", "[a].+"));
    assert!(!glob_match("[a]", "a"));
}

#[test]
fn glob_stays_fast_on_hostile_input() {
    let text = "a".repeat(4000);
    let pattern = format!("{}b", "*a".repeat(200));
    assert!(!glob_match(&pattern, &text));
}

#[test]
fn the_default_policy_denies_admin_and_confines_secret_names_to_the_namespace() {
    let policy = AccessPolicy::default();
    assert_eq!(
        policy.authorize(&request("shop", "app_user", "dsql/shop/orders"), PLACEHOLDERS),
        Ok(())
    );
    let admin = policy
        .authorize(&request("shop", "admin", "dsql/shop/orders"), PLACEHOLDERS)
        .unwrap_err();
    assert_eq!(
        admin,
        "denied by the operator's access policy: rule \"default\" does not allow the admin role (allowAdmin is false)"
    );
    let squat = policy
        .authorize(&request("shop", "app_user", "dsql/billing/orders"), PLACEHOLDERS)
        .unwrap_err();
    assert!(
        squat.contains("does not allow secret name \"dsql/billing/orders\" (secretNames: dsql/shop/*)"),
        "{squat}"
    );
    let outside = policy
        .authorize(&request("shop", "app_user", "prod/db"), PLACEHOLDERS)
        .unwrap_err();
    assert!(outside.contains("secret name \"prod/db\""), "{outside}");
    let signed = AccessRequest {
        signing_role: Some("arn:aws:iam::123456789012:role/x"),
        ..request("shop", "app_user", "dsql/shop/orders")
    };
    let unsigned_only = policy.authorize(&signed, PLACEHOLDERS).unwrap_err();
    assert!(unsigned_only.contains("signingRoles: none"), "{unsigned_only}");
}

const POLICY: &str = r#"
rules:
  - name: payments
    namespaces: [payments, "payments-*"]
    clusters: [abcdefghijklmnopqrstuvwxyz]
    roles: ["pay_*"]
    secretNames: ["{prefix}/{namespace}/*", "shared/payments/{name}"]
    signingRoles: ["arn:aws:iam::123456789012:role/dsql-{namespace}-*"]
  - name: platform-admins
    namespaces: [platform]
    allowAdmin: true
    requireSigningRole: true
    signingRoles: ["arn:aws:iam::123456789012:role/dsql-admin"]
"#;

#[test]
fn rules_grant_by_namespace_cluster_role_secret_and_signing_role() {
    let policy = AccessPolicy::parse(POLICY).unwrap();
    let ok = request("payments-eu", "pay_reader", "dsql/payments-eu/orders");
    assert_eq!(policy.authorize(&ok, PLACEHOLDERS), Ok(()));
    let shared = request("payments", "pay_reader", "shared/payments/orders");
    assert_eq!(policy.authorize(&shared, PLACEHOLDERS), Ok(()));
    let role = policy
        .authorize(&request("payments", "app", "dsql/payments/orders"), PLACEHOLDERS)
        .unwrap_err();
    assert!(
        role.contains("rule \"payments\" does not allow role \"app\" (roles: pay_*)"),
        "{role}"
    );
    let cluster = AccessRequest {
        cluster_identifier: "zzzz",
        cluster_endpoint: "zzzz.dsql.us-east-1.on.aws",
        ..ok
    };
    let cluster = policy.authorize(&cluster, PLACEHOLDERS).unwrap_err();
    assert!(cluster.contains("does not allow cluster \"zzzz\""), "{cluster}");
    let own_role = AccessRequest {
        signing_role: Some("arn:aws:iam::123456789012:role/dsql-payments-eu-reader"),
        ..ok
    };
    assert_eq!(policy.authorize(&own_role, PLACEHOLDERS), Ok(()));
    let other_role = AccessRequest {
        signing_role: Some("arn:aws:iam::123456789012:role/dsql-platform-reader"),
        ..ok
    };
    let other_role = policy.authorize(&other_role, PLACEHOLDERS).unwrap_err();
    assert!(
        other_role.contains("signingRoles: arn:aws:iam::123456789012:role/dsql-payments-eu-*"),
        "{other_role}"
    );

    let uncovered = policy
        .authorize(&request("shop", "pay_reader", "dsql/shop/orders"), PLACEHOLDERS)
        .unwrap_err();
    assert!(
        uncovered.contains("no rule of the operator's access policy covers namespace \"shop\""),
        "{uncovered}"
    );

    let admin = request("platform", "admin", "dsql/platform/orders");
    let unsigned = policy.authorize(&admin, PLACEHOLDERS).unwrap_err();
    assert!(
        unsigned.contains("rule \"platform-admins\" requires token.signingRoleArn"),
        "{unsigned}"
    );
    let signed = AccessRequest {
        signing_role: Some("arn:aws:iam::123456789012:role/dsql-admin"),
        ..admin
    };
    assert_eq!(policy.authorize(&signed, PLACEHOLDERS), Ok(()));
}

#[test]
fn every_covering_rule_is_named_in_a_denial() {
    let policy = AccessPolicy::parse(
        "rules:\n  - {name: a, namespaces: ['*'], roles: [x]}\n  - {name: b, namespaces: [shop], roles: [y]}\n",
    )
    .unwrap();
    let denied = policy
        .authorize(&request("shop", "z", "dsql/shop/orders"), PLACEHOLDERS)
        .unwrap_err();
    assert!(
        denied.contains(
            "rule \"a\" does not allow role \"z\" (roles: x); rule \"b\" does not allow role \"z\" (roles: y)"
        ),
        "{denied}"
    );
}

#[test]
fn placeholders_in_a_name_cannot_widen_a_pattern() {
    // A credential named "*" must not turn "{name}" into a wildcard.
    let policy = AccessPolicy::parse("rules:\n  - {name: a, namespaces: ['*'], secretNames: ['x/{name}']}\n").unwrap();
    let star_name = AccessRequest {
        name: "*",
        ..request("shop", "app", "x/anything")
    };
    assert!(policy.authorize(&star_name, PLACEHOLDERS).is_err());
}

#[test]
fn surprising_policies_are_refused_when_loaded() {
    let cases = [
        ("rules:\n  - {name: a, namespaces: []}\n", "namespaces is empty"),
        (
            "rules:\n  - {name: a, namespaces: [x]}\n  - {name: a, namespaces: [y]}\n",
            "two rules are named \"a\"",
        ),
        (
            "rules:\n  - {name: a, namespaces: [x], roles: [admin]}\n",
            "allowAdmin: true",
        ),
        ("rules:\n  - {name: '', namespaces: [x]}\n", "every rule needs a name"),
        (
            "rules:\n  - {name: a, namespaces: [x], requireSigningRole: true}\n",
            "signingRoles is empty",
        ),
        ("rules:\n  - {name: a, namespaces: [x], allowAdmn: true}\n", "allowAdmn"),
        ("rules:\n  - {name: a, namespaces: ['']}\n", "empty pattern"),
        ("rules: nope\n", "rules"),
    ];
    for (text, expected) in cases {
        let error = AccessPolicy::parse(text).unwrap_err();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
    assert_eq!(AccessPolicy::parse("rules: []\n").unwrap().rules.len(), 0);
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    let missing = AccessPolicy::load(&path).unwrap_err().to_string();
    assert!(missing.contains("policy.yaml"), "{missing}");
    std::fs::write(&path, POLICY).unwrap();
    assert_eq!(AccessPolicy::load(&path).unwrap().rules.len(), 2);
    std::fs::write(&path, "rules:\n  - {name: a}\n").unwrap();
    let invalid = AccessPolicy::load(&path).unwrap_err().to_string();
    assert!(
        invalid.contains("policy.yaml is not valid") && invalid.contains("namespaces"),
        "{invalid}"
    );
}

#[test]
fn the_charts_default_policy_is_the_built_in_default() {
    let values_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/dsql-credential-operator/values.yaml");
    let values: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(values_path).unwrap()).unwrap();
    let policy: AccessPolicy = serde_json::from_value(values["accessPolicy"].clone()).unwrap();
    policy.check().unwrap();
    assert_eq!(policy, AccessPolicy::default());
}
