//! The secret value: JSON compatible with the published Aurora DSQL + Secrets Manager sample.

use jiff::Timestamp;
use secrecy::SecretString;

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

/// The keys of the published credential, in the order of the published sample: the Secrets
/// Manager JSON, the Kubernetes Secret's keys and the `extraKeys` placeholders all use them.
pub const CREDENTIAL_KEYS: [&str; 8] = [
    "engine",
    "host",
    "port",
    "dbname",
    "username",
    "password",
    "region",
    "expiresAt",
];

/// Everything a published credential contains, the token included.
pub struct CredentialValues<'a> {
    /// Connection details.
    pub info: &'a ConnectionInfo,
    /// The token.
    pub token: &'a DsqlToken,
    /// Its expiry.
    pub expires_at: Timestamp,
}

impl CredentialValues<'_> {
    /// The value of one of [`CREDENTIAL_KEYS`] (empty for any other name). Callers put the
    /// `password` straight into a redacting type.
    pub fn get(&self, key: &str) -> String {
        match key {
            "engine" => "postgres".to_owned(),
            "host" => self.info.host.clone(),
            "port" => "5432".to_owned(),
            "dbname" => self.info.dbname.clone(),
            "username" => self.info.username.clone(),
            "password" => self.token.expose().to_owned(),
            "region" => self.info.region.clone(),
            "expiresAt" => self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            _ => String::new(),
        }
    }
}

/// Renders the secret JSON, keys in the sample's order, straight into a redacting string.
pub fn secret_json(values: &CredentialValues<'_>) -> SecretString {
    let fields: Vec<String> = CREDENTIAL_KEYS
        .iter()
        .map(|key| {
            format!(
                "{}:{}",
                serde_json::Value::from(*key),
                serde_json::Value::from(values.get(key))
            )
        })
        .collect();
    SecretString::from(format!("{{{}}}", fields.join(",")))
}

/// A connection and token for unit tests of what is built from them.
#[cfg(test)]
pub(crate) fn sample_credential() -> (ConnectionInfo, DsqlToken) {
    let info = ConnectionInfo {
        host: "abc.dsql.us-east-1.on.aws".into(),
        dbname: "postgres".into(),
        username: "admin".into(),
        region: "us-east-1".into(),
    };
    let token = DsqlToken::from_minted("abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Signature=ff".into());
    (info, token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn secret_json_has_the_sample_shape_in_order() {
        let (info, token) = sample_credential();
        let values = CredentialValues {
            info: &info,
            token: &token,
            expires_at: "2026-11-23T18:00:00.5Z".parse().unwrap(),
        };
        let json = secret_json(&values);
        assert_eq!(
            json.expose_secret(),
            r#"{"engine":"postgres","host":"abc.dsql.us-east-1.on.aws","port":"5432","dbname":"postgres","username":"admin","password":"abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Signature=ff","region":"us-east-1","expiresAt":"2026-11-23T18:00:00Z"}"#
        );
    }
}
