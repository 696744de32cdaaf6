//! The first run explains itself, with the real binary: no cluster fails in one line naming
//! where it looked; a missing CRD is said once (then waited for quietly, and picked up); and
//! `check` prints a ✓/✗ checklist for a broken and a working setup.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use support::apiserver::FakeApiServer;
use support::env::{TestEnv, test_access_policy_yaml};
use support::moto::{test_aws_env, test_credentials};
use support::process::{OperatorProcess, fake_without_crd, kubeconfig_text};

const BINARY: &str = env!("CARGO_BIN_EXE_dsql-credential-operator");
const CRD_MESSAGE: &str = "the DsqlCredential CRD is not installed";

/// Runs the binary to completion with only `env` (and an empty HOME), bounded to 60 s.
fn run_binary(args: &[&str], env: &[(String, String)], home: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("{args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

/// A kubeconfig for the fake that authenticates with `token` (or as the admin without one).
fn write_kubeconfig(dir: &Path, server: &str, token: Option<&str>) -> String {
    let mut text = kubeconfig_text(server);
    if let Some(token) = token {
        text = text.replace("  user: {}", &format!("  user:\n    token: {token}"));
    }
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The one line that starts with `prefix`; fails listing them all otherwise.
fn line<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "one line starting {prefix:?} in:\n{}", lines.join("\n"));
    found[0]
}

#[test]
fn without_a_cluster_run_fails_fast_in_one_line_naming_where_it_looked() {
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
    ];
    let (out, took) = run_binary(
        &["run", "--region", "us-east-1", "--http-addr", "127.0.0.1:0"],
        &env,
        home.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("[figure] no cluster: exited in {took:?}:\n{stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(!stderr.contains(" WARN "), "{stderr}");
    for place in [
        "KUBERNETES_SERVICE_HOST",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "KUBECONFIG (unset)",
        "~/.kube/config",
        "--kubeconfig",
    ] {
        assert!(errors[0].contains(place), "{place:?} not named: {}", errors[0]);
    }
}

#[test]
fn without_a_region_or_credentials_run_says_which_is_missing() {
    let home = tempfile::tempdir().unwrap();
    // A cluster address nothing answers on: building the client does not connect.
    let kubeconfig = write_kubeconfig(home.path(), "http://127.0.0.1:9", None);
    let base = [
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE".to_owned(), "/dev/null".to_owned()),
        ("KUBECONFIG".to_owned(), kubeconfig),
    ];
    let args = ["run", "--http-addr", "127.0.0.1:0"];
    let (out, _) = run_binary(&args, &base, home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("[figure] no region:\n{stderr}");
    assert!(!out.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("no AWS region: set --region"), "{stderr}");

    let (out, _) = run_binary(&[&args[..], &["--region", "eu-west-1"]].concat(), &base, home.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("[figure] no credentials:\n{stderr}");
    assert!(!out.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("no AWS credentials: looked in"), "{stderr}");
    assert!(!errors[0].contains("region"), "the region was given: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_is_said_once_then_waited_for_and_picked_up() {
    let namespace = "first-run";
    let (fake, kube, endpoints) = fake_without_crd(namespace).await;
    let mut operator = OperatorProcess::start_elected(&endpoints, namespace, "a", "first-run", &[]);
    let failed_lists = || {
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("dsqlcredentials") && r.status == 404)
            .count()
    };
    // Several retries of the watch: the message must not come with each.
    for _ in 0..400 {
        if failed_lists() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = operator.log();
    assert!(failed_lists() >= 4, "the watch did not retry:\n{log}");
    assert_eq!(
        log.matches(CRD_MESSAGE).count(),
        1,
        "said once over {} lists:\n{log}",
        failed_lists()
    );
    assert!(log.contains("kubectl apply -f crds/dsqlcredential.yaml"), "{log}");
    assert!(log.contains("crds.enabled"), "{log}");
    assert!(!log.contains(" WARN "), "no warning loop:\n{log}");

    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dsqlcredential.yaml")).unwrap();
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
    Api::<CustomResourceDefinition>::all(kube.clone())
        .patch(
            "dsqlcredentials.dsql.credentials.dev",
            &PatchParams::apply("first-run-test"),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    let picked_up = "the DsqlCredential CRD is installed now";
    for _ in 0..600 {
        if operator.log().contains(picked_up) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = operator.log();
    eprintln!("[figure] CRD missing, then installed:\n{log}");
    assert!(log.contains(picked_up), "the CRD was not picked up:\n{log}");
    assert_eq!(log.matches(CRD_MESSAGE).count(), 1, "{log}");
    let (_, status) = operator.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_a_broken_setup_names_what_to_fix_and_fails() {
    // A ServiceAccount without the chart's RBAC, no CRD, no region.
    let fake = FakeApiServer::start().await;
    let kube = fake.client();
    let namespace = "broken";
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(kube.clone(), namespace);
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"metadata": {"name": "operator"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let request = serde_json::from_value(serde_json::json!({"spec": {}})).unwrap();
    let token = sas
        .create_token_request("operator", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = write_kubeconfig(dir.path(), &fake.base_url(), Some(&token));
    let mut env: Vec<(String, String)> = test_aws_env("http://127.0.0.1:9", &test_credentials());
    env.retain(|(k, _)| k != "AWS_REGION");
    let before = fake.requests().len();
    let (out, _) = run_binary(
        &["check", "--kubeconfig", &kubeconfig, "--namespace", namespace],
        &env,
        dir.path(),
    );
    let lines = stdout_lines(&out);
    eprintln!("[figure] check, broken setup:\n{}", lines.join("\n"));
    assert!(!out.status.success());
    assert!(
        line(&lines, "✓ Kubernetes cluster").ends_with("as system:serviceaccount:broken:operator"),
        "{lines:?}"
    );
    assert!(line(&lines, "✗ CRD").contains("kubectl apply -f crds/dsqlcredential.yaml"));
    let rbac = line(
        &lines,
        "✗ RBAC dsqlcredentials.dsql.credentials.dev in namespace broken",
    );
    assert!(rbac.contains("denied list, watch, patch"), "{rbac}");
    assert!(line(&lines, "✗ RBAC secrets in namespace broken").contains("denied create, patch, delete"));
    assert!(!lines.iter().any(|l| l.starts_with("✓ RBAC")), "{lines:?}");
    assert!(line(&lines, "✗ AWS region").contains("--region"));
    line(&lines, "✓ access policy");
    // Nothing was written: only reads, discovery and reviews.
    let writes: Vec<String> = fake.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("selfsubject"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "check wrote: {writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_on_a_working_setup_is_all_ticks() {
    let env = TestEnv::new("check-ok").await;
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, test_access_policy_yaml(&env.namespace)).unwrap();
    let policy = policy.display().to_string();
    let aws = test_aws_env(&env.moto.endpoint_url(), &test_credentials());
    // As the operator's ServiceAccount with the chart's RBAC.
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, env.operator_kubeconfig_text()).unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let args = [
        "check",
        "--kubeconfig",
        &kubeconfig,
        "--namespace",
        &env.namespace,
        "--access-policy",
        &policy,
        "--leader-election-namespace",
        &env.namespace,
        "--leader-election-lease-name",
        env.lease_name(),
    ];
    let (out, _) = run_binary(&args, &aws, dir.path());
    let lines = stdout_lines(&out);
    eprintln!("[figure] check, working setup:\n{}", lines.join("\n"));
    assert!(
        out.status.success(),
        "{lines:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines.iter().all(|l| l.starts_with('✓')), "{lines:?}");
    let permissions = support::permissions::load().len();
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("✓ RBAC")).count(),
        permissions,
        "{lines:?}"
    );
    assert!(line(&lines, "✓ Kubernetes cluster").contains(&env.operator_identity.fullname));
    line(&lines, "✓ CRD dsqlcredentials.dsql.credentials.dev installed");
    assert!(
        line(&lines, "✓ AWS credentials found").contains("arn:aws:"),
        "{lines:?}"
    );
    line(&lines, "✓ AWS region us-east-1");
    assert!(line(&lines, "✓ access policy").contains("(1 rule)"));

    // As the admin, who may read the CRD: its schema is compared with the binary's.
    let admin_dir = tempfile::tempdir().unwrap();
    let admin_kubeconfig = admin_dir.path().join("kubeconfig");
    std::fs::write(&admin_kubeconfig, env.kubeconfig_text(None)).unwrap();
    let admin_kubeconfig = admin_kubeconfig.display().to_string();
    let (out, _) = run_binary(&["check", "--kubeconfig", &admin_kubeconfig], &aws, admin_dir.path());
    let lines = stdout_lines(&out);
    eprintln!("[figure] check as the admin:\n{}", lines.join("\n"));
    assert!(out.status.success(), "{lines:?}");
    assert_eq!(
        line(&lines, "✓ CRD"),
        "✓ CRD dsqlcredentials.dsql.credentials.dev installed and current"
    );

    // A CRD from another release (one more field in its schema) is reported, with the fix.
    let crds: Api<CustomResourceDefinition> = Api::all(env.kube.clone());
    let mut crd = crds.get("dsqlcredentials.dsql.credentials.dev").await.unwrap();
    let schema = crd.spec.versions[0]
        .schema
        .as_mut()
        .unwrap()
        .open_api_v3_schema
        .as_mut()
        .unwrap();
    let properties = schema.properties.as_mut().unwrap();
    properties.insert(
        "extra".to_owned(),
        serde_json::from_value(serde_json::json!({"type": "string"})).unwrap(),
    );
    crd.metadata.managed_fields = None;
    crds.replace("dsqlcredentials.dsql.credentials.dev", &PostParams::default(), &crd)
        .await
        .unwrap();
    let (out, _) = run_binary(&["check", "--kubeconfig", &admin_kubeconfig], &aws, admin_dir.path());
    let lines = stdout_lines(&out);
    assert!(!out.status.success(), "{lines:?}");
    let outdated = line(&lines, "✗ CRD");
    assert!(outdated.contains("different schema"), "{outdated}");
    assert!(
        outdated.contains("kubectl apply -f crds/dsqlcredential.yaml"),
        "{outdated}"
    );
}
