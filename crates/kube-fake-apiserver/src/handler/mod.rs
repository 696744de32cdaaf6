//! Request routing and parsing for the REST verbs. The verbs live in submodules: `read` (get,
//! list, watch), `write` (create, update, patch, and the real server's write pipeline every write
//! shares: decode defaults, field manager, strategy, validation, admission, store),
//! `server_side_apply` and `deletion`.

use serde_json::Value;

use crate::discovery;
use crate::errors::{ApiError, ApiResult, Cause};
use crate::field_schema::Hints;
use crate::request::{Reply, Req, Target};
use crate::resources::ResourceDef;
use crate::store::State;

fn ok(code: u16, v: Value) -> ApiResult<Reply> {
    Ok(Reply::Json(code, v, Vec::new()))
}

/// Resolves `/api/v1/...` or `/apis/g/v/...` into a resource target. `Err` carries the reply for
/// unknown paths (`404 page not found`, like the real server).
pub fn resolve(state: &State, path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Ok(None),
    };
    let (namespace, plural, tail): (Option<&str>, &str, &[&str]) = match rest {
        ["namespaces", ns, plural, tail @ ..] if !(group.is_empty() && matches!(*plural, "status" | "finalize")) => {
            (Some(*ns), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(ApiError::page_not_found()),
    };
    let Some(def) = state.find_def(group, version, plural) else {
        return Err(ApiError::page_not_found());
    };
    if namespace.is_some() && !def.namespaced {
        return Err(ApiError::page_not_found());
    }
    if tail.len() > 2 {
        return Err(ApiError::page_not_found());
    }
    Ok(Some(Target {
        def,
        namespace: namespace.map(str::to_string),
        name: tail.first().map(|s| s.to_string()),
        subresource: tail.get(1).map(|s| s.to_string()),
    }))
}

/// Entry point for everything but fault injection and recording.
pub fn handle(state: &mut State, req: &Req, port: u16) -> Reply {
    match route(state, req, port) {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn route(state: &mut State, req: &Req, port: u16) -> ApiResult<Reply> {
    if let Some(r) = discovery::serve(
        state,
        &req.method,
        &req.path,
        port,
        req.accept.as_deref().unwrap_or_default(),
    ) {
        return Ok(r);
    }
    let Some(t) = resolve(state, &req.path)? else {
        return Err(ApiError::page_not_found());
    };
    if t.subresource.as_deref() == Some("scale") && scale::has_scale(&t.def) && req.method == "PATCH" {
        return scale::patch_scale(state, &t, req);
    }
    if let Some(sub) = &t.subresource
        && !(sub == "status" && t.def.status_subresource)
    {
        return Err(ApiError::status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        ));
    }
    let m = req.method.as_str();
    match (&t.name, m) {
        (None, "GET") => {
            if req.flag("watch") {
                watch_request(state, &t, req)
            } else {
                let reply = list(state, &t, req)?;
                crate::table::negotiate(state, &t, req, reply)
            }
        }
        (None, "POST") => create(state, &t, req),
        (None, "DELETE") => delete_collection(state, &t, req),
        (Some(_), "GET") => {
            let reply = get(state, &t)?;
            crate::table::negotiate(state, &t, req, reply)
        }
        (Some(_), "PUT") => update(state, &t, req),
        (Some(_), "PATCH") => patch_request(state, &t, req),
        (Some(_), "DELETE") => delete(state, &t, req),
        _ => Err(ApiError::method_not_allowed(&format!(
            "the server does not allow this method on the requested resource ({m} {})",
            req.path
        ))),
    }
}

fn hints_for(def: &ResourceDef) -> Hints {
    match &def.schema {
        Some(s) if def.custom => Hints::Schema(s.clone()),
        _ => Hints::Builtin(def.storage.clone()),
    }
}

fn parse_body(req: &Req) -> ApiResult<Value> {
    let text = std::str::from_utf8(&req.body).map_err(|_| ApiError::bad_request("request body is not valid UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let yaml = req.content_type.as_deref().is_some_and(|c| c.contains("yaml"));
            if yaml {
                serde_saphyr::from_str::<Value>(text)
                    .map_err(|e| ApiError::bad_request(&format!("error decoding YAML: {e}")))
            } else {
                Err(ApiError::bad_request(&format!(
                    "couldn't get version/kind; json parse error: {e}"
                )))
            }
        }
    }
}

/// Checks apiVersion/kind of a body against the endpoint.
fn check_type(def: &ResourceDef, body: &Value) -> ApiResult<()> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let av = body.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if kind.is_empty() {
        return Err(ApiError::bad_request(&format!("Object 'Kind' is missing in '{body}'")));
    }
    if kind != def.kind {
        return Err(ApiError::bad_request(&format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            def.api_version()
        )));
    }
    if !av.is_empty() && av != def.api_version() {
        // Other served versions of the same kind are accepted (no conversion needed here).
        let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or_default();
        if group != def.group && def.kind != "Event" {
            return Err(ApiError::bad_request(&format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                def.api_version()
            )));
        }
    }
    Ok(())
}

fn invalid(def: &ResourceDef, name: &str, causes: &[Cause]) -> ApiError {
    ApiError::invalid(&def.group, &def.kind, name, causes)
}

mod deletion;
mod read;
mod scale;
mod server_side_apply;
mod write;

use deletion::{delete, delete_collection};
use read::{get, list, watch_request};
use write::{create, patch_request, update};
