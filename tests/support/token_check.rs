//! Verifies Aurora DSQL auth tokens by recomputing them with botocore
//! (`verify_dsql_token.py` beside this file) for the token's own signing time
//! and lifetime, and requiring exact equality.
//!
//! The token and credentials travel to Python on stdin only; nothing here
//! prints a token, a signature or a secret.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aws_credential_types::Credentials;

use super::moto::test_python;

/// What a token must have been made from.
#[derive(Clone)]
pub struct ExpectedToken {
    pub hostname: String,
    pub region: String,
    /// `DbConnectAdmin` when true, `DbConnect` when false.
    pub admin: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl ExpectedToken {
    pub fn new(hostname: &str, region: &str, admin: bool, creds: &Credentials) -> Self {
        Self {
            hostname: hostname.to_owned(),
            region: region.to_owned(),
            admin,
            access_key_id: creds.access_key_id().to_owned(),
            secret_access_key: creds.secret_access_key().to_owned(),
            session_token: creds.session_token().map(str::to_owned),
        }
    }
}

impl std::fmt::Debug for ExpectedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExpectedToken")
            .field("hostname", &self.hostname)
            .field("region", &self.region)
            .field("admin", &self.admin)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/verify_dsql_token.py")
}

/// `Ok(())` when botocore, signing at the token's `X-Amz-Date` for its
/// `X-Amz-Expires`, produces exactly `token` (an `https://` prefix on either
/// side is ignored, and so is the order of the query parameters: botocore puts
/// `X-Amz-Security-Token` before `X-Amz-Signature`, aws-sigv4 after it; every
/// raw `name=value` piece must match). Otherwise says what differs by parameter name, e.g.
/// "query parameter Action differs; signature differs" — never values.
pub fn verify_dsql_token(token: &str, expected: &ExpectedToken) -> Result<(), String> {
    let python = test_python().map_err(|e| e.to_string())?;
    let input = serde_json::json!({
        "token": token,
        "hostname": expected.hostname,
        "region": expected.region,
        "admin": expected.admin,
        "access_key_id": expected.access_key_id,
        "secret_access_key": expected.secret_access_key,
        "session_token": expected.session_token,
    })
    .to_string();

    let mut child = Command::new(&python)
        .arg(script_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let write_result = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(input.as_bytes()),
        None => Ok(()),
    };
    let output = child
        .wait_with_output()
        .map_err(|e| format!("token verifier did not finish: {e}"))?;
    let redact = |text: &str| {
        let mut text = text.to_owned();
        let mut secrets = vec![token.to_owned(), expected.secret_access_key.clone()];
        secrets.extend(token_signature(token));
        secrets.extend(expected.session_token.clone());
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = redact(&String::from_utf8_lossy(&output.stderr));

    let verdict: Option<serde_json::Value> = stdout.lines().rev().find_map(|line| serde_json::from_str(line).ok());
    let Some(verdict) = verdict else {
        return Err(format!(
            "token verifier gave no verdict ({}{}); stderr:\n{stderr}",
            output.status,
            match write_result {
                Ok(()) => String::new(),
                Err(e) => format!(", writing its input failed: {e}"),
            }
        ));
    };
    let problems: Vec<String> = verdict
        .get("problems")
        .and_then(|p| p.as_array())
        .map(|a| a.iter().map(|p| redact(p.as_str().unwrap_or("?"))).collect())
        .unwrap_or_default();
    match (verdict.get("ok").and_then(|v| v.as_bool()), output.status.code()) {
        (Some(true), Some(0)) => Ok(()),
        (_, Some(1)) => Err(problems.join("; ")),
        (_, status) => Err(format!(
            "token verifier could not verify (exit {status:?}): {}; stderr:\n{stderr}",
            problems.join("; ")
        )),
    }
}

/// One query parameter of a token (decoded), if it occurs exactly once.
pub fn token_query_param(token: &str, name: &str) -> Option<String> {
    let token = token.strip_prefix("https://").unwrap_or(token);
    let url = url::Url::parse(&format!("https://{token}")).ok()?;
    let mut values = url
        .query_pairs()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned());
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// The token's `X-Amz-Signature` (64 hex digits), to scan logs and objects for leaks.
pub fn token_signature(token: &str) -> Option<String> {
    token_query_param(token, "X-Amz-Signature")
}

/// The signing time (`X-Amz-Date`) of a token minted at `minted`: the operator signs at the
/// whole minute, so a retry after a crash can sign the same token again.
pub fn signing_minute(minted: jiff::Timestamp) -> jiff::Timestamp {
    let second = minted.as_second();
    jiff::Timestamp::from_second(second - second.rem_euclid(60)).expect("a valid time")
}
