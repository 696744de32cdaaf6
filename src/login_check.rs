//! The login check (`spec.loginCheck`): before a new token is written anywhere, log in to the
//! cluster with it over TLS (verify-full: trusted chain and matching host name), run `SELECT 1`
//! and close, so a token the cluster refuses is never published and the one already published
//! stays.
//!
//! The TCP connection and the TLS handshake are made here rather than inside `tokio-postgres`,
//! so a failure says which step failed (DNS, TCP, TLS, login) instead of one opaque error. The
//! token goes into the Postgres password message only; no error text built here can contain it
//! (server messages are scrubbed of it as well, in case a server echoes what it got).

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::error::SqlState;

use crate::aws::ConnectionInfo;
use crate::token::DsqlToken;

/// The port Aurora DSQL endpoints accept Postgres connections on.
pub const POSTGRES_PORT: u16 = 5432;

/// Bound on one whole check (resolve, connect, TLS, login, query), so an endpoint that drops
/// packets cannot hold a reconcile worker for longer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest `caBundle` accepted (the CRD's `maxLength`): room for a few dozen PEM certificates.
pub const MAX_CA_BUNDLE_LEN: usize = 65_536;

/// Finds the addresses of a cluster endpoint. Production asks DNS; tests map the endpoint's name
/// to a local server (and leave other names unresolvable).
pub trait Resolve: Send + Sync + fmt::Debug {
    /// The socket addresses for `host` on `port`; an error or an empty list is a DNS failure.
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// Resolves with the system resolver, on the Postgres port.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) })
    }
}

/// A credential's validated `spec.loginCheck`.
#[derive(Debug, Clone)]
pub struct LoginCheckSettings {
    /// The CAs of `caBundle`, trusted instead of the bundled roots; `None` for the bundled roots.
    pub ca_bundle: Option<Arc<RootCertStore>>,
}

/// Parses a PEM bundle of CA certificates; the error says what is wrong, never the content.
pub fn parse_ca_bundle(pem: &str) -> Result<Arc<RootCertStore>, String> {
    if pem.len() > MAX_CA_BUNDLE_LEN {
        return Err(format!("is longer than {MAX_CA_BUNDLE_LEN} characters"));
    }
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let cert = cert.map_err(|e| format!("certificate {} is not valid PEM: {e}", index + 1))?;
        roots
            .add(cert)
            .map_err(|e| format!("certificate {} is not a usable CA certificate: {e}", index + 1))?;
    }
    if roots.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(Arc::new(roots))
}

/// The bundled Mozilla roots (they include Amazon Trust Services, which signs DSQL endpoints).
/// Bundled because the operator image is distroless: there is no system store to read.
fn bundled_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            Arc::new(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
        })
        .clone()
}

/// Which step of the check failed; each maps to its own `Degraded` reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginStep {
    /// The endpoint's name did not resolve.
    Dns,
    /// No TCP connection to port 5432.
    Connect,
    /// TLS was refused, or the certificate is untrusted or for another name.
    Tls,
    /// The server refused the login (SQLSTATE class 28: bad password, unknown or ungranted role).
    Auth,
    /// Anything else: the query failed, a protocol error, or the server refused the database.
    Other,
}

impl LoginStep {
    fn describe(self) -> &'static str {
        match self {
            Self::Dns => "DNS lookup",
            Self::Connect => "TCP connect",
            Self::Tls => "TLS handshake",
            Self::Auth => "login",
            Self::Other => "SELECT 1",
        }
    }
}

/// A failed login check: the step, the endpoint and a token-free cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("login check against {host}:{port} failed at the {} step: {detail}; the new token was not published", .step.describe())]
pub struct LoginCheckError {
    /// The step that failed.
    pub step: LoginStep,
    /// Endpoint host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// What went wrong (never contains the token).
    pub detail: String,
}

/// Runs login checks. Shared by all reconciles; the resolver is the test seam.
#[derive(Debug, Clone)]
pub struct LoginChecker {
    resolver: Arc<dyn Resolve>,
    timeout: Duration,
}

impl Default for LoginChecker {
    fn default() -> Self {
        Self::new(Arc::new(SystemResolver))
    }
}

impl LoginChecker {
    /// A checker resolving endpoints with `resolver`, bounded by [`CHECK_TIMEOUT`].
    pub fn new(resolver: Arc<dyn Resolve>) -> Self {
        Self {
            resolver,
            timeout: CHECK_TIMEOUT,
        }
    }

    /// Logs in to `connection.host` on 5432 as `connection.username` to `connection.dbname` with
    /// `token`, runs `SELECT 1` and closes.
    pub async fn check(
        &self,
        connection: &ConnectionInfo,
        token: &DsqlToken,
        settings: &LoginCheckSettings,
    ) -> Result<(), LoginCheckError> {
        let mut step = LoginStep::Dns;
        let attempt = tokio::time::timeout(self.timeout, self.attempt(connection, token, settings, &mut step)).await;
        let failure = match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(detail)) => detail,
            Err(_) => format!("no answer within {}s", self.timeout.as_secs()),
        };
        Err(LoginCheckError {
            step,
            host: connection.host.clone(),
            port: POSTGRES_PORT,
            detail: scrub(&failure, token),
        })
    }

    /// The check itself; `step` tracks how far it got, so a timeout names the step that hung.
    async fn attempt(
        &self,
        connection: &ConnectionInfo,
        token: &DsqlToken,
        settings: &LoginCheckSettings,
        step: &mut LoginStep,
    ) -> Result<(), String> {
        let host = connection.host.as_str();
        let addresses = self
            .resolver
            .resolve(host, POSTGRES_PORT)
            .await
            .map_err(|e| format!("{host} does not resolve: {e}"))?;
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }

        *step = LoginStep::Connect;
        let mut last_error = None;
        let mut stream = None;
        for address in &addresses {
            match TcpStream::connect(address).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = Some(format!("{address}: {e}")),
            }
        }
        let Some(mut stream) = stream else {
            return Err(last_error.unwrap_or_else(|| "no address to connect to".to_owned()));
        };

        // Postgres negotiates TLS in-band: SSLRequest (length 8, code 80877103), answered by one
        // byte, 'S' to go on with a TLS handshake or 'N' for no TLS (which verify-full refuses).
        *step = LoginStep::Tls;
        const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        stream
            .write_all(&SSL_REQUEST)
            .await
            .map_err(|e| format!("sending the TLS request: {e}"))?;
        let answer = stream
            .read_u8()
            .await
            .map_err(|e| format!("reading the answer to the TLS request: {e}"))?;
        if answer != b'S' {
            return Err("the server does not offer TLS".to_owned());
        }
        let roots = settings.ca_bundle.clone().unwrap_or_else(bundled_roots);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls_config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.to_owned()).map_err(|e| format!("server name {host:?}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls_config))
            .connect(server_name, stream)
            .await
            .map_err(|e| e.to_string())?;

        *step = LoginStep::Auth;
        let mut config = tokio_postgres::Config::new();
        config
            .user(&connection.username)
            .dbname(&connection.dbname)
            .application_name("dsql-credential-operator login check")
            // The stream is TLS already; tokio-postgres must not ask for TLS again inside it.
            .ssl_mode(tokio_postgres::config::SslMode::Disable)
            .password(token.expose());
        let (client, conn) = config
            .connect_raw(tls, tokio_postgres::NoTls)
            .await
            .map_err(|e| login_error(&e, step))?;
        drop(config);

        *step = LoginStep::Other;
        // The connection future drives the socket; dropping the client makes it send Terminate
        // and finish, so both end here without a spawned task.
        let query = async move {
            let result = client.simple_query("SELECT 1").await;
            drop(client);
            result
        };
        let (rows, closed) = tokio::join!(query, conn);
        let rows = rows.map_err(|e| format!("SELECT 1: {e}"))?;
        let one = rows.iter().any(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0) == Some("1"),
            _ => false,
        });
        if !one {
            return Err("SELECT 1 returned no row with 1".to_owned());
        }
        closed.map_err(|e| format!("closing: {e}"))?;
        Ok(())
    }
}

/// The detail of a failed login; a refusal with an authentication SQLSTATE keeps the `Auth`
/// step, anything else (e.g. an unknown database) becomes `Other`.
fn login_error(error: &tokio_postgres::Error, step: &mut LoginStep) -> String {
    match error.as_db_error() {
        Some(db) => {
            let code = db.code();
            if *code != SqlState::INVALID_PASSWORD && *code != SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                *step = LoginStep::Other;
            }
            format!(
                "the server refused the login (SQLSTATE {}): {}",
                code.code(),
                db.message()
            )
        }
        None => format!("login: {error}"),
    }
}

/// Removes the token from text that came from elsewhere (a server's error message).
fn scrub(text: &str, token: &DsqlToken) -> String {
    let secret = token.expose();
    if secret.is_empty() {
        text.to_owned()
    } else {
        text.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests;
