//! Holds (`hold_next`, `hold_next_after`, `cancel_holds`): a held request is neither served
//! while held nor after its release (it is refused with 500), and a hold waiting for another
//! request lets everything through until that request has been served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_fake_apiserver::FakeApiServer;
use serde_json::json;

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

async fn setup() -> (FakeApiServer, Api<ConfigMap>) {
    let srv = FakeApiServer::start().await;
    let admin = srv.client();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "a"}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    (srv, Api::namespaced(admin, "a"))
}

async fn wait_reached(hold: &kube_fake_apiserver::hold::Hold) {
    for _ in 0..200 {
        if hold.reached() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the hold was not reached within 2s");
}

#[tokio::test]
async fn a_held_request_is_never_served_and_is_refused_on_release() {
    let (srv, api) = setup().await;
    let hold = srv.hold_next("POST", "/namespaces/a/configmaps");
    let creating = tokio::spawn({
        let api = api.clone();
        async move { api.create(&PostParams::default(), &config_map("held")).await }
    });
    wait_reached(&hold).await;
    assert_eq!(hold.path().as_deref(), Some("/api/v1/namespaces/a/configmaps"));
    assert!(api.get_opt("held").await.unwrap().is_none(), "not served while held");
    hold.release();
    match creating.await.unwrap() {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 500),
        other => panic!("expected a 500, got {other:?}"),
    }
    assert!(
        api.get_opt("held").await.unwrap().is_none(),
        "not served after the release"
    );
    let posts: Vec<u16> = srv
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/configmaps"))
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [500], "recorded as refused, once");
    // The hold caught one request only.
    api.create(&PostParams::default(), &config_map("next")).await.unwrap();
}

#[tokio::test]
async fn a_hold_after_another_request_waits_for_it_to_be_served() {
    let (srv, api) = setup().await;
    api.create(&PostParams::default(), &config_map("one")).await.unwrap();
    let hold = srv.hold_next_after("PATCH", "/configmaps/one?", "POST", "/namespaces/a/configmaps?");
    let patch = Patch::Merge(json!({"data": {"k": "before"}}));
    // Before the awaited request, a matching one goes through.
    api.patch("one", &PatchParams::default(), &patch).await.unwrap();
    assert!(!hold.reached());
    api.create(&PostParams::default(), &config_map("two")).await.unwrap();
    let patching = tokio::spawn({
        let api = api.clone();
        async move {
            let patch = Patch::Merge(json!({"data": {"k": "held"}}));
            api.patch("one", &PatchParams::default(), &patch).await
        }
    });
    wait_reached(&hold).await;
    hold.release();
    assert!(patching.await.unwrap().is_err(), "refused");
    let one = api.get("one").await.unwrap();
    assert_eq!(one.data.unwrap()["k"], "before", "the held patch never landed");
}

#[tokio::test]
async fn cancelled_holds_catch_nothing() {
    let (srv, api) = setup().await;
    let hold = srv.hold_next("POST", "/namespaces/a/configmaps");
    srv.cancel_holds();
    tokio::time::timeout(
        Duration::from_secs(5),
        api.create(&PostParams::default(), &config_map("free")),
    )
    .await
    .expect("not held")
    .unwrap();
    assert!(!hold.reached());
}
