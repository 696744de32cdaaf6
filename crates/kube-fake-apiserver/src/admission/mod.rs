//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding
//! (admissionregistration.k8s.io/v1): stored like any built-in resource, and evaluated on every
//! write they match, after the object's own validation (as the real registry calls its
//! validating admission after `BeforeCreate` / `BeforeUpdate` / `BeforeDelete`). Pinned by
//! `validating-admission-policy.json`; what is left out is listed in this crate's README.

mod expr;
mod matching;

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::errors::{ApiError, ApiResult, details, group_resource};
use crate::meta::meta_str;
use crate::resources::{BINDINGS, POLICIES, ResourceDef};
use crate::store::State;

/// The admission operation of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// POST, or a server-side apply that creates.
    Create,
    /// PUT and every PATCH of an existing object.
    Update,
    /// DELETE (`object` is null, `oldObject` the stored object).
    Delete,
}

impl Operation {
    /// The name CEL sees in `request.operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
        }
    }
}

/// What validating admission knows about a write.
pub struct Attributes<'a> {
    /// CREATE, UPDATE or DELETE.
    pub operation: Operation,
    /// The resource written.
    pub def: &'a ResourceDef,
    /// `(group, version, kind)` of what a subresource writes when it is not the resource's own
    /// kind (`autoscaling/v1 Scale` for `scale`); None: `def`'s kind.
    pub kind: Option<(&'a str, &'a str, &'a str)>,
    /// `status` or `scale` for those subresources, else empty.
    pub subresource: &'a str,
    /// Empty for cluster-scoped resources.
    pub namespace: &'a str,
    /// The object's name.
    pub name: &'a str,
    /// The object after the write (None on DELETE).
    pub object: Option<&'a Value>,
    /// The object before the write (None on CREATE).
    pub old_object: Option<&'a Value>,
    /// The namespace object of a namespaced write.
    pub namespace_object: Option<&'a Value>,
    /// The authenticated user.
    pub user: &'a UserInfo,
    /// `?dryRun=All`.
    pub dry_run: bool,
}

/// `request` as CEL sees it: the AdmissionRequest converted to a map, so every `omitempty`
/// field that is empty is absent, not `""` (admission-request-shape.json): `subResource` and
/// `requestSubResource` without a subresource, `namespace` of a cluster-scoped object, the
/// user's `uid` and `groups` when empty. `dryRun` and `options` are always there; the group of
/// `kind` and `resource` is present as `""` for the core group.
fn request_json(a: &Attributes) -> Value {
    let kind = match a.kind {
        Some((group, version, kind)) => json!({"group": group, "version": version, "kind": kind}),
        None => json!({"group": a.def.group, "version": a.def.version, "kind": a.def.kind}),
    };
    let resource = json!({"group": a.def.group, "version": a.def.version, "resource": a.def.plural});
    let options_kind = match a.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
    if a.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    let mut user = json!({"username": a.user.username});
    if !a.user.uid.is_empty() {
        user["uid"] = json!(a.user.uid);
    }
    if !a.user.groups.is_empty() {
        user["groups"] = json!(a.user.groups);
    }
    let mut request = json!({
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": a.operation.as_str(),
        "userInfo": user,
        "dryRun": a.dry_run,
        "options": options,
    });
    let optional = [
        ("subResource", a.subresource),
        ("requestSubResource", a.subresource),
        ("name", a.name),
        ("namespace", a.namespace),
    ];
    for (key, value) in optional {
        if !value.is_empty() {
            request[key] = json!(value);
        }
    }
    request
}

/// One policy's verdict on a request that it covers.
struct Denial {
    message: String,
    reason: String,
}

/// Runs matchConditions, variables and validations of `policy`. None: allowed or not applicable.
fn evaluate(policy: &Value, a: &Attributes) -> Option<Denial> {
    let spec = &policy["spec"];
    let fail_closed = spec["failurePolicy"].as_str() != Some("Ignore");
    let on_error = |message: String| {
        fail_closed.then_some(Denial {
            message,
            reason: String::new(),
        })
    };
    let mut env = expr::Env::new(
        a.object.unwrap_or(&Value::Null),
        a.old_object.unwrap_or(&Value::Null),
        &request_json(a),
        a.namespace_object.unwrap_or(&Value::Null),
    );
    for mc in spec["matchConditions"].as_array().into_iter().flatten() {
        let name = mc["name"].as_str().unwrap_or_default();
        let result = expr::compile(mc["expression"].as_str().unwrap_or_default()).and_then(|c| env.eval_bool(&c));
        match result {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return on_error(format!("failed to evaluate matchCondition '{name}': {e}")),
        }
    }
    for v in spec["variables"].as_array().into_iter().flatten() {
        if let Ok(c) = expr::compile(v["expression"].as_str().unwrap_or_default()) {
            env.define(v["name"].as_str().unwrap_or_default(), &c);
        }
    }
    for v in spec["validations"].as_array().into_iter().flatten() {
        let source = v["expression"].as_str().unwrap_or_default();
        match expr::compile(source).and_then(|c| env.eval_bool(&c)) {
            Ok(true) => {}
            Ok(false) => {
                let message = v["messageExpression"]
                    .as_str()
                    .and_then(|m| expr::compile(m).ok())
                    .and_then(|m| env.eval_message(&m))
                    .or_else(|| {
                        v["message"]
                            .as_str()
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| format!("failed expression: {}", source.trim()));
                return Some(Denial {
                    message,
                    reason: v["reason"].as_str().unwrap_or_default().to_string(),
                });
            }
            Err(e) => {
                if let Some(d) = on_error(e) {
                    return Some(d);
                }
            }
        }
    }
    None
}

/// The error the real dispatcher builds: `admission.NewForbidden`'s message and details, with the
/// validation's reason (default Invalid) and its HTTP code, plus one message-only cause.
fn denied(a: &Attributes, policy: &str, binding: &str, d: &Denial) -> ApiError {
    let full = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        d.message
    );
    let reason = if d.reason.is_empty() {
        "Invalid"
    } else {
        d.reason.as_str()
    };
    let code = match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    };
    let gr = group_resource(&a.def.group, &a.def.plural);
    let message = if a.name.is_empty() {
        format!("{gr} is forbidden: {full}")
    } else {
        format!("{gr} {:?} is forbidden: {full}", a.name)
    };
    let mut d = details(a.name, &a.def.group, &a.def.plural, &[]);
    if let Value::Object(m) = &mut d {
        m.insert("causes".into(), json!([{"message": full}]));
    }
    ApiError::status(code, reason, &message, Some(d))
}

/// Validating admission of one write: the first binding (by name) whose policy denies it, with
/// `Deny` among its validationActions, fails the request. `Warn` and `Audit` are accepted but
/// have no effect here.
pub fn admit(state: &State, a: &Attributes) -> ApiResult<()> {
    let Some(bindings) = state.objects.get(BINDINGS) else {
        return Ok(());
    };
    for binding in bindings.values() {
        let spec = &binding["spec"];
        let policy_name = spec["policyName"].as_str().unwrap_or_default();
        let Some(policy) = state.get(POLICIES, "", policy_name) else {
            continue;
        };
        let deny = spec["validationActions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x == "Deny");
        // paramKind needs a params object per binding, which is not modelled: such policies are
        // skipped rather than guessed at.
        if !deny || policy.pointer("/spec/paramKind").is_some() {
            continue;
        }
        if !matching::covers(&policy["spec"]["matchConstraints"], a, true) {
            continue;
        }
        if let Some(resources) = spec.get("matchResources")
            && !matching::covers(resources, a, false)
        {
            continue;
        }
        if let Some(d) = evaluate(policy, a) {
            return Err(denied(a, policy_name, meta_str(binding, "name"), &d));
        }
    }
    Ok(())
}
