//! Creating the benchmark's namespaces and credentials.

use std::time::{Duration, Instant};

use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::cache::LAST_APPLIED_ANNOTATION;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PostParams};

use crate::ENDPOINT;

// ---------------------------------------------------------------------------------------------
// Creating credentials.

pub(crate) async fn create_namespace(kube: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(kube.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

pub(crate) fn credential_name(i: usize) -> String {
    format!("cred-{i:05}")
}

pub(crate) async fn create_credentials(kube: &kube::Client, namespace: &str, n: usize, concurrency: usize) -> Duration {
    let resource = kube::api::ApiResource::erase::<DsqlCredential>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(kube.clone(), namespace, &resource);
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let manifest = serde_json::json!({
                    "apiVersion": "dsql.credentials.dev/v1alpha1",
                    "kind": "DsqlCredential",
                    "metadata": {"name": credential_name(i), "namespace": namespace},
                    "spec": {"cluster": {"endpoint": ENDPOINT}, "role": "admin"},
                });
                // As `kubectl apply` (and GitOps tools using client-side apply) leaves it.
                let mut object: DynamicObject = serde_json::from_value(manifest.clone()).unwrap();
                object.metadata.annotations = Some(
                    [(LAST_APPLIED_ANNOTATION.to_owned(), format!("{manifest}\n"))]
                        .into_iter()
                        .collect(),
                );
                api.create(&PostParams::default(), &object)
                    .await
                    .expect("create DsqlCredential");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    start.elapsed()
}
