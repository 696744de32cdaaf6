//! Server-side apply: field ownership, conflicts, and apply-creates.

use serde_json::{Value, json};

use super::write::{carry_over, commit, decode_defaults, write_ctx};
use super::{check_type, hints_for, parse_body};
use crate::builtin;
use crate::errors::{ApiError, ApiResult, Cause, details};
use crate::fields::{self};
use crate::meta::{meta_str, new_uid, set_meta};
use crate::request::{Reply, Req, Target};
use crate::store::State;
use crate::uid;

pub(super) fn apply(state: &mut State, t: &Target, req: &Req) -> ApiResult<Reply> {
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
            // Create through apply: the request body becomes a create with Apply ownership,
            // which the user must also be allowed to `create` (not only `patch`).
            crate::authz::authorize_create_on_apply(state, req)?;
            uid::check_apply_create(def, wanted_uid.as_deref(), &name)?;
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
