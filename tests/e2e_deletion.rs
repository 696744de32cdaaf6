//! End to end: the finalizer applies deletionPolicy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::credential::admin_spec_with;
use support::env::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_policy_schedules_the_secret_for_deletion_and_retain_keeps_it() {
    let env = TestEnv::new("deletion").await;
    let operator = env.start_operator();
    env.create_credential(
        "doomed",
        admin_spec_with(serde_json::json!({"secretsManager": {"recoveryWindowDays": 7}})),
    )
    .await
    .unwrap();
    env.create_credential(
        "forced",
        admin_spec_with(serde_json::json!({"secretsManager": {"recoveryWindowDays": 0}})),
    )
    .await
    .unwrap();
    env.create_credential(
        "kept",
        admin_spec_with(serde_json::json!({"secretsManager": {"deletionPolicy": "Retain"}})),
    )
    .await
    .unwrap();
    for name in ["doomed", "forced", "kept"] {
        env.wait_ready(name, 1).await;
    }
    let secret = |name: &str| format!("dsql-e2e/{}/{name}", env.namespace);
    let (doomed, forced, kept) = (secret("doomed"), secret("forced"), secret("kept"));
    env.assert_no_token_leaks(&[&doomed, &forced, &kept]).await;

    for name in ["doomed", "forced", "kept"] {
        env.delete_credential(name).await;
    }
    for name in ["doomed", "forced", "kept"] {
        env.wait_deleted(name).await;
    }
    let described = env.describe_secret(&doomed).await.expect("still recoverable");
    assert!(
        described.deleted_date().is_some(),
        "Delete with a recovery window schedules deletion"
    );
    assert!(
        env.describe_secret(&forced).await.is_none(),
        "recoveryWindowDays 0 deletes at once"
    );
    let kept_desc = env.describe_secret(&kept).await.expect("Retain keeps the secret");
    assert!(kept_desc.deleted_date().is_none());
    // The projected Kubernetes Secrets go with their owners (ownerReference garbage collection;
    // a real kube-controller-manager's collector on a loaded machine takes seconds, hence 60 s).
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(env.kube.clone(), &env.namespace);
    let mut remaining = Vec::new();
    for _ in 0..1200 {
        remaining = secrets.list(&Default::default()).await.unwrap().items;
        if remaining.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        remaining.is_empty(),
        "projected Secrets outlived their DsqlCredentials: {}",
        remaining.len()
    );
    env.assert_event("kept", "SecretRetained").await;
    operator.stop().await;
}
