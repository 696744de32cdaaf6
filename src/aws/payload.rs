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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secret_json_has_the_sample_shape_in_order() {
        let info = ConnectionInfo {
            host: "abc.dsql.us-east-1.on.aws".into(),
            dbname: "postgres".into(),
            username: "admin".into(),
            region: "us-east-1".into(),
        };
        let token =
            DsqlToken::from_minted("abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Signature=ff".into());
        let json = secret_json(&info, &token, "2026-11-23T18:00:00.5Z".parse().unwrap());
        assert_eq!(
            json.expose_secret(),
            r#"{"engine":"postgres","host":"abc.dsql.us-east-1.on.aws","port":"5432","dbname":"postgres","username":"admin","password":"abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Signature=ff","region":"us-east-1","expiresAt":"2026-11-23T18:00:00Z"}"#
        );
    }
}
