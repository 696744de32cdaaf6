//! Checks the operator's Kubernetes requests against `deploy/kubernetes-permissions.yaml`, the
//! list the Helm chart's RBAC is tested against: every call the code makes must be permitted.

use serde::Deserialize;

use super::apiserver::RecordedRequest;

/// One entry of deploy/kubernetes-permissions.yaml.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub api_group: String,
    pub resource: String,
    pub verbs: Vec<String>,
}

/// The committed permission list.
pub fn load() -> Vec<Permission> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes-permissions.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/kubernetes-permissions.yaml exists");
    serde_saphyr::from_str(&text).expect("deploy/kubernetes-permissions.yaml parses")
}

/// (apiGroup, resource[/subresource], verb) of a request, as RBAC sees it.
pub fn rbac_attributes(request: &RecordedRequest) -> Option<(String, String, String)> {
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        other => other,
    };
    let (resource, name, sub) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    let watch = request.query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match (request.method.as_str(), name) {
        ("GET", _) if watch => "watch",
        ("GET", Some(_)) => "get",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", Some(_)) => "delete",
        ("DELETE", None) => "deletecollection",
        _ => return None,
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource.to_owned(),
    };
    Some((group, resource, verb.to_owned()))
}

/// Panics naming every request that the permission list does not cover.
pub fn assert_all_permitted(requests: &[RecordedRequest]) {
    let permissions = load();
    let mut denied = Vec::new();
    for request in requests {
        let Some((group, resource, verb)) = rbac_attributes(request) else {
            denied.push(format!(
                "{} {} (not an API resource path)",
                request.method, request.path
            ));
            continue;
        };
        let allowed = permissions
            .iter()
            .any(|p| p.api_group == group && p.resource == resource && p.verbs.iter().any(|v| v == &verb));
        if !allowed {
            denied.push(format!(
                "{verb} {group}/{resource} ({} {})",
                request.method, request.path
            ));
        }
    }
    assert!(
        denied.is_empty(),
        "the operator made calls deploy/kubernetes-permissions.yaml (and so the chart's RBAC) does not allow:\n{}",
        denied.join("\n")
    );
}

/// Panics naming every request the API server refused as unauthenticated (401) or forbidden
/// (403): with the chart's RBAC bound to the operator's ServiceAccount, a 403 means the chart
/// lacks a permission the operator needs (or the fake's authorizer disagrees with the chart).
pub fn assert_none_refused(requests: &[RecordedRequest], identity: &super::rbac::OperatorIdentity) {
    let refused: Vec<String> = requests
        .iter()
        .filter(|r| matches!(r.status, 401 | 403))
        .map(|r| format!("{} {} {}?{}", r.status, r.method, r.path, r.query))
        .collect();
    assert!(
        refused.is_empty(),
        "the API server refused operator requests made with the chart's RBAC ({:?}, ServiceAccount {}):\n{}",
        identity.mode,
        identity.fullname,
        refused.join("\n")
    );
}
