//! The secret value: JSON compatible with the published Aurora DSQL + Secrets Manager sample.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::Serialize;

use crate::token::DsqlToken;

/// The non-secret connection details published beside the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Cluster endpoint.
    pub host: String,
    /// Database name.
    pub dbname: String,
    /// Postgres role.
    pub username: String,
    /// Cluster region.
    pub region: String,
}

/// Field order and names follow the published sample so existing consumers keep working.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecretDocument<'a> {
    engine: &'static str,
    host: &'a str,
    port: &'static str,
    dbname: &'a str,
    username: &'a str,
    password: &'a str,
    region: &'a str,
    expires_at: String,
}

/// Renders the secret JSON straight into a redacting string.
pub fn secret_json(info: &ConnectionInfo, token: &DsqlToken, expires_at: Timestamp) -> SecretString {
    let doc = SecretDocument {
        engine: "postgres",
        host: &info.host,
        port: "5432",
        dbname: &info.dbname,
        username: &info.username,
        password: token.expose(),
        region: &info.region,
        expires_at: expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    // Serializing plain strings cannot fail; an empty document would be refused by AWS anyway.
    SecretString::from(serde_json::to_string(&doc).unwrap_or_default())
}
