//! A Postgres server double for the login check: speaks the Postgres wire protocol (v3) over TLS
//! on 127.0.0.1, asks for a cleartext password as Aurora DSQL does, and accepts it only if it is
//! a valid DSQL auth token for its endpoint and the role logging in:
//! - the role must be one it grants (its stand-in for `AWS IAM GRANT`); `admin` needs a
//!   `DbConnectAdmin` token, any other role a `DbConnect` one;
//! - the token must be what botocore computes for the endpoint, region and test credentials at
//!   the token's own signing time ([`verify_dsql_token`]);
//! - it must not be expired by the server's clock (the test clock plus an adjustable skew).
//!
//! It answers `SELECT 1` with one row. Its certificate, for the endpoint name, is signed by a CA
//! made at start ([`LoginServer::ca_pem`]), for `spec.loginCheck.caBundle`. Every password it
//! receives is kept for leak scanning; nothing here prints one. It stops when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dsql_credential_operator::clock::Clock;
use dsql_credential_operator::login_check::Resolve;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::moto::test_credentials;
use super::token_check::{ExpectedToken, token_query_param, verify_dsql_token};

/// SSLRequest code (1234 << 16 | 5679).
const SSL_REQUEST: i32 = 80_877_103;
/// Protocol version 3.0.
const PROTOCOL_3: i32 = 196_608;

/// How one login ended, for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Accepted, and `SELECT 1` answered.
    Accepted { user: String },
    /// Refused with this SQLSTATE and message.
    Refused {
        user: String,
        code: String,
        message: String,
    },
}

struct Shared {
    host: String,
    region: String,
    clock: Arc<dyn Clock>,
    skew_secs: AtomicI64,
    granted: Mutex<Vec<String>>,
    signer: Mutex<aws_credential_types::Credentials>,
    logins: Mutex<Vec<Login>>,
    passwords: Mutex<Vec<String>>,
    connections: AtomicUsize,
    tls: Arc<rustls::ServerConfig>,
}

/// The running server.
pub struct LoginServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoginServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoginServer {
    /// Starts a server for the endpoint `host` (its certificate names it), granting `granted`
    /// roles, judging expiry by `clock`.
    pub async fn start(host: &str, granted: &[&str], clock: Arc<dyn Clock>) -> LoginServer {
        LoginServer::start_with_cert_for(host, host, granted, clock).await
    }

    /// Like [`LoginServer::start`], with a certificate for `cert_host` (another name, to test
    /// host-name verification).
    pub async fn start_with_cert_for(
        host: &str,
        cert_host: &str,
        granted: &[&str],
        clock: Arc<dyn Clock>,
    ) -> LoginServer {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "login check test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![cert_host.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
            .unwrap();

        let shared = Arc::new(Shared {
            host: host.to_owned(),
            region: host.split('.').nth(2).unwrap_or_default().to_owned(),
            clock,
            skew_secs: AtomicI64::new(0),
            granted: Mutex::new(granted.iter().map(|r| (*r).to_owned()).collect()),
            signer: Mutex::new(test_credentials()),
            logins: Mutex::new(Vec::new()),
            passwords: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            tls: Arc::new(tls),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                serving.connections.fetch_add(1, Ordering::SeqCst);
                let shared = serving.clone();
                // One connection at a time is all a check makes; a broken one only ends itself.
                tokio::spawn(async move {
                    let _ = serve(stream, &shared).await;
                });
            }
        });
        LoginServer {
            shared,
            address,
            ca_pem: ca.pem(),
            task,
        }
    }

    /// Where it listens (127.0.0.1).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The CA that signed its certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Replaces the granted roles.
    pub fn grant(&self, roles: &[&str]) {
        *self.shared.granted.lock().unwrap() = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// Accepts only tokens signed with `credentials` (the operator's test credentials at start),
    /// as a cluster would when the token's IAM identity is not the one the role is granted to.
    pub fn expect_signer(&self, credentials: aws_credential_types::Credentials) {
        *self.shared.signer.lock().unwrap() = credentials;
    }

    /// Sets the server's clock `skew` ahead of the test clock.
    pub fn set_clock_skew(&self, skew: std::time::Duration) {
        self.shared.skew_secs.store(skew.as_secs() as i64, Ordering::SeqCst);
    }

    /// Every login so far, in order.
    pub fn logins(&self) -> Vec<Login> {
        self.shared.logins.lock().unwrap().clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every password received (tokens), to scan the operator's output for.
    pub fn passwords(&self) -> Vec<String> {
        self.shared.passwords.lock().unwrap().clone()
    }
}

/// Resolves the endpoint names a test registered to local addresses; any other name does not
/// resolve (a DNS failure).
#[derive(Debug, Default)]
pub struct TestResolver(Mutex<HashMap<String, SocketAddr>>);

impl TestResolver {
    /// Makes `host` resolve to `address` (whatever port is asked for).
    pub fn route(&self, host: &str, address: SocketAddr) {
        self.0.lock().unwrap().insert(host.to_owned(), address);
    }
}

impl Resolve for TestResolver {
    fn resolve<'a>(&'a self, host: &'a str, _port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let found = self.0.lock().unwrap().get(host).copied();
        Box::pin(async move {
            found.map(|a| vec![a]).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "failed to lookup address information: Name or service not known",
                )
            })
        })
    }
}

async fn serve(mut stream: tokio::net::TcpStream, shared: &Shared) -> std::io::Result<()> {
    // Aurora DSQL takes TLS only: anything but an SSLRequest first is dropped.
    let len = stream.read_i32().await?;
    let code = stream.read_i32().await?;
    if len != 8 || code != SSL_REQUEST {
        return Ok(());
    }
    stream.write_all(b"S").await?;
    let mut tls = tokio_rustls::TlsAcceptor::from(shared.tls.clone())
        .accept(stream)
        .await?;

    let startup = read_body(&mut tls).await?;
    if startup.len() < 4 || i32::from_be_bytes([startup[0], startup[1], startup[2], startup[3]]) != PROTOCOL_3 {
        return Ok(());
    }
    let params = cstrings(&startup[4..]);
    let param = |name: &str| {
        params
            .chunks(2)
            .find(|kv| kv[0] == name)
            .and_then(|kv| kv.get(1).cloned())
            .unwrap_or_default()
    };
    let (user, database) = (param("user"), param("database"));

    // AuthenticationCleartextPassword.
    send(&mut tls, b'R', &3i32.to_be_bytes()).await?;
    let mut kind = [0u8; 1];
    tls.read_exact(&mut kind).await?;
    let body = read_body(&mut tls).await?;
    if kind[0] != b'p' {
        return Ok(());
    }
    let password = cstrings(&body).into_iter().next().unwrap_or_default();
    shared.passwords.lock().unwrap().push(password.clone());

    if let Err((code, message)) = judge(shared, &user, &database, password).await {
        shared.logins.lock().unwrap().push(Login::Refused {
            user,
            code: code.to_owned(),
            message: message.clone(),
        });
        let mut fields = Vec::new();
        for (tag, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', message.as_str())] {
            fields.push(tag);
            fields.extend_from_slice(value.as_bytes());
            fields.push(0);
        }
        fields.push(0);
        send(&mut tls, b'E', &fields).await?;
        return tls.shutdown().await;
    }

    send(&mut tls, b'R', &0i32.to_be_bytes()).await?; // AuthenticationOk
    send(&mut tls, b'S', b"server_version\x0016.9\x00").await?;
    send(&mut tls, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]).await?;
    send(&mut tls, b'Z', b"I").await?;
    loop {
        let mut kind = [0u8; 1];
        if tls.read_exact(&mut kind).await.is_err() {
            break;
        }
        let body = read_body(&mut tls).await?;
        match kind[0] {
            b'X' => break,
            b'Q' if cstrings(&body).first().map(String::as_str) == Some("SELECT 1") => {
                // RowDescription: one int4 column "?column?", text format.
                let mut row_description = 1i16.to_be_bytes().to_vec();
                row_description.extend_from_slice(b"?column?\x00");
                row_description.extend_from_slice(&0i32.to_be_bytes());
                row_description.extend_from_slice(&0i16.to_be_bytes());
                row_description.extend_from_slice(&23i32.to_be_bytes());
                row_description.extend_from_slice(&4i16.to_be_bytes());
                row_description.extend_from_slice(&(-1i32).to_be_bytes());
                row_description.extend_from_slice(&0i16.to_be_bytes());
                send(&mut tls, b'T', &row_description).await?;
                let mut data_row = 1i16.to_be_bytes().to_vec();
                data_row.extend_from_slice(&1i32.to_be_bytes());
                data_row.push(b'1');
                send(&mut tls, b'D', &data_row).await?;
                send(&mut tls, b'C', b"SELECT 1\x00").await?;
                send(&mut tls, b'Z', b"I").await?;
                shared
                    .logins
                    .lock()
                    .unwrap()
                    .push(Login::Accepted { user: user.clone() });
            }
            _ => {
                send(
                    &mut tls,
                    b'E',
                    b"SERROR\x00C0A000\x00Monly SELECT 1 is supported\x00\x00",
                )
                .await?;
                send(&mut tls, b'Z', b"I").await?;
            }
        }
    }
    tls.shutdown().await
}

/// Whether `password` logs `user` in to `database`: `Err((SQLSTATE, message))` otherwise.
/// Messages name what failed, never the token.
async fn judge(shared: &Shared, user: &str, database: &str, password: String) -> Result<(), (&'static str, String)> {
    if !shared.granted.lock().unwrap().iter().any(|r| r == user) {
        return Err((
            "28000",
            format!("role \"{user}\" is not granted to the token's IAM identity"),
        ));
    }
    let signed = token_query_param(&password, "X-Amz-Date")
        .and_then(|d| jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &d).ok())
        .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp());
    let lifetime = token_query_param(&password, "X-Amz-Expires").and_then(|e| e.parse::<i64>().ok());
    let (Some(signed), Some(lifetime)) = (signed, lifetime) else {
        return Err(("28P01", "password is not a DSQL auth token".to_owned()));
    };
    let now: Timestamp = shared.clock.now() + SignedDuration::from_secs(shared.skew_secs.load(Ordering::SeqCst));
    if now > signed + SignedDuration::from_secs(lifetime) {
        return Err(("28P01", "the auth token has expired".to_owned()));
    }
    let signer = shared.signer.lock().unwrap().clone();
    let expected = ExpectedToken::new(&shared.host, &shared.region, user == "admin", &signer);
    let verdict = tokio::task::spawn_blocking(move || verify_dsql_token(&password, &expected))
        .await
        .unwrap();
    verdict.map_err(|problems| {
        (
            "28P01",
            format!("the auth token is not valid for this endpoint and role: {problems}"),
        )
    })?;
    // As Postgres does, the database is looked at only after authentication; DSQL has one.
    if database != "postgres" {
        return Err(("3D000", format!("database \"{database}\" does not exist")));
    }
    Ok(())
}

/// A message's length word and the body it announces.
async fn read_body<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Vec<u8>> {
    let len = stream.read_i32().await?;
    if !(4..=1 << 20).contains(&len) {
        return Err(std::io::Error::other("bad message length"));
    }
    let mut body = vec![0u8; len as usize - 4];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

async fn send<S: AsyncWrite + Unpin>(stream: &mut S, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let mut message = vec![kind];
    message.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    message.extend_from_slice(body);
    stream.write_all(&message).await?;
    stream.flush().await
}

/// The NUL-terminated strings in `bytes`.
fn cstrings(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}
