//! ValidatingAdmissionPolicy behaviour beyond the recorded exchanges (which pin the 403 body and
//! one policy): reasons and their codes, messageExpression, failurePolicy, binding scope,
//! validationActions, DELETE's null object, subresources, and what is deliberately not enforced.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

fn api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// Creates a policy on configmaps (CREATE, UPDATE, DELETE) with `spec` merged in, and a binding.
async fn policy(client: &kube::Client, name: &str, spec: Value, binding_spec: Value) {
    let mut full = json!({
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["configmaps"],
        }]},
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name}, "spec": full});
    api(client, "ValidatingAdmissionPolicy", "validatingadmissionpolicies")
        .create(&PostParams::default(), &serde_json::from_value(obj).unwrap())
        .await
        .unwrap();
    let mut bspec = json!({"policyName": name, "validationActions": ["Deny"]});
    for (k, v) in binding_spec.as_object().unwrap() {
        bspec[k] = v.clone();
    }
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": format!("{name}-binding")}, "spec": bspec});
    api(
        client,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    )
    .create(&PostParams::default(), &serde_json::from_value(binding).unwrap())
    .await
    .unwrap();
}

fn configmap(name: &str, case: &str, keys: usize) -> ConfigMap {
    let data: serde_json::Map<String, Value> = (0..keys).map(|i| (format!("k{i}"), json!("v"))).collect();
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"case": case}}, "data": data})).unwrap()
}

/// The refusal of a request: code, reason, message.
struct Refused {
    code: u16,
    reason: String,
    message: String,
}

fn status_of<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> Refused {
    match r {
        Err(kube::Error::Api(s)) => Refused {
            code: s.code,
            reason: s.reason.clone(),
            message: s.message.clone(),
        },
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn start() -> (FakeApiServer, kube::Client) {
    let fake = FakeApiServer::start().await;
    let client = fake.client();
    for (ns, env) in [("prod", "prod"), ("dev", "dev")] {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {"env": env}}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
    }
    (fake, client)
}

#[tokio::test]
async fn reasons_messages_and_failure_policies() {
    let (_fake, client) = start().await;
    let selector = |case: &str| json!({"matchLabels": {"case": case}});
    let rules = |case: &str| {
        json!({"objectSelector": selector(case), "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "operations": ["*"], "resources": ["configmaps"]}]})
    };
    policy(
        &client,
        "count",
        json!({"matchConstraints": rules("count"), "validations": [{
            "expression": "object.data.size() < 3",
            "message": "static message",
            "messageExpression": "'too many keys: ' + string(object.data.size())",
        }]}),
        json!({}),
    )
    .await;
    policy(
        &client,
        "fails",
        json!({"matchConstraints": rules("fail"), "validations": [{"expression": "object.data.nope == 'x'"}]}),
        json!({}),
    )
    .await;
    policy(
        &client,
        "ignores",
        json!({"matchConstraints": rules("ignore"), "failurePolicy": "Ignore",
            "validations": [{"expression": "object.data.nope == 'x'"}]}),
        json!({}),
    )
    .await;
    policy(
        &client,
        "default-message",
        json!({"matchConstraints": rules("plain"), "validations": [{"expression": "  false  ", "reason": "Unauthorized"}]}),
        json!({}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    let pp = PostParams::default();

    cms.create(&pp, &configmap("small", "count", 2)).await.unwrap();
    let s = status_of(cms.create(&pp, &configmap("big", "count", 3)).await);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "no reason: Invalid");
    assert_eq!(
        s.message,
        "configmaps \"big\" is forbidden: ValidatingAdmissionPolicy 'count' with binding 'count-binding' denied request: too many keys: 3"
    );
    // An UPDATE that breaks the rule is refused too, and changes nothing.
    let grow = json!({"data": {"k2": "v", "k3": "v"}});
    let s = status_of(cms.patch("small", &PatchParams::default(), &Patch::Merge(&grow)).await);
    assert_eq!(s.code, 422);
    assert_eq!(cms.get("small").await.unwrap().data.unwrap().len(), 2);

    let s = status_of(cms.create(&pp, &configmap("err", "fail", 1)).await);
    assert_eq!(s.code, 422, "an evaluation error with failurePolicy Fail denies");
    assert!(s.message.contains("resulted in error"), "{}", s.message);
    cms.create(&pp, &configmap("err", "ignore", 1)).await.unwrap();

    let s = status_of(cms.create(&pp, &configmap("plain", "plain", 1)).await);
    assert_eq!((s.code, s.reason.as_str()), (401, "Unauthorized"));
    assert!(
        s.message.ends_with("denied request: failed expression: false"),
        "{}",
        s.message
    );
}

#[tokio::test]
async fn bindings_scope_and_actions() {
    let (_fake, client) = start().await;
    let deny_all = json!({"validations": [{"expression": "false", "message": "no", "reason": "Forbidden"}]});
    policy(
        &client,
        "prod-only",
        deny_all.clone(),
        json!({"matchResources": {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod"]}]}}}),
    )
    .await;
    // Warn and Audit are accepted and have no effect here (see the README).
    policy(
        &client,
        "warn-only",
        deny_all.clone(),
        json!({"validationActions": ["Warn", "Audit"]}),
    )
    .await;
    let mut excluded = deny_all.clone();
    excluded["matchConstraints"] = json!({
        "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["*"]}],
        "excludeResourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["configmaps"], "resourceNames": ["free"]}],
        "namespaceSelector": {"matchLabels": {"env": "dev"}},
        "objectSelector": {"matchExpressions": [{"key": "guarded", "operator": "Exists"}]},
    });
    policy(&client, "guarded", excluded, json!({})).await;

    let pp = PostParams::default();
    let prod: Api<ConfigMap> = Api::namespaced(client.clone(), "prod");
    let dev: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    let s = status_of(prod.create(&pp, &configmap("a", "x", 1)).await);
    assert_eq!(s.code, 403);
    assert!(
        s.message.contains("'prod-only' with binding 'prod-only-binding'"),
        "{}",
        s.message
    );
    dev.create(&pp, &configmap("a", "x", 1)).await.unwrap();

    // objectSelector: only labelled objects; excludeResourceRules by name.
    let mut guarded = configmap("b", "x", 1);
    guarded
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("guarded".into(), "yes".into());
    let s = status_of(dev.create(&pp, &guarded).await);
    assert!(s.message.contains("'guarded'"), "{}", s.message);
    guarded.metadata.name = Some("free".into());
    dev.create(&pp, &guarded).await.unwrap();
    // Adding the label to an unlabelled object: the new object matches the selector.
    let label = json!({"metadata": {"labels": {"guarded": "yes"}}});
    let s = status_of(dev.patch("a", &PatchParams::default(), &Patch::Merge(&label)).await);
    assert!(s.message.contains("'guarded'"), "{}", s.message);
    assert!(
        !dev.get("a")
            .await
            .unwrap()
            .metadata
            .labels
            .unwrap()
            .contains_key("guarded")
    );
}

#[tokio::test]
async fn delete_sees_a_null_object_and_subresources_match_separately() {
    let (_fake, client) = start().await;
    policy(
        &client,
        "keep",
        json!({"validations": [{
            "expression": "request.operation != 'DELETE' || (object == null && oldObject.metadata.name != 'keep')",
            "message": "kept",
            "reason": "Forbidden",
        }]}),
        json!({}),
    )
    .await;
    let pp = PostParams::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "dev");
    for name in ["keep", "drop"] {
        cms.create(&pp, &configmap(name, "x", 1)).await.unwrap();
    }
    let s = status_of(cms.delete("keep", &DeleteParams::default()).await);
    assert_eq!(
        (s.code, s.message.ends_with("denied request: kept")),
        (403, true),
        "{}",
        s.message
    );
    let s = status_of(
        cms.delete(
            "keep",
            &DeleteParams {
                dry_run: true,
                ..DeleteParams::default()
            },
        )
        .await,
    );
    assert_eq!(s.code, 403, "dry-run deletes are admitted the same way");
    cms.delete("drop", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("keep").await.unwrap().is_some());

    // A rule on namespaces/status does not see writes to the namespace itself.
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy");
    let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "status-only"}, "spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["namespaces/status"]}]},
            "validations": [{"expression": "false", "reason": "Forbidden"}]}});
    Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "validatingadmissionpolicies"),
    )
    .create(&pp, &serde_json::from_value(obj).unwrap())
    .await
    .unwrap();
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "status-only"}, "spec": {"policyName": "status-only", "validationActions": ["Deny"]}});
    api(
        &client,
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
    )
    .create(&pp, &serde_json::from_value(binding).unwrap())
    .await
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = json!({"metadata": {"labels": {"touched": "yes"}}});
    namespaces
        .patch("dev", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let phase = json!({"status": {"phase": "Active"}});
    let s = status_of(
        namespaces
            .patch_status("dev", &PatchParams::default(), &Patch::Merge(&phase))
            .await,
    );
    assert_eq!(s.code, 403, "{}", s.message);
}

#[tokio::test]
async fn policies_are_served_with_discovery_and_defaults() {
    let (_fake, client) = start().await;
    policy(
        &client,
        "defaults",
        json!({"validations": [{"expression": "true"}]}),
        json!({}),
    )
    .await;
    let got = api(&client, "ValidatingAdmissionPolicy", "validatingadmissionpolicies")
        .get("defaults")
        .await
        .unwrap();
    let spec = &got.data["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(spec["matchConstraints"]["matchPolicy"], "Equivalent");
    assert_eq!(spec["matchConstraints"]["resourceRules"][0]["scope"], "*");
    assert_eq!(got.data["status"], json!({}));
    assert_eq!(got.metadata.generation, Some(1));
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let group = discovery
        .groups()
        .find(|g| g.name() == "admissionregistration.k8s.io")
        .expect("admissionregistration.k8s.io is discoverable");
    let kinds: Vec<String> = group.recommended_resources().into_iter().map(|(r, _)| r.kind).collect();
    assert!(kinds.contains(&"ValidatingAdmissionPolicy".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"ValidatingAdmissionPolicyBinding".to_string()),
        "{kinds:?}"
    );
}
