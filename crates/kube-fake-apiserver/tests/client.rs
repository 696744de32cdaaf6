//! End-to-end use of the fake API server through the real kube client: CRUD, discovery, CRDs,
//! status, server-side apply, finalizers, garbage collection, watches, faults, and bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::GroupVersionKind;
use kube_fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

use support::{api_err, eventually, raw, setup, widget, widgets};

#[tokio::test]
async fn client_crud_on_secrets() {
    let srv = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(srv.client());
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "creds", "labels": {"app": "x"}}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(created.data.as_ref().unwrap()["password"].0, b"hunter2");
    assert!(created.string_data.is_none());
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(created.metadata.generation.is_none(), "secrets carry no generation");
    let rv1: u64 = created.metadata.resource_version.clone().unwrap().parse().unwrap();

    let dup = api_err(secrets.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let got = secrets.get("creds").await.unwrap();
    assert_eq!(got.metadata.uid, created.metadata.uid);

    let mut changed = got.clone();
    changed
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("tier".into(), "db".into());
    let replaced = secrets
        .replace("creds", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2: u64 = replaced.metadata.resource_version.clone().unwrap().parse().unwrap();
    assert!(rv2 > rv1);

    // Stale resourceVersion -> 409 Conflict with the real message.
    let stale = api_err(
        secrets
            .replace("creds", &PostParams::default(), &got)
            .await
            .unwrap_err(),
    );
    assert_eq!(stale.code, 409);
    assert_eq!(
        stale.message,
        "Operation cannot be fulfilled on secrets \"creds\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let patched = secrets
        .patch(
            "creds",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"app": null}}})),
        )
        .await
        .unwrap();
    assert!(!patched.metadata.labels.as_ref().unwrap().contains_key("app"));

    let sel = secrets
        .list(&ListParams::default().labels("tier in (db,cache),!app"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 1);
    assert!(
        secrets
            .list(&ListParams::default().labels("tier=web"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        secrets
            .list(&ListParams::default().fields("metadata.name=creds"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    secrets.delete("creds", &DeleteParams::default()).await.unwrap();
    let gone = api_err(secrets.get("creds").await.unwrap_err());
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
    assert_eq!(gone.message, "secrets \"creds\" not found");
}

#[tokio::test]
async fn create_in_missing_namespace_is_404() {
    let srv = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(srv.client(), "nope");
    let e = api_err(
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "namespaces \"nope\" not found")
    );
}

#[tokio::test]
async fn discovery_and_crd_registration() {
    let (srv, client) = setup().await;
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.dev", "v1alpha1", "Widget"))
        .expect("widgets discovered");
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .is_some()
    );
    assert!(
        discovery
            .resolve_gvk(&GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"))
            .is_some()
    );

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let crd = crds.get("widgets.example.dev").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(conds.iter().any(|c| c.type_ == "NamesAccepted" && c.status == "True"));

    widgets(&client, "ns1")
        .create(&PostParams::default(), &widget("a", json!({"size": 1})))
        .await
        .unwrap();
    crds.delete("widgets.example.dev", &DeleteParams::default())
        .await
        .unwrap();
    let r = raw(
        &srv.base_url(),
        "GET",
        "/apis/example.dev/v1alpha1/namespaces/ns1/widgets",
        None,
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "404 page not found\n"),
        "unregistered with the CRD"
    );
}

#[tokio::test]
async fn custom_resource_defaulting_pruning_and_validation() {
    let (_srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    let w = api
        .create(
            &PostParams::default(),
            &widget("d", json!({"color": "red", "bogus": true})),
        )
        .await
        .unwrap();
    assert_eq!(
        w.data["spec"],
        json!({"color": "red", "size": 1}),
        "defaulted and pruned"
    );
    assert_eq!(w.metadata.generation, Some(1));

    let e = api_err(
        api.create(&PostParams::default(), &widget("big", json!({"size": 11})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "Widget.example.dev \"big\" is invalid: spec: Invalid value: size must be at most 10"
    );

    let e = api_err(
        api.create(&PostParams::default(), &widget("neg", json!({"size": -1})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("spec.size: Invalid value: -1: spec.size in body should be greater than or equal to 0"),
        "{}",
        e.message
    );

    // CEL also runs on updates.
    let e = api_err(
        api.patch(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 12}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(api.get("d").await.unwrap().data["spec"]["size"], 1);

    let e = api_err(
        api.create(&PostParams::default(), &widget("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{}",
        e.message
    );
}

/// A CRD update changes the schema for the next write, and unchanged values that fail the new
/// schema are let through on updates (validation ratcheting, default since Kubernetes 1.30).
#[tokio::test]
async fn crd_schema_updates_apply_to_next_writes_with_ratcheting() {
    let (_srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    api.create(&PostParams::default(), &widget("w", json!({"color": "red"})))
        .await
        .unwrap();

    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let name = "widgets.example.dev";
    let mut crd = serde_json::to_value(crds.get(name).await.unwrap()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["color"] =
        json!({"type": "integer"});
    crds.replace(name, &PostParams::default(), &serde_json::from_value(crd).unwrap())
        .await
        .unwrap();

    // New objects get the new schema.
    let e = api_err(
        api.create(&PostParams::default(), &widget("x", json!({"color": "red"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.color"), "{}", e.message);
    // The old value may stay while other fields and the status change...
    api.patch_status(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "checked"}})),
    )
    .await
    .unwrap();
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"size": 3}})),
    )
    .await
    .unwrap();
    // ...but a changed value must pass.
    let e = api_err(
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"color": "blue"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("spec.color"), "{}", e.message);
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let (_srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    api.create(&PostParams::default(), &widget("s", json!({"size": 1})))
        .await
        .unwrap();
    let after_status = api
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}, "spec": {"size": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(after_status.data["status"]["observedGeneration"], 1);
    assert_eq!(
        after_status.data["spec"]["size"], 1,
        "spec writes through /status are ignored"
    );
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "status writes never bump generation"
    );

    let main = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.data["status"]["observedGeneration"], 1,
        "status writes through the main resource are ignored"
    );
    assert_eq!(main.metadata.generation, Some(1));

    let labelled = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let spec = api
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn server_side_apply_conflicts_and_force() {
    let (srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    let a = PatchParams::apply("mgr-a");
    let w = api
        .patch("x", &a, &Patch::Apply(widget("x", json!({"size": 1, "color": "blue"}))))
        .await
        .unwrap();
    assert_eq!(w.data["spec"], json!({"size": 1, "color": "blue"}));

    let e = api_err(
        api.patch(
            "x",
            &PatchParams::apply("mgr-b"),
            &Patch::Apply(widget("x", json!({"size": 7}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Apply failed with 1 conflict: conflict with \"mgr-a\": .spec.size"
    );

    let forced = api
        .patch(
            "x",
            &PatchParams::apply("mgr-b").force(),
            &Patch::Apply(widget("x", json!({"size": 7}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["spec"], json!({"size": 7, "color": "blue"}));
    let owners: Vec<(String, String)> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.fields_v1.unwrap().0.to_string()))
        .collect();
    assert!(
        owners.contains(&("mgr-a".into(), json!({"f:spec": {"f:color": {}}}).to_string())),
        "{owners:?}"
    );
    assert!(
        owners.contains(&("mgr-b".into(), json!({"f:spec": {"f:size": {}}}).to_string())),
        "{owners:?}"
    );

    // mgr-a stops applying color: nobody else owns it, so it is removed.
    let dropped = api.patch("x", &a, &Patch::Apply(widget("x", json!({})))).await.unwrap();
    assert_eq!(dropped.data["spec"], json!({"size": 7}));

    // Same value from another manager is shared ownership, not a conflict.
    api.patch(
        "x",
        &PatchParams::apply("mgr-c"),
        &Patch::Apply(widget("x", json!({"size": 7}))),
    )
    .await
    .unwrap();

    // Apply without a field manager is 422.
    let r = raw(
        &srv.base_url(),
        "PATCH",
        "/apis/example.dev/v1alpha1/namespaces/ns1/widgets/x",
        Some("application/apply-patch+yaml"),
        Some("apiVersion: example.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: x\nspec:\n  size: 3\n"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);

    // YAML bodies are accepted.
    let r = raw(
        &srv.base_url(),
        "PATCH",
        "/apis/example.dev/v1alpha1/namespaces/ns1/widgets/x?fieldManager=mgr-b",
        Some("application/apply-patch+yaml"),
        Some("apiVersion: example.dev/v1alpha1\nkind: Widget\nmetadata:\n  name: x\nspec:\n  size: 3\n"),
    )
    .await;
    assert_eq!(r.status, 409, "mgr-c shares .spec.size: {}", r.body);
}

#[tokio::test]
async fn finalizers_and_deletion_timestamp() {
    let (_srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    let mut w = widget("f", json!({"size": 1}));
    w.metadata.finalizers = Some(vec!["example.dev/cleanup".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    let deleting = api
        .delete("f", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object returned while finalizers remain");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    assert_eq!(deleting.metadata.deletion_grace_period_seconds, Some(0));
    assert_eq!(deleting.metadata.generation, Some(2));
    assert!(api.get("f").await.unwrap().metadata.deletion_timestamp.is_some());

    let e = api_err(
        api.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.dev/cleanup", "other/x"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("no new finalizers can be added if the object is being deleted"),
        "{}",
        e.message
    );

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "replace", "path": "/metadata/finalizers", "value": []}])).unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("f").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn owner_reference_cascade() {
    let (_srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    let owner = api
        .create(&PostParams::default(), &widget("owner", json!({"size": 1})))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "ns1");
    let mk = |name: &str, fins: Value| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "finalizers": fins, "ownerReferences": [{"apiVersion": "example.dev/v1alpha1", "kind": "Widget", "name": "owner", "uid": owner.metadata.uid, "controller": true}]}, "data": {"k": "v"}})).unwrap()
    };
    cms.create(&PostParams::default(), &mk("dep", json!([]))).await.unwrap();
    cms.create(&PostParams::default(), &mk("held", json!(["example.dev/hold"])))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("dependent collected", || async {
        cms.get_opt("dep").await.unwrap().is_none()
    })
    .await;
    eventually("held dependent terminating", || async {
        cms.get_opt("held")
            .await
            .unwrap()
            .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await;
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());
}

#[tokio::test]
async fn fault_injection_and_request_recording() {
    let srv = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    srv.inject_fault(None, "/configmaps", 500, 1);
    let e = api_err(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"), "{e:?}");
    cms.create(&PostParams::default(), &cm).await.unwrap();
    // kube's client retries 503/429 by itself: the fault shows up as a retried request.
    srv.inject_fault(Some("GET"), "/configmaps/a", 503, 1);
    cms.get("a").await.unwrap();
    srv.inject_fault(Some("PATCH"), "/configmaps/a", 429, 1);
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}})))
        .await
        .unwrap();
    srv.inject_fault(Some("DELETE"), "", 403, 1);
    let e = api_err(cms.delete("a", &DeleteParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "configmaps \"a\" is forbidden: User \"system:anonymous\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );

    let reqs = srv.requests();
    let summary: Vec<(String, u16, bool)> = reqs
        .iter()
        .map(|r| (r.method.clone(), r.status, r.is_write()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST".into(), 500, true),
            ("POST".into(), 201, true),
            ("GET".into(), 503, false),
            ("GET".into(), 200, false),
            ("PATCH".into(), 429, true),
            ("PATCH".into(), 200, true),
            ("DELETE".into(), 403, true),
        ]
    );
    assert_eq!(reqs[1].path, "/api/v1/namespaces/default/configmaps");
    assert_eq!(reqs[1].content_type.as_deref(), Some("application/json"));
    assert_eq!(reqs[5].content_type.as_deref(), Some("application/merge-patch+json"));
    srv.clear_requests();
    assert!(srv.requests().is_empty());
    // Faults are consumed: the next delete works.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
async fn bad_requests_get_status_bodies() {
    let srv = FakeApiServer::start().await;
    let base = srv.base_url();
    let r = raw(
        &base,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some("application/json"),
        Some("{not json"),
    )
    .await;
    assert_eq!(r.status, 400);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["kind"].as_str(), v["reason"].as_str()),
        (Some("Status"), Some("BadRequest"))
    );
    let r = raw(
        &base,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        Some("text/plain"),
        Some("x"),
    )
    .await;
    assert_eq!(r.status, 415);
    let r = raw(
        &base,
        "POST",
        "/api/v1/namespaces/default/configmaps/x",
        Some("application/json"),
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, 405);
    let r = raw(
        &base,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        Some("application/json-patch+json"),
        Some("[{\"op\":\"bogus\"}]"),
    )
    .await;
    assert!(r.status == 404 || r.status == 422, "{}", r.body);
    let r = raw(
        &base,
        "GET",
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20b",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let srv = FakeApiServer::start().await;
    let client = srv.client();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap(),
    )
    .await
    .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    eventually("namespace gone", || async {
        nss.get_opt("tmp").await.unwrap().is_none()
    })
    .await;
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let srv = FakeApiServer::start().await;
    let base = srv.base_url();
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let mut stream = cms.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    drop(srv);
    let end = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(end.is_ok(), "watch stream ends when the server is dropped");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = base.trim_start_matches("http://").to_string();
    let refused = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "listener closed");
}

#[tokio::test]
async fn deployments_get_defaults_status_and_generation() {
    let srv = FakeApiServer::start().await;
    let deps: Api<k8s_openapi::api::apps::v1::Deployment> = Api::default_namespaced(srv.client());
    let d: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    let created = deps.create(&PostParams::default(), &d).await.unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    assert_eq!(created.metadata.generation, Some(1));
    let st = deps
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(1));
    assert_eq!(st.status.unwrap().replicas, Some(1));
    let scaled = deps
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    let mut bad = d.clone();
    bad.metadata.name = Some("bad".into());
    bad.spec.as_mut().unwrap().template.metadata.as_mut().unwrap().labels =
        Some([("app".to_string(), "other".to_string())].into());
    let e = api_err(deps.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(e.code, 422);
}
