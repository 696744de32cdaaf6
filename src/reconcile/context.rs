//! What every reconcile shares: clients, the clock, settings and per-object failure counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::aws::SecretsManager;
use crate::clock::Clock;
use crate::config::OperatorConfig;
use crate::reconcile::events::EventPublisher;
use crate::token::TokenMinter;

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Secrets Manager writes.
    pub secrets: SecretsManager,
    /// Token minting.
    pub minter: TokenMinter,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Operator settings.
    pub config: OperatorConfig,
    /// Kubernetes Events.
    pub(crate) events: EventPublisher,
    /// Consecutive reconcile errors per object (`namespace/name`), for backoff of errors that
    /// are not recorded in status.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Builds the shared context.
    pub fn new(client: kube::Client, secrets: SecretsManager, minter: TokenMinter, clock: Arc<dyn Clock>, config: OperatorConfig) -> Self {
        let events = EventPublisher::new(client.clone());
        Self { client, secrets, minter, clock, config, events, failures: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn record_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    pub(crate) fn clear_failures(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(key);
    }
}
