#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end: a DsqlCredential the operator cannot decode (stored while the CRD's schema was
//! looser, as after a downgrade or a hand-edited CRD) harms only itself. It is reported as
//! `Stalled/InvalidSpec` with an Event; every other credential in its namespace keeps rotating;
//! fixing it brings it back; deleting it while unreadable leaves its secret in place.
//!
//! The test loosens the cluster-wide CRD for a moment, so it lives in its own test binary: cargo
//! runs binaries one after the other, so no other test sees the looser schema, on the fake API
//! server or on a real cluster.

mod support;

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::credential::ENDPOINT;
use support::env::TestEnv;

const CRD_NAME: &str = "dsqlcredentials.dsql.credentials.dev";

fn spec() -> Value {
    json!({"cluster": {"endpoint": ENDPOINT}, "role": "app_user"})
}

/// Runs `write` while `spec.role` may be an integer, then puts the real schema back.
async fn with_role_as_integer(env: &TestEnv, write: impl AsyncFnOnce()) {
    let crds: Api<CustomResourceDefinition> = Api::all(env.kube.clone());
    let original = crds.get(CRD_NAME).await.unwrap();
    let mut loose = serde_json::to_value(&original).unwrap();
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["role"] =
        json!({"type": "integer"});
    let loose: CustomResourceDefinition = serde_json::from_value(loose).unwrap();
    let loose = crds.replace(CRD_NAME, &PostParams::default(), &loose).await.unwrap();
    write().await;
    let mut restored = original;
    restored.metadata.resource_version = loose.metadata.resource_version;
    crds.replace(CRD_NAME, &PostParams::default(), &restored).await.unwrap();
}

fn raw_api(env: &TestEnv) -> Api<DynamicObject> {
    Api::namespaced_with(
        env.kube.clone(),
        &env.namespace,
        &ApiResource::erase::<dsql_credential_operator::api::DsqlCredential>(&()),
    )
}

/// Waits until the raw object's Stalled condition has `reason`.
async fn wait_raw_stalled(env: &TestEnv, name: &str, reason: &str) -> Value {
    let api = raw_api(env);
    for _ in 0..600 {
        let object = api.get(name).await.unwrap();
        let conditions = object.data["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(stalled) = conditions
            .iter()
            .find(|c| c["type"] == "Stalled" && c["reason"] == reason)
        {
            return stalled.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{name} never became Stalled/{reason}: {:#}\nlast operator log lines:\n{}",
        api.get(name).await.unwrap().data["status"],
        support::logs::tail(60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_credential_harms_only_itself() {
    let env = TestEnv::new("unreadable").await;
    let operator = env.start_operator();
    env.create_ready("healthy", spec()).await;
    let was_fine = env.create_ready("was-fine", spec()).await;
    let was_fine_secret = was_fine.status.unwrap().secret_name.unwrap();

    let api = raw_api(&env);
    with_role_as_integer(&env, async || {
        let broken: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "dsql.credentials.dev/v1alpha1",
            "kind": "DsqlCredential",
            "metadata": {"name": "broken", "namespace": env.namespace},
            "spec": {"cluster": {"endpoint": ENDPOINT}, "role": 7},
        }))
        .unwrap();
        // A real API server takes a moment to serve the updated schema: retry while it refuses.
        let mut created = false;
        for _ in 0..100 {
            match api.create(&PostParams::default(), &broken).await {
                Ok(_) => {
                    created = true;
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 422 => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(e) => panic!("create broken: {e}"),
            }
        }
        assert!(created, "the loosened schema was never served");
        let role_seven = json!({"spec": {"role": 7}});
        api.patch("was-fine", &PatchParams::default(), &Patch::Merge(&role_seven))
            .await
            .unwrap();
    })
    .await;

    // Reported on the object itself, with an Event, and nothing written to AWS for it.
    let stalled = wait_raw_stalled(&env, "broken", "InvalidSpec").await;
    assert_eq!(stalled["status"], "True");
    let message = stalled["message"].as_str().unwrap();
    assert!(message.contains("cannot be read by this operator"), "{message}");
    assert!(message.contains("kubectl edit"), "{message}");
    env.assert_event("broken", "InvalidSpec").await;
    assert!(
        env.describe_secret(&format!("dsql-e2e/{}/broken", env.namespace))
            .await
            .is_none()
    );

    // The rest of the namespace keeps working: a forced rotation (past the one-a-minute limit on
    // forced rotations) and a new credential.
    env.clock.advance(Duration::from_secs(120));
    env.annotate("healthy", "dsql.credentials.dev/rotate", "after-broken")
        .await;
    env.wait_ready("healthy", 2).await;
    env.create_ready("newcomer", spec()).await;

    // Fixing the object brings it back.
    let fixed = json!({"spec": {"role": "app_user"}});
    api.patch("broken", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    env.wait_ready("broken", 1).await;

    // Deleting a credential while it cannot be read releases it and keeps its secret.
    wait_raw_stalled(&env, "was-fine", "InvalidSpec").await;
    api.delete("was-fine", &Default::default()).await.unwrap();
    for _ in 0..600 {
        if api.get_opt("was-fine").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        api.get_opt("was-fine").await.unwrap().is_none(),
        "the finalizer was released"
    );
    assert!(
        env.describe_secret(&was_fine_secret).await.is_some(),
        "the secret is retained"
    );
    env.assert_event("was-fine", "SecretRetained").await;

    assert!(!operator.is_finished(), "the operator is still running");
    operator.stop().await;
    let healthy = format!("dsql-e2e/{}/healthy", env.namespace);
    env.assert_no_token_leaks(&[&healthy]).await;
}
