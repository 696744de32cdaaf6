//! End to end: the per-credential series an expiry alert needs exist right after an operator
//! restart, before any rotation and without an AWS call, and go when the credential is deleted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use dsql_credential_operator::ops::Metrics;
use support::credential::ENDPOINT;
use support::env::TestEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_expiry_and_condition_series_exist_before_any_rotation_and_go_on_delete() {
    let mut env = TestEnv::new("metrics-restart").await;
    let operator = env.start_operator();
    env.create_credential(
        "reports",
        serde_json::json!({"cluster": {"endpoint": ENDPOINT}, "role": "reporting", "rotation": {"renewBefore": "20m"}}),
    )
    .await
    .unwrap();
    let before = env.wait_ready("reports", 1).await;
    operator.stop().await;

    // A new process starts with empty metrics.
    env.metrics = Arc::new(Metrics::default());
    env.clear_recorded();
    env.clock.advance(Duration::from_secs(15 * 60)); // mid-life: nothing is due
    let operator = env.start_operator();
    let expiry = before.status.as_ref().unwrap().token_expiration_time.clone().unwrap().0;
    let expiry_line = format!(
        r#"dsql_operator_token_expiry_timestamp_seconds{{namespace="{}",name="reports"}} {}"#,
        env.namespace,
        expiry.as_second()
    );
    let lines = env
        .metric_series_until("reports", "the expiry series after the restart", |lines| {
            lines.contains(&expiry_line)
        })
        .await;
    for expected in [
        r#"type="Ready",status="True"} 1"#,
        r#"type="Degraded",status="False"} 1"#,
        r#"type="Stalled",status="False"} 1"#,
    ] {
        assert!(
            lines
                .iter()
                .any(|line| line.starts_with("dsql_operator_credential_condition{") && line.ends_with(expected)),
            "missing condition series {expected:?} in {lines:#?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("dsql_operator_credential_renew_before_seconds{") && line.ends_with("} 1200")),
        "{lines:#?}"
    );
    assert!(!lines.iter().any(|line| line.contains("failing_since")), "{lines:#?}");
    assert_eq!(
        env.aws.calls(),
        Vec::<String>::new(),
        "the series come from status, not AWS"
    );
    let after = env.credentials().get("reports").await.unwrap();
    assert_eq!(after.status.unwrap().rotation_count, Some(1), "no rotation happened");

    env.delete_credential("reports").await;
    env.wait_deleted("reports").await;
    env.metric_series_until("reports", "the series to go with the credential", <[String]>::is_empty)
        .await;
    operator.stop().await;
    env.assert_operator_calls_permitted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_leading_exports_no_credential_series() {
    let env = TestEnv::new("metrics-leader").await;
    // The chart's leader-election Role allows only this release's Lease.
    let lease = env.lease_name().to_owned();
    let (operator, _health) = env.start_elected_operator("a", &lease).await;
    env.create_credential(
        "orders",
        serde_json::json!({"cluster": {"endpoint": ENDPOINT}, "role": "reporting"}),
    )
    .await
    .unwrap();
    env.wait_ready("orders", 1).await;
    env.metric_series_until("orders", "the leader's series", |lines| {
        lines
            .iter()
            .any(|l| l.starts_with("dsql_operator_token_expiry_timestamp_seconds{"))
    })
    .await;
    assert!(env.metrics.encode().contains("dsql_operator_leader 1"));

    // Stopping gives up the lease: the credential still exists, but this replica no longer
    // keeps its series current, so it must not export them.
    operator.stop().await;
    let text = env.metrics.encode();
    assert!(text.contains("dsql_operator_leader 0"), "{text}");
    assert!(!text.contains(r#"name="orders""#), "stale series left:\n{text}");
    assert!(env.credentials().get_opt("orders").await.unwrap().is_some());
}
