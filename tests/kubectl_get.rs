//! `kubectl get dsqlcred` as users see it: the real kubectl (client only, offline) against the
//! fake API server, which renders the committed CRD's printer columns server-side the way
//! kube-apiserver does, and against a real kube-apiserver when `DSQL_OPERATOR_E2E_KUBECONFIG`
//! names one (scripts/e2e-on-control-plane.sh). A healthy credential's expiry and next rotation lie in the future, so
//! they must read as timestamps, never as `<invalid>` (what a `date` column shows for a future
//! time).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_fake_apiserver::FakeApiServer;
use serde_json::json;

const NAME: &str = "orders-db";

/// The API server the test talks to: the fake, or the real one named by
/// `DSQL_OPERATOR_E2E_KUBECONFIG`; with an admin kubeconfig for kubectl.
struct Server {
    _fake: Option<FakeApiServer>,
    client: kube::Client,
    kubeconfig: String,
    namespace: String,
}

impl Server {
    async fn start() -> Server {
        match std::env::var("DSQL_OPERATOR_E2E_KUBECONFIG")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(path) => {
                let config = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig readable");
                let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
                    .await
                    .expect("kubeconfig valid");
                Server {
                    _fake: None,
                    client: kube::Client::try_from(config).expect("client"),
                    kubeconfig: std::fs::read_to_string(&path).expect("kubeconfig readable"),
                    // The real server is shared by the whole run.
                    namespace: format!("shop-{}", rand::random::<u32>() % 100_000),
                }
            }
            None => {
                let fake = FakeApiServer::start().await;
                let kubeconfig = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{}\"}}\nusers:\n- name: admin\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: admin}}\ncurrent-context: fake\n",
                    fake.base_url()
                );
                Server {
                    client: fake.client(),
                    _fake: Some(fake),
                    kubeconfig,
                    namespace: "shop".to_owned(),
                }
            }
        }
    }

    fn credentials(&self) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("dsql.credentials.dev", "v1alpha1", "DsqlCredential");
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::from_gvk_with_plural(&gvk, "dsqlcredentials"),
        )
    }

    /// Applies crds/dsqlcredential.yaml (the committed file users apply) and waits until it
    /// serves.
    async fn install_crd(&self) {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dsqlcredential.yaml");
        let crd: CustomResourceDefinition =
            serde_saphyr::from_str(&std::fs::read_to_string(path).expect("committed CRD")).expect("CRD parses");
        Api::<CustomResourceDefinition>::all(self.client.clone())
            .patch(
                "dsqlcredentials.dsql.credentials.dev",
                &PatchParams::apply("kubectl-get-test").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("CRD applied");
        for _ in 0..200 {
            if self.credentials().list(&Default::default()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the API server did not serve DsqlCredentials within 10s");
    }
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A credential as the operator leaves it after a rotation: Ready, token valid for 45 more
/// minutes, next rotation in 30.
async fn healthy_credential(server: &Server) -> (String, String) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": server.namespace}})).unwrap();
    Api::<Namespace>::all(server.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let api = server.credentials();
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "dsql.credentials.dev/v1alpha1",
        "kind": "DsqlCredential",
        "metadata": {"name": NAME, "namespace": server.namespace},
        "spec": {"cluster": {"endpoint": "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws"}, "role": "admin"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &object)
        .await
        .expect("credential created");
    let now = jiff::Timestamp::now();
    let expires = rfc3339(now + jiff::SignedDuration::from_mins(45));
    let next = rfc3339(now + jiff::SignedDuration::from_mins(30));
    let status = json!({"status": {
        "secretName": "dsql/shop/orders-db",
        "tokenExpirationTime": expires,
        "nextRotationTime": next,
        "lastRotationTime": rfc3339(now),
        "rotationCount": 1,
        "consecutiveFailures": 0,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "TokenPublished",
            "message": "token published", "lastTransitionTime": rfc3339(now),
        }],
    }});
    api.patch_status(NAME, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status written");
    (expires, next)
}

/// Runs the real kubectl with a throwaway kubeconfig and cache, bounded by a timeout.
async fn kubectl(server: &Server, home: &std::path::Path, args: &[&str]) -> Output {
    let kubeconfig = home.join("kubeconfig");
    std::fs::write(&kubeconfig, &server.kubeconfig).unwrap();
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.args(args)
        .args(["--namespace", &server.namespace])
        .arg("--request-timeout=20s")
        .arg(format!("--cache-dir={}", home.join("cache").display()))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", home)
        .kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(90), cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("kubectl could not be run ({e}); this test needs the kubectl binary on PATH"),
        Err(_) => panic!("kubectl {args:?} did not finish within 90s"),
    }
}

/// The cells of a kubectl table, split on the runs of two or more spaces tabwriter pads with.
fn cells(line: &str) -> Vec<String> {
    regex::Regex::new(r" {2,}")
        .unwrap()
        .split(line.trim_end())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_shows_expiry_and_next_rotation_as_timestamps() {
    let server = Server::start().await;
    server.install_crd().await;
    let (expires, next) = healthy_credential(&server).await;
    let home = tempfile::tempdir().unwrap();

    let out = kubectl(&server, home.path(), &["get", "dsqlcred"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("$ kubectl get dsqlcred -n {}\n{stdout}", server.namespace);
    assert!(out.status.success(), "kubectl failed: {stderr}");
    assert!(
        !stdout.contains("<invalid>"),
        "a future time printed as <invalid>:\n{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row:\n{stdout}");
    assert_eq!(
        cells(lines[0]),
        ["NAME", "READY", "REASON", "ROLE", "EXPIRES", "NEXT ROTATION", "AGE"],
        "{stdout}"
    );
    let row = cells(lines[1]);
    assert_eq!(
        row[..6],
        [NAME, "True", "TokenPublished", "admin", expires.as_str(), next.as_str()],
        "{stdout}"
    );
    assert!(
        regex::Regex::new(r"^\d+s$").unwrap().is_match(&row[6]),
        "AGE of a just-created object is in seconds: {:?}",
        row[6]
    );

    let out = kubectl(&server, home.path(), &["get", "dsqlcred", NAME, "-o", "wide"]).await;
    let wide = String::from_utf8_lossy(&out.stdout).to_string();
    println!("$ kubectl get dsqlcred {NAME} -n {} -o wide\n{wide}", server.namespace);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = wide.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "READY",
            "REASON",
            "ROLE",
            "EXPIRES",
            "NEXT ROTATION",
            "FAILURES",
            "SECRET",
            "AGE"
        ],
        "{wide}"
    );
    assert_eq!(cells(lines[1])[6..8], ["0", "dsql/shop/orders-db"], "{wide}");
}
