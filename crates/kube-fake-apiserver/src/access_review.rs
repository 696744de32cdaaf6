//! The "self" reviews every authenticated user may create: SelfSubjectReview
//! (`POST /apis/authentication.k8s.io/v1/selfsubjectreviews`, `kubectl auth whoami`: who the
//! server sees) and SelfSubjectAccessReview
//! (`POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`, `kubectl auth can-i`): asks the RBAC authorizer whether the requesting user may make a
//! request, without making it. Ported from the Kubernetes source
//! (pkg/registry/authorization/selfsubjectaccessreview/rest.go and
//! pkg/registry/authorization/util): the review is not stored, the response is the request with
//! `status` filled in, and creating one is open to every authenticated user (the default
//! `system:basic-user` ClusterRole grants it to `system:authenticated`), so it is served before
//! the request itself is authorized. No golden file records it.

use serde_json::{Value, json};

use crate::authz::{Attributes, decide};
use crate::errors::{ApiError, ApiResult, Cause};
use crate::request::{Reply, Req};
use crate::store::State;

const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
const WHOAMI: &str = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

/// Serves a SelfSubjectReview or SelfSubjectAccessReview; None for every other path.
pub fn serve(state: &State, req: &Req) -> Option<Reply> {
    let path = req.path.trim_end_matches('/');
    if path != ACCESS_REVIEWS && path != WHOAMI {
        return None;
    }
    let reply = if req.method != "POST" {
        Err(ApiError::method_not_allowed(&format!(
            "the server does not allow this method on the requested resource ({} {})",
            req.method, req.path
        )))
    } else if path == WHOAMI {
        Ok(whoami(req))
    } else {
        review(state, req)
    };
    Some(reply.unwrap_or_else(Reply::from))
}

/// The SelfSubjectReview response: the authenticated user, nothing from the request body.
fn whoami(req: &Req) -> Reply {
    let mut user = json!({"username": req.user.username, "groups": req.user.groups});
    if !req.user.uid.is_empty() {
        user["uid"] = json!(req.user.uid);
    }
    Reply::Json(
        201,
        json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {},
            "status": {"userInfo": user},
        }),
        Vec::new(),
    )
}

fn review(state: &State, req: &Req) -> ApiResult<Reply> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(&format!("couldn't decode SelfSubjectAccessReview: {e}")))?;
    if body["kind"].as_str() != Some("SelfSubjectAccessReview") {
        return Err(ApiError::bad_request(&format!(
            "the body of the request was in an unknown format: expected a SelfSubjectAccessReview, got kind {}",
            body["kind"]
        )));
    }
    let spec = &body["spec"];
    let attrs = match (
        spec["resourceAttributes"].as_object(),
        spec["nonResourceAttributes"].as_object(),
    ) {
        (Some(r), None) => resource_attributes(r),
        (None, Some(n)) => Attributes::non_resource(text(n, "verb")),
        // The real validation: exactly one of the two.
        (r, _) => {
            let detail = if r.is_some() {
                "cannot be specified in combination with resourceAttributes"
            } else {
                "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            };
            return Err(ApiError::invalid(
                "authorization.k8s.io",
                "SelfSubjectAccessReview",
                "",
                &[Cause::invalid(
                    "spec.nonResourceAttributes",
                    &spec["nonResourceAttributes"],
                    detail,
                )],
            ));
        }
    };
    let status = match decide(state, &req.user, &attrs) {
        Ok(reason) if reason.is_empty() => json!({"allowed": true}),
        Ok(reason) => json!({"allowed": true, "reason": reason}),
        // RBAC never denies outright: it has no opinion, so `denied` stays unset; resolution
        // errors are reported as evaluationError, as the real server does.
        Err(errors) if errors.is_empty() => json!({"allowed": false}),
        Err(errors) => json!({"allowed": false, "evaluationError": errors.join(", ")}),
    };
    let mut response = body.clone();
    response["apiVersion"] = json!("authorization.k8s.io/v1");
    response["metadata"] = json!({});
    response["status"] = status;
    Ok(Reply::Json(201, response, Vec::new()))
}

fn text(map: &serde_json::Map<String, Value>, key: &str) -> String {
    map.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn resource_attributes(r: &serde_json::Map<String, Value>) -> Attributes {
    Attributes {
        verb: text(r, "verb"),
        resource_request: true,
        api_group: text(r, "group"),
        resource: text(r, "resource"),
        subresource: text(r, "subresource"),
        namespace: text(r, "namespace"),
        name: text(r, "name"),
    }
}
