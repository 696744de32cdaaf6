//! The HTTP endpoints the chart's probes and ServiceMonitor use.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use dsql_credential_operator::ops::{Health, Metrics, http};

#[tokio::test]
async fn healthz_readyz_and_metrics_answer_on_loopback() {
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, health.clone(), metrics.clone(), async move {
        let _ = stopped.await;
    }));
    let get = |path: &str| {
        let url = format!("{base}{path}");
        async move { support::moto::request(Method::GET, &url, Duration::from_secs(5)).await }
    };

    assert_eq!(get("/healthz").await.unwrap().0, StatusCode::OK);
    assert_eq!(
        get("/readyz").await.unwrap().0,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready before caches sync"
    );
    health.set_leading(true);
    health.set_caches_synced();
    assert_eq!(get("/readyz").await.unwrap().0, StatusCode::OK);

    metrics.rotation(true, 0.3);
    metrics.set_leader(true);
    let (status, body) = get("/metrics").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(r#"dsql_operator_rotations_total{result="success"} 1"#),
        "{text}"
    );
    assert!(text.contains("dsql_operator_leader 1"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"));
    assert_eq!(get("/nope").await.unwrap().0, StatusCode::NOT_FOUND);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
