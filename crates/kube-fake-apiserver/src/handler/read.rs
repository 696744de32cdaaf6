//! The read verbs: get, list (selectors, pagination) and the start of a watch.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::ok;
use crate::builtin;
use crate::errors::{ApiError, ApiResult, Cause};
use crate::request::{Reply, Req, Target, WatchReq};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::State;

pub(super) fn get(state: &State, t: &Target) -> ApiResult<Reply> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    match state.get(&t.def.storage, &ns, &name) {
        Some(o) => ok(200, builtin::to_version(&t.def, o)),
        None => Err(ApiError::not_found(&t.def.group, &t.def.plural, &name)),
    }
}

pub(super) fn selectors(t: &Target, req: &Req) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels =
        LabelSelector::parse(req.q("labelSelector").unwrap_or_default()).map_err(|e| ApiError::bad_request(&e))?;
    let fields = FieldSelector::parse(req.q("fieldSelector").unwrap_or_default(), &t.def.kind)
        .map_err(|e| ApiError::bad_request(&e))?;
    Ok((labels, fields))
}

fn continue_key(t: &Target, ns: &str, name: &str) -> String {
    if t.namespace.is_some() || !t.def.namespaced {
        format!("/{name}")
    } else {
        format!("/{ns}/{name}")
    }
}

pub(super) fn list(state: &State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let (labels, fields) = selectors(t, req)?;
    let def = &t.def;
    let mut list_rv = state.rv;
    let mut start: Option<String> = None;
    if let Some(c) = req.q("continue") {
        let bad = || {
            ApiError::bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c.trim_end_matches('='))
            .map_err(|_| bad())?;
        let tok: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        let s = tok.get("start").and_then(Value::as_str).ok_or_else(bad)?;
        start = Some(s.trim_end_matches('\u{0}').to_string());
        list_rv = tok.get("rv").and_then(Value::as_u64).unwrap_or(state.rv);
        if list_rv < state.oldest_rv(&def.storage) {
            return Err(ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ));
        }
    }
    let exact = req.q("resourceVersionMatch") == Some("Exact");
    let requested_rv = req
        .q("resourceVersion")
        .map(|s| s.parse::<u64>())
        .transpose()
        .map_err(|_| {
            ApiError::invalid(
                "meta.k8s.io",
                "ListOptions",
                "",
                &[Cause::invalid(
                    "resourceVersion",
                    &json!(req.q("resourceVersion")),
                    "must be a valid resource version",
                )],
            )
        })?;
    let objects = match (exact, requested_rv) {
        (true, Some(rv)) => {
            list_rv = rv;
            state
                .snapshot_at(&def.storage, rv)
                .ok_or_else(|| ApiError::expired("The resourceVersion for the provided list is too old."))?
        }
        _ => state.objects.get(&def.storage).cloned().unwrap_or_default(),
    };
    let mut items: Vec<(String, Value)> = Vec::new();
    for ((ns, name), obj) in &objects {
        if let Some(want) = &t.namespace
            && want != ns
        {
            continue;
        }
        if !labels.matches(obj) || !fields.matches(obj) {
            continue;
        }
        let key = continue_key(t, ns, name);
        if let Some(s) = &start
            && key.as_str() <= s.as_str()
        {
            continue;
        }
        items.push((key, builtin::to_version(def, obj)));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = req.q("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(list_rv.to_string()));
    let mut cont = String::new();
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some((last, _)) = items.last() {
            let tok = json!({"v": "meta.k8s.io/v1", "rv": list_rv, "start": format!("{last}\u{0}")});
            cont = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tok.to_string());
        }
        meta.insert("remainingItemCount".into(), json!(remaining));
    }
    meta.insert("continue".into(), json!(cont));
    ok(
        200,
        json!({
            "apiVersion": def.api_version(),
            "kind": def.list_kind,
            "metadata": Value::Object(meta),
            "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        }),
    )
}

pub(super) fn watch_request(state: &State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let (labels, fields) = selectors(t, req)?;
    let rv = match req.q("resourceVersion") {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .map_err(|_| ApiError::bad_request(&format!("invalid resource version {s:?}")))?,
        ),
    };
    let _ = state;
    Ok(Reply::Watch(Box::new(WatchReq {
        def: t.def.clone(),
        namespace: t.namespace.clone(),
        name: None,
        labels,
        fields,
        resource_version: rv.filter(|r| *r != 0),
        bookmarks: req.flag("allowWatchBookmarks"),
        send_initial_events: req.flag("sendInitialEvents"),
        timeout_seconds: req.q("timeoutSeconds").and_then(|s| s.parse().ok()),
    })))
}
