//! The operator's identity in the end-to-end tests: the ServiceAccount, RBAC and
//! ValidatingAdmissionPolicy that the Helm chart renders (with real Helm, through
//! `render_rbac.py`), applied to the API, and a client that authenticates with a token from a
//! TokenRequest for that ServiceAccount. So the operator runs with exactly the chart's
//! permissions and under its admission policy, against the fake (whose authorizer is RBAC and
//! which evaluates admission policies) or a real cluster alike.

use std::process::Command;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};

/// Environment variable naming the Python interpreter with helm-python-sdk installed.
pub const PYTHON_ENV: &str = "DSQL_OPERATOR_TEST_PYTHON";

/// Which of the chart's two RBAC layouts the operator gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacMode {
    /// The chart's default (all namespaces): a ClusterRole and ClusterRoleBinding.
    AllNamespaces,
    /// `config.watchNamespaces=[<test namespace>]`: a Role and RoleBinding in that namespace.
    WatchedNamespace,
}

/// The operator's ServiceAccount, as installed for one test.
#[derive(Debug, Clone)]
pub struct OperatorIdentity {
    /// The chart's fullname for this test (also the ServiceAccount and Lease name).
    pub fullname: String,
    /// Bearer token from a TokenRequest for the ServiceAccount.
    pub token: String,
    /// Which RBAC layout was rendered.
    pub mode: RbacMode,
    /// Every cluster-scoped object applied, to delete on a real cluster.
    pub cluster_scoped: Vec<(ApiResource, String)>,
}

/// Renders the chart's RBAC for `namespace` (release namespace and watched namespace) with a
/// fullname unique to the test, so cluster-scoped names never collide between parallel tests.
pub fn render(namespace: &str, fullname: &str, mode: RbacMode) -> Vec<serde_json::Value> {
    let python = std::env::var(PYTHON_ENV)
        .unwrap_or_else(|_| panic!("{PYTHON_ENV} must name a Python with helm-python-sdk (the test virtualenv)"));
    let mut values = serde_json::json!({"fullnameOverride": fullname});
    if mode == RbacMode::WatchedNamespace {
        values["config"] = serde_json::json!({"watchNamespaces": [namespace]});
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(&python)
        .arg(format!("{root}/tests/support/render_rbac.py"))
        .arg(format!("{root}/charts/dsql-credential-operator"))
        .arg(fullname)
        .arg(namespace)
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "render_rbac.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("render_rbac.py prints a JSON list")
}

/// The API resource of a rendered object (only the kinds `render_rbac.py` prints).
fn resource_of(object: &serde_json::Value) -> (ApiResource, bool) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, plural, namespaced) = match kind {
        "ServiceAccount" => ("", "serviceaccounts", true),
        "Role" => ("rbac.authorization.k8s.io", "roles", true),
        "RoleBinding" => ("rbac.authorization.k8s.io", "rolebindings", true),
        "ClusterRole" => ("rbac.authorization.k8s.io", "clusterroles", false),
        "ClusterRoleBinding" => ("rbac.authorization.k8s.io", "clusterrolebindings", false),
        "ValidatingAdmissionPolicy" => ("admissionregistration.k8s.io", "validatingadmissionpolicies", false),
        "ValidatingAdmissionPolicyBinding" => (
            "admissionregistration.k8s.io",
            "validatingadmissionpolicybindings",
            false,
        ),
        other => panic!("render_rbac.py printed an unexpected kind {other:?}"),
    };
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    (ApiResource::from_gvk_with_plural(&gvk, plural), namespaced)
}

/// Applies the chart's ServiceAccount and RBAC for `namespace` with the admin client, and gets a
/// token for the ServiceAccount by TokenRequest.
pub async fn install(admin: &kube::Client, namespace: &str, mode: RbacMode) -> OperatorIdentity {
    let fullname = format!("dsql-op-{namespace}");
    let fullname = fullname
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned();
    let objects = render(namespace, &fullname, mode);
    // The chart's admission policy (on by default) confines the ServiceAccount in both modes.
    let expected_kinds: &[&str] = match mode {
        RbacMode::AllNamespaces => &[
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
        RbacMode::WatchedNamespace => &[
            "Role",
            "RoleBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ],
    };
    for kind in expected_kinds {
        assert!(
            objects.iter().any(|o| o["kind"] == *kind),
            "the chart rendered no {kind} for {mode:?}"
        );
    }
    let mut cluster_scoped = Vec::new();
    let params = PatchParams::apply("dsql-operator-e2e").force();
    for object in &objects {
        let (resource, namespaced) = resource_of(object);
        let name = object["metadata"]["name"].as_str().expect("a rendered name").to_owned();
        let api: Api<DynamicObject> = if namespaced {
            let ns = object["metadata"]["namespace"].as_str().unwrap_or(namespace);
            Api::namespaced_with(admin.clone(), ns, &resource)
        } else {
            cluster_scoped.push((resource.clone(), name.clone()));
            Api::all_with(admin.clone(), &resource)
        };
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .unwrap_or_else(|e| panic!("applying the chart's {} {name}: {e}", resource.kind));
    }
    let service_accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let issued = service_accounts
        .create_token_request(&fullname, &PostParams::default(), &request)
        .await
        .expect("TokenRequest for the operator's ServiceAccount");
    let token = issued.status.map(|s| s.token).unwrap_or_default();
    assert!(!token.is_empty(), "the TokenRequest returned no token");
    OperatorIdentity {
        fullname,
        token,
        mode,
        cluster_scoped,
    }
}

/// Deletes the cluster-scoped objects [`install`] applied (namespaced ones go with the namespace).
pub async fn uninstall_cluster_scoped(admin: kube::Client, identity: &OperatorIdentity) {
    for (resource, name) in &identity.cluster_scoped {
        let api: Api<DynamicObject> = Api::all_with(admin.clone(), resource);
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

/// A client that authenticates as the operator's ServiceAccount: against a real cluster, the
/// kubeconfig's cluster URL and CA with only the token as credentials.
pub async fn real_cluster_client(kubeconfig_path: &str, token: &str, actor: &str) -> kube::Client {
    let mut config = super::env::real_cluster_config(kubeconfig_path).await;
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.to_owned().into()),
        ..Default::default()
    };
    if let Ok(value) = actor.parse() {
        config.headers.push((
            hyper::http::HeaderName::from_static(super::apiserver::ACTOR_HEADER),
            value,
        ));
    }
    kube::Client::try_from(config).expect("client")
}
