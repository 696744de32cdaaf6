//! A real moto server (PyPI `moto[server]`) standing in for AWS, plus the SDK
//! configuration that points the AWS SDK for Rust at it.
//!
//! The Python interpreter comes from `DSQL_OPERATOR_TEST_PYTHON`, else from
//! `<repo>/.venv/bin/python`; `scripts/test.sh` creates that venv from
//! `requirements-test.txt`. A missing interpreter or moto is an error, never a
//! skipped test.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::rt::sleep::TokioSleep;
use aws_smithy_async::time::SystemTimeSource;
use axum::body::Bytes;
use axum::http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Environment variable naming the Python interpreter that has
/// `requirements-test.txt` installed.
pub const PYTHON_ENV: &str = "DSQL_OPERATOR_TEST_PYTHON";

/// Region every test talks to.
pub const TEST_REGION: &str = "us-east-1";

/// How long moto may take to answer HTTP after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(30);

const SETUP_HINT: &str = "run `bash scripts/test.sh` (it creates .venv and installs \
     requirements-test.txt), or `python3 -m venv .venv && .venv/bin/pip install -r \
     requirements-test.txt`, or set DSQL_OPERATOR_TEST_PYTHON to a Python that has them";

/// Error from the test support; its `Debug` is the plain message so that a test
/// returning `Err` prints something readable (logs included).
pub struct SupportError(String);

impl SupportError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Debug for SupportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SupportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SupportError {}

/// The Python interpreter for the test support: `$DSQL_OPERATOR_TEST_PYTHON`,
/// else `<CARGO_MANIFEST_DIR>/.venv/bin/python`.
pub fn test_python() -> Result<PathBuf, SupportError> {
    if let Some(value) = std::env::var_os(PYTHON_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(value));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        return Ok(venv);
    }
    Err(SupportError::new(format!(
        "no Python for the AWS test support: {PYTHON_ENV} is unset and {} does not exist; \
         {SETUP_HINT}",
        venv.display()
    )))
}

/// Fails loudly unless `python` can import every module in `modules`.
pub fn check_python_imports(python: &Path, modules: &[&str]) -> Result<(), SupportError> {
    let code = format!("import {}", modules.join(", "));
    let output = Command::new(python)
        .arg("-c")
        .arg(&code)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            SupportError::new(format!(
                "cannot run the test Python {}: {e}; {SETUP_HINT}",
                python.display()
            ))
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(SupportError::new(format!(
        "the test Python {} cannot `{code}` ({}):\n{}\n{SETUP_HINT}",
        python.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    )))
}

/// A free TCP port on 127.0.0.1 (free when this returns; the caller binds it soon after).
pub fn free_loopback_port() -> Result<u16, SupportError> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| SupportError::new(format!("cannot bind 127.0.0.1:0: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| SupportError::new(format!("cannot read the bound port: {e}")))
}

/// Starts moto's server with the given arguments, serving one request at a time, and makes it
/// exit as soon as its stdin closes, i.e. when the test process goes away however it ends.
const LAUNCHER: &str = r#"
import os, sys, threading

def _exit_with_parent():
    try:
        sys.stdin.buffer.read()
    finally:
        os._exit(0)

threading.Thread(target=_exit_with_parent, daemon=True).start()

# moto's backends are not thread-safe (concurrent CreateSecret calls fail with "dictionary changed
# size during iteration"), so requests are served one at a time; moto is GIL-bound anyway.
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
_lock = threading.Lock()
_dispatch = DomainDispatcherApplication.__call__

def _serialized(self, environ, start_response):
    with _lock:
        return _dispatch(self, environ, start_response)

DomainDispatcherApplication.__call__ = _serialized
from moto.server import main
main(sys.argv[1:])
"#;

/// A moto server on 127.0.0.1, killed when dropped.
pub struct MotoServer {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    /// Spawns `python -m moto.server -H 127.0.0.1 -p PORT` (through a launcher that
    /// also ends it when the test process dies) and waits until it answers HTTP.
    pub async fn start() -> Result<MotoServer, SupportError> {
        let python = test_python()?;
        check_python_imports(&python, &["moto", "moto.server", "flask", "flask_cors"])?;
        let mut last = None;
        // The free port can be taken between choosing and binding it; try again then.
        for _ in 0..3 {
            match Self::start_once(&python).await {
                Ok(server) => return Ok(server),
                Err((message, port_taken)) => {
                    if !port_taken {
                        return Err(SupportError::new(message));
                    }
                    last = Some(message);
                }
            }
        }
        Err(SupportError::new(last.unwrap_or_default()))
    }

    async fn start_once(python: &Path) -> Result<MotoServer, (String, bool)> {
        let port = free_loopback_port().map_err(|e| (e.to_string(), false))?;
        let log = tempfile::Builder::new()
            .prefix("moto-server-")
            .suffix(".log")
            .tempfile()
            .map_err(|e| (format!("cannot create the moto log file: {e}"), false))?;
        let stdio = |log: &tempfile::NamedTempFile| -> Result<Stdio, (String, bool)> {
            log.as_file()
                .try_clone()
                .map(Stdio::from)
                .map_err(|e| (format!("cannot share the moto log file: {e}"), false))
        };
        let child = Command::new(python)
            .arg("-c")
            .arg(LAUNCHER)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(stdio(&log)?)
            .stderr(stdio(&log)?)
            .spawn()
            .map_err(|e| (format!("cannot spawn moto with {}: {e}", python.display()), false))?;
        let mut server = MotoServer { child, port, log };

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match server.child.try_wait() {
                Ok(Some(status)) => {
                    let log = server.log_contents();
                    let taken = log.contains("Address already in use");
                    return Err((
                        format!("moto exited during start-up ({status}) on 127.0.0.1:{port}; its log:\n{log}"),
                        taken,
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err((format!("cannot poll the moto process: {e}"), false)),
            }
            let url = format!("{}/moto-api/", server.endpoint_url());
            if request(Method::GET, &url, Duration::from_secs(2)).await.is_ok() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err((
                    format!(
                        "moto did not answer HTTP on 127.0.0.1:{port} within {START_TIMEOUT:?}; its log:\n{}",
                        server.log_contents()
                    ),
                    false,
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource in every moto backend (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<(), SupportError> {
        let url = format!("{}/moto-api/reset", self.endpoint_url());
        let (status, body) = request(Method::POST, &url, Duration::from_secs(10))
            .await
            .map_err(|e| SupportError::new(format!("moto reset failed: {e}")))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(SupportError::new(format!(
                "moto reset answered {status}: {}",
                String::from_utf8_lossy(&body)
            )))
        }
    }

    /// What moto has written to stdout/stderr so far.
    pub fn log_contents(&self) -> String {
        let mut text = String::new();
        match File::open(self.log.path()) {
            Ok(mut file) => {
                if let Err(e) = file.read_to_string(&mut text) {
                    text = format!("<cannot read {}: {e}>", self.log.path().display());
                }
            }
            Err(e) => text = format!("<cannot open {}: {e}>", self.log.path().display()),
        }
        text
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request with an empty body; returns status and body.
pub async fn request(method: Method, url: &str, timeout: Duration) -> Result<(StatusCode, Bytes), String> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Empty::new())
        .map_err(|e| format!("bad request for {url}: {e}"))?;
    let exchange = async {
        let response = client.request(req).await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: reading the body: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// Static credentials for tests (moto accepts any).
pub fn test_credentials() -> Credentials {
    Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "dsql-operator-tests",
    )
}

/// SDK configuration for talking to `endpoint_url` (moto or a proxy in front
/// of it): us-east-1, the given static credentials, one attempt per call (no
/// retries, so failure tests are quick and call counts exact), short timeouts.
pub fn test_sdk_config(endpoint_url: &str, creds: Credentials) -> SdkConfig {
    test_sdk_config_with_attempts(endpoint_url, creds, 1)
}

/// Like [`test_sdk_config`] but with the standard retry strategy allowing
/// `max_attempts` attempts per call, with millisecond back-off.
pub fn test_sdk_config_with_attempts(endpoint_url: &str, creds: Credentials, max_attempts: u32) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(TEST_REGION))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .endpoint_url(endpoint_url)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(15))
                .operation_timeout(Duration::from_secs(30))
                .build(),
        )
        .time_source(SystemTimeSource::new())
        .sleep_impl(TokioSleep::new())
        .build()
}

/// Environment for a child process (e.g. the operator binary) so that the
/// default AWS config loader ends up where [`test_sdk_config`] does.
pub fn test_aws_env(endpoint_url: &str, creds: &Credentials) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_ENDPOINT_URL".to_owned(), endpoint_url.to_owned()),
        ("AWS_REGION".to_owned(), TEST_REGION.to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), creds.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), creds.secret_access_key().to_owned()),
        ("AWS_MAX_ATTEMPTS".to_owned(), "1".to_owned()),
        ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
        ("AWS_CONFIG_FILE".to_owned(), "/dev/null".to_owned()),
        ("AWS_SHARED_CREDENTIALS_FILE".to_owned(), "/dev/null".to_owned()),
    ];
    if let Some(token) = creds.session_token() {
        env.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
    }
    env
}
