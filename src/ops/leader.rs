//! Leader election on a `coordination.k8s.io` Lease, so several replicas are safe: only the
//! holder runs the controller; a replica that loses the lease drops its controller at once
//! (in-flight reconciles are cancelled, not drained); on shutdown the leader releases the lease so
//! a standby takes over without waiting for it to expire.
//!
//! A leader that cannot renew its lease (API server unreachable) also steps down once the lease
//! has gone unrenewed for its whole duration: kube-lease-manager reports no change while its
//! requests fail, and a leader that kept reconciling past its lease's expiry could write to
//! Secrets Manager alongside a standby that took the lease over (a partition that cuts off the
//! leader only). It leads again after its next successful renewal.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Method, Request};
use futures::FutureExt;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::time::Instant;
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
    let (client, renewals) = recording_renewals(client);
    let unrenewed_limit = Duration::from_secs(lease.duration_seconds);
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
    // After stepping down for an unrenewed lease, leading again needs a renewal after that.
    let mut stepped_down_at = None;
    loop {
        // Wait to lead (or to be asked to stop).
        let became_leader = tokio::select! {
            _ = shutdown.clone() => false,
            leads = leads_with_renewed_lease(&mut leading, &renewals, stepped_down_at) => leads,
        };
        if !became_leader {
            break;
        }
        info!(identity = %lease.identity, lease = %lease.name, "acquired the leader lease");
        health.set_standby(false);
        health.set_leading(true);
        metrics.set_leader(true);

        let mut lost = leading.clone();
        let unrenewed = renewals.clone();
        let identity = lease.identity.clone();
        let lost_lease = async move {
            tokio::select! {
                // An error means the manager stopped: treat it as lost.
                _ = lost.wait_for(|is_leader| !*is_leader) => {}
                _ = unrenewed.overdue(unrenewed_limit) => warn!(
                    identity = %identity,
                    lease_seconds = unrenewed_limit.as_secs(),
                    "could not renew the leader lease for its whole duration (API server unreachable?)"
                ),
            }
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
        stepped_down_at = Some(Instant::now());
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

/// How often a leader checks that its lease was renewed, and a replica that stepped down whether
/// it was renewed again.
const RENEWAL_POLL: Duration = Duration::from_millis(250);

/// When the lease manager's last Lease write (an acquisition or renewal) succeeded, seen on its
/// client: kube-lease-manager does not report renewals, only changes of holder.
#[derive(Clone, Debug, Default)]
struct Renewals {
    last: Arc<Mutex<Option<Instant>>>,
    /// When this replica last started leading: a lease found already held by this identity
    /// (a restart within its duration) is led without a write.
    leading_since: Arc<Mutex<Option<Instant>>>,
}

impl Renewals {
    fn record(slot: &Mutex<Option<Instant>>) {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once neither a Lease write nor the start of leading happened within `limit`:
    /// the lease has expired for everyone else.
    async fn overdue(&self, limit: Duration) {
        Self::record(&self.leading_since);
        loop {
            let since = *self.leading_since.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = self.last().max(since);
            if fresh.is_none_or(|t| t.elapsed() > limit) {
                return;
            }
            tokio::time::sleep(RENEWAL_POLL).await;
        }
    }
}

/// Wraps `client` so that every successful write it makes is recorded in the returned
/// [`Renewals`]. It is only the lease manager's: its writes are Lease acquisitions, renewals and
/// the release.
fn recording_renewals(client: kube::Client) -> (kube::Client, Renewals) {
    let renewals = Renewals::default();
    let seen = renewals.last.clone();
    let namespace = client.default_namespace().to_owned();
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let (client, seen) = (client.clone(), seen.clone());
        async move {
            let write = request.method() != Method::GET;
            let response = client.send(request).await?;
            if write && response.status().is_success() {
                Renewals::record(&seen);
            }
            Ok::<_, kube::Error>(response)
        }
    });
    (kube::Client::new(service, namespace), renewals)
}

/// Waits until the lease manager says this replica holds the lease and, after stepping down at
/// `stepped_down_at`, until a renewal succeeded since. `false` when the manager stopped.
async fn leads_with_renewed_lease(
    leading: &mut tokio::sync::watch::Receiver<bool>,
    renewals: &Renewals,
    stepped_down_at: Option<Instant>,
) -> bool {
    loop {
        // `wait_for` still answers from the last value once the manager is gone: check that too.
        if leading.wait_for(|is_leader| *is_leader).await.is_err() || leading.has_changed().is_err() {
            return false;
        }
        let renewed = |at: Instant| renewals.last().is_some_and(|t| t > at);
        if stepped_down_at.is_none_or(renewed) {
            return true;
        }
        tokio::time::sleep(RENEWAL_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_renewed_on_time_is_never_overdue_and_one_left_unrenewed_is() {
        let renewals = Renewals::default();
        let limit = Duration::from_secs(3);
        let overdue = renewals.overdue(limit);
        tokio::pin!(overdue);
        // Renewed every 2 s (duration 3 s, grace 1 s) for a minute: never overdue.
        for _ in 0..30 {
            tokio::select! {
                _ = &mut overdue => panic!("overdue although renewed every 2 s"),
                _ = tokio::time::sleep(Duration::from_secs(2)) => Renewals::record(&renewals.last),
            }
        }
        // Renewals stop: overdue within the limit plus one poll.
        let stopped = Instant::now();
        overdue.await;
        let after = stopped.elapsed();
        assert!(
            after > limit - Duration::from_secs(2) && after <= limit + RENEWAL_POLL,
            "{after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_stepping_down_it_leads_again_only_after_a_new_renewal() {
        let renewals = Renewals::default();
        Renewals::record(&renewals.last);
        let (tx, mut leading) = tokio::sync::watch::channel(true);
        assert!(leads_with_renewed_lease(&mut leading, &renewals, None).await);
        let stepped_down = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        {
            let waiting = leads_with_renewed_lease(&mut leading, &renewals, Some(stepped_down));
            tokio::pin!(waiting);
            tokio::select! {
                _ = &mut waiting => panic!("led again without a renewal"),
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            Renewals::record(&renewals.last);
            assert!(waiting.await);
        }
        drop(tx);
        assert!(!leads_with_renewed_lease(&mut leading, &renewals, Some(Instant::now())).await);
    }
}
