#![allow(clippy::unwrap_used)]
//! Step classification and timeouts of the login check, against servers that misbehave at one
//! step each. The full check (TLS, login, `SELECT 1`) is tested end to end in
//! tests/e2e_login_check.rs against a Postgres wire-protocol server.

use super::*;

/// Resolves every name to one fixed address, or to nothing.
#[derive(Debug)]
struct Fixed(Option<SocketAddr>);

impl Resolve for Fixed {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let answer = match self.0 {
            Some(address) => Ok(vec![address]),
            None => Err(std::io::Error::other("no such host")),
        };
        Box::pin(async move { answer })
    }
}

/// A resolver that never answers, as a blackholed DNS server.
#[derive(Debug)]
struct Silent;

impl Resolve for Silent {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(futures::future::pending())
    }
}

const TOKEN_TEXT: &str = "abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Signature=secret";

fn connection() -> ConnectionInfo {
    ConnectionInfo {
        host: "abc.dsql.us-east-1.on.aws".into(),
        dbname: "postgres".into(),
        username: "admin".into(),
        region: "us-east-1".into(),
    }
}

async fn run(resolver: Arc<dyn Resolve>) -> LoginCheckError {
    let checker = LoginChecker {
        resolver,
        timeout: Duration::from_millis(500),
    };
    let token = DsqlToken::from_minted(TOKEN_TEXT.to_owned());
    let settings = LoginCheckSettings { ca_bundle: None };
    checker.check(&connection(), &token, &settings).await.unwrap_err()
}

#[tokio::test]
async fn an_unresolvable_name_is_a_dns_failure() {
    let err = run(Arc::new(Fixed(None))).await;
    assert_eq!(err.step, LoginStep::Dns);
    assert!(err.detail.contains("does not resolve"), "{err}");
    assert!(
        err.to_string()
            .starts_with("login check against abc.dsql.us-east-1.on.aws:5432 failed at the DNS lookup step"),
        "{err}"
    );
}

#[tokio::test]
async fn a_dns_lookup_that_hangs_times_out_as_a_dns_failure() {
    let err = run(Arc::new(Silent)).await;
    assert_eq!(err.step, LoginStep::Dns);
    assert!(err.detail.contains("no answer within"), "{err}");
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure() {
    // Bound but not listening: connections are refused, and no one else can take the port.
    let closed = tokio::net::TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let err = run(Arc::new(Fixed(Some(closed.local_addr().unwrap())))).await;
    assert_eq!(err.step, LoginStep::Connect, "{err}");
}

#[tokio::test]
async fn a_server_without_tls_or_one_that_never_answers_is_a_tls_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    // First connection: answers the TLS request with 'N'. Second: reads and never answers.
    let server = tokio::spawn(async move {
        let (mut first, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        first.read_exact(&mut request).await.unwrap();
        first.write_all(b"N").await.unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        second.read_exact(&mut request).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
    });
    let refused = run(Arc::new(Fixed(Some(address)))).await;
    assert_eq!(refused.step, LoginStep::Tls);
    assert!(refused.detail.contains("does not offer TLS"), "{refused}");
    let silent = run(Arc::new(Fixed(Some(address)))).await;
    assert_eq!(silent.step, LoginStep::Tls);
    assert!(silent.detail.contains("no answer within"), "{silent}");
    server.abort();
}

#[test]
fn server_text_is_scrubbed_of_the_token() {
    let token = DsqlToken::from_minted(TOKEN_TEXT.to_owned());
    let scrubbed = scrub(&format!("password {TOKEN_TEXT} is wrong"), &token);
    assert_eq!(scrubbed, "password <redacted> is wrong");
}

#[test]
fn ca_bundles_must_hold_certificates() {
    assert!(parse_ca_bundle("").unwrap_err().contains("no PEM certificate"));
    assert!(
        parse_ca_bundle(&"x".repeat(MAX_CA_BUNDLE_LEN + 1))
            .unwrap_err()
            .contains("longer")
    );
    let ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = ca.self_signed(&key).unwrap().pem();
    assert_eq!(parse_ca_bundle(&pem).unwrap().len(), 1);
}
