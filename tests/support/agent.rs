//! A double of the EKS Pod Identity agent: the container credentials endpoint
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`, authorized by the token in
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`) on 127.0.0.1, answering with cached temporary
//! credentials the way the real agent does: the same ones on every call until `refresh_before`
//! their expiry, then new ones. Time is the tests' clock, so tests move through credential
//! windows without waiting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinHandle;

use super::env::TestClock;
use dsql_credential_operator::clock::Clock;

/// One set of credentials the agent handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the agent first handed them out.
    pub issued_at: Timestamp,
    /// Their `Expiration`.
    pub expires_at: Timestamp,
}

struct AgentState {
    clock: Arc<TestClock>,
    lifetime: SignedDuration,
    refresh_before: SignedDuration,
    authorization: String,
    windows: Mutex<Vec<Window>>,
    requests: AtomicUsize,
}

/// The running agent double.
pub struct PodIdentityAgent {
    addr: SocketAddr,
    state: Arc<AgentState>,
    task: JoinHandle<()>,
}

impl PodIdentityAgent {
    /// Serves on `listener` (bound by the caller to 127.0.0.1, so the address can go into the
    /// environment before anything else starts) credentials living `lifetime`, renewed
    /// `refresh_before` their expiry; requests must carry `authorization`.
    pub fn start(
        listener: std::net::TcpListener,
        clock: Arc<TestClock>,
        lifetime: SignedDuration,
        refresh_before: SignedDuration,
        authorization: &str,
    ) -> PodIdentityAgent {
        let addr = listener.local_addr().expect("agent address");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        let state = Arc::new(AgentState {
            clock,
            lifetime,
            refresh_before,
            authorization: authorization.to_owned(),
            windows: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/v1/credentials", axum::routing::get(credentials))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        PodIdentityAgent { addr, state, task }
    }

    /// The `AWS_CONTAINER_CREDENTIALS_FULL_URI` of a listener address.
    pub fn full_uri(addr: SocketAddr) -> String {
        format!("http://{addr}/v1/credentials")
    }

    /// Its endpoint.
    pub fn endpoint(&self) -> String {
        Self::full_uri(self.addr)
    }

    /// Every set of credentials handed out so far, oldest first.
    pub fn windows(&self) -> Vec<Window> {
        self.state.windows.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests answered (authorized or not).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for PodIdentityAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn credentials(State(state): State<Arc<AgentState>>, headers: HeaderMap) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == state.authorization);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "unauthorized").into_response();
    }
    let now = state.clock.now();
    let mut windows = state.windows.lock().unwrap_or_else(|p| p.into_inner());
    let stale = windows
        .last()
        .is_none_or(|w| now >= w.expires_at - state.refresh_before);
    if stale {
        // Whole seconds: `Expiration` carries no fraction.
        let expires_at = Timestamp::from_second((now + state.lifetime).as_second()).expect("a valid expiry");
        windows.push(Window {
            issued_at: now,
            expires_at,
        });
    }
    let n = windows.len();
    let window = windows[n - 1];
    drop(windows);
    axum::Json(serde_json::json!({
        "AccessKeyId": format!("ASIAAGENT{n:08}"),
        "SecretAccessKey": format!("agent-secret-{n}"),
        "Token": format!("agent-session-{n}"),
        "Expiration": window.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "AccountId": "123456789012",
    }))
    .into_response()
}
