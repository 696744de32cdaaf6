//! DELETE of one object or a collection: options, preconditions, finalizers, admission.

use serde_json::{Value, json};

use super::ok;
use super::read::selectors;
use super::write::current;
use crate::admission::{self, Operation};
use crate::builtin;
use crate::errors::{ApiError, ApiResult, Cause, details};
use crate::meta::meta_str;
use crate::request::{Reply, Req, Target};
use crate::resources::ResourceDef;
use crate::store::{DeleteOpts, Deleted, State};
use crate::uid;

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

pub(super) fn delete(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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
            kind: None,
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

pub(super) fn delete_collection(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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
