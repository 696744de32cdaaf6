//! Request routing and the REST verbs (get, list, create, update, patch, apply, delete) with
//! the real server's write pipeline: decode defaults, field manager, strategy, validation, store.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::admission::{self, Operation};
use super::builtin;
use super::discovery;
use super::errors::{ApiError, ApiResult, Cause, details, group_resource};
use super::fields::{self, Hints};
use super::patch;
use super::resources::ResourceDef;
use super::schema;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{DeleteOpts, Deleted, State, finalizers, key_of, meta_str, new_uid, now_rfc3339, set_meta};
use super::uid;

/// A parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub query: HashMap<String, String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub actor: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
    /// Who sent it (set by authentication before routing).
    pub user: crate::auth::UserInfo,
}

impl Req {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }
}

/// Parameters of a watch, handed to the streaming task.
#[derive(Debug, Clone)]
pub struct WatchReq {
    pub def: ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout_seconds: Option<u64>,
}

pub enum Reply {
    Json(u16, Value, Vec<(String, String)>),
    Text(u16, String),
    Watch(Box<WatchReq>),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        match e.body {
            super::errors::ErrorBody::Status(v) => Reply::Json(e.code, v, Vec::new()),
            super::errors::ErrorBody::Text(t) => Reply::Text(e.code, t),
        }
    }
}

fn ok(code: u16, v: Value) -> ApiResult<Reply> {
    Ok(Reply::Json(code, v, Vec::new()))
}

/// What a request addresses.
pub struct Target {
    pub def: ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
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
                list(state, &t, req)
            }
        }
        (None, "POST") => create(state, &t, req),
        (None, "DELETE") => delete_collection(state, &t, req),
        (Some(_), "GET") => get(state, &t),
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

fn manager_name(req: &Req) -> String {
    if let Some(m) = req.q("fieldManager") {
        return m.to_string();
    }
    let ua = req.user_agent.as_deref().unwrap_or_default();
    let prefix: String = ua
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    if prefix.is_empty() {
        "unknown".to_string()
    } else {
        prefix
    }
}

fn invalid(def: &ResourceDef, name: &str, causes: &[Cause]) -> ApiError {
    ApiError::invalid(&def.group, &def.kind, name, causes)
}

fn get(state: &State, t: &Target) -> ApiResult<Reply> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    match state.get(&t.def.storage, &ns, &name) {
        Some(o) => ok(200, builtin::to_version(&t.def, o)),
        None => Err(ApiError::not_found(&t.def.group, &t.def.plural, &name)),
    }
}

fn selectors(t: &Target, req: &Req) -> ApiResult<(LabelSelector, FieldSelector)> {
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

fn list(state: &State, t: &Target, req: &Req) -> ApiResult<Reply> {
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

fn watch_request(state: &State, t: &Target, req: &Req) -> ApiResult<Reply> {
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

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generate_suffix() -> String {
    (0..5)
        .map(|_| {
            let i = rand::random::<u32>() as usize % GENERATE_CHARS.len();
            GENERATE_CHARS[i] as char
        })
        .collect()
}

/// Per-write parameters.
struct WriteCtx {
    manager: String,
    api_version: String,
    subresource: String,
    dry_run: bool,
    now: String,
    user: crate::auth::UserInfo,
}

fn write_ctx(t: &Target, req: &Req) -> ApiResult<WriteCtx> {
    let manager = manager_name(req);
    if manager.len() > 128 {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[Cause::invalid(
                "fieldManager",
                &json!(manager),
                "must be no more than 128 characters",
            )],
        ));
    }
    Ok(WriteCtx {
        manager,
        api_version: t.def.api_version(),
        subresource: t.subresource.clone().unwrap_or_default(),
        dry_run: req.q("dryRun") == Some("All"),
        now: now_rfc3339(),
        user: req.user.clone(),
    })
}

/// Defaults applied while decoding a request (these end up owned by the writer in managedFields).
fn decode_defaults(def: &ResourceDef, obj: &mut Value, warnings: &mut Vec<String>) {
    // ObjectMeta is typed: empty lists and maps are omitted (omitempty).
    if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
        meta.retain(|k, v| {
            let empty =
                v.is_null() || v.as_array().is_some_and(Vec::is_empty) || v.as_object().is_some_and(Map::is_empty);
            !(empty
                && matches!(
                    k.as_str(),
                    "labels" | "annotations" | "finalizers" | "ownerReferences" | "managedFields"
                ))
        });
    }
    if def.custom {
        if let Some(s) = &def.schema {
            schema::prune(s, obj, "", true, warnings);
            schema::apply_defaults(s, obj);
        }
    } else if def.kind == "Namespace" {
        builtin::label_namespace_name(obj);
    } else if admission::is_policy_kind(&def.kind) {
        admission::normalize(def, obj);
    } else if matches!(
        def.kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet" | "CustomResourceDefinition"
    ) {
        builtin::normalize(def, obj);
        if def.kind == "CustomResourceDefinition"
            && let Value::Object(m) = obj
        {
            // Status defaults belong to the strategy, not to decoding.
            if m.get("status")
                .is_some_and(|s| s.get("acceptedNames").is_some() && s.get("conditions").is_some_and(Value::is_null))
            {
                m.remove("status");
            }
        }
    }
}

fn without_meta_status(v: &Value, drop_status: bool) -> Value {
    let mut c = v.clone();
    if let Value::Object(m) = &mut c {
        m.remove("metadata");
        if drop_status {
            m.remove("status");
        }
    }
    c
}

/// The shared tail of every write: strategy, validation, generation, store.
fn commit(
    state: &mut State,
    t: &Target,
    ctx: &WriteCtx,
    old: Option<&Value>,
    mut new: Value,
    warnings: Vec<String>,
) -> ApiResult<Reply> {
    let def = &t.def;
    let name = meta_str(&new, "name").to_string();
    // Strategy normalisation (not tracked in managedFields).
    builtin::normalize(def, &mut new);
    // Validation.
    let mut causes = Vec::new();
    if old.is_none() {
        builtin::validate_name(def, &new, &mut causes);
    } else {
        let mut c = Vec::new();
        builtin::validate_name(def, &new, &mut c);
        causes.extend(c.into_iter().filter(|c| c.field != "metadata.name"));
    }
    if let Some(old) = old
        && old.pointer("/metadata/deletionTimestamp").is_some()
    {
        let old_f = finalizers(old);
        let added: Vec<String> = finalizers(&new).into_iter().filter(|f| !old_f.contains(f)).collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            let msg = format!(
                "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                list.join(", ")
            );
            causes.push(Cause::forbidden("metadata.finalizers", &msg));
            causes.push(Cause::forbidden("metadata.finalizers", &msg));
        }
    }
    if def.custom
        && let Some(s) = &def.schema
    {
        let old_ext = old.map(|o| builtin::to_version(def, o));
        causes.extend(schema::validate_custom(
            s,
            &new,
            old_ext.as_ref(),
            &def.group,
            &def.version,
            &def.kind,
        ));
    }
    builtin::validate(def, &new, old, &mut causes);
    if !causes.is_empty() {
        return Err(invalid(def, &name, &causes));
    }
    let ns = meta_str(&new, "namespace").to_string();
    admission::admit(
        state,
        &admission::Attributes {
            operation: if old.is_some() {
                Operation::Update
            } else {
                Operation::Create
            },
            def,
            subresource: &ctx.subresource,
            namespace: &ns,
            name: &name,
            object: Some(&new),
            old_object: old,
            namespace_object: state.namespace(&ns),
            user: &ctx.user,
            dry_run: ctx.dry_run,
        },
    )?;
    // Generation.
    if def.has_generation {
        match old {
            None => set_meta(&mut new, "generation", json!(1)),
            Some(o) => {
                let g = o.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
                let drop_status = def.status_subresource || !def.custom;
                let mut bump = without_meta_status(o, drop_status) != without_meta_status(&new, drop_status);
                if def.kind == "Deployment"
                    && o.pointer("/metadata/annotations") != new.pointer("/metadata/annotations")
                {
                    bump = true;
                }
                set_meta(&mut new, "generation", json!(if bump { g + 1 } else { g }));
            }
        }
    }
    let headers: Vec<(String, String)> = warnings
        .iter()
        .map(|w| ("Warning".to_string(), format!("299 - \"unknown field \\\"{w}\\\"\"")))
        .collect();
    // No-op writes do not touch storage (same resourceVersion, no watch event).
    if let Some(o) = old
        && *o == new
    {
        return Ok(Reply::Json(200, builtin::to_version(def, o), headers));
    }
    if ctx.dry_run {
        return Ok(Reply::Json(
            if old.is_some() { 200 } else { 201 },
            builtin::to_version(def, &new),
            headers,
        ));
    }
    let (ns, _) = key_of(&new);
    // The last finalizer removed from a terminating object deletes it.
    let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
    let ns_pending = def.kind == "Namespace"
        && new
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if old.is_some() && terminating && finalizers(&new).is_empty() && !ns_pending {
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.remove("finalizers");
        }
        state.put(&def.storage, new.clone());
        state.remove(&def.storage, &ns, &name);
        return Ok(Reply::Json(200, builtin::to_version(def, &new), headers));
    }
    let stored = state.put(&def.storage, new);
    if def.kind == "CustomResourceDefinition" {
        if old.is_none() {
            establish_crd(state, &stored, &ctx.now);
        } else {
            // A changed schema applies to the next write, as the apiserver rebuilds the
            // resource's handler from the updated CRD.
            state.register_crd(&stored);
        }
    }
    Ok(Reply::Json(
        if old.is_some() { 200 } else { 201 },
        builtin::to_version(def, &stored),
        headers,
    ))
}

/// What the apiextensions controllers do right after a CRD is created: accept names, mark it
/// Established, and start serving the resource.
fn establish_crd(state: &mut State, crd: &Value, now: &str) {
    let mut o = crd.clone();
    let names = o.pointer("/spec/names").cloned().unwrap_or_else(|| json!({}));
    let before = o.clone();
    if let Value::Object(m) = &mut o {
        let status = m.entry("status").or_insert_with(|| json!({}));
        if let Value::Object(s) = status {
            s.insert("acceptedNames".into(), names);
            s.insert(
                "conditions".into(),
                json!([
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
                ]),
            );
        }
    }
    let def = ResourceDef::builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
    );
    let mut entries = fields::decode_entries(&before);
    fields::record_update(
        &Hints::Builtin(def.storage.clone()),
        &before,
        &o,
        &mut entries,
        "kube-apiserver",
        "apiextensions.k8s.io/v1",
        "status",
        true,
        now,
    );
    set_meta(&mut o, "managedFields", fields::encode_entries(entries));
    let stored = state.put(&def.storage, o);
    state.register_crd(&stored);
}

fn create(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let def = &t.def;
    if def.namespaced && t.namespace.is_none() {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let mut body = parse_body(req)?;
    check_type(def, &body)?;
    let ctx = write_ctx(t, req)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let body_ns = meta_str(&body, "namespace").to_string();
    if def.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let mut name = meta_str(&body, "name").to_string();
    let generate = meta_str(&body, "generateName").to_string();
    if name.is_empty() && !generate.is_empty() {
        name = format!("{generate}{}", generate_suffix());
        set_meta(&mut body, "name", json!(name));
        if def.group == "events.k8s.io" && !builtin::is_dns_subdomain(&generate) {
            let c = Cause::invalid(
                "metadata.generateName",
                &json!(generate),
                builtin::DNS1123_SUBDOMAIN_MSG,
            );
            return Err(ApiError::invalid("", &def.kind, &name, &[c]));
        }
    }
    if name.is_empty() {
        return Err(invalid(
            def,
            "",
            &[Cause::required("metadata.name", "name or generateName is required")],
        ));
    }
    if def.namespaced {
        match state.namespace(&ns) {
            None => return Err(ApiError::not_found("", "namespaces", &ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => {
                return Err(ApiError::status(
                    403,
                    "Forbidden",
                    &format!(
                        "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        group_resource(&def.group, &def.plural)
                    ),
                    Some(details(
                        &name,
                        &def.group,
                        &def.plural,
                        &[Cause::new(
                            "NamespaceTerminating",
                            "metadata.namespace",
                            format!("namespace {ns} is being terminated"),
                        )],
                    )),
                ));
            }
            Some(_) => {}
        }
        set_meta(&mut body, "namespace", json!(ns));
    }
    if state.get(&def.storage, &ns, &name).is_some() {
        return Err(ApiError::already_exists(&def.group, &def.plural, &name));
    }
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
    ] {
        set_meta(&mut body, f, Value::Null);
    }
    if def.custom
        && def.status_subresource
        && let Value::Object(m) = &mut body
    {
        m.remove("status");
    }
    if matches!(
        def.kind.as_str(),
        "Deployment" | "StatefulSet" | "DaemonSet" | "ValidatingAdmissionPolicy"
    ) && let Value::Object(m) = &mut body
    {
        m.insert("status".into(), json!({}));
    }
    let mut warnings = Vec::new();
    decode_defaults(def, &mut body, &mut warnings);
    let mut entries = Vec::new();
    let zero = builtin::zero_object(def);
    fields::record_update(
        &hints_for(def),
        &zero,
        &body,
        &mut entries,
        &ctx.manager,
        &ctx.api_version,
        "",
        def.status_subresource,
        &ctx.now,
    );
    set_meta(&mut body, "managedFields", fields::encode_or_null(entries));
    set_meta(&mut body, "uid", json!(new_uid()));
    set_meta(&mut body, "creationTimestamp", json!(ctx.now));
    commit(state, t, &ctx, None, body, warnings)
}

/// Applies the status-subresource split and carries server-owned metadata over from `old`.
fn carry_over(def: &ResourceDef, sub: &str, old: &Value, mut new: Value) -> Value {
    if def.status_subresource {
        if sub == "status" {
            let status = new.get("status").cloned();
            let mut o = old.clone();
            if let Value::Object(m) = &mut o {
                match status {
                    Some(s) => m.insert("status".into(), s),
                    None => m.remove("status"),
                };
            }
            new = o;
        } else if let Value::Object(m) = &mut new {
            match old.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
    }
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
        "managedFields",
    ] {
        set_meta(
            &mut new,
            f,
            old.pointer(&format!("/metadata/{f}")).cloned().unwrap_or(Value::Null),
        );
    }
    if let Value::Object(m) = &mut new {
        m.insert(
            "apiVersion".into(),
            old.get("apiVersion").cloned().unwrap_or(Value::Null),
        );
        m.insert("kind".into(), old.get("kind").cloned().unwrap_or(Value::Null));
    }
    new
}

/// Update-style write (PUT, merge/json/strategic patch) of `candidate` over `old`.
fn write_update(state: &mut State, t: &Target, req: &Req, old: &Value, mut candidate: Value) -> ApiResult<Reply> {
    let def = &t.def;
    let ctx = write_ctx(t, req)?;
    let name = meta_str(old, "name").to_string();
    let cand_rv = meta_str(&candidate, "resourceVersion").to_string();
    if !cand_rv.is_empty() && cand_rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::stale_rv(&def.group, &def.plural, &name));
    }
    uid::check_patched(def, uid::requested(&candidate), old)?;
    let mut warnings = Vec::new();
    decode_defaults(def, &mut candidate, &mut warnings);
    let old_ext = builtin::to_version(def, old);
    let mut new = carry_over(def, &ctx.subresource, &old_ext, candidate);
    set_meta(&mut new, "resourceVersion", json!(meta_str(old, "resourceVersion")));
    let mut entries = fields::decode_entries(old);
    let mut cmp_old = old_ext.clone();
    set_meta(&mut cmp_old, "managedFields", Value::Null);
    let mut cmp_new = new.clone();
    set_meta(&mut cmp_new, "managedFields", Value::Null);
    fields::record_update(
        &hints_for(def),
        &cmp_old,
        &cmp_new,
        &mut entries,
        &ctx.manager,
        &ctx.api_version,
        &ctx.subresource,
        def.status_subresource,
        &ctx.now,
    );
    set_meta(&mut new, "managedFields", fields::encode_or_null(entries));
    commit(state, t, &ctx, Some(&old_ext), new, warnings)
}

fn current(state: &State, t: &Target) -> ApiResult<Value> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    state
        .get(&t.def.storage, &ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.def.group, &t.def.plural, &name))
}

fn update(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let body = parse_body(req)?;
    check_type(&t.def, &body)?;
    let name = t.name.clone().unwrap_or_default();
    let body_name = meta_str(&body, "name");
    if body_name != name {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let Some(ns) = &t.namespace {
        let bns = meta_str(&body, "namespace");
        if !bns.is_empty() && bns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let old = current(state, t)?;
    uid::check_update(&t.def, uid::requested(&body), &old)?;
    write_update(state, t, req, &old, body)
}

fn patch_request(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let def = &t.def;
    let ct = req.content_type.clone().unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim().to_string();
    let mut accepted = vec!["application/json-patch+json", "application/merge-patch+json"];
    if !def.custom {
        accepted.push("application/strategic-merge-patch+json");
    }
    accepted.push("application/apply-patch+yaml");
    if !accepted.contains(&ct.as_str()) {
        return Err(ApiError::unsupported_media(&accepted));
    }
    if ct != "application/apply-patch+yaml" && req.q("force").is_some() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[Cause::forbidden("force", "may not be specified for non-apply patch")],
        ));
    }
    if ct == "application/apply-patch+yaml" {
        return apply(state, t, req);
    }
    let body = parse_body(req)?;
    let old = current(state, t)?;
    let mut doc = builtin::to_version(def, &old);
    match ct.as_str() {
        "application/merge-patch+json" => {
            if !body.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut doc, &body);
        }
        "application/strategic-merge-patch+json" => {
            if !body.is_object() {
                return Err(ApiError::bad_request("strategic merge patch must be a JSON object"));
            }
            patch::strategic_merge_patch(&mut doc, &body, &hints_for(def), &mut Vec::new());
        }
        _ => {
            if patch::json_patch(&mut doc, &body).is_err() {
                // The real server drops the patch library's text (a generic 422, empty details).
                return Err(ApiError::status(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    Some(json!({})),
                ));
            }
        }
    }
    if !doc.is_object() {
        return Err(ApiError::bad_request("the patched object is not a JSON object"));
    }
    write_update(state, t, req, &old, doc)
}

fn apply(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let def = &t.def;
    let name = t.name.clone().unwrap_or_default();
    if req.q("fieldManager").is_none() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            &[Cause::required("fieldManager", "is required for apply patch")],
        ));
    }
    let ctx = write_ctx(t, req)?;
    let mut config = parse_body(req)?;
    if !config.is_object() {
        return Err(ApiError::bad_request("apply patch must be an object"));
    }
    check_type(def, &config)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let existing = state.get(&def.storage, &ns, &name).cloned();
    // The API server checks the name of the merged object: an apply without metadata.name keeps
    // the live object's name, but cannot create one (kube-lease-manager renews leases that way).
    let cfg_name = meta_str(&config, "name").to_string();
    if cfg_name != name && !(cfg_name.is_empty() && existing.is_some()) {
        return Err(ApiError::bad_request(&format!(
            "the name of the object ({cfg_name}) does not match the name on the URL ({name})"
        )));
    }
    let cfg_rv = meta_str(&config, "resourceVersion").to_string();
    if !cfg_rv.is_empty() {
        match &existing {
            Some(o) if meta_str(o, "resourceVersion") == cfg_rv => {}
            _ => return Err(ApiError::stale_rv(&def.group, &def.plural, &name)),
        }
    }
    // The uid is a precondition, never applied (and never in managedFields).
    let wanted_uid = uid::requested(&config).map(str::to_string);
    for f in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
        "generation",
        "deletionTimestamp",
    ] {
        set_meta(&mut config, f, Value::Null);
    }
    if def.namespaced {
        set_meta(&mut config, "namespace", json!(ns));
    }
    if def.status_subresource
        && let Value::Object(m) = &mut config
    {
        if ctx.subresource == "status" {
            m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
        } else {
            m.remove("status");
        }
    }
    let hints = hints_for(def);
    match existing {
        None => {
            if ctx.subresource == "status" {
                return Err(ApiError::not_found(&def.group, &def.plural, &name));
            }
            uid::check_apply_create(def, wanted_uid.as_deref(), &name)?;
            // Create through apply: the request body becomes a create with Apply ownership.
            if def.namespaced && state.namespace(&ns).is_none() {
                return Err(ApiError::not_found("", "namespaces", &ns));
            }
            let zero = json!({"apiVersion": def.api_version(), "kind": def.kind, "metadata": {}});
            let applied = fields::apply(
                &hints,
                &zero,
                &config,
                Vec::new(),
                &ctx.manager,
                &ctx.api_version,
                "",
                def.status_subresource,
                true,
                &ctx.now,
            );
            let mut obj = applied.object;
            let mut warnings = Vec::new();
            decode_defaults(def, &mut obj, &mut warnings);
            set_meta(&mut obj, "managedFields", fields::encode_or_null(applied.entries));
            set_meta(&mut obj, "uid", json!(new_uid()));
            set_meta(&mut obj, "creationTimestamp", json!(ctx.now));
            set_meta(&mut obj, "name", json!(name));
            commit(state, t, &ctx, None, obj, warnings)
        }
        Some(old) => {
            let old_ext = builtin::to_version(def, &old);
            let mut live = old_ext.clone();
            set_meta(&mut live, "managedFields", Value::Null);
            let entries = fields::decode_entries(&old_ext);
            let force = req.flag("force");
            let applied = fields::apply(
                &hints,
                &live,
                &config,
                entries,
                &ctx.manager,
                &ctx.api_version,
                &ctx.subresource,
                def.status_subresource,
                force,
                &ctx.now,
            );
            if !applied.conflicts.is_empty() {
                let causes: Vec<Cause> = applied
                    .conflicts
                    .iter()
                    .map(|(m, p)| Cause::new("FieldManagerConflict", p, format!("conflict with {m}")))
                    .collect();
                let msg = if applied.conflicts.len() == 1 {
                    format!(
                        "Apply failed with 1 conflict: conflict with {}: {}",
                        applied.conflicts[0].0, applied.conflicts[0].1
                    )
                } else {
                    let mut by: Vec<(String, Vec<String>)> = Vec::new();
                    for (m, p) in &applied.conflicts {
                        match by.iter_mut().find(|(x, _)| x == m) {
                            Some((_, ps)) => ps.push(p.clone()),
                            None => by.push((m.clone(), vec![p.clone()])),
                        }
                    }
                    by.sort();
                    let mut lines = Vec::new();
                    for (m, ps) in by {
                        lines.push(format!("conflicts with {m}:"));
                        lines.extend(ps.into_iter().map(|p| format!("- {p}")));
                    }
                    format!(
                        "Apply failed with {} conflicts: {}",
                        applied.conflicts.len(),
                        lines.join("\n")
                    )
                };
                let d = details("", "", "", &causes);
                return Err(ApiError::status(409, "Conflict", &msg, Some(d)));
            }
            uid::check_patched(def, wanted_uid.as_deref(), &old_ext)?;
            let mut new = applied.object;
            let mut warnings = Vec::new();
            decode_defaults(def, &mut new, &mut warnings);
            let mut new = carry_over(def, &ctx.subresource, &old_ext, new);
            set_meta(&mut new, "resourceVersion", json!(meta_str(&old, "resourceVersion")));
            set_meta(&mut new, "managedFields", fields::encode_or_null(applied.entries));
            commit(state, t, &ctx, Some(&old_ext), new, warnings)
        }
    }
}

fn delete_opts(req: &Req) -> ApiResult<DeleteOpts> {
    let mut opts = DeleteOpts {
        propagation: req.q("propagationPolicy").map(str::to_string),
        ..Default::default()
    };
    if let Some(true) = req.q("orphanDependents").map(|v| v == "true") {
        opts.propagation = Some("Orphan".into());
    }
    if !req.body.is_empty() && !req.body.iter().all(u8::is_ascii_whitespace) {
        let body: Value = serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(&format!("couldn't decode DeleteOptions: {e}")))?;
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
            opts.propagation = Some("Orphan".into());
        }
        opts.precondition_uid = body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string);
        opts.precondition_rv = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
    {
        return Err(ApiError::invalid(
            "",
            "DeleteOptions",
            "",
            &[Cause::new(
                "FieldValueNotSupported",
                "propagationPolicy",
                format!(
                    "Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                ),
            )],
        ));
    }
    Ok(opts)
}

fn delete(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let def = &t.def;
    let opts = delete_opts(req)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let o = current(state, t)?;
    uid::check_delete(
        def,
        &o,
        opts.precondition_uid.as_deref(),
        opts.precondition_rv.as_deref(),
    )?;
    let dry_run = req.q("dryRun") == Some("All");
    admit_delete(state, def, &o, &req.user, dry_run)?;
    if dry_run {
        return ok(200, builtin::to_version(def, &o));
    }
    match state.delete_object(def, &ns, &name, &opts)? {
        Deleted::Pending(o) => ok(200, builtin::to_version(def, &o)),
        Deleted::Removed(o) => {
            // Only some registries set ReturnDeletedObject; the rest answer with a Success Status.
            if !matches!(def.kind.as_str(), "ServiceAccount" | "Pod") {
                let mut d = details(&name, &def.group, &def.plural, &[]);
                if let Value::Object(m) = &mut d {
                    m.insert("uid".into(), json!(meta_str(&o, "uid")));
                }
                ok(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d}),
                )
            } else {
                ok(200, builtin::to_version(def, &o))
            }
        }
    }
}

/// Validating admission of a DELETE: no `object`, the stored one as `oldObject`.
fn admit_delete(
    state: &State,
    def: &ResourceDef,
    stored: &Value,
    user: &crate::auth::UserInfo,
    dry_run: bool,
) -> ApiResult<()> {
    let ns = meta_str(stored, "namespace");
    let old = builtin::to_version(def, stored);
    admission::admit(
        state,
        &admission::Attributes {
            operation: Operation::Delete,
            def,
            subresource: "",
            namespace: ns,
            name: meta_str(stored, "name"),
            object: None,
            old_object: Some(&old),
            namespace_object: state.namespace(ns),
            user,
            dry_run,
        },
    )
}

fn delete_collection(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let def = &t.def;
    let (labels, fields) = selectors(t, req)?;
    let opts = delete_opts(req)?;
    let keys: Vec<(String, String)> = state
        .objects
        .get(&def.storage)
        .map(|m| {
            m.iter()
                .filter(|((ns, _), o)| {
                    t.namespace.as_ref().is_none_or(|w| w == ns) && labels.matches(o) && fields.matches(o)
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut items = Vec::new();
    for (ns, name) in keys {
        if let Some(o) = state.get(&def.storage, &ns, &name).cloned() {
            admit_delete(state, def, &o, &req.user, false)?;
        }
        match state.delete_object(def, &ns, &name, &opts)? {
            Deleted::Pending(o) | Deleted::Removed(o) => items.push(builtin::to_version(def, &o)),
        }
    }
    ok(
        200,
        json!({"apiVersion": def.api_version(), "kind": def.list_kind, "metadata": {"resourceVersion": state.rv.to_string()}, "items": items}),
    )
}
