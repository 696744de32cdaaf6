//! The chart's ValidatingAdmissionPolicy, rendered by real Helm (helm-python-sdk, as in
//! tests/python) and loaded into the fake API server, which evaluates it like kube-apiserver,
//! and into a real kube-apiserver when `DSQL_OPERATOR_E2E_KUBECONFIG` names one
//! (scripts/e2e-on-control-plane.sh): the operator's ServiceAccount is confined to its own
//! labelled Secrets and to rollout restarts, and nobody else is affected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/moto.rs"]
#[allow(dead_code)] // only the test-Python lookup is used here
mod moto;

use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_fake_apiserver::FakeApiServer;
use kube_fake_apiserver::auth::UserInfo;
use serde_json::{Value, json};

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// The API server under test and the names one test uses on it: fixed on a fresh fake, unique
/// on a real server that the whole run shares (the policy and its binding are cluster-wide).
struct Cluster {
    fake: Option<FakeApiServer>,
    /// The real server's client configuration (its admin), when not on the fake.
    real: Option<kube::Config>,
    admin: kube::Client,
    /// The release's namespace (where the operator's ServiceAccount lives).
    release_namespace: String,
    /// The release name, which the chart also uses as fullname: ServiceAccount and policy names.
    release: String,
    /// The policy's and its binding's name.
    policy: String,
    /// The workload namespace.
    shop: String,
    /// The over-broad ClusterRole and binding.
    broad: String,
}

impl Cluster {
    async fn start() -> Cluster {
        let kubeconfig = std::env::var("DSQL_OPERATOR_E2E_KUBECONFIG")
            .ok()
            .filter(|v| !v.is_empty());
        let (fake, real, admin, suffix) = match &kubeconfig {
            Some(path) => {
                let config = kube::Config::from_custom_kubeconfig(
                    kube::config::Kubeconfig::read_from(path).unwrap(),
                    &Default::default(),
                )
                .await
                .unwrap();
                let suffix = format!("-{}", rand::random::<u32>() % 100_000);
                let admin = kube::Client::try_from(config.clone()).unwrap();
                (None, Some(config), admin, suffix)
            }
            None => {
                let fake = FakeApiServer::start().await;
                let admin = fake.client();
                (Some(fake), None, admin, String::new())
            }
        };
        let release = format!("dsql-credential-operator{suffix}");
        Cluster {
            fake,
            real,
            admin,
            release_namespace: format!("dsql-system{suffix}"),
            policy: format!("{release}-confinement"),
            release,
            shop: format!("shop{suffix}"),
            broad: format!("too-broad{suffix}"),
        }
    }

    /// A client authenticated as ServiceAccount `namespace/name`: a token the fake issues, or on
    /// a real server the ServiceAccount (and its namespace) created and a TokenRequest.
    async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        if let Some(fake) = &self.fake {
            let user = UserInfo::service_account(namespace, name, "0b7c3a52-5d0e-4d36-9b1e-6a3c2f1d9e80");
            return fake.client_with_token(&fake.issue_token(user), name);
        }
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        let _ = Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &n)
            .await;
        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), namespace);
        let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        let _ = accounts.create(&PostParams::default(), &account).await;
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &TokenRequest::default())
            .await
            .unwrap();
        let mut config = self.real.clone().expect("a real server's configuration");
        config.auth_info = kube::config::AuthInfo {
            token: Some(issued.status.unwrap().token.into()),
            ..Default::default()
        };
        kube::Client::try_from(config).unwrap()
    }

    /// Waits (bounded: 15 s) until the policy is enforced for `operator`: a real server picks a
    /// new binding up about a second after its write (the fake at once). Probes with a dry-run
    /// create of an unlabelled Secret, which the policy denies.
    async fn wait_enforced(&self, operator: &kube::Client) {
        let secrets: Api<Secret> = Api::namespaced(operator.clone(), &self.shop);
        let dry_run = PostParams {
            dry_run: true,
            ..Default::default()
        };
        for _ in 0..150 {
            match secrets.create(&dry_run, &secret("probe", false)).await {
                Err(kube::Error::Api(status)) if status.code == 403 => return,
                _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
        panic!("the policy {} was not enforced within 15 s", self.policy);
    }

    /// The error of a denied request: 403 Forbidden naming the policy.
    fn assert_denied<T: std::fmt::Debug>(&self, what: &str, result: Result<T, kube::Error>) {
        match result {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403, "{what}: {status:?}");
                assert_eq!(status.reason, "Forbidden", "{what}");
                let policy = &self.policy;
                let expected = format!("ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: ");
                assert!(status.message.contains(&expected), "{what}: {}", status.message);
            }
            other => panic!("{what}: expected a 403 from the policy, got {other:?}"),
        }
    }

    /// Creates the namespace `name`.
    async fn create_namespace(&self, name: &str) {
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &n)
            .await
            .unwrap();
    }

    /// Creates the Deployment `app` in the workload namespace (one replica, a template annotation
    /// of its own) as the admin; returns the admin's API for Deployments there.
    async fn create_app_deployment(&self) -> Api<Deployment> {
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), &self.shop);
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "app", "labels": {"app": "app"}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "app"}},
                "template": {
                    "metadata": {"labels": {"app": "app"}, "annotations": {"example.dev/keep": "yes"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
                },
            },
        }))
        .unwrap();
        deployments.create(&PostParams::default(), &deployment).await.unwrap();
        deployments
    }

    /// A client as the operator's ServiceAccount, with RBAC broader than the chart's (see
    /// [`grant_everything_on_secrets_and_deployments`]), once the installed policy is enforced for
    /// it: whatever it is denied, the policy denied.
    async fn confined_operator(&self) -> kube::Client {
        grant_everything_on_secrets_and_deployments(self).await;
        let operator = self
            .service_account_client(&self.release_namespace, &self.release)
            .await;
        self.wait_enforced(&operator).await;
        operator
    }

    /// Creates the policy and its binding as rendered.
    async fn install(&self, docs: &[Value]) {
        for (doc, plural) in docs
            .iter()
            .zip(["validatingadmissionpolicies", "validatingadmissionpolicybindings"])
        {
            let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
            admission_api(&self.admin, doc["kind"].as_str().unwrap(), plural)
                .create(&PostParams::default(), &obj)
                .await
                .unwrap();
        }
    }
}

/// The chart's admission-policy template rendered with default values, as JSON documents.
fn rendered_policy(cluster: &Cluster) -> Vec<Value> {
    let python = moto::test_python().unwrap();
    moto::check_python_imports(&python, &["helm_python", "yaml"]).unwrap();
    let script = r#"
import json, sys, yaml, helm_python
with helm_python.Chart.load(sys.argv[1]) as chart:
    files = chart.render({}, name=sys.argv[2], namespace=sys.argv[3], is_install=True)
docs = [d for path, text in files.items() if path.endswith("/admission-policy.yaml")
        for d in yaml.safe_load_all(text) if d]
print(json.dumps(docs))
"#;
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/dsql-credential-operator");
    let out = Command::new(&python)
        .args(["-c", script, chart, &cluster.release, &cluster.release_namespace])
        .stdin(Stdio::null())
        .output()
        .expect("run the test Python");
    assert!(
        out.status.success(),
        "helm render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rendered documents as JSON")
}

fn admission_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind);
    Api::all_with(client.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
}

fn secret(name: &str, labelled: bool) -> Secret {
    let labels = if labelled {
        json!({MANAGED_BY: "dsql-credential-operator"})
    } else {
        json!({})
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "labels": labels},
        "data": {"password": "ZHVtbXk="},
    }))
    .unwrap()
}

/// Binds the operator's ServiceAccount (and `shop/ci`, the bystander) to every verb on Secrets and Deployments: RBAC broader than the
/// chart's, so every denial below comes from the admission policy (the fake authorizes by RBAC
/// first, as the real server does), which is what confines a ServiceAccount whose RBAC is wide.
async fn grant_everything_on_secrets_and_deployments(c: &Cluster) {
    let admin = &c.admin;
    let rbac = |kind: &str, plural: &str| {
        let gvk = GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind);
        Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::from_gvk_with_plural(&gvk, plural))
    };
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": c.broad},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
            {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale"], "verbs": ["*"]},
        ],
    }))
    .unwrap();
    rbac("ClusterRole", "clusterroles")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": c.broad},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": c.broad},
        "subjects": [
            {"kind": "ServiceAccount", "name": c.release, "namespace": c.release_namespace},
            {"kind": "ServiceAccount", "name": "ci", "namespace": c.shop},
        ],
    }))
    .unwrap();
    rbac("ClusterRoleBinding", "clusterrolebindings")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn chart_policy_confines_the_operator_serviceaccount() {
    let c = Cluster::start().await;
    let docs = rendered_policy(&c);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]);

    c.install(&docs).await;
    c.create_namespace(&c.release_namespace).await;
    c.create_namespace(&c.shop).await;
    let admin_secrets: Api<Secret> = Api::namespaced(c.admin.clone(), &c.shop);
    admin_secrets
        .create(&PostParams::default(), &secret("foreign", false))
        .await
        .unwrap();
    let admin_deployments = c.create_app_deployment().await;

    let operator = c.confined_operator().await;
    let secrets: Api<Secret> = Api::namespaced(operator.clone(), &c.shop);
    let deployments: Api<Deployment> = Api::namespaced(operator.clone(), &c.shop);
    let merge = PatchParams::default();

    // Someone else's Secret: no patch, no delete, no adoption by adding the label.
    let add_data = json!({"data": {"extra": "ZHVtbXk="}});
    c.assert_denied(
        "patch of a foreign Secret",
        secrets.patch("foreign", &merge, &Patch::Merge(&add_data)).await,
    );
    let adopt = json!({"metadata": {"labels": {MANAGED_BY: "dsql-credential-operator"}}});
    c.assert_denied(
        "adopting a foreign Secret",
        secrets.patch("foreign", &merge, &Patch::Merge(&adopt)).await,
    );
    c.assert_denied(
        "delete of a foreign Secret",
        secrets.delete("foreign", &DeleteParams::default()).await,
    );
    c.assert_denied(
        "create of an unlabelled Secret",
        secrets
            .create(&PostParams::default(), &secret("unlabelled", false))
            .await,
    );
    let foreign = admin_secrets.get("foreign").await.unwrap();
    assert!(
        !foreign.data.unwrap().contains_key("extra"),
        "the denied patch wrote nothing"
    );

    // Its own labelled Secret: create, server-side apply, patch and delete pass; dropping the
    // label does not.
    secrets
        .create(&PostParams::default(), &secret("own", true))
        .await
        .unwrap();
    let apply = PatchParams::apply("dsql-credential-operator").force();
    let mut own = serde_json::to_value(secret("own", true)).unwrap();
    own["data"]["password"] = json!("bmV3");
    secrets.patch("own", &apply, &Patch::Apply(&own)).await.unwrap();
    secrets.patch("own", &merge, &Patch::Merge(&add_data)).await.unwrap();
    let unlabel = json!({"metadata": {"labels": {MANAGED_BY: null}}});
    c.assert_denied(
        "removing the managed-by label",
        secrets.patch("own", &merge, &Patch::Merge(&unlabel)).await,
    );
    secrets.delete("own", &DeleteParams::default()).await.unwrap();

    // Workloads: a rollout restart passes; anything else is denied.
    let restart = |at: &str| json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": at}}}}});
    let patched = deployments
        .patch("app", &merge, &Patch::Strategic(restart("2026-11-29T10:00:00Z")))
        .await
        .unwrap();
    let annotations = patched.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations["kubectl.kubernetes.io/restartedAt"], "2026-11-29T10:00:00Z");
    deployments
        .patch("app", &merge, &Patch::Strategic(restart("2026-11-29T11:00:00Z")))
        .await
        .unwrap();
    // What the operator sends: a merge patch. The fake builds the admission request like
    // kube-apiserver (no `subResource` key at all), so this is the request issue 18's policy
    // refused with 422 on every real cluster.
    let patched = deployments
        .patch("app", &merge, &Patch::Merge(restart("2026-11-29T11:30:00Z")))
        .await
        .unwrap();
    let annotations = patched.spec.unwrap().template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations["kubectl.kubernetes.io/restartedAt"], "2026-11-29T11:30:00Z");
    // A subresource is never a restart: scale is denied (the validation's own 403).
    let scale_api: Api<DynamicObject> =
        Api::namespaced_with(operator.clone(), &c.shop, &ApiResource::erase::<Deployment>(&()));
    c.assert_denied(
        "scale subresource",
        scale_api
            .patch_subresource("scale", "app", &merge, &Patch::Merge(json!({"spec": {"replicas": 5}})))
            .await,
    );
    c.assert_denied(
        "replicas change",
        deployments
            .patch("app", &merge, &Patch::Merge(json!({"spec": {"replicas": 3}})))
            .await,
    );
    c.assert_denied(
        "a new spec field",
        deployments
            .patch("app", &merge, &Patch::Merge(json!({"spec": {"paused": true}})))
            .await,
    );
    c.assert_denied(
        "a label on the Deployment",
        deployments
            .patch(
                "app",
                &merge,
                &Patch::Merge(json!({"metadata": {"labels": {"team": "x"}}})),
            )
            .await,
    );
    let mut other_annotation = restart("2026-11-29T12:00:00Z");
    other_annotation["spec"]["template"]["metadata"]["annotations"]["example.dev/keep"] = json!("no");
    c.assert_denied(
        "restart plus another template annotation",
        deployments
            .patch("app", &merge, &Patch::Strategic(other_annotation))
            .await,
    );
    let image =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "evil.example/app:2"}]}}}});
    c.assert_denied(
        "image change",
        deployments.patch("app", &merge, &Patch::Strategic(image)).await,
    );
    c.assert_denied(
        "deployment delete",
        deployments.delete("app", &DeleteParams::default()).await,
    );
    assert_eq!(
        admin_deployments.get("app").await.unwrap().spec.unwrap().replicas,
        Some(1),
        "the denied patch changed nothing"
    );

    // The admin (and any other ServiceAccount) is not evaluated at all.
    admin_secrets
        .patch("foreign", &merge, &Patch::Merge(&add_data))
        .await
        .unwrap();
    admin_deployments
        .patch("app", &merge, &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await
        .unwrap();
    let other = c.service_account_client(&c.shop, "ci").await;
    Api::<Secret>::namespaced(other, &c.shop)
        .delete("foreign", &DeleteParams::default())
        .await
        .unwrap();
}

/// The chart's policy as shipped before issue 18 (its `restart` variable read
/// `request.subResource == ''`) denies the operator's restart on the fake as kube-apiserver does:
/// 422 Invalid, naming the failed variable and the absent key, since the fake builds the
/// admission request without `subResource` like the real server.
#[tokio::test]
async fn the_old_restart_expression_is_refused_with_the_real_servers_422() {
    let c = Cluster::start().await;
    let mut docs = rendered_policy(&c);
    let variables = docs[0]["spec"]["variables"].as_array_mut().unwrap();
    let restart = variables.iter_mut().find(|v| v["name"] == "restart").unwrap();
    let old = "request.resource.group == 'apps' && request.operation == 'UPDATE' && request.subResource == ''";
    restart["expression"] = json!(old);

    c.install(&docs).await;
    c.create_namespace(&c.shop).await;
    c.create_app_deployment().await;
    let operator = c.confined_operator().await;
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-29T10:00:00Z"}}}}});
    let refused = Api::<Deployment>::namespaced(operator, &c.shop)
        .patch("app", &PatchParams::default(), &Patch::Merge(&restart))
        .await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{status:?}");
            let expected = format!(
                "deployments.apps \"app\" is forbidden: ValidatingAdmissionPolicy '{policy}' with binding '{policy}' denied request: expression '",
                policy = c.policy
            );
            assert!(status.message.starts_with(&expected), "{}", status.message);
            assert!(
                status.message.ends_with(
                    "' resulted in error: composited variable \"restart\" fails to evaluate: no such key: subResource"
                ),
                "{}",
                status.message
            );
        }
        other => panic!("expected the real server's 422, got {other:?}"),
    }
}
