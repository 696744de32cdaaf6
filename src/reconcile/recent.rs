//! What the operator wrote moments ago, kept only for as long as its own cache may not show it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How far the controller's cache may lag behind the operator's own status write. Past it, the
/// cached object is trusted again: a status someone else rewrote must not stall the object.
pub(crate) const WATCH_LAG: Duration = Duration::from_secs(30);

/// Values by credential uid that matter for [`WATCH_LAG`] after they were recorded.
///
/// [`sweep`](Self::sweep) (run every [`WATCH_LAG`] by the controller) drops the expired ones and
/// shrinks the table, so after a mass rotation the map does not keep an entry for each of the
/// 10,000 credentials rotated (about 100 bytes each with its share of the table) until their
/// next rotation.
#[derive(Debug)]
pub(crate) struct Recent<V> {
    entries: HashMap<String, (V, Instant)>,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

impl<V> Recent<V> {
    /// Records `value` for `uid` now (replacing an older one).
    pub(crate) fn insert(&mut self, uid: &str, value: V) {
        self.entries.insert(uid.to_owned(), (value, Instant::now()));
    }

    /// The value recorded for `uid` within the last [`WATCH_LAG`].
    pub(crate) fn get(&self, uid: &str) -> Option<&V> {
        self.entries
            .get(uid)
            .filter(|(_, at)| at.elapsed() < WATCH_LAG)
            .map(|(value, _)| value)
    }

    /// Forgets `uid`.
    pub(crate) fn remove(&mut self, uid: &str) -> Option<V> {
        self.entries.remove(uid).map(|(value, _)| value)
    }

    /// Drops the entries older than [`WATCH_LAG`] and gives back the table's spare room.
    pub(crate) fn sweep(&mut self) {
        self.entries.retain(|_, (_, at)| at.elapsed() < WATCH_LAG);
        self.entries.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ages every entry past the lag.
    fn expire_all<V>(recent: &mut Recent<V>) {
        for (_, at) in recent.entries.values_mut() {
            *at -= WATCH_LAG;
        }
    }

    #[test]
    fn a_recent_value_is_found_and_an_expired_one_is_not() {
        let mut recent = Recent::default();
        recent.insert("a", 1);
        assert_eq!(recent.get("a"), Some(&1));
        assert_eq!(recent.get("b"), None);
        expire_all(&mut recent);
        assert_eq!(recent.get("a"), None, "expired");
        recent.insert("a", 2);
        assert_eq!(recent.get("a"), Some(&2), "recorded again");
        assert_eq!(recent.remove("a"), Some(2));
        assert_eq!(recent.get("a"), None);
    }

    #[test]
    fn a_sweep_after_a_burst_keeps_only_what_is_recent_and_shrinks_the_table() {
        let mut recent = Recent::default();
        for i in 0..10_000 {
            recent.insert(&format!("uid-{i}"), i);
        }
        expire_all(&mut recent);
        recent.insert("later", 1);
        recent.sweep();
        assert_eq!(recent.entries.len(), 1);
        assert_eq!(recent.get("later"), Some(&1));
        assert!(
            recent.entries.capacity() < 100,
            "capacity {}",
            recent.entries.capacity()
        );
    }
}
