//! End to end: the projections. The Kubernetes Secret per rotation, extraKeys, ownership
//! conflicts, the SecretProviderClass with and without its CRD, rollout restarts, and removal
//! when a projection is turned off or the credential is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use dsql_credential_operator::api::DsqlCredential;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use support::credential::{ENDPOINT, admin_spec, admin_spec_with, admin_spec_with_secret};
use support::env::{TestEnv, condition};
use support::moto::test_credentials;
use support::rbac::RbacMode;
use support::secret::decoded;
use support::token_check::{ExpectedToken, verify_dsql_token};

async fn wait_for_secret(env: &TestEnv, name: &str, version: &str) -> Secret {
    let secrets = env.secrets();
    for _ in 0..200 {
        if let Some(secret) = secrets.get_opt(name).await.unwrap() {
            let annotations = secret.metadata.annotations.clone().unwrap_or_default();
            if annotations.get("dsql.credentials.dev/version-id").map(String::as_str) == Some(version) {
                return secret;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Secret {name} never carried version {version}");
}

/// The operator has no read access to Secrets: it never sent a GET (or list/watch) for one.
fn assert_no_secret_reads(env: &TestEnv) {
    if let Some(requests) = env.operator_requests() {
        let reads: Vec<String> = requests
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/secrets"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(reads, Vec::<String>::new(), "the operator read Secrets");
        assert!(
            requests
                .iter()
                .any(|r| r.method == "POST" && r.path.ends_with("/secrets")),
            "the operator claimed a Secret by creating it"
        );
    }
}

/// Creates the Secret `name` as someone else would: no owner, no label, a password of its own.
async fn create_their_secret(env: &TestEnv, name: &str) -> Secret {
    let theirs: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}, "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    env.secrets().create(&PostParams::default(), &theirs).await.unwrap()
}

/// The Secrets Store CSI driver's own SecretProviderClass CRD, from its Go module as pinned in
/// tests/neighbour-crds/go.mod (Go's module proxy and cache; no copy typed by hand).
fn provider_class_crd() -> CustomResourceDefinition {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/neighbour-crds");
    let output = std::process::Command::new("go")
        .args(["mod", "download", "-json", "sigs.k8s.io/secrets-store-csi-driver"])
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run go (needed for the CSI driver's CRD): {e}"));
    assert!(
        output.status.success(),
        "go mod download in {dir}: {}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    let module: serde_json::Value = serde_json::from_slice(&output.stdout).expect("go mod download -json");
    let path = format!(
        "{}/config/crd/bases/secrets-store.csi.x-k8s.io_secretproviderclasses.yaml",
        module["Dir"].as_str().expect("the module's Dir")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn install_provider_class_crd(env: &TestEnv) {
    let crd = provider_class_crd();
    let crds: Api<CustomResourceDefinition> = Api::all(env.kube.clone());
    crds.patch(
        "secretproviderclasses.secrets-store.csi.x-k8s.io",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    // A real API server serves a new CRD a moment after accepting it (the fake at once): until
    // then the operator would still get 404 and wait for its next projection retry.
    let served: Api<DynamicObject> = Api::namespaced_with(
        env.kube.clone(),
        &env.namespace,
        &dsql_credential_operator::projection::provider_class::api_resource(),
    );
    for _ in 0..200 {
        if served.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the SecretProviderClass CRD was not served within 10 s of its install");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_carries_every_key_and_follows_each_rotation() {
    let env = TestEnv::new("k8s-secret").await;
    let operator = env.start_operator();
    let ready = env
        .create_ready(
            "orders",
            serde_json::json!({
                "cluster": {"endpoint": ENDPOINT}, "role": "app", "database": "shop",
                "kubernetesSecret": {"name": "orders-db", "extraKeys": {
                    "DATABASE_URL": "postgres://{username}:{password|urlencode}@{host}:{port}/{dbname}?sslmode=verify-full",
                    "PGPASSWORD": "{password}"
                }}
            }),
        )
        .await;
    let status = ready.status.clone().unwrap();
    let version = status.version_id.clone().unwrap();
    let projected = status.kubernetes_secret.clone().unwrap();
    assert_eq!((projected.name.as_str(), projected.synced), ("orders-db", true));
    assert_eq!(projected.version_id.as_deref(), Some(version.as_str()));

    let secret = wait_for_secret(&env, "orders-db", &version).await;
    let data = decoded(&secret);
    let sm = env.secret_document(status.secret_name.as_deref().unwrap()).await;
    for key in dsql_credential_operator::aws::CREDENTIAL_KEYS {
        assert_eq!(
            data[key],
            sm[key].as_str().unwrap(),
            "key {key} matches Secrets Manager"
        );
    }
    verify_dsql_token(
        &data["password"],
        &ExpectedToken::new(ENDPOINT, "us-east-1", false, &test_credentials()),
    )
    .unwrap();
    assert_eq!(data["PGPASSWORD"], data["password"]);
    let encoded: String = url::form_urlencoded::byte_serialize(data["password"].as_bytes()).collect();
    assert_eq!(
        data["DATABASE_URL"],
        format!(
            "postgres://app:{}@{ENDPOINT}:5432/shop?sslmode=verify-full",
            encoded.replace('+', "%20")
        )
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "dsql-credential-operator");
    let owner = &secret.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("DsqlCredential", ready.metadata.uid.as_deref().unwrap())
    );
    assert_eq!(
        secret.metadata.annotations.clone().unwrap()["dsql.credentials.dev/expires-at"],
        data["expiresAt"]
    );

    // The next rotation updates the Secret in the same reconcile.
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let second = env.wait_ready("orders", 2).await;
    let version2 = second.status.as_ref().unwrap().version_id.clone().unwrap();
    let secret2 = wait_for_secret(&env, "orders-db", &version2).await;
    assert_ne!(decoded(&secret2)["password"], data["password"]);
    assert_eq!(
        decoded(&secret2)["password"],
        env.secret_document(status.secret_name.as_deref().unwrap()).await["password"]
            .as_str()
            .unwrap()
    );

    // Turning the projection off removes the Secret the operator made.
    let off = serde_json::json!({"spec": {"kubernetesSecret": {"enabled": false}}});
    env.credentials()
        .patch("orders", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    let secrets = env.secrets();
    let mut gone = false;
    for _ in 0..200 {
        if secrets.get_opt("orders-db").await.unwrap().is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the Secret of a disabled projection is deleted");
    let after = env
        .wait_for("orders", Duration::from_secs(20), "without a Secret projection", |c| {
            c.status.as_ref().is_some_and(|s| s.kubernetes_secret.is_none())
                && condition(c, "Ready").is_some_and(|r| r.status == "True")
        })
        .await;
    assert!(after.status.unwrap().kubernetes_secret.is_none());
    operator.stop().await;
    env.assert_no_token_leaks(&[status.secret_name.as_deref().unwrap()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_operator_does_not_own_is_never_overwritten() {
    let env = TestEnv::new("secret-conflict").await;
    let secrets = env.secrets();
    let created = create_their_secret(&env, "payments").await;
    let operator = env.start_operator();
    env.create_credential("payments", admin_spec()).await.unwrap();
    let stalled = env.wait_condition("payments", "Stalled", Duration::from_secs(20)).await;
    let s = condition(&stalled, "Stalled").unwrap();
    assert_eq!(s.reason, "SecretOwnedByOther");
    assert!(s.message.contains("Secret \"payments\""), "{}", s.message);
    let after = secrets.get("payments").await.unwrap();
    assert_eq!(decoded(&after)["password"], "hunter2");
    assert_eq!(
        after.metadata.resource_version, created.metadata.resource_version,
        "not changed"
    );
    assert_eq!(
        env.aws.count("secretsmanager.CreateSecret"),
        0,
        "nothing is minted or written while the Secret is taken"
    );
    assert_no_secret_reads(&env);

    // Deleting the credential leaves their Secret alone.
    env.delete_credential("payments").await;
    env.wait_deleted("payments").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(decoded(&secrets.get("payments").await.unwrap())["password"], "hunter2");
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

/// The operator claimed the Secret's name (POST) and was killed before the status write that
/// records the Secret's uid: the next process's POST gets 409 AlreadyExists, and must recognise
/// its own claim without reading the Secret (a JSON patch that only tests the ownerReference's
/// uid), not stall as if someone else held the name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_uid_never_reached_status_is_recognised_without_a_read() {
    let env = TestEnv::new("claim-restart").await;
    let credential = env.create_credential("payments", admin_spec()).await.unwrap();
    let owner = dsql_credential_operator::projection::ObjectOwner {
        namespace: env.namespace.clone(),
        name: "payments".to_owned(),
        uid: credential.metadata.uid.clone().unwrap(),
    };
    let secrets = env.secrets();
    let claim: Secret = serde_json::from_value(dsql_credential_operator::projection::secret::claim_body(
        &owner, "payments",
    ))
    .unwrap();
    let claimed = secrets.create(&PostParams::default(), &claim).await.unwrap();

    let operator = env.start_operator();
    let ready = env.wait_ready("payments", 1).await;
    let status = ready.status.as_ref().unwrap();
    assert_eq!(
        status.kubernetes_secret.as_ref().and_then(|p| p.created_uid.as_deref()),
        claimed.metadata.uid.as_deref(),
        "the earlier claim is adopted, its uid recorded"
    );
    let after = secrets.get("payments").await.unwrap();
    assert_eq!(
        after.metadata.uid, claimed.metadata.uid,
        "the same Secret, not a new one"
    );
    assert!(decoded(&after).contains_key("password"), "and it carries the token");
    assert_no_secret_reads(&env);
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_provider_class_says_when_its_crd_is_missing_and_heals_once_installed() {
    let env = TestEnv::with_rbac("spc", RbacMode::WatchedNamespace).await;
    let operator = env.start_operator();
    env.create_credential(
        "reports",
        admin_spec_with(
            serde_json::json!({"kubernetesSecret": {"enabled": false}, "secretProviderClass": {"enabled": true}}),
        ),
    )
    .await
    .unwrap();
    let missing = env
        .wait_for("reports", Duration::from_secs(20), "reporting the missing CRD", |c| {
            c.status
                .as_ref()
                .and_then(|s| s.secret_provider_class.as_ref())
                .is_some_and(|p| !p.synced)
        })
        .await;
    let ready = condition(&missing, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NotPublished")
    );
    assert!(ready.message.contains("Secrets Store CSI driver"), "{}", ready.message);
    assert!(
        missing.status.as_ref().unwrap().version_id.is_some(),
        "the token is still published to Secrets Manager"
    );

    install_provider_class_crd(&env).await;
    env.clock.resync();
    let healed = env.wait_condition("reports", "Ready", Duration::from_secs(20)).await;
    let status = healed.status.clone().unwrap();
    assert!(status.secret_provider_class.as_ref().unwrap().synced);
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.kube.clone(),
        &env.namespace,
        &dsql_credential_operator::projection::provider_class::api_resource(),
    );
    let spc = api.get("reports").await.unwrap();
    assert_eq!(spc.data["spec"]["provider"], "aws");
    assert_eq!(spc.data["spec"]["parameters"]["usePodIdentity"], "true");
    assert_eq!(spc.data["spec"]["parameters"]["region"], "us-east-1");
    let objects = spc.data["spec"]["parameters"]["objects"].as_str().unwrap();
    assert!(objects.contains(status.secret_arn.as_deref().unwrap()), "{objects}");
    assert!(objects.contains("objectAlias: \"password\""));
    assert_eq!(
        spc.metadata.owner_references.as_ref().unwrap()[0].uid,
        healed.metadata.uid.clone().unwrap()
    );

    // Nothing to do: a resync writes nothing (the fake records requests; on a real server the
    // objects' resourceVersions stay put).
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.clear_recorded();
    let versions = |c: &DsqlCredential, p: &DynamicObject| (c.resource_version(), p.resource_version());
    let before = versions(
        &env.credentials().get("reports").await.unwrap(),
        &api.get("reports").await.unwrap(),
    );
    env.clock.resync();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = versions(
        &env.credentials().get("reports").await.unwrap(),
        &api.get("reports").await.unwrap(),
    );
    assert_eq!(
        before, after,
        "a resync rewrote the credential or its SecretProviderClass"
    );
    if let Some(writes) = env.kube_writes() {
        assert_eq!(writes, Vec::<String>::new());
    }

    // Turning it off deletes it.
    let off = serde_json::json!({"spec": {"secretProviderClass": {"enabled": false}}});
    env.credentials()
        .patch("reports", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .unwrap();
    env.wait_for(
        "reports",
        Duration::from_secs(20),
        "without the SecretProviderClass",
        |c| c.status.as_ref().is_some_and(|s| s.secret_provider_class.is_none()),
    )
    .await;
    assert!(api.get_opt("reports").await.unwrap().is_none());
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_annotates_existing_targets_and_reports_missing_ones() {
    let env = TestEnv::with_rbac("restart", RbacMode::WatchedNamespace).await;
    let deployments = env.create_deployment("api").await;
    let operator = env.start_operator();
    let ready = env
        .create_ready(
            "orders",
            admin_spec_with(serde_json::json!({"rolloutRestart": [
                {"kind": "Deployment", "name": "api"}, {"kind": "StatefulSet", "name": "ghost"}
            ]})),
        )
        .await;
    let status = ready.status.clone().unwrap();
    let restarts = &status.rollout_restarts;
    assert_eq!(restarts.len(), 2);
    let api = restarts.iter().find(|r| r.name == "api").unwrap();
    assert_eq!(api.restarted_for_version, status.version_id);
    let ghost = restarts.iter().find(|r| r.name == "ghost").unwrap();
    assert_eq!(ghost.restarted_for_version, None);
    assert!(ghost.message.as_deref().unwrap().contains("not found"), "{ghost:?}");
    let annotated = deployments.get("api").await.unwrap();
    let annotations = annotated.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert!(annotations.contains_key("kubectl.kubernetes.io/restartedAt"));
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_secret_is_created_again_and_a_replaced_one_is_never_written() {
    let env = TestEnv::new("secret-uid").await;
    let secrets = env.secrets();
    let operator = env.start_operator();
    let first = env.create_ready("orders", admin_spec_with_secret("orders-db")).await;
    let status = first.status.clone().unwrap();
    let original = wait_for_secret(&env, "orders-db", status.version_id.as_deref().unwrap()).await;
    let recorded = status.kubernetes_secret.clone().unwrap().created_uid;
    assert_eq!(
        recorded, original.metadata.uid,
        "status records the uid of the Secret it created"
    );

    // Deleted by someone: the next rotation creates it again and records the new uid.
    secrets.delete("orders-db", &Default::default()).await.unwrap();
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    let second = env.wait_ready("orders", 2).await;
    let status2 = second.status.clone().unwrap();
    let recreated = wait_for_secret(&env, "orders-db", status2.version_id.as_deref().unwrap()).await;
    assert_ne!(recreated.metadata.uid, original.metadata.uid);
    assert_eq!(
        status2.kubernetes_secret.clone().unwrap().created_uid,
        recreated.metadata.uid
    );
    assert_eq!(
        decoded(&recreated)["password"],
        env.secret_document(status2.secret_name.as_deref().unwrap()).await["password"]
            .as_str()
            .unwrap()
    );

    // Replaced by someone (deleted, then created again under the same name): never written.
    secrets.delete("orders-db", &Default::default()).await.unwrap();
    let replacement = create_their_secret(&env, "orders-db").await;
    env.clock.advance_to(status2.next_rotation_time.clone().unwrap().0);
    let stalled = env.wait_condition("orders", "Stalled", Duration::from_secs(20)).await;
    let s = condition(&stalled, "Stalled").unwrap();
    assert_eq!(s.reason, "SecretOwnedByOther");
    assert!(s.message.contains("replaced"), "{}", s.message);
    let after = secrets.get("orders-db").await.unwrap();
    assert_eq!(decoded(&after)["password"], "hunter2");
    assert_eq!(
        after.metadata.resource_version, replacement.metadata.resource_version,
        "not written"
    );
    assert_no_secret_reads(&env);
    operator.stop().await;
    env.assert_operator_calls_permitted();
    env.assert_no_token_leaks(&[status.secret_name.as_deref().unwrap()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_status_write_neither_writes_secrets_manager_again_nor_disowns_the_secret() {
    let env = TestEnv::new("lost-status").await;
    let Some(fake) = env.fake_or_skip("injecting API server faults needs the fake API server") else {
        return;
    };
    // The first status write (after the Secret was created and Secrets Manager written) fails.
    fake.inject_fault(Some("PATCH"), "/dsqlcredentials/orders/status", 500, 1);
    let operator = env.start_operator();
    let ready = env.create_ready("orders", admin_spec_with_secret("orders-db")).await;
    assert_eq!(
        fake.pending_faults(),
        Vec::<String>::new(),
        "the status write did fail once"
    );
    let status = ready.status.clone().unwrap();
    assert_eq!(
        condition(&ready, "Stalled").unwrap().status,
        "False",
        "its own Secret is not someone else's"
    );
    let secret = wait_for_secret(&env, "orders-db", status.version_id.as_deref().unwrap()).await;
    assert_eq!(status.kubernetes_secret.unwrap().created_uid, secret.metadata.uid);
    let secret_name = status.secret_name.unwrap();
    assert_eq!(
        env.secret_versions(&secret_name).await.len(),
        1,
        "the retry reused the minted token"
    );
    assert_eq!(env.aws.count("secretsmanager.CreateSecret"), 1);
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 0);
    assert_eq!(
        decoded(&secret)["password"],
        env.secret_document(&secret_name).await["password"].as_str().unwrap()
    );
    assert_no_secret_reads(&env);
    operator.stop().await;
    env.assert_operator_calls_permitted();
}
