//! End to end: two operator replicas with leader election on a Lease. Only the leader writes;
//! on a graceful stop it releases the lease and the standby takes over within seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::credential::admin_spec;
use support::env::TestEnv;

async fn wait_for_holder(env: &TestEnv, lease: &str, done: impl Fn(Option<&str>) -> bool) -> Option<String> {
    for _ in 0..200 {
        let current = env.lease_holder(lease).await;
        if done(current.as_deref()) {
            return current;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = env.operator_requests().unwrap_or_default();
    let lines: Vec<String> = requests
        .iter()
        .map(|r| format!("{:?} {} {} -> {}", r.actor, r.method, r.path, r.status))
        .collect();
    panic!(
        "lease {lease} never reached the expected holder; last: {:?}\noperator requests:\n{}\nlogs:\n{}",
        env.lease_holder(lease).await,
        lines.join("\n"),
        support::logs::tail(30)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over_after_a_graceful_stop() {
    let env = TestEnv::new("leader").await;
    // The chart's leader-election Role allows get and patch on this one Lease only.
    let lease = env.lease_name().to_owned();
    let (first, first_health) = env.start_elected_operator("a", &lease).await;
    let leader = wait_for_holder(&env, &lease, |h| h == Some("a")).await;
    assert_eq!(leader.as_deref(), Some("a"));
    let (second, second_health) = env.start_elected_operator("b", &lease).await;

    let ready = env.create_ready("orders", admin_spec()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        env.aws.count("secretsmanager.CreateSecret"),
        1,
        "exactly one replica rotated"
    );
    assert!(
        first_health.is_leading() && first_health.is_ready(),
        "leading {} ready {} holder {:?}\n{}",
        first_health.is_leading(),
        first_health.is_ready(),
        env.lease_holder(&lease).await,
        support::logs::tail(40)
    );
    assert!(
        !second_health.is_leading() && second_health.is_ready(),
        "a standby is ready but does not lead"
    );
    if let Some(requests) = env.operator_requests() {
        let credential_writes_by_b = requests
            .iter()
            .filter(|r| r.actor.as_deref() == Some("operator-b") && r.path.contains("dsqlcredentials") && r.is_write())
            .count();
        assert_eq!(credential_writes_by_b, 0, "the standby never writes DsqlCredentials");
    }

    // Graceful stop of the leader releases the lease; the standby takes over quickly.
    let stopped = Instant::now();
    first.stop().await;
    wait_for_holder(&env, &lease, |h| h == Some("b")).await;
    let handover = stopped.elapsed();
    eprintln!("leader hand-over took {handover:?}");
    assert!(handover < Duration::from_secs(8), "hand-over took {handover:?}");

    // The new leader picks up from status: nothing due, so no new version; a forced rotation works.
    env.clear_recorded();
    env.clock.advance(Duration::from_secs(120));
    env.annotate("orders", "dsql.credentials.dev/rotate", "after-handover")
        .await;
    let rotated = env.wait_ready("orders", 2).await;
    assert_ne!(
        rotated.status.as_ref().unwrap().version_id,
        ready.status.as_ref().unwrap().version_id
    );
    assert_eq!(env.aws.count("secretsmanager.PutSecretValue"), 1);
    if let Some(requests) = env.operator_requests() {
        assert!(
            requests
                .iter()
                .filter(|r| r.is_write())
                .all(|r| r.actor.as_deref() == Some("operator-b"))
        );
    }
    second.stop().await;
    env.assert_no_token_leaks(&[rotated.status.as_ref().unwrap().secret_name.as_deref().unwrap()])
        .await;
}
