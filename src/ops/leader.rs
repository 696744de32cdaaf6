//! Leader election on a `coordination.k8s.io` Lease, so several replicas are safe: only the
//! holder runs the controller; a replica that loses the lease drops its controller at once
//! (in-flight reconciles are cancelled, not drained); on shutdown the leader releases the lease so
//! a standby takes over without waiting for it to expire.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tracing::{info, warn};

use super::shutdown::LEASE_RELEASE_LIMIT;
use super::{Health, Metrics};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease is valid without renewal: a dead leader is replaced after at most this.
    pub duration_seconds: u64,
    /// The holder renews this long before expiry.
    pub grace_seconds: u64,
}

/// Runs `controller()` whenever this replica holds the lease, until `shutdown` resolves.
pub async fn run_when_leading<C, F>(
    client: kube::Client,
    lease: LeaseConfig,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    controller: C,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LeaseManagerError>
where
    C: Fn(futures::future::Shared<futures::future::BoxFuture<'static, ()>>) -> F,
    F: Future<Output = ()>,
{
    let shutdown = shutdown.boxed().shared();
    let building = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.grace_seconds)
        .with_field_manager(format!("dsql-credential-operator-{}", lease.identity))
        .build();
    // Building reads (or creates) the Lease: with the API server slow to answer, a shutdown must
    // not wait for it. Nothing is held yet, so there is nothing to release.
    let manager = tokio::select! {
        built = building => built?,
        _ = shutdown.clone() => return Ok(()),
    };
    let (mut leading, mut manager_task) = manager.watch().await;
    health.set_standby(true);
    loop {
        // Wait to lead (or to be asked to stop).
        let became_leader = tokio::select! {
            _ = shutdown.clone() => false,
            changed = leading.wait_for(|is_leader| *is_leader) => changed.is_ok(),
        };
        if !became_leader {
            break;
        }
        info!(identity = %lease.identity, lease = %lease.name, "acquired the leader lease");
        health.set_standby(false);
        health.set_leading(true);
        metrics.set_leader(true);

        let mut lost = leading.clone();
        let lost_lease = async move {
            // An error means the manager stopped: treat it as lost.
            let _ = lost.wait_for(|is_leader| !*is_leader).await;
        };
        let run = controller(shutdown.clone());
        let lost_it = tokio::select! {
            _ = run => false,
            _ = lost_lease => true,
        };
        health.set_leading(false);
        metrics.set_leader(false);
        // The new leader exports them now; ours would go stale and double every alert.
        metrics.clear_credentials();
        if !lost_it {
            break; // graceful shutdown finished
        }
        warn!(identity = %lease.identity, "lost the leader lease: stopped reconciling");
        health.set_standby(true);
    }
    health.set_standby(false);
    // Dropping the receiver makes the manager release the lease and stop. With the API server
    // unreachable it may be sleeping out a backoff or waiting on a request: the lease then simply
    // expires, as after a crash.
    drop(leading);
    match tokio::time::timeout(LEASE_RELEASE_LIMIT, &mut manager_task).await {
        Ok(Ok(Err(error))) => warn!(error = %error, "releasing the leader lease failed"),
        Ok(_) => info!("released the leader lease"),
        Err(_) => {
            manager_task.abort();
            warn!(
                limit_ms = LEASE_RELEASE_LIMIT.as_millis() as u64,
                "timed out releasing the leader lease: it will expire instead"
            );
        }
    }
    Ok(())
}
