//! End to end: the operator signs with credentials from an EKS Pod Identity agent double that
//! caches them, so near the end of each credential window new tokens are clamped to the
//! credentials' expiry. Over several windows, Secrets Manager writes stay at the schedule's
//! count plus at most one per window, and the published token never expires while renewed
//! credentials were obtainable.
//!
//! The SDK's container credentials provider reads its endpoint from the process environment, so
//! this crate holds this one test and sets the environment before any thread starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use aws_config::ecs::EcsCredentialsProvider;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use dsql_credential_operator::clock::Clock;
use jiff::{SignedDuration, Timestamp};
use support::agent::PodIdentityAgent;
use support::credential::{ENDPOINT, admin_spec_with};
use support::env::{TestEnv, condition};
use support::token_check::{ExpectedToken, verify_dsql_token};

const AUTHORIZATION: &str = "agent-authorization-token";
/// As measured on a real cluster: 25-minute credentials, renewed 60 s before they expire.
const CREDENTIALS_LIFETIME: SignedDuration = SignedDuration::from_mins(25);
const REFRESH_BEFORE: SignedDuration = SignedDuration::from_secs(60);
/// Token lifetime 15m, renewBefore 5m: scheduled rotations at least 10m - 30s (jitter) apart.
const MIN_SCHEDULED_INTERVAL: i64 = 10 * 60 - 30;
const STEP: Duration = Duration::from_secs(30);
const WINDOWS: usize = 3;

/// Set in the re-executed child that runs the test body.
const CHILD: &str = "DSQL_OPERATOR_AGENT_CHILD";

#[test]
fn clamped_tokens_cost_at_most_one_extra_write_per_credential_window() {
    if let Ok(addr) = std::env::var(CHILD) {
        let listener = std::net::TcpListener::bind(addr.as_str()).expect("the agent's address is free again");
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(listener));
    }
    // The SDK reads the agent's address from the process environment, and setting it in a
    // running (multi-threaded) test process is unsound: run the body in a child process with it
    // set. The port is picked here and bound again by the child.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), AUTHORIZATION).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "clamped_tokens_cost_at_most_one_extra_write_per_credential_window",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, addr.to_string())
        .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", PodIdentityAgent::full_uri(addr))
        .env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.path())
        .status()
        .unwrap();
    assert!(status.success(), "the test body failed in the child process: {status}");
}

async fn run(listener: std::net::TcpListener) {
    let mut env = TestEnv::new("signing-creds").await;
    let agent = PodIdentityAgent::start(
        listener,
        env.clock.clone(),
        CREDENTIALS_LIFETIME,
        REFRESH_BEFORE,
        AUTHORIZATION,
    );
    env.operator_sdk = env
        .operator_sdk
        .to_builder()
        .credentials_provider(SharedCredentialsProvider::new(
            EcsCredentialsProvider::builder().build(),
        ))
        .build();
    let operator = env.start_operator();
    let started = env.clock.now();
    env.create_ready(
        "orders",
        admin_spec_with(serde_json::json!({"token": {"lifetime": "15m"}, "rotation": {"renewBefore": "5m"}})),
    )
    .await;
    let secret_name = format!("dsql-e2e/{}/orders", env.namespace);

    let mut held_message = None;
    let mut held_gauge = false;
    let mut steps = 0;
    // Bounded: WINDOWS windows of 24 minutes at 30 s a step.
    while agent.windows().len() <= WINDOWS && steps < 400 {
        steps += 1;
        env.clock.advance(STEP);
        // Let the operator act on the wake-up; the checks below wait for what must hold.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = env.clock.now();
        let credential = env
            .wait_for("orders", Duration::from_secs(20), "holding an unexpired token", |c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.token_expiration_time.as_ref())
                    .is_some_and(|t| t.0 > now)
            })
            .await;
        let doc = env.secret_document(&secret_name).await;
        let expires: Timestamp = doc["expiresAt"].as_str().unwrap().parse().unwrap();
        assert!(
            expires > now,
            "step {steps}: Secrets Manager holds a token that expired at {expires} (now {now}); agent windows: {:?}",
            agent.windows()
        );
        assert_eq!(
            condition(&credential, "Ready").map(|c| c.status.as_str()),
            Some("True"),
            "step {steps}: Ready stays True while a rotation is held back"
        );
        if let Some(degraded) = condition(&credential, "Degraded").filter(|c| c.status == "True") {
            assert_eq!(degraded.reason, "SigningCredentialsExpiring", "{}", degraded.message);
            if degraded.message.contains("keeping the published token") {
                held_message.get_or_insert_with(|| degraded.message.clone());
            }
            held_gauge |= env
                .metrics
                .encode()
                .contains(r#"dsql_operator_signing_credentials_expiring{namespace=""#);
        }
    }
    let elapsed = env.clock.now().duration_since(started).as_secs();
    let windows = agent.windows();
    let puts = env.aws.count("secretsmanager.PutSecretValue");
    let creates = env.aws.count("secretsmanager.CreateSecret");
    let scheduled = 1 + elapsed / MIN_SCHEDULED_INTERVAL;
    eprintln!(
        "{steps} steps over {elapsed}s of clock; {} credential windows; CreateSecret {creates}, PutSecretValue {puts}; \
         scheduled at most {scheduled}; agent requests {}",
        windows.len(),
        agent.requests()
    );
    eprintln!("Degraded while held: {held_message:?}");
    let held = env
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("dsql_operator_rotations_total{result=\"held\"}"))
        .map(str::to_owned);
    eprintln!("metric: {held:?}");

    assert!(windows.len() > WINDOWS, "the run crossed {WINDOWS} credential renewals");
    let writes = (puts + creates) as i64;
    assert!(
        writes > elapsed / (15 * 60),
        "{writes} writes over {elapsed}s cannot have kept 15-minute tokens fresh"
    );
    assert!(
        writes <= scheduled + windows.len() as i64,
        "{writes} Secrets Manager writes over {elapsed}s: more than the schedule's {scheduled} plus one per window ({})",
        windows.len()
    );
    let message = held_message.expect("Degraded said the signing credentials expire");
    assert!(message.contains("valid until"), "{message}");
    assert!(
        windows
            .iter()
            .any(|w| message.contains(&w.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())),
        "the message names the credentials' expiry: {message}"
    );
    assert!(held_gauge, "the signing_credentials_expiring gauge was set while held");
    assert!(held.is_some_and(|l| !l.ends_with(" 0")), "held rotations were counted");

    // The published token is signed by the agent's current credentials.
    let n = windows.len();
    let creds = Credentials::new(
        format!("ASIAAGENT{n:08}"),
        format!("agent-secret-{n}"),
        Some(format!("agent-session-{n}")),
        None,
        "agent",
    );
    let doc = env.secret_document(&secret_name).await;
    let token = doc["password"].as_str().unwrap();
    verify_dsql_token(token, &ExpectedToken::new(ENDPOINT, "us-east-1", true, &creds))
        .or_else(|e| {
            // Renewed credentials not yet used for a write: the previous window signed it.
            let p = n - 1;
            let previous = Credentials::new(
                format!("ASIAAGENT{p:08}"),
                format!("agent-secret-{p}"),
                Some(format!("agent-session-{p}")),
                None,
                "agent",
            );
            verify_dsql_token(token, &ExpectedToken::new(ENDPOINT, "us-east-1", true, &previous))
                .map_err(|e2| format!("{e}; {e2}"))
        })
        .unwrap();
    operator.stop().await;
}
