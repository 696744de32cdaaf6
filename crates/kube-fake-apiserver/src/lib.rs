//! An in-process fake of the Kubernetes API server, modelled on the real kube-apiserver (v1.36):
//! REST verbs over JSON, watch streams, server-side apply with managedFields, the status
//! subresource, finalizers, ownerReference garbage collection, CRD registration with schema
//! defaulting/pruning/validation (including CEL), Status error bodies, fault injection and
//! request recording. It listens on 127.0.0.1 only and stops when dropped.
//!
//! What it models, what it does not, and which recording of a real kube-apiserver pins each
//! behaviour: see this crate's README.md.

mod access_review;
pub mod admission;
pub mod auth;
pub mod authz;
pub mod builtin;
pub mod cel_cost;
mod discovery;
pub mod errors;
pub mod field_schema;
pub mod fields;
pub mod handler;
pub mod hold;
mod jsonpath;
pub mod meta;
pub mod outage;
pub mod patch;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
mod shared;
pub mod store;
pub mod table;
mod token_request;
pub mod uid;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State as AxState;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

pub use request::RecordedRequest;

use errors::{ApiError, ErrorBody, details, group_resource, reason_for_code, status_body};
use request::{Reply, Req};
use shared::Shared;
use store::{Fault, State};

/// Header naming who sent a request, recorded in [`RecordedRequest::actor`].
pub const ACTOR_HEADER: &str = "x-test-actor";

/// The fake API server. Dropping it stops the listener, every watch stream and the GC loop.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<tokio::task::JoinHandle<()>>,
    gc: Option<tokio::task::JoinHandle<()>>,
}

impl FakeApiServer {
    /// Binds 127.0.0.1:0 and serves on a tokio task.
    #[allow(clippy::panic)] // a loopback bind failure is a broken test environment: fail loudly
    pub async fn start() -> FakeApiServer {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("fake apiserver: cannot bind 127.0.0.1:0: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => panic!("fake apiserver: no local address: {e}"),
        };
        let shared = Arc::new(Shared::new(addr.port()));
        let router = axum::Router::new().fallback(serve_request).with_state(shared.clone());
        let mut stop = shared.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
        });
        let gc = tokio::spawn(gc_loop(shared.clone()));
        FakeApiServer {
            shared,
            addr,
            server: Some(server),
            gc: Some(gc),
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address it listens on (127.0.0.1), e.g. for an [`outage::OutageGate`] in front of it.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A kube client for this server: no auth, default namespace "default".
    pub fn client(&self) -> kube::Client {
        self.build_client(None)
    }

    /// Like [`FakeApiServer::client`], but every request carries `x-test-actor: <actor>`, so
    /// tests can tell the operator's requests from their own in [`FakeApiServer::requests`].
    pub fn client_as(&self, actor: &str) -> kube::Client {
        self.build_client(Some(actor))
    }

    /// Issues a bearer token that authenticates as `user` (what a TokenRequest would return).
    pub fn issue_token(&self, user: auth::UserInfo) -> String {
        match self.shared.state.lock() {
            Ok(mut s) => s.tokens.issue(user),
            Err(poisoned) => poisoned.into_inner().tokens.issue(user),
        }
    }

    /// A kube client that authenticates with the bearer `token` (and marks its requests with
    /// `actor`, as [`FakeApiServer::client_as`] does).
    pub fn client_with_token(&self, token: &str, actor: &str) -> kube::Client {
        self.build_client_with(Some(actor), Some(token))
    }

    /// Like [`FakeApiServer::client_with_token`], connecting to `base_url` instead of the fake
    /// itself: something in front of it, such as an [`outage::OutageGate`].
    pub fn client_with_token_at(&self, base_url: &str, token: &str, actor: &str) -> kube::Client {
        build_client_at(base_url, Some(actor), Some(token))
    }

    fn build_client(&self, actor: Option<&str>) -> kube::Client {
        self.build_client_with(actor, None)
    }

    fn build_client_with(&self, actor: Option<&str>, token: Option<&str>) -> kube::Client {
        build_client_at(&self.base_url(), actor, token)
    }

    /// Every request served, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state.lock().map(|s| s.requests.clone()).unwrap_or_default()
    }

    pub fn clear_requests(&self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.requests.clear();
        }
    }

    /// The next `times` requests matching `method` (None = any) whose path (with query) contains
    /// `path_contains` get `status` with a metav1 Status body.
    pub fn inject_fault(&self, method: Option<&str>, path_contains: &str, status: u16, times: usize) {
        self.push_fault(method, path_contains, status, None, times);
    }

    /// The injected faults not served yet, as `METHOD path_contains xN`.
    pub fn pending_faults(&self) -> Vec<String> {
        self.shared
            .state
            .lock()
            .map(|s| {
                s.faults
                    .iter()
                    .map(|f| {
                        let method = f.method.as_deref().unwrap_or("*");
                        format!("{method} {} x{}", f.path_contains, f.remaining)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every injected fault not served yet: an outage of unknown length ends.
    pub fn clear_faults(&self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.faults.clear();
        }
    }

    /// Like [`inject_fault`](Self::inject_fault), with `body` as the raw response: what a broken
    /// proxy in front of the API server might send (truncated JSON, HTML, a huge page).
    pub fn inject_garbage(&self, method: Option<&str>, path_contains: &str, status: u16, body: String, times: usize) {
        self.push_fault(method, path_contains, status, Some(body), times);
    }

    fn push_fault(&self, method: Option<&str>, path_contains: &str, status: u16, body: Option<String>, times: usize) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.faults.push(Fault {
                method: method.map(|m| m.to_ascii_uppercase()),
                path_contains: path_contains.to_string(),
                status,
                body,
                remaining: times,
            });
        }
    }

    /// Holds the next request with `method` whose path (with query) contains `path_contains`
    /// before it is served: it waits until [`hold::Hold::release`] (or [`hold::HOLD_LIMIT`]) and
    /// is then refused with 500 (which kube's client does not retry, unlike 503), never served,
    /// so nothing of it lands. For stopping a client
    /// (killing it) between one of its writes and the next.
    pub fn hold_next(&self, method: &str, path_contains: &str) -> Arc<hold::Hold> {
        self.push_hold(hold::Hold::new(method, path_contains, None))
    }

    /// Like [`hold_next`](Self::hold_next), but the hold only takes effect once a request with
    /// `after_method` whose path contains `after_path` has been served successfully (2xx): to
    /// stop a client between that write and the next matching one.
    pub fn hold_next_after(
        &self,
        method: &str,
        path_contains: &str,
        after_method: &str,
        after_path: &str,
    ) -> Arc<hold::Hold> {
        self.push_hold(hold::Hold::new(method, path_contains, Some((after_method, after_path))))
    }

    fn push_hold(&self, hold: hold::Hold) -> Arc<hold::Hold> {
        let armed = Arc::new(hold);
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.push(armed.clone());
        }
        armed
    }

    /// Disarms every hold no request has reached yet (held requests stay held until released).
    pub fn cancel_holds(&self) {
        if let Ok(mut holds) = self.shared.holds.lock() {
            holds.clear();
        }
    }

    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (real server: ~1 minute;
    /// one is also always sent 2s before a watch's `timeoutSeconds` deadline).
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared
            .bookmark_ms
            .store(every.as_millis().max(1) as u64, Ordering::Relaxed);
    }

    /// How many events the watch history keeps (default 1000); older resourceVersions get 410.
    pub fn set_history_limit(&self, events: usize) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.history_limit = events.max(1);
            while s.history.len() > s.history_limit {
                if let Some(e) = s.history.pop_front() {
                    s.evicted_upto = e.rv;
                }
            }
        }
    }

    /// Drops the whole watch history now: every watch resuming from an older resourceVersion
    /// gets a 410 Expired (like a compaction).
    pub fn compact_history(&self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.history.clear();
            s.evicted_upto = s.rv;
        }
        self.shared.notify_writes();
    }

    /// Ends every open watch with a 410 Expired ERROR event and drops the history, as when the
    /// real watch cache drops a slow watcher after compaction: clients must relist.
    pub fn expire_watches(&self) {
        if let Ok(mut s) = self.shared.state.lock() {
            s.history.clear();
            s.evicted_upto = s.rv;
        }
        self.shared.expire.send_modify(|e| *e += 1);
    }

    /// Holds (true) or releases (false) the garbage collector and namespace controller, to observe
    /// intermediate states (e.g. an owner waiting on `foregroundDeletion`) deterministically.
    pub fn set_gc_paused(&self, paused: bool) {
        self.shared.gc_paused.store(paused, Ordering::SeqCst);
        self.shared.gc_wake.notify_one();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state.lock().map(|s| s.rv).unwrap_or_default()
    }
}

#[allow(clippy::panic)] // the callers' URLs are loopback URLs they built: a bad one is a test bug
fn build_client_at(base_url: &str, actor: Option<&str>, token: Option<&str>) -> kube::Client {
    // Both rustls providers are compiled into this crate's graph, so rustls cannot pick one
    // itself; kube builds a TLS connector even for http URLs. Installing twice is harmless.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let uri: axum::http::Uri = match base_url.parse() {
        Ok(u) => u,
        Err(e) => panic!("fake apiserver: bad base url {base_url}: {e}"),
    };

    let mut config = kube::Config::new(uri);
    config.default_namespace = "default".to_string();
    config.read_timeout = Some(Duration::from_secs(295));
    if let Some(token) = token {
        config.auth_info.token = Some(token.to_string().into());
    }
    if let Some(value) = actor.and_then(|a| HeaderValue::from_str(a).ok()) {
        config
            .headers
            .push((header::HeaderName::from_static(ACTOR_HEADER), value));
    }
    match kube::Client::try_from(config) {
        Ok(c) => c,
        Err(e) => panic!("fake apiserver: cannot build client: {e}"),
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(gc) = self.gc.take() {
            gc.abort();
        }
        if let Some(server) = self.server.take() {
            // Graceful shutdown ends idle connections and watch streams at once; bound it anyway.
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    server.abort();
                });
            } else {
                server.abort();
            }
        }
    }
}

async fn gc_loop(shared: Arc<Shared>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        // Every write wakes the collector; its own writes are followed up by repeated passes.
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = shared.gc_wake.notified() => {}
        }
        // The garbage collector acts shortly after, asynchronously, one step per cycle (delete
        // dependents, then release the owner, ...).
        tokio::time::sleep(Duration::from_millis(50)).await;
        if shared.gc_paused.load(Ordering::SeqCst) {
            continue;
        }
        let rv = {
            let Ok(mut s) = shared.state.lock() else {
                return;
            };
            s.gc_pass().then_some(s.rv)
        };
        if let Some(rv) = rv {
            shared.rv_tx.send_replace(rv);
            shared.gc_wake.notify_one();
        }
    }
}

fn verb(req: &Req, has_name: bool) -> &'static str {
    match (req.method.as_str(), has_name) {
        ("GET", true) => "get",
        ("GET", false) if matches!(req.query.get("watch").map(String::as_str), Some("true") | Some("1")) => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "get",
    }
}

/// The Status an injected fault answers with, shaped like the real server's for that code.
fn fault_error(state: &State, req: &Req, code: u16) -> ApiError {
    let target = handler::resolve(state, &req.path).ok().flatten();
    let reason = reason_for_code(code);
    let (group, plural, name, ns) = match &target {
        Some(t) => (
            t.def.group.clone(),
            t.def.plural.clone(),
            t.name.clone().unwrap_or_default(),
            t.namespace.clone(),
        ),
        None => (String::new(), String::new(), String::new(), None),
    };
    let gr = group_resource(&group, &plural);
    match code {
        401 => ApiError::status(401, "Unauthorized", "Unauthorized", None),
        403 => {
            let scope = match &ns {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".to_string(),
            };
            let subject = if name.is_empty() {
                gr.clone()
            } else {
                format!("{gr} {name:?}")
            };
            ApiError::status(
                403,
                reason,
                &format!(
                    "{subject} is forbidden: User \"system:anonymous\" cannot {} resource {plural:?} in API group {group:?} {scope}",
                    verb(req, !name.is_empty())
                ),
                Some(details(&name, &group, &plural, &[])),
            )
        }
        404 => ApiError::not_found(&group, &plural, &name),
        409 => ApiError::conflict(&group, &plural, &name, "injected conflict"),
        429 => ApiError::status(
            429,
            reason,
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": 1})),
        ),
        500 => ApiError::status(
            500,
            reason,
            "Internal error occurred: injected fault",
            Some(json!({"causes": [{"message": "injected fault"}]})),
        ),
        503 => ApiError::status(
            503,
            reason,
            "the server is currently unable to handle the request",
            Some(details(&name, &group, &plural, &[])),
        ),
        504 => ApiError::status(
            504,
            reason,
            "the server was unable to return a response in the time allotted, but may still be processing the request",
            Some(details(&name, &group, &plural, &[])),
        ),
        _ => ApiError::status(code, reason, &format!("injected fault ({code})"), None),
    }
}

fn json_response(code: u16, body: &serde_json::Value, headers: &[(String, String)]) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        if let (Ok(name), Ok(val)) = (axum::http::HeaderName::try_from(k.as_str()), HeaderValue::from_str(v)) {
            if name == header::CONTENT_TYPE {
                resp.headers_mut().insert(name, val);
            } else {
                resp.headers_mut().append(name, val);
            }
        }
    }
    resp
}

fn text_response(code: u16, text: String) -> Response {
    let mut resp = Response::new(Body::from(text));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn serve_request(AxState(shared): AxState<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let hdr = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let mut req = Req {
        method: parts.method.as_str().to_ascii_uppercase(),
        path: parts.uri.path().to_string(),
        query: url::form_urlencoded::parse(raw_query.as_bytes())
            .into_owned()
            .collect::<HashMap<String, String>>(),
        raw_query,
        content_type: hdr(header::CONTENT_TYPE),
        user_agent: hdr(header::USER_AGENT),
        actor: hdr(header::HeaderName::from_static(ACTOR_HEADER)),
        accept: hdr(header::ACCEPT),
        body: Vec::new(),
        user: auth::UserInfo::admin(),
    };
    let authorization = hdr(header::AUTHORIZATION);
    let body_result = axum::body::to_bytes(body, 64 * 1024 * 1024).await;
    if let Some(armed) = take_hold(&shared, &req) {
        armed.wait(&req.path).await;
        if let Ok(mut state) = shared.state.lock() {
            state.requests.push(RecordedRequest::of(&req, 500));
        }
        let refused = ApiError::status(500, reason_for_code(500), "held by the test, then refused", None);
        return json_response(500, &status_of(&refused), &[]);
    }
    let reply = {
        let Ok(mut state) = shared.state.lock() else {
            return text_response(500, "fake apiserver state poisoned".into());
        };
        let reply = match body_result {
            Err(e) => Reply::from(ApiError::status(
                413,
                "RequestEntityTooLarge",
                &format!("request body: {e}"),
                None,
            )),
            Ok(bytes) => {
                req.body = bytes.to_vec();
                let with_query = format!("{}?{}", req.path, req.raw_query);
                let fault = state.faults.iter_mut().find(|f| {
                    f.remaining > 0
                        && f.method.as_ref().is_none_or(|m| *m == req.method)
                        && with_query.contains(&f.path_contains)
                });
                match fault {
                    Some(f) => {
                        f.remaining -= 1;
                        let (code, body) = (f.status, f.body.clone());
                        state.faults.retain(|f| f.remaining > 0);
                        match body {
                            Some(body) => Reply::Text(code, body),
                            None => Reply::from(fault_error(&state, &req, code)),
                        }
                    }
                    None => match state.tokens.authenticate(authorization.as_deref()) {
                        Ok(user) => {
                            req.user = user;
                            if let Some(reply) = access_review::serve(&state, &req) {
                                reply
                            } else {
                                match authz::authorize_request(&state, &req) {
                                    Err(denied) => Reply::from(denied),
                                    Ok(()) => token_request::serve(&mut state, &req, shared.port)
                                        .unwrap_or_else(|| handler::handle(&mut state, &req, shared.port)),
                                }
                            }
                        }
                        Err(e) => Reply::from(e),
                    },
                }
            }
        };
        let status = match &reply {
            Reply::Json(c, _, _) | Reply::Text(c, _) => *c,
            Reply::Watch(_) => 200,
        };
        state.requests.push(RecordedRequest::of(&req, status));
        reply
    };
    if req.method != "GET" {
        shared.notify_writes();
    }
    let status = match &reply {
        Reply::Json(c, _, _) | Reply::Text(c, _) => *c,
        Reply::Watch(_) => 200,
    };
    if let Ok(holds) = shared.holds.lock() {
        let with_query = format!("{}?{}", req.path, req.raw_query);
        for waiting in holds.iter() {
            waiting.served(&req.method, &with_query, status);
        }
    }
    match reply {
        Reply::Json(code, v, mut headers) => {
            if code == 429 {
                headers.push(("Retry-After".into(), "1".into()));
            }
            json_response(code, &v, &headers)
        }
        Reply::Text(code, t) => text_response(code, t),
        Reply::Watch(w) => {
            let mut resp = Response::new(watch::start(shared.clone(), *w));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
    }
}

/// The first armed hold matching `req`, disarmed (it catches this request only).
fn take_hold(shared: &Shared, req: &Req) -> Option<Arc<hold::Hold>> {
    let mut holds = shared.holds.lock().ok()?;
    let with_query = format!("{}?{}", req.path, req.raw_query);
    let index = holds.iter().position(|h| h.matches(&req.method, &with_query))?;
    Some(holds.remove(index))
}

fn status_of(e: &ApiError) -> serde_json::Value {
    match &e.body {
        ErrorBody::Status(v) => v.clone(),
        ErrorBody::Text(t) => status_body(e.code, reason_for_code(e.code), t, None),
    }
}
