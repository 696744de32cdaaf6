//! Holding a request at the door: a test arms a hold for the next request matching a method and
//! a path fragment; that request waits, unserved, until the test releases it, and is then refused
//! (500) without ever being served. A client killed while its request is held leaves exactly the
//! state it had before sending it, which is how a test stops a writer between two of its writes
//! (after the first was answered, before the second lands).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a held request waits for its release, so a test that forgets one still ends.
pub const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// One armed hold; see [`crate::FakeApiServer::hold_next`].
#[derive(Debug)]
pub struct Hold {
    method: String,
    path_contains: String,
    /// A request (method, path fragment) that must have been served (2xx) first, if any.
    after: Option<(String, String)>,
    armed: AtomicBool,
    reached: AtomicBool,
    path: Mutex<Option<String>>,
    release: Notify,
}

impl Hold {
    pub(crate) fn new(method: &str, path_contains: &str, after: Option<(&str, &str)>) -> Hold {
        Hold {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_owned(),
            armed: AtomicBool::new(after.is_none()),
            after: after.map(|(m, p)| (m.to_ascii_uppercase(), p.to_owned())),
            reached: AtomicBool::new(false),
            path: Mutex::new(None),
            release: Notify::new(),
        }
    }

    pub(crate) fn matches(&self, method: &str, path_with_query: &str) -> bool {
        self.armed.load(Ordering::SeqCst) && self.method == method && path_with_query.contains(&self.path_contains)
    }

    /// Arms a hold waiting for this served request, if it is the one it waits for.
    pub(crate) fn served(&self, method: &str, path_with_query: &str, status: u16) {
        let awaited = self
            .after
            .as_ref()
            .is_some_and(|(m, p)| m == method && path_with_query.contains(p.as_str()));
        if awaited && (200..300).contains(&status) {
            self.armed.store(true, Ordering::SeqCst);
        }
    }

    /// Marks the hold reached by a request for `path`, then waits for the release (bounded).
    pub(crate) async fn wait(&self, path: &str) {
        if let Ok(mut p) = self.path.lock() {
            *p = Some(path.to_owned());
        }
        self.reached.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(HOLD_LIMIT, self.release.notified()).await;
    }

    /// Whether a request is held (or was, and was refused) by this hold.
    pub fn reached(&self) -> bool {
        self.reached.load(Ordering::SeqCst)
    }

    /// The path of the request it holds, once reached.
    pub fn path(&self) -> Option<String> {
        self.path.lock().ok().and_then(|p| p.clone())
    }

    /// Lets the held request go on to be refused (500), never served. Releasing before a request
    /// arrived lets that request through the hold at once; [`crate::FakeApiServer::cancel_holds`]
    /// disarms holds that should catch nothing more.
    pub fn release(&self) {
        self.release.notify_one();
    }
}
