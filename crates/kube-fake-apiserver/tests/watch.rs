//! Watches of the fake API server through the real kube client: bookmarks, selectors, timeouts,
//! 410 Expired and relists, streaming lists (sendInitialEvents), and expired live watches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube_fake_apiserver::FakeApiServer;
use serde_json::json;

use support::{parse_events, raw, setup, widget, widgets};

#[tokio::test]
async fn watch_with_bookmarks_and_selectors() {
    let srv = FakeApiServer::start().await;
    srv.set_bookmark_interval(Duration::from_millis(100));
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut wp = WatchParams::default().labels("app=a").timeout(10);
    wp.bookmarks = true;
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    let mk = |name: &str, app: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": app}}})).unwrap()
    };
    cms.create(&PostParams::default(), &mk("x", "b")).await.unwrap();
    cms.create(&PostParams::default(), &mk("y", "a")).await.unwrap();
    cms.patch(
        "y",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "c"}}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
                WatchEvent::Modified(o) => seen.push(format!("MODIFIED {}", o.metadata.name.unwrap())),
                WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
                WatchEvent::Bookmark(b) => {
                    assert!(!b.metadata.resource_version.is_empty());
                    bookmarks += 1;
                }
                WatchEvent::Error(e) => panic!("unexpected error {e:?}"),
            }
            if seen.len() == 2 && bookmarks > 0 {
                break;
            }
        }
    })
    .await
    .expect("events in time");
    // x never matched; y matched then left the selector (a DELETED for this watch).
    assert_eq!(seen, vec!["ADDED y", "DELETED y"]);
    assert!(bookmarks > 0);
}

#[tokio::test]
async fn watch_timeout_ends_stream_and_old_rv_is_410() {
    let srv = FakeApiServer::start().await;
    let base = srv.base_url();
    let started = std::time::Instant::now();
    let r = raw(
        &base,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stream ended at its timeout"
    );

    srv.set_history_limit(2);
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    for i in 0..4 {
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("c{i}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let r = raw(
        &base,
        "GET",
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=2",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let events = parse_events(&r.body);
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["type"], "ERROR");
    assert_eq!(events[0]["object"]["code"], 410);
    assert_eq!(events[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn watcher_relists_after_410() {
    let srv = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::default_namespaced(srv.client());
    let mk = |name: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "a"}})).unwrap()
    };
    leases.create(&PostParams::default(), &mk("one")).await.unwrap();
    let mut stream = watcher(leases.clone(), watcher::Config::default()).boxed();
    let mut init_done = 0;
    let mut applied = Vec::new();
    let mut expired = 0;
    let run = async {
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(watcher::Error::WatchError(s)) if s.code == 410 => {
                    expired += 1;
                    continue;
                }
                Err(e) => panic!("watcher error {e:?}"),
            };
            match ev {
                watcher::Event::InitDone => {
                    init_done += 1;
                    if init_done == 1 {
                        leases.create(&PostParams::default(), &mk("two")).await.unwrap();
                    }
                    if init_done == 2 {
                        break;
                    }
                }
                watcher::Event::Apply(l) => {
                    applied.push(l.metadata.name.unwrap());
                    if applied.len() == 1 {
                        // The watch cache drops us: the watcher must relist.
                        srv.expire_watches();
                    }
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("watcher relisted in time");
    assert_eq!(applied, vec!["two"]);
    assert_eq!(expired, 1, "the 410 surfaced once");
    assert_eq!(init_done, 2, "a second initial list after the 410");
    let watches: Vec<_> = srv
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .collect();
    assert!(!watches.is_empty());
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    let srv = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(srv.client());
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "pre"}})).unwrap(),
    )
    .await
    .unwrap();
    let mut stream = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = stream.try_next().await.unwrap() {
            match ev {
                watcher::Event::InitApply(c) => names.push(c.metadata.name.unwrap()),
                watcher::Event::InitDone => {
                    cms.create(
                        &PostParams::default(),
                        &serde_json::from_value(json!({"metadata": {"name": "post"}})).unwrap(),
                    )
                    .await
                    .unwrap();
                }
                watcher::Event::Apply(c) => {
                    names.push(c.metadata.name.unwrap());
                    break;
                }
                _ => {}
            }
        }
    })
    .await
    .expect("initial events, the end bookmark and a live event");
    assert_eq!(names, vec!["pre", "post"]);
    assert!(
        srv.requests()
            .iter()
            .any(|r| r.query.contains("sendInitialEvents=true"))
    );
}

/// `expire_watches` ends a watch that is already streaming with a 410 ERROR event, as the real
/// server does when its watch cache drops a slow watcher.
#[tokio::test]
async fn expire_watches_ends_a_live_watch_with_410() {
    let (srv, client) = setup().await;
    let api = widgets(&client, "ns1");
    let created = api
        .create(&PostParams::default(), &widget("a", json!({})))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &widget("b", json!({})))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Some(kube::api::WatchEvent::Added(_))), "{first:?}");
    srv.expire_watches();
    let next = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("the watch ends promptly")
        .unwrap();
    match next {
        Some(kube::api::WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}
