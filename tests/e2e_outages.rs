//! End to end: long outages. Secrets Manager unavailable past a token's expiry turns `Ready`
//! False with `TokenExpired` at the expiry (by the operator's own requeue), the metrics show it,
//! and recovery is one write. The API server unavailable for "5 minutes" (see the second test
//! for why its real length represents that): no crash, no hot retry loop, and on return one
//! Secrets Manager write per credential that fell due, no write storm.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::clock::Clock;
use dsql_credential_operator::ops::{Health, http};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use support::apiserver::outage::OutageGate;
use support::aws_proxy::AwsError;
use support::credential::admin_spec_with;
use support::env::{TestEnv, condition};

const PUT: &str = "secretsmanager.PutSecretValue";

/// A credential with a 15-minute token renewed 5 minutes before expiry (due 9.5 to 10 minutes
/// after its rotation), its token projected into the Secret `<name>-db`.
fn short_lived(name: &str) -> serde_json::Value {
    admin_spec_with(
        serde_json::json!({"token": {"lifetime": "15m"}, "rotation": {"renewBefore": "5m"}, "kubernetesSecret": {"name": format!("{name}-db")}}),
    )
}

/// The operator's writes of `path_suffix` (e.g. `/secrets/orders-db`) among `writes`
/// (`METHOD path` lines from [`TestEnv::kube_writes`]).
fn writes_to(writes: &[String], path_suffix: &str) -> usize {
    writes.iter().filter(|w| w.ends_with(path_suffix)).count()
}

fn ready_since(credential: &DsqlCredential) -> Timestamp {
    condition(credential, "Ready").unwrap().last_transition_time.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_manager_down_past_expiry_turns_ready_false_at_the_expiry_and_recovers_with_one_write() {
    let env = TestEnv::new("sm-outage-expiry").await;
    let operator = env.start_operator();
    let first = env.create_ready("orders", short_lived("orders")).await;
    let status = first.status.clone().unwrap();
    let secret_name = status.secret_name.clone().unwrap();
    let expiry = status.token_expiration_time.clone().unwrap().0;

    // From the scheduled rotation on, Secrets Manager answers every write with its server fault.
    env.aws.inject_error(PUT, AwsError::InternalServiceError, 100_000);
    env.clock.advance_to(status.next_rotation_time.clone().unwrap().0);
    env.wait_for("orders", Duration::from_secs(20), "Degraded by the outage", |c| {
        condition(c, "Degraded").is_some_and(|d| d.status == "True" && d.reason == "SecretsManagerError")
    })
    .await;
    // Every backoff retry happens (the clock steps to each) until one falls within 8 s of the
    // expiry; from there on the clock is not moved and nothing is resynced: only the operator's
    // own requeues (real time, which the clock follows) reconcile it.
    let failures = env
        .step_through_failing_retries("orders", expiry - SignedDuration::from_secs(8))
        .await;
    assert!(failures >= 6, "5 minutes of backoff retries: {failures} failures");
    let mut checks_before = 0;
    while env.clock.now() < expiry - SignedDuration::from_secs(1) {
        let current = env.credentials().get("orders").await.unwrap();
        assert_eq!(
            condition(&current, "Ready").unwrap().status,
            "True",
            "still valid at {}",
            env.clock.now()
        );
        checks_before += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(checks_before > 0, "Ready was checked before the expiry");
    let expired = env
        .wait_for("orders", Duration::from_secs(20), "TokenExpired", |c| {
            condition(c, "Ready").is_some_and(|r| r.reason == "TokenExpired")
        })
        .await;
    assert_eq!(condition(&expired, "Ready").unwrap().status, "False");
    let flipped = ready_since(&expired);
    let late = flipped.duration_since(expiry);
    eprintln!(
        "Ready turned False {}s after the token's expiry ({failures} failures before the last 8 s; {} PutSecretValue calls in all)",
        late.as_secs_f64(),
        env.aws.count(PUT)
    );
    assert!(
        late >= SignedDuration::ZERO && late <= SignedDuration::from_secs(2),
        "Ready turned False at {flipped}, the token expired at {expiry}"
    );
    let ns = env.namespace.clone();
    let ready_false = format!(
        r#"dsql_operator_credential_condition{{namespace="{ns}",name="orders",type="Ready",status="False"}} 1"#
    );
    let expiry_line = format!(
        r#"dsql_operator_token_expiry_timestamp_seconds{{namespace="{ns}",name="orders"}} {}"#,
        expiry.as_second()
    );
    let lines = env
        .metric_series_until("orders", "Ready False in the metrics", |lines| {
            lines.contains(&ready_false)
        })
        .await;
    assert!(lines.contains(&expiry_line), "{lines:#?}");
    assert!(
        expiry.as_second() <= env.clock.now().as_second(),
        "the exported expiry is in the past"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(r#"type="Degraded",status="True"} 1"#)),
        "{lines:#?}"
    );

    // Secrets Manager comes back: the next retry writes once, and nothing else was queued up.
    env.aws.clear_errors();
    env.clear_recorded();
    let retry = expired.status.as_ref().unwrap().next_rotation_time.clone().unwrap().0;
    env.clock.advance_to(retry);
    let ready = env.wait_ready("orders", 2).await;
    for _ in 0..3 {
        env.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let healed = env.credentials().get("orders").await.unwrap();
    let healed_status = healed.status.clone().unwrap();
    assert_eq!(
        healed_status.rotation_count,
        Some(2),
        "no further rotation after 3 resyncs"
    );
    assert_eq!(healed_status.consecutive_failures, 0);
    assert_eq!(condition(&healed, "Degraded").unwrap().status, "False");
    assert_eq!(env.aws.count(PUT), 1, "one Secrets Manager write on recovery");
    assert_eq!(env.aws.count("secretsmanager.CreateSecret"), 0);
    assert_eq!(
        env.secret_versions(&secret_name).await.len(),
        2,
        "exactly one new version"
    );
    let new_version = ready.status.as_ref().unwrap().version_id.clone().unwrap();
    let secret = env.secrets().get("orders-db").await.unwrap();
    assert_eq!(
        secret.metadata.annotations.clone().unwrap_or_default()["dsql.credentials.dev/version-id"],
        new_version
    );
    if let Some(writes) = env.kube_writes() {
        let secret_writes = writes_to(&writes, "/secrets/orders-db");
        let status_writes = writes_to(&writes, "/dsqlcredentials/orders/status");
        eprintln!("recovery: {secret_writes} Secret writes, {status_writes} status writes");
        assert_eq!(secret_writes, 1, "the Secret is updated once: {writes:#?}");
        assert!(status_writes <= 2, "{writes:#?}");
    }
    let ready_true =
        format!(r#"dsql_operator_credential_condition{{namespace="{ns}",name="orders",type="Ready",status="True"}} 1"#);
    env.metric_series_until("orders", "Ready True in the metrics", |lines| {
        lines.contains(&ready_true)
    })
    .await;

    operator.stop().await;
    env.assert_no_token_leaks(&[&secret_name]).await;
}

/// Real length of the API server outage. It represents 5 minutes because every real-time cap
/// that shapes the operator's retries is exceeded (see docs/behaviour.md, "Long outages"): the
/// Lease (3 s here) expires 25 times over, the kube-runtime watcher's backoff (0.8 s doubling)
/// and the lease manager's (1 s doubling) both reach their 30 s caps, and each failing
/// reconcile's error backoff (5 s doubling) gets through 4 to 5 steps; the operator's own
/// time-based decisions see 6 minutes pass on the clock.
const OUTAGE: Duration = Duration::from_secs(75);

/// Overrides [`OUTAGE`] (seconds) to measure a literal outage by hand, e.g. 300.
const OUTAGE_SECONDS_ENV: &str = "DSQL_OPERATOR_E2E_OUTAGE_SECONDS";

fn outage() -> Duration {
    std::env::var(OUTAGE_SECONDS_ENV)
        .ok()
        .map(|s| {
            Duration::from_secs(
                s.parse()
                    .unwrap_or_else(|_| panic!("{OUTAGE_SECONDS_ENV}={s} is not seconds")),
            )
        })
        .unwrap_or(OUTAGE)
}

/// Clock steps during the outage: 12 x 30 s = 6 minutes.
const OUTAGE_STEPS: u32 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_minutes_without_the_api_server_no_crash_no_hot_loop_and_one_write_per_due_credential() {
    let env = TestEnv::new("apiserver-outage").await;
    let Some(fake) = env.fake_or_skip("taking the API server away needs the fake API server behind the outage gate")
    else {
        return;
    };
    let gate = OutageGate::start(fake.local_addr()).await;
    let lease_name = env.lease_name().to_owned();
    let (operator, health) = env.start_elected_operator_behind(&gate, "a", &lease_name);
    let (probes, stop_probes) = serve_probes(health.clone(), &env).await;

    // Three credentials fall due during the outage, two (1-hour tokens) do not.
    let due = ["s1", "s2", "s3"];
    let not_due = ["l1", "l2"];
    for name in due {
        env.create_credential(name, short_lived(name)).await.unwrap();
    }
    for name in not_due {
        env.create_credential(
            name,
            admin_spec_with(
                serde_json::json!({"token": {"lifetime": "1h"}, "kubernetesSecret": {"name": format!("{name}-db")}}),
            ),
        )
        .await
        .unwrap();
    }
    let mut before = BTreeMap::new();
    for name in due.iter().chain(&not_due) {
        before.insert(*name, env.wait_ready(name, 1).await.status.unwrap());
    }
    let last_due = due
        .iter()
        .map(|n| before[n].next_rotation_time.clone().unwrap().0)
        .max()
        .unwrap();
    let first_not_due = not_due
        .iter()
        .map(|n| before[n].next_rotation_time.clone().unwrap().0)
        .min()
        .unwrap();
    // The outage spans 6 minutes of clock and ends 30 s after the last due rotation.
    let outage_end = last_due + SignedDuration::from_secs(30);
    let outage_start = outage_end - SignedDuration::from_secs(30 * i64::from(OUTAGE_STEPS));
    assert!(outage_end < first_not_due);
    env.clock.advance_to(outage_start);
    for name in due {
        assert!(
            before[name].next_rotation_time.clone().unwrap().0 > env.clock.now(),
            "not due yet"
        );
    }
    assert!(health.is_leading());
    env.clear_recorded();

    gate.go_down();
    let down = Instant::now();
    for step in 1..=OUTAGE_STEPS {
        tokio::time::sleep(outage() / OUTAGE_STEPS).await;
        env.clock.advance(Duration::from_secs(30));
        if step == OUTAGE_STEPS / 2 {
            assert!(!operator.is_finished(), "the operator survives the outage");
            assert_eq!(probe(&probes, "/healthz").await, StatusCode::OK);
        }
    }
    assert!(env.clock.now() >= outage_end);
    let outage_secs = down.elapsed().as_secs_f64();
    let refused = gate.refused();
    let peak = gate.refused_peak_per_second();
    let puts_during = env.aws.count(PUT);
    let reached_fake = env.operator_requests().unwrap().len();
    assert!(!operator.is_finished(), "the operator survives the outage");
    assert_eq!(probe(&probes, "/healthz").await, StatusCode::OK);
    // Its Lease went unrenewed for far longer than its duration: it stepped down.
    assert!(!health.is_leading(), "the leader stepped down during the outage");
    assert!(env.metrics.encode().contains("dsql_operator_leader 0"));
    gate.come_back();
    let back = Instant::now();
    let back_at = Timestamp::now();

    eprintln!(
        "API server outage of {outage_secs:.1} s real / {} min on the clock: {refused} connection attempts refused ({:.2}/s, peak {peak} in one second), {puts_during} PutSecretValue calls, {reached_fake} requests reached the API server",
        OUTAGE_STEPS / 2,
        refused as f64 / outage_secs
    );
    assert_eq!(reached_fake, 0, "the outage was total");
    assert!(refused > 0, "the operator kept trying");
    // A hot loop would be hundreds a second; the load here is the lease manager and watcher
    // backoffs plus one reconcile of each credential per clock step (12 steps).
    assert!(
        refused as f64 / outage_secs <= 3.0,
        "{refused} attempts in {outage_secs:.1} s"
    );
    assert!(peak <= 30, "peak of {peak} attempts in one second");
    assert!(
        puts_during <= due.len(),
        "at most one Secrets Manager write per due credential during the outage: {puts_during}"
    );

    // Back: the replica renews its Lease and leads again; its new controller lists the
    // credentials and publishes what fell due. The clock is not moved, nothing is resynced.
    let leases: Api<Lease> = Api::namespaced(env.kube.clone(), &env.namespace);
    let renewed = loop {
        let lease = leases.get(&lease_name).await.unwrap().spec.unwrap_or_default();
        let renew = lease.renew_time.as_ref().map(|t| t.0);
        if lease.holder_identity.as_deref() == Some("a") && renew.is_some_and(|t| t > back_at) {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "Lease not renewed within 60 s: {lease:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for name in due {
        env.wait_for(name, Duration::from_secs(60), "Ready after rotation 2", |c| {
            condition(c, "Ready").is_some_and(|r| r.status == "True")
                && c.status.as_ref().and_then(|s| s.rotation_count) == Some(2)
        })
        .await;
    }
    let recovered = back.elapsed();
    assert!(health.is_leading(), "leading again");
    // Let anything queued up during the outage come out before counting.
    for _ in 0..2 {
        env.clock.advance(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let writes = env.kube_writes().unwrap();
    let mut secret_names = Vec::new();
    let mut per_credential = Vec::new();
    for name in due.iter().chain(&not_due) {
        let current = env.credentials().get(name).await.unwrap();
        let status = current.status.clone().unwrap();
        let secret_name = status.secret_name.clone().unwrap();
        let versions = env.secret_versions(&secret_name).await.len();
        let secret_writes = writes_to(&writes, &format!("/secrets/{name}-db"));
        let status_writes = writes_to(&writes, &format!("/dsqlcredentials/{name}/status"));
        per_credential.push(format!(
            "{name}: {versions} versions, {secret_writes} Secret writes, {status_writes} status writes"
        ));
        assert_eq!(condition(&current, "Ready").unwrap().status, "True", "{name}");
        if due.contains(name) {
            assert_eq!(status.rotation_count, Some(2), "{name}");
            assert_eq!(versions, 2, "{name}: one new version");
            assert_eq!(secret_writes, 1, "{name}: the Secret is written once");
        } else {
            assert_eq!(status.rotation_count, Some(1), "{name}");
            assert_eq!(versions, 1, "{name}");
            assert_eq!(secret_writes, 0, "{name}");
        }
        assert!(status_writes <= 2, "{name}: {status_writes} status writes");
        secret_names.push(secret_name);
    }
    let puts = env.aws.count(PUT);
    eprintln!(
        "after the outage: Lease renewed {:.1} s after the API server came back, all Ready {:.1} s after; {puts} PutSecretValue calls in all; {}; {} Lease writes",
        renewed.as_secs_f64(),
        recovered.as_secs_f64(),
        per_credential.join("; "),
        writes.iter().filter(|w| w.contains("/leases/")).count()
    );
    assert_eq!(
        puts,
        due.len(),
        "one Secrets Manager write per due credential, outage included"
    );
    assert_eq!(env.aws.count("secretsmanager.CreateSecret"), 0);
    assert!(health.is_leading());
    assert!(env.metrics.encode().contains("dsql_operator_leader 1"));
    assert_eq!(probe(&probes, "/readyz").await, StatusCode::OK);
    assert!(!operator.is_finished());

    operator.stop().await;
    let _ = stop_probes.send(());
    let names: Vec<&str> = secret_names.iter().map(String::as_str).collect();
    env.assert_no_token_leaks(&names).await;
}

/// Serves the operator's `/healthz`, `/readyz` and `/metrics` on a loopback port, as the binary
/// does; returns the base URL and the sender that stops it.
async fn serve_probes(health: Arc<Health>, env: &TestEnv) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, health, env.metrics.clone(), async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

async fn probe(base: &str, path: &str) -> StatusCode {
    support::moto::request(Method::GET, &format!("{base}{path}"), Duration::from_secs(5))
        .await
        .unwrap()
        .0
}
