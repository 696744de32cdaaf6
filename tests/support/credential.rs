//! The DsqlCredential specs the end-to-end tests create.

use serde_json::{Value, json};

/// The cluster endpoint the tests' credentials name (moto does not check it; the token is signed
/// for it).
pub const ENDPOINT: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";

/// The smallest valid spec: an admin token for the cluster at [`ENDPOINT`].
pub fn admin_spec() -> Value {
    json!({"cluster": {"endpoint": ENDPOINT}, "role": "admin"})
}

/// [`admin_spec`] with `patch` merged in at the top level of `spec` (objects merged one level
/// deep, so `{"token": {...}}` keeps nothing of a default token because there is none).
pub fn admin_spec_with(patch: Value) -> Value {
    let mut spec = admin_spec();
    for (k, v) in patch.as_object().expect("a patch is a JSON object") {
        spec[k] = v.clone();
    }
    spec
}

/// [`admin_spec`] projected into the Kubernetes Secret `secret`.
pub fn admin_spec_with_secret(secret: &str) -> Value {
    admin_spec_with(json!({"kubernetesSecret": {"name": secret}}))
}
