//! Observing credentials and Secrets through watches (cheap to poll, no load on the server).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::clock::Clock;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::support::env::condition;

// ---------------------------------------------------------------------------------------------
// Observing credentials and Secrets through watches (cheap to poll, no load on the server).

#[derive(Default, Clone)]
pub(crate) struct CredState {
    pub(crate) ready: bool,
    pub(crate) rotation_count: i64,
    pub(crate) next: Option<Timestamp>,
    pub(crate) version: Option<String>,
    /// When Ready=True was first seen.
    pub(crate) ready_at: Option<Instant>,
}

pub(crate) type CredMap = Arc<Mutex<HashMap<String, CredState>>>;

pub(crate) fn watch_credentials(api: Api<DsqlCredential>) -> (CredMap, tokio::task::JoinHandle<()>) {
    let map: CredMap = Default::default();
    let writer = map.clone();
    let task = tokio::spawn(async move {
        let objects = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut objects = std::pin::pin!(objects);
        while let Some(event) = objects.next().await {
            let Ok(object) = event else { continue };
            let status = object.status.clone().unwrap_or_default();
            let ready = condition(&object, "Ready").is_some_and(|c| c.status == "True");
            let mut map = writer.lock().unwrap();
            let entry = map.entry(object.name_any()).or_default();
            if ready && entry.ready_at.is_none() {
                entry.ready_at = Some(Instant::now());
            }
            entry.ready = ready;
            entry.rotation_count = status.rotation_count.unwrap_or(0);
            entry.next = status.next_rotation_time.map(|t| t.0);
            entry.version = status.version_id;
        }
    });
    (map, task)
}

/// Per Secret: every version id seen, with the operator clock's time when the watch saw it.
pub(crate) type SecretMap = Arc<Mutex<HashMap<String, Vec<(String, Timestamp)>>>>;

pub(crate) fn watch_secrets(api: Api<Secret>, clock: Arc<dyn Clock>) -> (SecretMap, tokio::task::JoinHandle<()>) {
    let map: SecretMap = Default::default();
    let writer = map.clone();
    let task = tokio::spawn(async move {
        let objects = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut objects = std::pin::pin!(objects);
        while let Some(event) = objects.next().await {
            let Ok(object) = event else { continue };
            let Some(version) = object.annotations().get("dsql.credentials.dev/version-id").cloned() else {
                continue;
            };
            let seen = clock.now();
            let mut map = writer.lock().unwrap();
            let versions = map.entry(object.name_any()).or_default();
            if versions.last().is_none_or(|(v, _)| *v != version) {
                versions.push((version, seen));
            }
        }
    });
    (map, task)
}

pub(crate) async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

pub(crate) fn count_where(map: &CredMap, f: impl Fn(&CredState) -> bool) -> usize {
    map.lock().unwrap().values().filter(|s| f(s)).count()
}
