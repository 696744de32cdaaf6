//! How long shutdown may take. Kubernetes sends SIGKILL 30 s after SIGTERM, but a replica that
//! lingers also delays its standby's takeover and a rollout, so the operator stops within
//! [`HARD_LIMIT`] whatever state it is in: in-flight reconciles get [`DRAIN_GRACE`] and are then
//! cancelled (every Secrets Manager write carries a ClientRequestToken, so the next leader's retry
//! of a cancelled write cannot make a second version), releasing the Lease gets
//! [`LEASE_RELEASE_LIMIT`], and a watchdog ends the process at [`HARD_LIMIT`] should anything else
//! still hang.

use std::future::Future;
use std::time::Duration;

use tracing::error;

/// How long in-flight reconciles may run on after the shutdown signal before they are dropped.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long releasing the leader Lease may take (the API server may be unreachable).
pub const LEASE_RELEASE_LIMIT: Duration = Duration::from_millis(1500);

/// How long the HTTP server may wait for open connections (a probe's keep-alive) to close.
pub const HTTP_STOP_LIMIT: Duration = Duration::from_millis(500);

/// Longest time from the shutdown signal to the process exiting.
pub const HARD_LIMIT: Duration = Duration::from_millis(4800);

/// Resolves `grace` after `shutdown` has resolved.
pub async fn grace_after(shutdown: impl Future<Output = ()>, grace: Duration) {
    shutdown.await;
    tokio::time::sleep(grace).await;
}

/// Ends the process [`HARD_LIMIT`] after `shutdown` resolves, in case an orderly stop hangs on
/// something not bounded above. Spawn it; it never returns once it fires.
pub async fn exit_if_stuck(shutdown: impl Future<Output = ()>) {
    grace_after(shutdown, HARD_LIMIT).await;
    error!(
        limit_ms = HARD_LIMIT.as_millis() as u64,
        "shutdown did not finish in time: exiting now"
    );
    std::process::exit(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budgets_fit_within_the_hard_limit() {
        assert!(DRAIN_GRACE + LEASE_RELEASE_LIMIT + HTTP_STOP_LIMIT < HARD_LIMIT);
        assert!(HARD_LIMIT < Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn grace_after_waits_for_the_signal_then_the_grace() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let start = tokio::time::Instant::now();
        let waiting = tokio::spawn(grace_after(
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(2),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!waiting.is_finished(), "resolved before the signal");
        let _ = tx.send(());
        let _ = waiting.await;
        assert!(start.elapsed() >= Duration::from_secs(12));
    }
}
