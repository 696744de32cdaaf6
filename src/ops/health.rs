//! What `/healthz` and `/readyz` report.

use std::sync::atomic::{AtomicBool, Ordering};

/// Liveness and readiness of this replica, shared by the controller and the HTTP endpoints.
#[derive(Debug, Default)]
pub struct Health {
    leading: AtomicBool,
    standby: AtomicBool,
    caches_synced: AtomicBool,
}

impl Health {
    /// Marks this replica as the leader (it runs the controller) or not.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
        if !leading {
            self.caches_synced.store(false, Ordering::SeqCst);
        }
    }

    /// Marks this replica as a standby waiting for the lease (leader election on).
    pub fn set_standby(&self, standby: bool) {
        self.standby.store(standby, Ordering::SeqCst);
    }

    /// Records that the controller's caches hold a full list of the watched objects.
    pub fn set_caches_synced(&self) {
        self.caches_synced.store(true, Ordering::SeqCst);
    }

    /// Whether this replica leads.
    pub fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    /// Ready when the leader's caches are synced, or when this replica is a healthy standby (it
    /// can take over at once, and keeping it out of Service endpoints would only upset PDBs).
    pub fn is_ready(&self) -> bool {
        (self.is_leading() && self.caches_synced.load(Ordering::SeqCst)) || self.standby.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_once_the_leader_has_synced_or_as_a_standby() {
        let health = Health::default();
        assert!(!health.is_ready());
        health.set_leading(true);
        assert!(!health.is_ready());
        health.set_caches_synced();
        assert!(health.is_ready());
        health.set_leading(false);
        assert!(!health.is_ready(), "losing the lease drops the synced caches");
        health.set_standby(true);
        assert!(health.is_ready());
    }
}
