//! The ServiceAccount `token` subresource (authentication.k8s.io/v1 TokenRequest, what
//! `kubectl create token` sends): POST returns a bearer token that authenticates as the
//! ServiceAccount. The token is an opaque string, not a JWT, and does not expire.

use serde_json::{Map, Value, json};

use crate::auth::UserInfo;
use crate::errors::{ApiError, ApiResult, Cause};
use crate::meta::{meta_str, now_rfc3339};
use crate::request::{Reply, Req, manager_name};
use crate::store::State;

/// The shortest token lifetime the real server accepts (10 minutes).
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Its default lifetime when the request does not say.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// Serves `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`; None for every other path.
pub fn serve(state: &mut State, req: &Req, port: u16) -> Option<Reply> {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let ["api", "v1", "namespaces", ns, "serviceaccounts", name, "token"] = segs.as_slice() else {
        return None;
    };
    let reply = if req.method == "POST" {
        issue(state, req, ns, name, port)
    } else {
        Err(ApiError::method_not_allowed(&format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.method, req.path
        )))
    };
    Some(reply.unwrap_or_else(Reply::from))
}

fn issue(state: &mut State, req: &Req, ns: &str, name: &str, port: u16) -> ApiResult<Reply> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(&format!("couldn't decode TokenRequest: {e}")))?;
    if body["kind"].as_str() != Some("TokenRequest") {
        return Err(ApiError::bad_request(&format!(
            "the body of the request was in an unknown format: expected a TokenRequest, got kind {}",
            body["kind"]
        )));
    }
    let sa = state
        .get("/serviceaccounts", ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let expiration = body["spec"]["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            name,
            &[Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let uid = meta_str(&sa, "uid").to_string();
    let token = state.tokens.issue(UserInfo::service_account(ns, name, &uid));
    let now = now_rfc3339();
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(expiration))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    // The default audience is the API server's own issuer URL.
    let audiences = match body["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => Value::Array(a.clone()),
        _ => json!([format!("http://127.0.0.1:{port}")]),
    };
    // managedFields as the real server records them: the spec fields the request set.
    let set_fields: Map<String, Value> = body["spec"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| (format!("f:{k}"), json!({})))
        .collect();
    let mut metadata = json!({
        "name": name,
        "namespace": ns,
        "uid": uid,
        "creationTimestamp": now,
    });
    if !set_fields.is_empty() {
        metadata["managedFields"] = json!([{
            "apiVersion": "authentication.k8s.io/v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": set_fields},
            "manager": manager_name(req),
            "operation": "Update",
            "subresource": "token",
            "time": now,
        }]);
    }
    Ok(Reply::Json(
        201,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": metadata,
            "spec": {
                "audiences": audiences,
                "boundObjectRef": body["spec"]["boundObjectRef"].clone(),
                "expirationSeconds": expiration,
            },
            "status": {"expirationTimestamp": expires, "token": token},
        }),
        Vec::new(),
    ))
}
