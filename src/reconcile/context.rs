//! What every reconcile shares: clients, the clock, settings and per-object failure counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::aws::{SecretsManager, WriteRateLimiter};
use crate::clock::Clock;
use crate::config::OperatorConfig;
use crate::login_check::LoginChecker;
use crate::ops::{Health, Metrics};
use crate::reconcile::events::EventPublisher;
use crate::reconcile::pending::PendingRotations;
use crate::reconcile::recent::Recent;
use crate::token::TokenMinter;

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Secrets Manager writes.
    pub secrets: SecretsManager,
    /// Token minting.
    pub minter: TokenMinter,
    /// Login checks of new tokens (`spec.loginCheck`); replaceable so tests can point cluster
    /// endpoints at a local server.
    pub login: LoginChecker,
    /// "Now".
    pub clock: Arc<dyn Clock>,
    /// Operator settings.
    pub config: OperatorConfig,
    /// Paces rollout restarts across all credentials.
    pub restart_limiter: WriteRateLimiter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness, reported on /readyz.
    pub health: Arc<Health>,
    /// Kubernetes Events.
    pub(crate) events: EventPublisher,
    /// Consecutive reconcile errors per object (`namespace/name`), for backoff of errors that
    /// are not recorded in status.
    failures: Mutex<HashMap<String, u32>>,
    /// The rotation count last written to each object's status (by uid), for as long as the
    /// controller's cache may lag behind that write: acting on the older copy would rotate twice.
    written_rotations: Mutex<Recent<i64>>,
    /// The generation of each undecodable object (by uid) already reported, so reporting it
    /// (which changes the object) does not report it again.
    unreadable_reported: Mutex<HashMap<String, i64>>,
    /// Tokens in Secrets Manager that a projection or status write still has to publish.
    pub(crate) pending: PendingRotations,
    /// The Secret each credential (by uid) created last, as (name, Secret uid), until status
    /// records it: a status write lost after the create must not make the operator take its own
    /// Secret for someone else's (it cannot read Secrets to find out).
    created_secrets: Mutex<HashMap<String, (String, String)>>,
    /// Created Secrets that a status write has recorded since, for as long as the cache may still
    /// show the status from before it.
    recorded_secrets: Mutex<Recent<(String, String)>>,
    /// Rollout restarts being retried, by credential uid: failed attempts in a row and when the
    /// next one is due. In memory only: after an operator restart, status still lists the
    /// pending restarts and the first reconcile tries them at once.
    restart_retries: Mutex<HashMap<String, (u32, jiff::Timestamp)>>,
}

impl Context {
    /// Builds the shared context.
    pub fn new(
        client: kube::Client,
        secrets: SecretsManager,
        minter: TokenMinter,
        clock: Arc<dyn Clock>,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        let events = EventPublisher::new(client.clone());
        let restart_limiter = WriteRateLimiter::new(config.rollout_restarts_per_second);
        Self {
            client,
            secrets,
            minter,
            login: LoginChecker::default(),
            clock,
            config,
            restart_limiter,
            metrics,
            health,
            events,
            failures: Mutex::new(HashMap::new()),
            written_rotations: Mutex::default(),
            unreadable_reported: Mutex::new(HashMap::new()),
            pending: PendingRotations::default(),
            created_secrets: Mutex::new(HashMap::new()),
            recorded_secrets: Mutex::default(),
            restart_retries: Mutex::new(HashMap::new()),
        }
    }

    /// This context with login checks run by `login` (tests resolve endpoints to local servers).
    pub fn with_login_checker(mut self, login: LoginChecker) -> Self {
        self.login = login;
        self
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

    /// Records that rotation `count` of the object with `uid` is in its status, and with it the
    /// Secret the object created (every status written after a rotation names it).
    pub(crate) fn record_rotation(&self, uid: &str, count: i64) {
        lock(&self.written_rotations).insert(uid, count);
        if let Some(created) = lock(&self.created_secrets).remove(uid) {
            lock(&self.recorded_secrets).insert(uid, created);
        }
    }

    /// Whether the cached copy (with rotation `count` in status) is older than what was written
    /// moments ago. Bounded in time ([`WATCH_LAG`](crate::reconcile::recent::WATCH_LAG)): a status someone else rewrote must not
    /// stall the object.
    pub(crate) fn is_stale(&self, uid: &str, count: i64) -> bool {
        lock(&self.written_rotations)
            .get(uid)
            .is_some_and(|written| *written > count)
    }

    /// Forgets what was written longer than [`WATCH_LAG`](crate::reconcile::recent::WATCH_LAG)
    /// ago; the controller runs it that often.
    pub(crate) fn forget_expired_writes(&self) {
        lock(&self.written_rotations).sweep();
        lock(&self.recorded_secrets).sweep();
    }

    /// Records that generation `generation` of the undecodable object `uid` is being reported;
    /// false when it already was.
    pub(crate) fn first_report_of_unreadable(&self, uid: &str, generation: i64) -> bool {
        let mut reported = self
            .unreadable_reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reported.insert(uid.to_owned(), generation) != Some(generation)
    }

    /// Forgets that an undecodable object was reported, so the next attempt reports it again.
    pub(crate) fn forget_unreadable_report(&self, uid: &str) {
        self.unreadable_reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid);
    }

    /// Records that the credential `uid` created the Secret `name` with uid `secret_uid`.
    pub(crate) fn remember_created_secret(&self, uid: &str, name: &str, secret_uid: &str) {
        self.created_secrets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(uid.to_owned(), (name.to_owned(), secret_uid.to_owned()));
    }

    /// The uid of the Secret `name` the credential `uid` created, if this process created it
    /// and status may not show it yet.
    pub(crate) fn created_secret(&self, uid: &str, name: &str) -> Option<String> {
        let matching = |(created, secret_uid): &(String, String)| (created == name).then(|| secret_uid.clone());
        let unrecorded = lock(&self.created_secrets).get(uid).and_then(matching);
        unrecorded.or_else(|| lock(&self.recorded_secrets).get(uid).and_then(matching))
    }

    /// When the next retry of the credential `uid`'s failed rollout restarts is due, if that is
    /// after `now` (None: due now).
    pub(crate) fn restart_retry_pending(&self, uid: &str, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.restart_retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(uid)
            .map(|(_, at)| *at)
            .filter(|at| *at > now)
    }

    /// Records a failed rollout restart attempt of the credential `uid` at `now`; returns when
    /// to retry (the same exponential backoff with full jitter as failed rotations).
    pub(crate) fn record_restart_failure(&self, uid: &str, now: jiff::Timestamp) -> jiff::Timestamp {
        let mut retries = self
            .restart_retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = retries.entry(uid.to_owned()).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        let backoff = crate::schedule::failure_backoff(entry.0, rand::random::<f64>());
        entry.1 = now.saturating_add(backoff).unwrap_or(jiff::Timestamp::MAX);
        entry.1
    }

    /// Forgets the rollout restart retries of the credential `uid` (they succeeded, or nothing
    /// is pending any more).
    pub(crate) fn clear_restart_retries(&self, uid: &str) {
        self.restart_retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(uid);
    }

    /// Forgets an object that is gone.
    pub(crate) fn forget(&self, uid: &str) {
        lock(&self.written_rotations).remove(uid);
        self.forget_unreadable_report(uid);
        self.pending.forget(uid);
        lock(&self.created_secrets).remove(uid);
        lock(&self.recorded_secrets).remove(uid);
        self.clear_restart_retries(uid);
    }
}

/// The guarded value, also after a panic elsewhere poisoned the lock (every map here stays
/// consistent between its own statements).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
