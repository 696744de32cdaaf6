//! The outage gate in front of the fake: up it forwards, down it cuts open watches and refuses
//! (counts) every new connection, and it comes back on the same URL with the fake's state intact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams, WatchParams};
use kube_fake_apiserver::FakeApiServer;
use kube_fake_apiserver::auth::UserInfo;
use kube_fake_apiserver::outage::OutageGate;
use serde_json::json;

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_cuts_and_refuses_connections_while_down_and_comes_back_on_the_same_url() {
    let fake = FakeApiServer::start().await;
    let gate = OutageGate::start(fake.local_addr()).await;
    let token = fake.issue_token(UserInfo::admin());
    let through_gate: Api<Namespace> = Api::all(fake.client_with_token_at(&gate.base_url(), &token, "gated"));
    let direct: Api<Namespace> = Api::all(fake.client());
    through_gate
        .create(&PostParams::default(), &namespace("before"))
        .await
        .unwrap();
    let mut watch = through_gate
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert!(
        matches!(first, Some(Ok(_))),
        "the watch streams through the gate: {first:?}"
    );
    assert!(gate.forwarded() >= 1);
    assert_eq!(gate.refused(), 0);

    gate.go_down();
    // The open watch is cut: it ends (or errors) instead of waiting out its 60 s.
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match watch.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the open watch ends within 5 s of the outage");
    assert!(!matches!(cut, Some(Ok(_))));
    let url = gate.base_url();
    for _ in 0..3 {
        let refused = tokio::time::timeout(Duration::from_secs(5), through_gate.list(&Default::default()))
            .await
            .expect("a refused request fails fast");
        assert!(refused.is_err(), "no request passes while down");
    }
    assert!(gate.refused() >= 3, "each attempt is counted: {}", gate.refused());
    assert!(gate.refused_peak_per_second() >= 1 && gate.refused_peak_per_second() <= gate.refused());
    // Only the path broke: the fake itself serves and changes meanwhile.
    direct
        .create(&PostParams::default(), &namespace("during"))
        .await
        .unwrap();
    let served_before = fake.requests().len();

    gate.come_back();
    assert_eq!(gate.base_url(), url, "back on the same port");
    let names: Vec<String> = through_gate
        .list(&Default::default())
        .await
        .expect("requests pass again")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(
        names.contains(&"before".to_owned()) && names.contains(&"during".to_owned()),
        "{names:?}"
    );
    assert_eq!(fake.requests().len(), served_before + 1, "the list reached the fake");
}
