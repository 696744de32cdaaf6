//! Watch streams: replay from the bounded history, live events, bookmarks, timeouts, 410s.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::builtin;
use super::errors::status_body;
use super::request::WatchReq;
use super::shared::Shared;

/// One watch event line, keys in the order the real API server writes them (Go encodes
/// metav1.WatchEvent's fields in declaration order: `type`, then `object`). `json!` would sort
/// them, and a client that decodes `object` before it knows `type` must buffer it.
fn line(etype: &str, object: Value) -> Bytes {
    let s = format!("{{\"type\":{},\"object\":{object}}}\n", Value::from(etype));
    Bytes::from(s)
}

fn matches(w: &WatchReq, obj: &Value) -> bool {
    if let Some(ns) = &w.namespace
        && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns.as_str())
    {
        return false;
    }
    w.labels.matches(obj) && w.fields.matches(obj)
}

fn bookmark(w: &WatchReq, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": w.def.kind, "apiVersion": w.def.api_version(), "metadata": meta}),
    )
}

/// Like the watch cache: a bookmark every `freq`, and one 2s before the watch's deadline.
fn next_bookmark(now: Instant, deadline: Instant, freq: Duration) -> Option<Instant> {
    let heartbeat = now + freq;
    let pretimeout = deadline.checked_sub(Duration::from_secs(2))?;
    let t = heartbeat.min(pretimeout);
    if t <= now { None } else { Some(t) }
}

/// Starts the stream; the returned body ends when the watch times out, the server is dropped, or
/// the history no longer covers the watcher (then after a 410 ERROR event).
pub fn start(shared: Arc<Shared>, w: WatchReq) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    tokio::spawn(run(shared, w, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Body::from_stream(stream)
}

async fn run(shared: Arc<Shared>, w: WatchReq, tx: tokio::sync::mpsc::Sender<Bytes>) {
    let mut rv_rx = shared.rv_tx.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    let mut expire = shared.expire.subscribe();
    expire.mark_unchanged();
    if *shutdown.borrow() {
        return;
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(w.timeout_seconds.unwrap_or(1800));
    let freq = shared.bookmark_interval();
    let mut next_bm = if w.bookmarks {
        next_bookmark(start, deadline, freq)
    } else {
        None
    };
    let storage = w.def.storage.clone();
    let mut initial = Vec::new();
    let start_rv: Result<u64, Bytes> = {
        let Ok(state) = shared.state.lock() else {
            return;
        };
        match w.resource_version {
            Some(rv) => {
                let oldest = state.oldest_rv(&storage);
                if rv < oldest {
                    Err(line(
                        "ERROR",
                        status_body(
                            410,
                            "Expired",
                            &format!("too old resource version: {rv} ({oldest})"),
                            None,
                        ),
                    ))
                } else {
                    Ok(rv)
                }
            }
            None => {
                for obj in state
                    .objects
                    .get(&storage)
                    .map(|m| m.values().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
                {
                    if matches(&w, &obj) {
                        initial.push(line("ADDED", builtin::to_version(&w.def, &obj)));
                    }
                }
                if w.send_initial_events && w.bookmarks {
                    initial.push(bookmark(&w, state.rv, true));
                }
                Ok(state.rv)
            }
        }
    };
    let mut last = match start_rv {
        Ok(rv) => rv,
        Err(expired) => {
            let _ = tx.send(expired).await;
            return;
        }
    };
    for b in initial {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    loop {
        let (batch, ended): (Vec<Bytes>, bool) = {
            let Ok(state) = shared.state.lock() else {
                return;
            };
            if last < state.evicted_upto {
                let st = status_body(
                    410,
                    "Expired",
                    &format!("too old resource version: {last} ({})", state.oldest_rv(&storage)),
                    None,
                );
                (vec![line("ERROR", st)], true)
            } else {
                let mut out = Vec::new();
                // The history is in resourceVersion order: skip what this watch has sent already
                // without scanning it (a long history made every write cost O(history) per watch).
                let first_new = state.history.partition_point(|e| e.rv <= last);
                for e in state.history.range(first_new..).filter(|e| e.storage == storage) {
                    let now = matches(&w, &e.object);
                    let before = e.prev.as_ref().is_some_and(|p| matches(&w, p));
                    let etype = match (e.etype, before, now) {
                        ("DELETED", true, _) => "DELETED",
                        ("DELETED", false, _) => continue,
                        (_, true, true) => "MODIFIED",
                        (_, false, true) => "ADDED",
                        (_, true, false) => "DELETED",
                        _ => continue,
                    };
                    out.push(line(etype, builtin::to_version(&w.def, &e.object)));
                }
                last = state.rv;
                (out, false)
            }
        };
        for b in batch {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        let bm_at = next_bm.unwrap_or(deadline);
        tokio::select! {
            changed = rv_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep_until(bm_at), if next_bm.is_some() => {
                let rv = match shared.state.lock() {
                    Ok(s) => s.rv,
                    Err(_) => return,
                };
                if tx.send(bookmark(&w, rv, false)).await.is_err() {
                    return;
                }
                next_bm = next_bookmark(Instant::now(), deadline, freq);
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = shutdown.changed() => return,
            _ = expire.changed() => {
                let rv = shared.state.lock().map(|s| s.rv).unwrap_or_default();
                let st = status_body(410, "Expired", &format!("too old resource version: {last} ({rv})"), None);
                let _ = tx.send(line("ERROR", st)).await;
                return;
            }
            _ = tx.closed() => return,
        }
    }
}
