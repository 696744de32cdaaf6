//! The `scale` subresource of Deployments and StatefulSets, PATCH only (merge or JSON patch):
//! enough for validating admission to see what the real server shows a policy on a scale write
//! (admission-request-shape.json): `request.subResource` and `requestSubResource` `"scale"`,
//! `request.kind` `autoscaling/v1 Scale`, `request.resource` the workload's, and Scale objects
//! as `object` / `oldObject`. An admitted write sets the workload's `spec.replicas`.

use serde_json::{Value, json};

use super::parse_body;
use super::write::{WriteCtx, current, write_ctx, write_update_with};
use crate::admission::{self, Operation};
use crate::builtin;
use crate::errors::{ApiError, ApiResult};
use crate::meta::meta_str;
use crate::patch;
use crate::request::{Reply, Req, Target};
use crate::resources::ResourceDef;

/// Whether `def` has a `scale` subresource here.
pub(super) fn has_scale(def: &ResourceDef) -> bool {
    def.group == "apps" && matches!(def.kind.as_str(), "Deployment" | "StatefulSet")
}

/// The Scale of a stored workload.
fn scale_of(workload: &Value) -> Value {
    let meta = &workload["metadata"];
    json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": workload.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": workload.pointer("/status/replicas").cloned().unwrap_or(json!(0))},
    })
}

/// PATCH `.../<workloads>/<name>/scale`.
pub(super) fn patch_scale(state: &mut crate::store::State, t: &Target, req: &Req) -> ApiResult<Reply> {
    let ct = req.content_type.clone().unwrap_or_default();
    let ct = ct.split(';').next().unwrap_or_default().trim().to_string();
    let body = parse_body(req)?;
    let old = current(state, t)?;
    let old_scale = scale_of(&builtin::to_version(&t.def, &old));
    let mut new_scale = old_scale.clone();
    match ct.as_str() {
        "application/merge-patch+json" if body.is_object() => patch::merge_patch(&mut new_scale, &body),
        "application/json-patch+json" => {
            if patch::json_patch(&mut new_scale, &body).is_err() {
                return Err(ApiError::bad_request("the JSON patch does not apply to the Scale"));
            }
        }
        _ => {
            return Err(ApiError::unsupported_media(&[
                "application/json-patch+json",
                "application/merge-patch+json",
            ]));
        }
    }
    let mut ctx: WriteCtx = write_ctx(t, req)?;
    let ns = t.namespace.clone().unwrap_or_default();
    let name = meta_str(&old, "name").to_string();
    admission::admit(
        state,
        &admission::Attributes {
            operation: Operation::Update,
            def: &t.def,
            kind: Some(("autoscaling", "v1", "Scale")),
            subresource: "scale",
            namespace: &ns,
            name: &name,
            object: Some(&new_scale),
            old_object: Some(&old_scale),
            namespace_object: state.namespace(&ns),
            user: &ctx.user,
            dry_run: ctx.dry_run,
        },
    )?;
    ctx.admitted = true;
    let mut workload = builtin::to_version(&t.def, &old);
    workload["spec"]["replicas"] = new_scale["spec"]["replicas"].clone();
    match write_update_with(state, t, &ctx, &old, workload)? {
        Reply::Json(code, stored, warnings) => Ok(Reply::Json(code, scale_of(&stored), warnings)),
        other => Ok(other),
    }
}
