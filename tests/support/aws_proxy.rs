//! A counting, fault-injecting HTTP proxy in front of moto.
//!
//! Point the SDK at [`AwsProxy::endpoint_url`]. Every request is forwarded
//! unchanged (method, path, query, headers including `Host`, body) to the
//! upstream and its response is passed back, except that an operation with an
//! injected fault gets a realistic AWS JSON-protocol error response instead.
//!
//! An operation is named by its `X-Amz-Target` header (`secretsmanager.PutSecretValue`,
//! the awsJson protocols); requests without one (restJson services such as the
//! DSQL control plane) are named `"METHOD /path"`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::moto::SupportError;

/// Injects faults into every operation that has none of its own.
pub const ANY_OPERATION: &str = "*";

/// Largest request body the proxy accepts (Secrets Manager's own limit is 64 KiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// An error response the proxy can return instead of forwarding.
///
/// The shapes follow AWS's JSON protocols: the status code, an
/// `x-amzn-ErrorType` header (with the Coral suffix real services append and
/// SDKs strip), a `x-amzn-RequestId`, and a `{"__type": ..., "message"|"Message": ...}` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AwsError {
    /// 400, throttling; SDK code `ThrottlingException`, retryable.
    ThrottlingException,
    /// 400, IAM denial; SDK code `AccessDeniedException`, not retryable.
    AccessDeniedException,
    /// 500, Secrets Manager's modelled server fault; SDK code `InternalServiceError`.
    InternalServiceError,
    /// 400, Secrets Manager's "secret not found"; SDK code `ResourceNotFoundException`.
    ResourceNotFoundException,
    /// 500 whose body is not JSON (an HTML page from a load balancer); the SDK
    /// sees an unhandled service error with no code.
    MalformedInternalError,
    /// Anything else: `__type`/`x-amzn-ErrorType` = `code`.
    Custom { status: u16, code: String, message: String },
    /// 200 whose JSON body is cut off after 4 MiB: a success the SDK cannot parse.
    TruncatedHugeSuccess,
    /// 403 in STS's XML (query protocol) shape; SDK code `AccessDenied`. For `AssumeRole` only.
    StsAccessDenied,
}

impl AwsError {
    pub fn status(&self) -> u16 {
        match self {
            Self::ThrottlingException | Self::AccessDeniedException | Self::ResourceNotFoundException => 400,
            Self::InternalServiceError | Self::MalformedInternalError => 500,
            Self::TruncatedHugeSuccess => 200,
            Self::StsAccessDenied => 403,
            Self::Custom { status, .. } => *status,
        }
    }

    /// The error code the AWS SDK reports for this response (`None`: no code).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::ThrottlingException => Some("ThrottlingException"),
            Self::AccessDeniedException => Some("AccessDeniedException"),
            Self::InternalServiceError => Some("InternalServiceError"),
            Self::ResourceNotFoundException => Some("ResourceNotFoundException"),
            Self::MalformedInternalError | Self::TruncatedHugeSuccess => None,
            Self::StsAccessDenied => Some("AccessDenied"),
            Self::Custom { code, .. } => Some(code),
        }
    }

    /// Every built-in variant (not `Custom`).
    pub fn all() -> Vec<AwsError> {
        vec![
            Self::ThrottlingException,
            Self::AccessDeniedException,
            Self::InternalServiceError,
            Self::ResourceNotFoundException,
            Self::MalformedInternalError,
            Self::TruncatedHugeSuccess,
        ]
    }

    fn response(&self, operation: &str, request_id: &str) -> Response<Body> {
        // "secretsmanager.PutSecretValue" -> "secretsmanager:PutSecretValue"
        let action = operation.replacen('.', ":", 1);
        // No `x-amzn-ErrorType` for bodies that do not come from a JSON-protocol service.
        let (error_type_header, body, content_type) = match self {
            Self::ThrottlingException => (
                Some("ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/".to_owned()),
                json_error("ThrottlingException", "message", "Rate exceeded"),
                "application/x-amz-json-1.1",
            ),
            Self::AccessDeniedException => (
                Some("AccessDeniedException:http://internal.amazon.com/coral/com.amazon.coral.service/".to_owned()),
                json_error(
                    "AccessDeniedException",
                    "Message",
                    &format!(
                        "User: arn:aws:sts::123456789012:assumed-role/dsql-credential-operator/test \
                         is not authorized to perform: {action} because no identity-based policy \
                         allows the {action} action"
                    ),
                ),
                "application/x-amz-json-1.1",
            ),
            Self::InternalServiceError => (
                Some("InternalServiceError:http://internal.amazon.com/coral/com.amazonaws.secretsmanager/".to_owned()),
                json_error(
                    "InternalServiceError",
                    "Message",
                    "An error occurred on the server side.",
                ),
                "application/x-amz-json-1.1",
            ),
            Self::ResourceNotFoundException => (
                Some(
                    "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.secretsmanager/"
                        .to_owned(),
                ),
                json_error(
                    "ResourceNotFoundException",
                    "Message",
                    "Secrets Manager can't find the specified secret.",
                ),
                "application/x-amz-json-1.1",
            ),
            Self::StsAccessDenied => (
                None,
                format!(
                    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
                     <Code>AccessDenied</Code><Message>User: arn:aws:sts::123456789012:assumed-role/\
                     dsql-credential-operator/test is not authorized to perform: sts:AssumeRole on resource: \
                     arn:aws:iam::123456789012:role/dsql-signing-orders</Message></Error>\
                     <RequestId>{request_id}</RequestId></ErrorResponse>"
                ),
                "text/xml",
            ),
            Self::TruncatedHugeSuccess => (
                None,
                format!("{{\"ARN\":\"{}", "a".repeat(4 << 20)),
                "application/x-amz-json-1.1",
            ),
            Self::MalformedInternalError => (
                None,
                "<html><head><title>500 Internal Server Error</title></head>\
                 <body><h1>500 Internal Server Error</h1></body></html>"
                    .to_owned(),
                "text/html",
            ),
            Self::Custom { code, message, .. } => (
                Some(code.clone()),
                json_error(code, "message", message),
                "application/x-amz-json-1.1",
            ),
        };
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        insert_header(headers, "x-amzn-requestid", request_id);
        if let Some(error_type) = &error_type_header {
            insert_header(headers, "x-amzn-errortype", error_type);
        }
        response
    }
}

fn json_error(code: &str, message_key: &str, message: &str) -> String {
    let mut body = serde_json::Map::new();
    body.insert("__type".to_owned(), code.into());
    body.insert(message_key.to_owned(), message.into());
    serde_json::Value::Object(body).to_string()
}

fn insert_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

struct Fault {
    error: AwsError,
    remaining: usize,
}

/// The longest a held call waits for its release.
const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body and the upstream's response body.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub operation: String,
    pub request: String,
    pub response: String,
}

/// What the upstream answered one forwarded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    pub operation: String,
    /// The error: `__type` (e.g. `ResourceExistsException`) or `x-amzn-errortype` without its
    /// suffix; `None` for a success.
    pub code: Option<String>,
    /// The request's `ClientRequestToken`, if it had one (an idempotency token, not a secret).
    pub client_request_token: Option<String>,
}

/// Operations whose requests and responses the proxy keeps, so tests can check what was signed with the
/// credentials they hand out.
const RECORDED_RESPONSES: &[&str] = &["AssumeRole"];

#[derive(Default)]
struct ProxyState {
    calls: Vec<String>,
    exchanges: Vec<Exchange>,
    faults: HashMap<String, VecDeque<Fault>>,
    holds: HashMap<String, VecDeque<Arc<Notify>>>,
    response_holds: HashMap<String, VecDeque<Arc<Notify>>>,
    /// Every error the upstream answered, in order.
    upstream_answers: Vec<UpstreamAnswer>,
    /// How many responses have been held so far (their calls reached the upstream).
    responses_held: usize,
}

struct Shared {
    state: Mutex<ProxyState>,
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    request_ids: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProxyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The proxy; stops serving when dropped.
pub struct AwsProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AwsProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream`
    /// (e.g. `MotoServer::endpoint_url()`, `http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> Result<AwsProxy, SupportError> {
        let upstream = upstream.trim_end_matches('/').to_owned();
        if !upstream.starts_with("http://") {
            return Err(SupportError::new(format!(
                "the proxy forwards plain HTTP only, not {upstream}"
            )));
        }
        let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .map_err(|e| SupportError::new(format!("proxy cannot bind 127.0.0.1:0: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SupportError::new(format!("proxy cannot read its address: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(ProxyState::default()),
            upstream,
            client: Client::builder(TokioExecutor::new()).build_http(),
            request_ids: AtomicU64::new(1),
        });
        let app = Router::new().fallback(handle).with_state(Arc::clone(&shared));
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        Ok(AwsProxy {
            shared,
            addr,
            shutdown: Some(shutdown),
            task,
        })
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call seen so far, in order, named by operation (failed and
    /// fault-injected calls included).
    pub fn calls(&self) -> Vec<String> {
        self.shared.lock().calls.clone()
    }

    /// How many calls of `operation` (e.g. `secretsmanager.PutSecretValue`) were seen.
    pub fn count(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.as_str() == operation)
            .count()
    }

    /// The recorded exchanges (see `RECORDED_RESPONSES`) of `operation`, oldest first.
    pub fn exchanges(&self, operation: &str) -> Vec<Exchange> {
        let state = self.shared.lock();
        state
            .exchanges
            .iter()
            .filter(|e| e.operation == operation)
            .cloned()
            .collect()
    }

    /// Forgets the recorded calls (injected faults stay).
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.calls.clear();
        state.exchanges.clear();
    }

    /// Holds the next call of `operation` (a slow AWS response) until the returned gate is
    /// released with `notify_one`, or for at most `HOLD_LIMIT`, so a test that forgets to release
    /// it still ends.
    pub fn hold_next(&self, operation: &str) -> Arc<Notify> {
        let gate = Arc::new(Notify::new());
        self.shared
            .lock()
            .holds
            .entry(operation.to_owned())
            .or_default()
            .push_back(gate.clone());
        gate
    }

    /// Like [`AwsProxy::hold_next`], but the call reaches the upstream first and only its
    /// response is held: a write that lands although its caller never hears back (a caller
    /// killed mid-call).
    pub fn hold_response_next(&self, operation: &str) -> Arc<Notify> {
        let gate = Arc::new(Notify::new());
        self.shared
            .lock()
            .response_holds
            .entry(operation.to_owned())
            .or_default()
            .push_back(gate.clone());
        gate
    }

    /// The next `times` calls of `operation` get `error` instead of reaching
    /// the upstream. Faults injected for the same operation queue up in order.
    /// `operation` may be [`ANY_OPERATION`] for every operation without a fault of its own.
    pub fn inject_error(&self, operation: &str, error: AwsError, times: usize) {
        if times == 0 {
            return;
        }
        self.shared
            .lock()
            .faults
            .entry(operation.to_owned())
            .or_default()
            .push_back(Fault {
                error,
                remaining: times,
            });
    }

    /// Disarms every hold (of a call or of a response) no call has reached yet.
    pub fn cancel_holds(&self) {
        let mut state = self.shared.lock();
        state.holds.clear();
        state.response_holds.clear();
    }

    /// What the upstream answered each forwarded call of `operation`, oldest first; injected
    /// faults are not included. Kept across `clear`.
    pub fn upstream_answers(&self, operation: &str) -> Vec<UpstreamAnswer> {
        self.shared
            .lock()
            .upstream_answers
            .iter()
            .filter(|e| e.operation == operation)
            .cloned()
            .collect()
    }

    /// How many responses a [`AwsProxy::hold_response_next`] has held so far: each one's call
    /// has been answered by the upstream (the write landed) and its caller has not heard back.
    pub fn responses_held(&self) -> usize {
        self.shared.lock().responses_held
    }

    /// Removes every pending injected fault.
    pub fn clear_errors(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many injected faults are still pending for `operation`.
    pub fn pending_errors(&self, operation: &str) -> usize {
        self.shared
            .lock()
            .faults
            .get(operation)
            .map(|queue| queue.iter().map(|f| f.remaining).sum())
            .unwrap_or(0)
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

/// `secretsmanager.PutSecretValue` (JSON protocol target), `AssumeRole` (query protocol
/// `Action`), or the method and path.
fn operation_name(parts: &Parts, body: &[u8]) -> String {
    if let Some(target) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return target.to_owned();
    }
    let action = std::str::from_utf8(body)
        .ok()
        .and_then(|form| form.split('&').find_map(|pair| pair.strip_prefix("Action=")));
    match action {
        Some(action) => action.to_owned(),
        None => format!("{} {}", parts.method, parts.uri.path()),
    }
}

fn take_fault(state: &mut ProxyState, operation: &str) -> Option<AwsError> {
    let key = if state.faults.get(operation).is_some_and(|q| !q.is_empty()) {
        operation
    } else {
        ANY_OPERATION
    };
    let queue = state.faults.get_mut(key)?;
    let front = queue.front_mut()?;
    let error = front.error.clone();
    front.remaining = front.remaining.saturating_sub(1);
    if front.remaining == 0 {
        queue.pop_front();
    }
    if queue.is_empty() {
        state.faults.remove(key);
    }
    Some(error)
}

/// Hop-by-hop headers are the connection's, not the message's.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn plain_response(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(Body::from(message));
    *response.status_mut() = status;
    response
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // Read the whole request either way, as a real endpoint would.
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return plain_response(
                StatusCode::BAD_REQUEST,
                format!("proxy could not read the request body: {e}"),
            );
        }
    };
    let operation = operation_name(&parts, &body);
    let (fault, hold, response_hold) = {
        let mut state = shared.lock();
        state.calls.push(operation.clone());
        let hold = state.holds.get_mut(&operation).and_then(VecDeque::pop_front);
        let response_hold = state.response_holds.get_mut(&operation).and_then(VecDeque::pop_front);
        (take_fault(&mut state, &operation), hold, response_hold)
    };
    if let Some(gate) = hold {
        let _ = tokio::time::timeout(HOLD_LIMIT, gate.notified()).await;
    }
    if let Some(error) = fault {
        let n = shared.request_ids.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("00000000-0000-4000-8000-{n:012x}");
        return error.response(&operation, &request_id);
    }
    let recorded_request = RECORDED_RESPONSES
        .contains(&operation.as_str())
        .then(|| String::from_utf8_lossy(&body).into_owned());
    let client_request_token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|doc| doc.get("ClientRequestToken")?.as_str().map(str::to_owned));
    let (response, response_body) = forward(&shared, parts, body).await;
    let code = error_code(&response, response_body.as_deref());
    shared.lock().upstream_answers.push(UpstreamAnswer {
        operation: operation.clone(),
        code,
        client_request_token,
    });
    if let Some(gate) = response_hold {
        shared.lock().responses_held += 1;
        let _ = tokio::time::timeout(HOLD_LIMIT, gate.notified()).await;
    }
    if let (Some(request), Some(response)) = (recorded_request, response_body) {
        shared.lock().exchanges.push(Exchange {
            operation,
            request,
            response: String::from_utf8_lossy(&response).into_owned(),
        });
    }
    response
}

/// The error code of an upstream error response: its `x-amzn-errortype` (without the Coral
/// suffix) or its JSON body's `__type`.
fn error_code(response: &Response<Body>, body: Option<&[u8]>) -> Option<String> {
    if response.status().is_success() {
        return None;
    }
    let header = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(':').next().unwrap_or(v).to_owned());
    let typed = || {
        let doc: serde_json::Value = serde_json::from_slice(body?).ok()?;
        doc.get("__type")?
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
    };
    Some(
        header
            .or_else(typed)
            .unwrap_or_else(|| response.status().as_u16().to_string()),
    )
}

/// The upstream's response, and its body when it came from upstream.
async fn forward(shared: &Shared, parts: Parts, body: Bytes) -> (Response<Body>, Option<Bytes>) {
    let path_and_query = parts.uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let uri: Uri = match format!("{}{path_and_query}", shared.upstream).parse() {
        Ok(uri) => uri,
        Err(e) => {
            return (
                plain_response(StatusCode::BAD_GATEWAY, format!("proxy built a bad upstream URI: {e}")),
                None,
            );
        }
    };
    let mut upstream_request = Request::new(Full::new(body));
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = uri;
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) {
            upstream_request.headers_mut().append(name.clone(), value.clone());
        }
    }
    let upstream_response = match shared.client.request(upstream_request).await {
        Ok(response) => response,
        Err(e) => {
            return (
                plain_response(
                    StatusCode::BAD_GATEWAY,
                    format!("proxy could not reach {}: {e}", shared.upstream),
                ),
                None,
            );
        }
    };
    let (parts, body) = upstream_response.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return (
                plain_response(
                    StatusCode::BAD_GATEWAY,
                    format!("proxy could not read the upstream response: {e}"),
                ),
                None,
            );
        }
    };
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if !is_hop_by_hop(name) && name != CONTENT_LENGTH {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    (response, Some(body))
}
