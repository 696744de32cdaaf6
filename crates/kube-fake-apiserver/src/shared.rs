//! What the listener, the watch streams and the garbage collector of one fake share: the store
//! behind a mutex, the channels that announce writes, shutdown and expired watches, and the armed
//! holds.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hold::Hold;
use crate::store::State;

/// The state of one running fake.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    /// Latest resourceVersion; watches wake up on changes.
    pub(crate) rv_tx: tokio::sync::watch::Sender<u64>,
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// Bumped by `expire_watches`: live watches end with a 410 ERROR event.
    pub(crate) expire: tokio::sync::watch::Sender<u64>,
    pub(crate) gc_wake: tokio::sync::Notify,
    pub(crate) gc_paused: AtomicBool,
    pub(crate) bookmark_ms: AtomicU64,
    pub(crate) port: u16,
    /// Armed holds (see [`crate::FakeApiServer::hold_next`]), oldest first; each catches one request.
    pub(crate) holds: Mutex<Vec<Arc<Hold>>>,
}

impl Shared {
    /// A fresh server's state (built-ins and the initial namespaces) for one listening on `port`.
    pub(crate) fn new(port: u16) -> Shared {
        let (rv_tx, _) = tokio::sync::watch::channel(0u64);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Shared {
            state: Mutex::new(State::new()),
            rv_tx,
            shutdown,
            expire: tokio::sync::watch::channel(0u64).0,
            gc_wake: tokio::sync::Notify::new(),
            gc_paused: AtomicBool::new(false),
            bookmark_ms: AtomicU64::new(60_000),
            port,
            holds: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn bookmark_interval(&self) -> Duration {
        Duration::from_millis(self.bookmark_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn notify_writes(&self) {
        let rv = self.state.lock().map(|s| s.rv).unwrap_or_default();
        self.rv_tx.send_replace(rv);
        self.gc_wake.notify_one();
    }
}
