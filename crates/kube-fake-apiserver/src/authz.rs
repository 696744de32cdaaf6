//! Authorization: RBAC as the real kube-apiserver runs it (`--authorization-mode=Node,RBAC`,
//! with `system:masters` allowed before any authorizer is asked). Every request is authorized
//! after authentication and before its handler acts; a server-side apply that creates is
//! authorized for `create` too, when the handler finds the object missing
//! ([`authorize_create_on_apply`]), as the real server's create-on-update path does.
//!
//! The request's attributes are derived from its path and query the way the real
//! `RequestInfoFactory` does, not from the fake's resource registry, so a user without
//! permission gets 403 even for a resource the server does not serve (as on a real cluster).

use serde_json::Value;

use crate::auth::UserInfo;
use crate::errors::{ApiError, details, group_resource};
use crate::request::Req;
use crate::store::State;

/// The API group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What RBAC sees of a request (the real server's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// Whether the path names an API resource (else: discovery, /version, /healthz, ...).
    pub resource_request: bool,
    /// "" for the core group.
    pub api_group: String,
    /// The resource's plural.
    pub resource: String,
    /// `status`, `token`, ... or "".
    pub subresource: String,
    /// "" for cluster-scoped requests.
    pub namespace: String,
    /// "" when the path has no name (create, list, watch, deletecollection).
    pub name: String,
}

impl Attributes {
    /// A request for a non-resource URL (discovery, /version, /healthz, ...) with `verb`.
    pub fn non_resource(verb: String) -> Attributes {
        Attributes {
            verb,
            resource_request: false,
            api_group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
        }
    }

    /// `resource/subresource`, as RBAC rules name subresources.
    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The request's attributes, parsed like the real server's `RequestInfoFactory.NewRequestInfo`.
pub fn attributes(req: &Req) -> Attributes {
    let parts: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let non_resource = Attributes::non_resource(req.method.to_ascii_lowercase());
    // /api/{version}/... and /apis/{group}/{version}/...; anything shorter is discovery.
    let (api_group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
        _ => return non_resource,
    };
    let mut verb = match req.method.as_str() {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    };
    let mut namespace = "";
    let mut rest: &[&str] = rest;
    if let ["namespaces", ns, tail @ ..] = rest {
        namespace = *ns;
        // `/namespaces/{ns}/status` and `/finalize` are the Namespace's own subresources.
        if !tail.is_empty() && !matches!(tail[0], "status" | "finalize") {
            rest = tail;
        }
    }
    let resource = rest.first().copied().unwrap_or_default();
    let mut name = rest.get(1).copied().unwrap_or_default().to_string();
    let subresource = rest.get(2).copied().unwrap_or_default();
    if name.is_empty() && verb == "get" {
        let flag = |k: &str| matches!(req.query.get(k).map(String::as_str), Some("true") | Some("1"));
        verb = if flag("watch") { "watch" } else { "list" };
        // A list or watch of exactly one name (`fieldSelector=metadata.name=x`) can be allowed
        // by a rule limited to that name.
        if let Some(selected) = req
            .query
            .get("fieldSelector")
            .map(String::as_str)
            .and_then(single_name_selector)
        {
            name = selected;
        }
    }
    if name.is_empty() && verb == "delete" {
        verb = "deletecollection";
    }
    Attributes {
        verb: verb.to_string(),
        resource_request: true,
        api_group: api_group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name,
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x`), if that
/// is all it selects.
fn single_name_selector(selector: &str) -> Option<String> {
    let (field, value) = selector.split_once("==").or_else(|| selector.split_once('='))?;
    (field.trim() == "metadata.name" && !value.is_empty() && !value.contains([',', '/', '%']))
        .then(|| value.trim().to_string())
}

/// Authorizes a request before its handler runs: 403 with the real server's body when denied.
pub fn authorize_request(state: &State, req: &Req) -> Result<(), ApiError> {
    authorize(state, &req.user, &attributes(req))
}

/// The extra `create` check of a server-side apply whose object does not exist yet.
pub fn authorize_create_on_apply(state: &State, req: &Req) -> Result<(), ApiError> {
    let mut attrs = attributes(req);
    attrs.verb = "create".to_string();
    authorize(state, &req.user, &attrs)
}

/// Decides `attrs` for `user`: `system:masters` may do anything; non-resource paths (discovery,
/// /version, /healthz, /openapi) are open to every authenticated user, as the default
/// system:discovery, system:basic-user and system:public-info-viewer ClusterRoles make them;
/// everything else needs an RBAC rule bound to the user, one of its groups or its
/// ServiceAccount.
pub fn authorize(state: &State, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
    decide(state, user, attrs)
        .map(|_| ())
        .map_err(|errors| forbidden(user, attrs, &errors))
}

/// RBAC's decision for `attrs`: `Ok(reason)` naming what allowed it (empty for `system:masters`
/// and non-resource paths, which other authorizers allow), else the errors met while resolving
/// the user's bindings (roles they refer to that do not exist).
pub fn decide(state: &State, user: &UserInfo, attrs: &Attributes) -> Result<String, Vec<String>> {
    if user.is_master() || !attrs.resource_request {
        return Ok(String::new());
    }
    let mut errors: Vec<String> = Vec::new();
    for (binding_ns, binding) in bindings_of(state, attrs) {
        if !binds(user, binding, binding_ns) {
            continue;
        }
        match role_rules(state, binding, binding_ns) {
            Ok(rules) => {
                if rules.iter().any(|rule| rule_allows(rule, attrs)) {
                    return Ok(format!(
                        "RBAC: allowed by {}",
                        describe_binding(binding, binding_ns, user)
                    ));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    Err(errors)
}

/// The real RBAC authorizer's description of the binding that allowed a request:
/// `ClusterRoleBinding "b" of ClusterRole "r" to ServiceAccount "sa/ns"` (a RoleBinding is
/// named `ns/b`).
fn describe_binding(binding: &Value, binding_ns: &str, user: &UserInfo) -> String {
    let name = binding["metadata"]["name"].as_str().unwrap_or_default();
    let (kind, name) = if binding_ns.is_empty() {
        ("ClusterRoleBinding", name.to_string())
    } else {
        ("RoleBinding", format!("{binding_ns}/{name}"))
    };
    let role = format!(
        "{} {:?}",
        binding["roleRef"]["kind"].as_str().unwrap_or_default(),
        binding["roleRef"]["name"].as_str().unwrap_or_default()
    );
    let subjects = binding["subjects"].as_array().map(Vec::as_slice).unwrap_or_default();
    let subject = subjects
        .iter()
        .find(|s| binds(user, &serde_json::json!({"subjects": [s]}), binding_ns))
        .map(|s| describe_subject(s, binding_ns))
        .unwrap_or_default();
    format!("{kind} {name:?} of {role} to {subject}")
}

/// A subject as RBAC describes it: `User "u"`, `Group "g"`, `ServiceAccount "name/namespace"`.
fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = subject["kind"].as_str().unwrap_or_default();
    let name = subject["name"].as_str().unwrap_or_default();
    if kind == "ServiceAccount" {
        let ns = subject["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(binding_ns);
        format!("{kind} {:?}", format!("{name}/{ns}"))
    } else {
        format!("{kind} {name:?}")
    }
}

/// Every ClusterRoleBinding, then the RoleBindings of the request's namespace, each with the
/// namespace it applies in ("" for cluster bindings).
fn bindings_of<'a>(state: &'a State, attrs: &'a Attributes) -> impl Iterator<Item = (&'a str, &'a Value)> {
    let cluster = state
        .objects
        .get(&format!("{RBAC_GROUP}/clusterrolebindings"))
        .into_iter()
        .flat_map(|m| m.values())
        .map(|b| ("", b));
    let namespaced = state
        .objects
        .get(&format!("{RBAC_GROUP}/rolebindings"))
        .into_iter()
        .flat_map(|m| m.iter())
        .filter(|((ns, _), _)| !attrs.namespace.is_empty() && *ns == attrs.namespace)
        .map(|((ns, _), b)| (ns.as_str(), b));
    cluster.chain(namespaced)
}

/// Whether one of the binding's subjects is the user (RBAC's `appliesToUser`).
fn binds(user: &UserInfo, binding: &Value, binding_ns: &str) -> bool {
    let subjects = binding["subjects"].as_array().map(Vec::as_slice).unwrap_or_default();
    subjects.iter().any(|s| {
        let name = s["name"].as_str().unwrap_or_default();
        match s["kind"].as_str().unwrap_or_default() {
            "User" => user.username == name,
            "Group" => user.groups.iter().any(|g| g == name),
            "ServiceAccount" => {
                // A RoleBinding's ServiceAccount subject defaults to the binding's namespace.
                let ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
                !ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

/// The rules of the binding's roleRef, or the error text RBAC reports when it is missing.
fn role_rules(state: &State, binding: &Value, binding_ns: &str) -> Result<Vec<Value>, String> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
    let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
    let (storage, ns, singular) = match kind {
        "Role" => ("roles", binding_ns, "role"),
        "ClusterRole" => ("clusterroles", "", "clusterrole"),
        other => return Err(format!("unsupported role reference kind: {other:?}")),
    };
    state
        .get(&format!("{RBAC_GROUP}/{storage}"), ns, name)
        .map(|role| role["rules"].as_array().cloned().unwrap_or_default())
        .ok_or_else(|| format!("{singular}.{RBAC_GROUP} {name:?} not found"))
}

fn listed(rule: &Value, field: &str) -> Vec<String> {
    rule[field]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// RBAC's `RuleAllows` for a resource request: verb, group, resource (with `*` and
/// `*/subresource`) and resourceNames all match.
fn rule_allows(rule: &Value, attrs: &Attributes) -> bool {
    let verbs = listed(rule, "verbs");
    let groups = listed(rule, "apiGroups");
    let resources = listed(rule, "resources");
    let names = listed(rule, "resourceNames");
    let combined = attrs.combined_resource();
    let verb_ok = verbs.iter().any(|v| v == "*" || *v == attrs.verb);
    let group_ok = groups.iter().any(|g| g == "*" || *g == attrs.api_group);
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty() && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
    });
    // A rule limited to names never matches a request without one (create, list, watch).
    let name_ok = names.is_empty() || names.contains(&attrs.name);
    verb_ok && group_ok && resource_ok && name_ok
}

/// The real server's 403: `<resource>[.group] ["<name>"] is forbidden: User "<user>" cannot
/// <verb> resource "<resource[/sub]>" in API group "<group>" in the namespace "<ns>"` (or "at
/// the cluster scope"), plus `: RBAC: <errors>` when bindings referred to missing roles.
fn forbidden(user: &UserInfo, attrs: &Attributes, errors: &[String]) -> ApiError {
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    let mut reason = format!(
        "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
        user.username,
        attrs.verb,
        attrs.combined_resource(),
        attrs.api_group
    );
    match errors {
        [] => {}
        [one] => reason.push_str(&format!(": RBAC: {one}")),
        many => reason.push_str(&format!(": RBAC: [{}]", many.join(", "))),
    }
    let subject = group_resource(&attrs.api_group, &attrs.resource);
    let message = if attrs.name.is_empty() {
        format!("{subject} is forbidden: {reason}")
    } else {
        format!("{subject} {:?} is forbidden: {reason}", attrs.name)
    };
    ApiError::status(
        403,
        "Forbidden",
        &message,
        Some(details(&attrs.name, &attrs.api_group, &attrs.resource, &[])),
    )
}
