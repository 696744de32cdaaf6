//! End to end with the real binary: SIGTERM stops it within seconds in every state (leading and
//! idle, watch backing off on a missing CRD, API server gone, AWS call in flight), releasing the
//! Lease where the API server is reachable; and a SIGKILLed leader is replaced within its lease
//! duration by a standby whose first act makes no second Secrets Manager version.
//!
//! The binary runs as the operator's ServiceAccount with the chart's RBAC, on the fake API server
//! or a real one; the tests that stop the API server or start without the CRD need the fake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Method;
use support::credential::admin_spec;
use support::env::TestEnv;
use support::lease::holder;
use support::process::{Endpoints, OperatorProcess, fake_without_crd};
use tokio::sync::Notify;

const LEASE: &str = "dsql-operator";
/// The target is 5 s (src/ops/shutdown.rs budgets 4.8 s); the assertion allows for a loaded CI
/// machine while still failing on the 45 s hangs this guards against.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

fn endpoints(env: &TestEnv) -> Endpoints {
    Endpoints {
        kubeconfig: env.operator_kubeconfig_text(),
        aws: env.aws.endpoint_url(),
    }
}

/// Starts the binary as `identity`, as the operator's ServiceAccount, electing on the Lease the
/// chart's RBAC allows in the test's namespace.
fn start_in(env: &TestEnv, identity: &str, extra: &[&str]) -> OperatorProcess {
    OperatorProcess::start_elected(&endpoints(env), &env.namespace, identity, env.lease_name(), extra)
}

/// [`wait_leading`] on that Lease.
async fn wait_leading_in(env: &TestEnv, process: &mut OperatorProcess, limit: Duration) -> Duration {
    wait_leading(&env.kube, &env.namespace, env.lease_name(), process, limit).await
}

/// Starts the binary as `identity` (see [`start_in`]) and waits until it leads and is ready.
async fn start_leading(env: &TestEnv, identity: &str, extra: &[&str]) -> OperatorProcess {
    let mut process = start_in(env, identity, extra);
    wait_leading_in(env, &mut process, Duration::from_secs(20)).await;
    wait_ready(&process).await;
    process
}

/// Starts the binary as `identity` (see [`start_in`]) while another leads, and waits until it
/// is ready: a standby.
async fn start_standby(env: &TestEnv, identity: &str, extra: &[&str]) -> OperatorProcess {
    let process = start_in(env, identity, extra);
    wait_ready(&process).await;
    process
}

/// Creates `orders` and waits until its CreateSecret is in flight, held by the AWS proxy until
/// the returned gate is notified.
async fn orders_with_create_secret_held(env: &TestEnv) -> Arc<Notify> {
    let gate = env.aws.hold_next("secretsmanager.CreateSecret");
    env.create_credential("orders", admin_spec()).await.unwrap();
    wait_calls(env, "secretsmanager.CreateSecret", 1).await;
    gate
}

/// Waits (at most `limit`) until `process` holds the Lease; returns how long that took.
async fn wait_leading(
    kube: &kube::Client,
    namespace: &str,
    lease: &str,
    process: &mut OperatorProcess,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if holder(kube, namespace, lease).await.as_deref() == Some(process.identity.as_str()) {
            return start.elapsed();
        }
        assert!(
            process.exited().is_none(),
            "{} exited:\n{}",
            process.identity,
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{} did not lead within {limit:?}; holder {:?}; its log:\n{}",
        process.identity,
        holder(kube, namespace, lease).await,
        process.log()
    );
}

async fn readyz(process: &OperatorProcess) -> Option<u16> {
    let url = format!("http://127.0.0.1:{}/readyz", process.http_port);
    support::moto::request(Method::GET, &url, Duration::from_secs(2))
        .await
        .ok()
        .map(|(status, _)| status.as_u16())
}

async fn wait_ready(process: &OperatorProcess) {
    for _ in 0..300 {
        if readyz(process).await == Some(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} never became ready; its log:\n{}", process.identity, process.log());
}

async fn wait_calls(env: &TestEnv, operation: &str, at_least: usize) {
    for _ in 0..300 {
        if env.aws.count(operation) >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {operation} call within 15s; calls: {:?}", env.aws.calls());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_leading_and_idle_exits_and_releases_the_lease() {
    let env = TestEnv::new("sigterm-idle").await;
    let mut operator = start_leading(&env, "a", &[]).await;

    let (took, status) = operator.terminate(EXIT_LIMIT).await;
    eprintln!("[figure] SIGTERM, leading and idle: exited in {took:?} ({status})");
    assert!(status.success(), "{status}; log:\n{}", operator.log());
    assert_eq!(env.lease_holder(env.lease_name()).await, None, "the Lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_watch_backs_off_on_a_missing_crd_exits_and_releases_the_lease() {
    // No CRD installed, no AWS calls expected (the endpoint is a closed port).
    let namespace = "crd-missing";
    let (fake, kube, endpoints) = fake_without_crd(namespace).await;
    let mut operator = OperatorProcess::start_elected(&endpoints, namespace, "a", LEASE, &[]);
    wait_leading(&kube, namespace, LEASE, &mut operator, Duration::from_secs(20)).await;
    // Let the watcher fail a few times so it sits in its backoff.
    let failed_lists = || {
        fake.requests()
            .iter()
            .filter(|r| r.path.contains("dsqlcredentials") && r.status == 404)
            .count()
    };
    for _ in 0..200 {
        if failed_lists() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        failed_lists() >= 3,
        "the watch did not fail on the missing CRD:\n{}",
        operator.log()
    );
    assert_ne!(readyz(&operator).await, Some(200), "not ready without its CRD");

    let (took, status) = operator.terminate(EXIT_LIMIT).await;
    eprintln!(
        "[figure] SIGTERM, watch backing off (CRD missing, {} failed lists): exited in {took:?} ({status})",
        failed_lists()
    );
    assert!(status.success(), "{status}; log:\n{}", operator.log());
    assert_eq!(holder(&kube, namespace, LEASE).await, None, "the Lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_api_server_is_unreachable_exits() {
    let mut env = TestEnv::new("sigterm-no-api").await;
    if env
        .fake_or_skip("taking the API server away needs the fake API server")
        .is_none()
    {
        return;
    }
    let mut operator = start_leading(&env, "a", &["--leader-election-lease-seconds", "3"]).await;
    // The port closes: watches end, every request (lease renewal included) is refused.
    drop(env.fake.take());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(operator.exited().is_none(), "it keeps running without the API server");

    let (took, status) = operator.terminate(EXIT_LIMIT).await;
    eprintln!("[figure] SIGTERM, API server unreachable: exited in {took:?} ({status})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_a_secrets_manager_call_is_held_exits_and_releases_the_lease() {
    let env = TestEnv::new("sigterm-aws-held").await;
    let mut operator = start_leading(&env, "a", &[]).await;
    let gate = orders_with_create_secret_held(&env).await;

    let (took, status) = operator.terminate(EXIT_LIMIT).await;
    gate.notify_one();
    eprintln!("[figure] SIGTERM, Secrets Manager call held: exited in {took:?} ({status})");
    assert!(status.success(), "{status}; log:\n{}", operator.log());
    assert!(
        operator.log().contains("outlasted the shutdown grace period"),
        "the held reconcile was cancelled after the grace period; log:\n{}",
        operator.log()
    );
    assert_eq!(env.lease_holder(env.lease_name()).await, None, "the Lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_leader_is_replaced_within_the_lease_and_no_second_version_is_written() {
    const LEASE_SECONDS: u64 = 3;
    let env = TestEnv::new("sigkill-leader").await;
    let lease_flags = ["--leader-election-lease-seconds", "3"];
    let mut first = start_leading(&env, "a", &lease_flags).await;
    let mut second = start_standby(&env, "b", &lease_flags).await;

    // The leader is mid-rotation: its CreateSecret has left it but not reached Secrets Manager.
    let gate = orders_with_create_secret_held(&env).await;
    let killed = Instant::now();
    first.kill().await;
    // The dead leader's request now goes on to Secrets Manager (a write that lands after its
    // sender died, as on a node lost mid-call) if the proxy still has it.
    gate.notify_one();
    let secret = format!("dsql-e2e/{}/orders", env.namespace);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphan_landed = env.describe_secret(&secret).await.is_some();
    assert_eq!(
        env.lease_holder(env.lease_name()).await.as_deref(),
        Some("a"),
        "SIGKILL leaves the Lease held"
    );

    wait_leading_in(&env, &mut second, Duration::from_secs(LEASE_SECONDS + 10)).await;
    let takeover = killed.elapsed();
    let ready = env.wait_ready("orders", 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ready.status.as_ref().unwrap().secret_name.as_deref(),
        Some(secret.as_str())
    );
    let versions = env.secret_versions(&secret).await;
    let writes = || env.aws.count("secretsmanager.CreateSecret") + env.aws.count("secretsmanager.PutSecretValue");
    eprintln!(
        "[figure] SIGKILL of the leader mid-CreateSecret: standby led after {takeover:?} (lease {LEASE_SECONDS}s); dead leader's write landed first: {orphan_landed}; {} version(s) after {} write call(s)",
        versions.len(),
        writes()
    );
    assert!(
        takeover < Duration::from_secs(LEASE_SECONDS + 5),
        "takeover took {takeover:?}"
    );
    assert_eq!(versions.len(), 1, "one version across both replicas: {versions:?}");
    assert_eq!(
        Some(&versions[0]),
        ready.status.as_ref().unwrap().version_id.as_ref(),
        "status names the one version"
    );
    let rotated = env.credentials().get("orders").await.unwrap();
    assert_eq!(rotated.status.as_ref().unwrap().rotation_count, Some(1));

    // The new leader is killed just after its rotation: the next one's first act writes nothing.
    let mut third = start_standby(&env, "c", &lease_flags).await;
    env.clear_recorded();
    let killed = Instant::now();
    second.kill().await;
    wait_leading_in(&env, &mut third, Duration::from_secs(LEASE_SECONDS + 10)).await;
    let second_takeover = killed.elapsed();
    // Only a leader watches DsqlCredentials (and the others are dead): once its list is served
    // its first reconcile follows, reading status and finding nothing due.
    // The fake shows the list itself; on a real server, readiness follows the leader's first
    // list of DsqlCredentials.
    match env.fake.as_ref() {
        Some(fake) => {
            let listed = || {
                fake.requests()
                    .iter()
                    .any(|r| r.path.contains("dsqlcredentials") && r.method == "GET")
            };
            for _ in 0..200 {
                if listed() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                listed(),
                "the new leader never listed DsqlCredentials:\n{}",
                third.log()
            );
        }
        None => wait_ready(&third).await,
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = env.secret_versions(&secret).await;
    eprintln!(
        "[figure] SIGKILL of the leader just after a rotation: standby led after {second_takeover:?}; {} write call(s), {} version(s)",
        writes(),
        after.len()
    );
    assert!(
        second_takeover < Duration::from_secs(LEASE_SECONDS + 5),
        "takeover took {second_takeover:?}"
    );
    assert_eq!(writes(), 0, "calls: {:?}", env.aws.calls());
    assert_eq!(after, versions);
    let still = env.credentials().get("orders").await.unwrap();
    assert_eq!(still.status.as_ref().unwrap().rotation_count, Some(1));

    let (took, status) = third.terminate(EXIT_LIMIT).await;
    assert!(status.success(), "{status} after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_after_its_write_landed_unanswered_leaves_one_version() {
    let env = TestEnv::new("sigkill-landed").await;
    let lease_flags = ["--leader-election-lease-seconds", "3"];
    let mut first = start_in(&env, "a", &lease_flags);
    wait_leading_in(&env, &mut first, Duration::from_secs(20)).await;
    let mut second = start_standby(&env, "b", &lease_flags).await;

    // The leader's CreateSecret reaches Secrets Manager; it dies before hearing back, so its
    // status never records the version.
    let gate = env.aws.hold_response_next("secretsmanager.CreateSecret");
    env.create_credential("orders", admin_spec()).await.unwrap();
    let secret = format!("dsql-e2e/{}/orders", env.namespace);
    for _ in 0..300 {
        if env.describe_secret(&secret).await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let landed = env.secret_versions(&secret).await;
    assert_eq!(landed.len(), 1, "the dead leader's write landed");
    first.kill().await;
    gate.notify_one();

    wait_leading_in(&env, &mut second, Duration::from_secs(15)).await;
    let ready = env
        .wait_for("orders", Duration::from_secs(30), "Ready", |c| {
            support::env::condition(c, "Ready").is_some_and(|r| r.status == "True")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = ready.status.clone().unwrap();
    let versions = env.secret_versions(&secret).await;
    eprintln!(
        "[figure] SIGKILL after the leader's CreateSecret landed unanswered: {} version(s), status rotationCount {:?}, calls {:?}",
        versions.len(),
        status.rotation_count,
        env.aws.calls()
    );
    // Version ids are the ClientRequestTokens (uid + rotation number). The new leader's retry of
    // rotation 1 finds that version taken with another value, signs the dead leader's token again
    // at the earlier signing minute (same credentials, same request) and writes it under the
    // same idempotency token, which Secrets Manager answers with the existing version: one
    // rotation, one version, and status names it.
    assert_eq!(versions, landed, "no second version");
    assert_eq!(status.rotation_count, Some(1));
    assert_eq!(status.version_id.as_ref(), Some(&landed[0]));
    let writes = env.aws.count("secretsmanager.CreateSecret") + env.aws.count("secretsmanager.PutSecretValue");
    assert!(
        writes <= 2 + 2 * 15,
        "write calls bounded by the signing times tried: {writes}"
    );
    let (took, exit) = second.terminate(EXIT_LIMIT).await;
    assert!(exit.success(), "{exit} after {took:?}");
}
