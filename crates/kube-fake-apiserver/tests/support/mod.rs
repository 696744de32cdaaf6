//! Shared by the test binaries: a raw HTTP/1.1 client (exact bytes, for comparing with the real
//! server's recorded responses), the golden recordings' loader, and kube-client helpers around a
//! Widget custom resource.
// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube_fake_apiserver::FakeApiServer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub mod control_plane;

// ---------------------------------------------------------------- raw HTTP

/// A response from the raw client: status, content type, body bytes.
pub struct Raw {
    /// HTTP status code.
    pub status: u16,
    /// Body text (de-chunked).
    pub body: String,
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&data[..pos]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        data = &data[pos + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// Minimal HTTP/1.1 client (no User-Agent, like the recorder) so exchanges can be replayed byte for byte.
pub async fn raw(base: &str, method: &str, path: &str, content_type: Option<&str>, body: Option<&str>) -> Raw {
    raw_as(base, None, method, path, content_type, body).await
}

/// [`raw`] with an optional bearer token (none: the admin: the fake's, or a real control plane's
/// from its kubeconfig). A `https://` base is a [`control_plane::ControlPlane`], reached over TLS.
pub async fn raw_as(
    base: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> Raw {
    let real = base.strip_prefix("https://").map(|addr| {
        let access = control_plane::access(base).unwrap_or_else(|| panic!("{base} is not a running control plane"));
        (addr, access)
    });
    let addr = real
        .as_ref()
        .map_or(base.trim_start_matches("http://"), |(addr, _)| addr);
    let token = token
        .map(str::to_owned)
        .or_else(|| real.as_ref().map(|(_, a)| a.admin_token.clone()));
    let body = body.unwrap_or("");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n");
    if let Some(token) = token {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let buf = match &real {
        None => exchange(tcp, &req).await,
        Some((_, access)) => {
            let server_name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP address");
            let tls = tokio_rustls::TlsConnector::from(access.tls.clone())
                .connect(server_name, tcp)
                .await
                .expect("TLS handshake with the control plane");
            exchange(tls, &req).await
        }
    };
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let payload = &buf[split + 4..];
    let bytes = if chunked { dechunk(payload) } else { payload.to_vec() };
    Raw {
        status,
        body: String::from_utf8_lossy(&bytes).to_string(),
    }
}

/// Writes the request and reads until the server closes the connection (`Connection: close`).
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S, request: &str) -> Vec<u8> {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf))
        .await
        .expect("response in time");
    // A TLS peer may close without close_notify once the response is complete.
    if let Err(e) = read {
        assert!(
            e.kind() == std::io::ErrorKind::UnexpectedEof && !buf.is_empty(),
            "read: {e}"
        );
    }
    buf
}

// ---------------------------------------------------------------- golden data

/// Environment variable naming a directory: replays on the real control plane then write each
/// file again there, with the responses that server gave (the recorder; see the README).
pub const RECORD_DIR_ENV: &str = "DSQL_OPERATOR_GOLDEN_RECORD_DIR";

/// Collects the steps of one file with the real server's responses, when recording.
#[derive(Default)]
pub struct Recorder(Option<Vec<Value>>);

impl Recorder {
    /// Records when `RECORD_DIR_ENV` is set and the replay is on a real server.
    pub fn new(real: bool) -> Recorder {
        Recorder((real && std::env::var_os(RECORD_DIR_ENV).is_some()).then(Vec::new))
    }

    /// `step` with the response `got` in place of the recorded one: a watch's events, a JSON
    /// body, or a text body; tokens redacted.
    pub fn step(&mut self, step: &Value, got: &Raw) {
        let Some(steps) = self.0.as_mut() else { return };
        let mut step = step.clone();
        let response = if step["response"].get("events").is_some() {
            json!({"status": got.status, "events": parse_events(&got.body)})
        } else {
            match serde_json::from_str::<Value>(&got.body) {
                Ok(mut body) => {
                    if let Some(token) = body.pointer_mut("/status/token") {
                        *token = json!("REDACTED (a bearer token)");
                    }
                    json!({"status": got.status, "body": body})
                }
                Err(_) => json!({"status": got.status, "body": got.body}),
            }
        };
        step["response"] = response;
        steps.push(step);
    }

    /// Writes the recording of `file` (pretty JSON, as the originals).
    pub fn write(self, file: &str) {
        let (Some(steps), Ok(dir)) = (self.0, std::env::var(RECORD_DIR_ENV)) else {
            return;
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let path = PathBuf::from(dir).join(file);
        let text = serde_json::to_string_pretty(&steps).expect("JSON") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("recorded {} steps to {}", steps.len(), path.display());
    }
}

pub fn golden_dir() -> PathBuf {
    if let Ok(d) = std::env::var("DSQL_OPERATOR_GOLDEN_DIR") {
        let p = PathBuf::from(&d);
        assert!(p.is_dir(), "DSQL_OPERATOR_GOLDEN_DIR={d} is not a directory");
        return p;
    }
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/apiserver-golden"));
    assert!(
        p.is_dir(),
        "golden recordings not found: set DSQL_OPERATOR_GOLDEN_DIR or provide {}",
        p.display()
    );
    p
}

/// Recordings this repository made itself from the real control plane (the recorder), beside
/// the shared ones.
pub fn local_golden_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/golden"))
}

/// The steps of a golden file: from the shared recordings, or else this crate's own.
pub fn load(file: &str) -> Vec<Value> {
    let shared = golden_dir().join(file);
    let path = if shared.exists() {
        shared
    } else {
        local_golden_dir().join(file)
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    v.as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{} is not a list of steps", path.display()))
}

/// The lines of a watch response body, each one JSON event.
pub fn parse_events(body: &str) -> Vec<Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

// ---------------------------------------------------------------- kube client helpers

pub fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1alpha1", "Widget"), "widgets")
}

/// A server with the golden Widget CRD installed and an extra namespace "ns1".
pub async fn setup() -> (FakeApiServer, kube::Client) {
    let srv = FakeApiServer::start().await;
    let client = srv.client();
    let crd = load("crd.json")[0]["request"]["body"].clone();
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    crds.create(&PostParams::default(), &serde_json::from_value(crd).unwrap())
        .await
        .unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ns1"}})).unwrap(),
    )
    .await
    .unwrap();
    (srv, client)
}

pub fn widgets(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &widget_resource())
}

pub fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(
        json!({"apiVersion": "example.dev/v1alpha1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}),
    )
    .unwrap()
}

pub fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let ok = tokio::time::timeout(Duration::from_secs(5), async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    assert!(ok.is_ok(), "timed out waiting for: {what}");
}
