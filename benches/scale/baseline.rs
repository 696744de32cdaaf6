//! The baseline: a plain client loop doing, per credential, the writes the operator makes for
//! its first rotation, at the same concurrency against the same servers.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsql_credential_operator::api::{DsqlCredential, FINALIZER};
use dsql_credential_operator::clock::SystemClock;
use dsql_credential_operator::token::{TokenMinter, TokenRequest};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};

use crate::ENDPOINT;
use crate::objects::credential_name;
use crate::support::env::TestEnv;

// ---------------------------------------------------------------------------------------------
// The baseline: a plain client loop doing, per credential, the writes the operator makes for its
// first rotation (finalizer patch, token, CreateSecret, Secret apply, status apply, Event), at the
// same concurrency against the same servers, with no watch, queue or cache in between.

pub(crate) async fn baseline_loop(
    env: &TestEnv,
    kube: &kube::Client,
    namespace: &str,
    n: usize,
    concurrency: usize,
    status: &serde_json::Value,
) -> Duration {
    let secrets = aws_sdk_secretsmanager::Client::new(&env.operator_sdk);
    let minter = TokenMinter::new(&env.operator_sdk, Arc::new(SystemClock));
    let credentials: Api<DsqlCredential> = Api::namespaced(kube.clone(), namespace);
    let k8s_secrets: Api<Secret> = Api::namespaced(kube.clone(), namespace);
    let objects: HashMap<String, DsqlCredential> = credentials
        .list(&Default::default())
        .await
        .expect("list baseline credentials")
        .items
        .into_iter()
        .map(|c| (c.name_any(), c))
        .collect();
    let recorder = Recorder::new(
        kube.clone(),
        Reporter {
            controller: "dsql-baseline".into(),
            instance: None,
        },
    );
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, minter, credentials, k8s_secrets, recorder) = (
                secrets.clone(),
                minter.clone(),
                credentials.clone(),
                k8s_secrets.clone(),
                recorder.clone(),
            );
            let name = credential_name(i);
            let object = objects.get(&name).cloned().expect("baseline credential listed");
            let uid = object.uid().unwrap_or_default();
            async move {
                let finalizer = serde_json::json!({"metadata": {"finalizers": [FINALIZER]}});
                credentials
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&finalizer))
                    .await
                    .expect("add finalizer");
                let minted = minter
                    .mint(&TokenRequest {
                        hostname: ENDPOINT.into(),
                        region: "us-east-1".into(),
                        admin: true,
                        lifetime: Duration::from_secs(3600),
                        signing_role: None,
                    })
                    .await
                    .expect("mint");
                let expires = minted.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                let document = serde_json::json!({
                    "engine": "postgres", "host": ENDPOINT, "port": "5432", "dbname": "postgres",
                    "username": "admin", "password": minted.token.expose(), "region": "us-east-1",
                    "expiresAt": expires,
                });
                let tag = |k: &str, v: &str| aws_sdk_secretsmanager::types::Tag::builder().key(k).value(v).build();
                let created = secrets
                    .create_secret()
                    .name(format!("dsql-baseline/{namespace}/{name}"))
                    .secret_string(document.to_string())
                    .client_request_token(format!("{uid}-0001"))
                    .tags(tag("dsql.credentials.dev/managed-by", "dsql-credential-operator"))
                    .tags(tag("dsql.credentials.dev/namespace", namespace))
                    .tags(tag("dsql.credentials.dev/name", &name))
                    .tags(tag("dsql.credentials.dev/uid", &uid))
                    .send()
                    .await
                    .expect("CreateSecret");
                let b64 = |s: &str| base64_encode(s.as_bytes());
                let data: BTreeMap<String, String> = document
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), b64(v.as_str().unwrap_or_default())))
                    .collect();
                let secret = serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {
                        "name": name, "namespace": namespace,
                        "labels": {"app.kubernetes.io/managed-by": "dsql-credential-operator", "dsql.credentials.dev/credential": name},
                        "annotations": {"dsql.credentials.dev/version-id": created.version_id().unwrap_or_default(), "dsql.credentials.dev/expires-at": expires},
                        "ownerReferences": [{"apiVersion": "dsql.credentials.dev/v1alpha1", "kind": "DsqlCredential", "name": name, "uid": uid, "controller": true}],
                    },
                    "type": "Opaque", "data": data,
                });
                k8s_secrets
                    .patch(&name, &PatchParams::apply("dsql-baseline").force(), &Patch::Apply(&secret))
                    .await
                    .expect("apply Secret");
                let status_patch = serde_json::json!({
                    "apiVersion": "dsql.credentials.dev/v1alpha1", "kind": "DsqlCredential",
                    "metadata": {"name": name}, "status": status,
                });
                credentials
                    .patch_status(&name, &PatchParams::apply("dsql-baseline").force(), &Patch::Apply(&status_patch))
                    .await
                    .expect("apply status");
                let event = Event {
                    type_: EventType::Normal,
                    reason: "Rotated".into(),
                    note: Some(format!("Published Secrets Manager version {}", created.version_id().unwrap_or_default())),
                    action: "Rotate".into(),
                    secondary: None,
                };
                recorder.publish(&event, &object.object_ref(&())).await.expect("publish Event");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
