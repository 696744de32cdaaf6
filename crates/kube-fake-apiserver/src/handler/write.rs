//! Create, update and patch, and the write pipeline every write shares: decode defaults,
//! field manager, strategy, validation, admission, store.

use serde_json::{Map, Value, json};

use super::server_side_apply::apply;
use super::{check_type, hints_for, invalid, parse_body};
use crate::admission::{self, Operation};
use crate::builtin;
use crate::errors::{ApiError, ApiResult, Cause, details, group_resource};
use crate::field_schema::Hints;
use crate::fields;
use crate::meta::{finalizers, key_of, meta_str, new_uid, now_rfc3339, set_meta};
use crate::patch;
use crate::request::{Reply, Req, Target, manager_name};
use crate::resources::ResourceDef;
use crate::schema;
use crate::store::State;
use crate::uid;

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
pub(super) struct WriteCtx {
    pub(super) manager: String,
    pub(super) api_version: String,
    pub(super) subresource: String,
    pub(super) dry_run: bool,
    pub(super) now: String,
    pub(super) user: crate::auth::UserInfo,
    /// Validating admission already ran on what the request wrote (a `scale` write admits the
    /// Scale, not the workload it changes).
    pub(super) admitted: bool,
}

pub(super) fn write_ctx(t: &Target, req: &Req) -> ApiResult<WriteCtx> {
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
        admitted: false,
    })
}

/// Defaults applied while decoding a request (these end up owned by the writer in managedFields).
pub(super) fn decode_defaults(def: &ResourceDef, obj: &mut Value, warnings: &mut Vec<String>) {
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
    if def.kind == "Namespace" && !def.custom {
        builtin::label_namespace(obj);
    }
    if def.custom {
        if let Some(s) = &def.schema {
            schema::prune(s, obj, "", true, warnings);
            schema::prune_non_nullable_nulls(s, obj);
            schema::apply_defaults(s, obj);
        }
    } else if builtin::is_policy_kind(&def.kind) {
        builtin::normalize_policy(def, obj);
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
pub(super) fn commit(
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
    if def.kind == "CustomResourceDefinition" && ctx.subresource.is_empty() {
        causes.extend(crate::cel_cost::validate_crd(&new, old));
    }
    if !causes.is_empty() {
        return Err(invalid(def, &name, &causes));
    }
    let ns = meta_str(&new, "namespace").to_string();
    if !ctx.admitted {
        admission::admit(
            state,
            &admission::Attributes {
                operation: if old.is_some() {
                    Operation::Update
                } else {
                    Operation::Create
                },
                def,
                kind: None,
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
    }
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

pub(super) fn create(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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
pub(super) fn carry_over(def: &ResourceDef, sub: &str, old: &Value, mut new: Value) -> Value {
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
fn write_update(state: &mut State, t: &Target, req: &Req, old: &Value, candidate: Value) -> ApiResult<Reply> {
    let ctx = write_ctx(t, req)?;
    write_update_with(state, t, &ctx, old, candidate)
}

/// An update of the stored `old` to `candidate`, with the write's parameters given.
pub(super) fn write_update_with(
    state: &mut State,
    t: &Target,
    ctx: &WriteCtx,
    old: &Value,
    mut candidate: Value,
) -> ApiResult<Reply> {
    let def = &t.def;
    let name = meta_str(old, "name").to_string();
    let cand_rv = meta_str(&candidate, "resourceVersion").to_string();
    if !cand_rv.is_empty() && cand_rv != meta_str(old, "resourceVersion") {
        return Err(ApiError::stale_rv(&def.group, &def.plural, &name));
    }
    uid::check_patched(def, uid::requested(&candidate), old)?;
    let mut warnings = Vec::new();
    decode_defaults(def, &mut candidate, &mut warnings);
    let old_ext = builtin::to_version(def, old);
    // A scale write is the whole workload with new replicas: nothing to carry over from `old`.
    let carried = if ctx.subresource == "scale" {
        ""
    } else {
        ctx.subresource.as_str()
    };
    let mut new = carry_over(def, carried, &old_ext, candidate);
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
    commit(state, t, ctx, Some(&old_ext), new, warnings)
}

pub(super) fn current(state: &State, t: &Target) -> ApiResult<Value> {
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    state
        .get(&t.def.storage, &ns, &name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&t.def.group, &t.def.plural, &name))
}

pub(super) fn update(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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

pub(super) fn patch_request(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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
