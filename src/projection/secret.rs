//! The Kubernetes Secret projection: the Secrets Manager JSON keys one per key, plus rendered
//! `extraKeys`. The body carries the token, so it is built straight into a redacting JSON type.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;

use super::ObjectOwner;
use super::template;
use crate::aws::{CREDENTIAL_KEYS, CredentialValues};

/// Annotation with the Secrets Manager version the Secret carries.
pub const VERSION_ANNOTATION: &str = "dsql.credentials.dev/version-id";
/// Annotation with the token's expiry.
pub const EXPIRY_ANNOTATION: &str = "dsql.credentials.dev/expires-at";

/// A JSON request body that contains a token: serialized as is, never shown by `Debug`.
pub struct SecretBody(SecretString);

impl Serialize for SecretBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.expose_secret().to_owned()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

impl fmt::Debug for SecretBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBody(<redacted>)")
    }
}

/// The Secret to apply (or create), carrying `uid` as `metadata.uid` when the operator knows
/// the uid of the Secret it created. Fails only on a template error (which validation catches earlier).
pub fn secret_body(
    owner: &ObjectOwner,
    name: &str,
    values: &CredentialValues<'_>,
    extra_keys: &BTreeMap<String, String>,
    version_id: &str,
    uid: Option<&str>,
) -> Result<SecretBody, String> {
    let mut data = BTreeMap::new();
    for key in CREDENTIAL_KEYS {
        data.insert(key.to_owned(), STANDARD.encode(values.get(key)));
    }
    for (key, text) in extra_keys {
        let rendered = template::render(text, |name| values.get(name)).map_err(|e| format!("extraKeys.{key}: {e}"))?;
        data.insert(key.clone(), STANDARD.encode(rendered));
    }
    // The claimed Secret plus the token: the same labels and ownerReference as the claim, which
    // is how a later claim recognises it (objects::created_earlier).
    let mut body = claim_body(owner, name);
    body["metadata"]["annotations"] = serde_json::json!({
        VERSION_ANNOTATION: version_id,
        EXPIRY_ANNOTATION: values.get("expiresAt"),
    });
    body["data"] = serde_json::json!(data);
    if let Some(uid) = uid {
        // The API server refuses an apply whose uid differs from the stored object's.
        body["metadata"]["uid"] = serde_json::Value::from(uid);
    }
    Ok(SecretBody(SecretString::from(body.to_string())))
}

/// The empty Secret created to claim its name before any token exists: the operator's labels and
/// ownerReference, no data. The rotation that follows in the same reconcile fills it.
pub fn claim_body(owner: &ObjectOwner, name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": owner.labels(),
            "ownerReferences": [owner.owner_reference()],
        },
        "type": "Opaque",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::aws::payload::sample_credential;

    #[test]
    fn has_every_key_the_annotations_and_the_owner_and_hides_the_token_from_debug() {
        let (info, token) = sample_credential();
        let values = CredentialValues {
            info: &info,
            token: &token,
            expires_at: "2026-11-23T18:00:00Z".parse().unwrap(),
        };
        let owner = ObjectOwner {
            namespace: "shop".into(),
            name: "orders".into(),
            uid: "u1".into(),
        };
        let extra = BTreeMap::from([(
            "DATABASE_URL".to_owned(),
            "postgres://{username}:{password|urlencode}@{host}".to_owned(),
        )]);
        let body = secret_body(&owner, "orders-db", &values, &extra, "v-1", Some("s-uid")).unwrap();
        assert_eq!(format!("{body:?}"), "SecretBody(<redacted>)");
        let json: serde_json::Value = serde_json::to_value(&body).unwrap();
        let decode = |k: &str| String::from_utf8(STANDARD.decode(json["data"][k].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(decode("password"), token.expose());
        assert_eq!(decode("port"), "5432");
        assert_eq!(decode("expiresAt"), "2026-11-23T18:00:00Z");
        assert_eq!(
            decode("DATABASE_URL"),
            "postgres://admin:abc.dsql.us-east-1.on.aws%2F%3FAction%3DDbConnectAdmin%26X-Amz-Signature%3Dff@abc.dsql.us-east-1.on.aws"
        );
        assert_eq!(json["data"].as_object().unwrap().len(), 9);
        assert_eq!(json["metadata"]["annotations"][VERSION_ANNOTATION], "v-1");
        assert_eq!(json["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(json["metadata"]["uid"], "s-uid");
        assert_eq!(
            json["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "dsql-credential-operator"
        );
        assert_eq!(json["type"], "Opaque");
    }
}
