//! Discovery documents: /api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version} (legacy and
//! aggregated v2 forms), /version and health endpoints.

use serde_json::{Map, Value, json};

use super::request::Reply;
use super::resources::ResourceDef;
use super::store::State;

const DISCOVERY_VERBS: [&str; 8] = [
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "create",
    "update",
    "watch",
];

fn resource_entries(defs: &[&ResourceDef]) -> Vec<Value> {
    let mut out = Vec::new();
    for d in defs {
        let mut m = Map::new();
        m.insert("name".into(), json!(d.plural));
        m.insert("singularName".into(), json!(d.singular));
        m.insert("namespaced".into(), json!(d.namespaced));
        m.insert("kind".into(), json!(d.kind));
        m.insert("verbs".into(), json!(DISCOVERY_VERBS));
        if !d.short_names.is_empty() {
            m.insert("shortNames".into(), json!(d.short_names));
        }
        out.push(Value::Object(m));
        if d.status_subresource {
            out.push(json!({
                "name": format!("{}/status", d.plural),
                "singularName": "",
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    out
}

fn groups(state: &State) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for d in &state.defs {
        if d.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == d.group) {
            Some((_, vs)) => {
                if !vs.contains(&d.version) {
                    vs.push(d.version.clone());
                }
            }
            None => out.push((d.group.clone(), vec![d.version.clone()])),
        }
    }
    out
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

fn aggregated(state: &State, core: bool) -> Value {
    let mut items = Vec::new();
    let mut names: Vec<(String, Vec<String>)> = if core {
        vec![(String::new(), vec!["v1".into()])]
    } else {
        groups(state)
    };
    names.retain(|(g, _)| g.is_empty() == core);
    for (g, versions) in names {
        let mut vs = Vec::new();
        for v in versions {
            let rs: Vec<Value> = state
                .defs
                .iter()
                .filter(|d| d.group == g && d.version == v)
                .map(|d| {
                    let mut r = json!({
                        "resource": d.plural,
                        "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                        "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": d.singular,
                        "verbs": DISCOVERY_VERBS,
                    });
                    if !d.short_names.is_empty() {
                        r["shortNames"] = json!(d.short_names);
                    }
                    if d.status_subresource {
                        r["subresources"] = json!([{
                            "subresource": "status",
                            "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                            "verbs": ["get", "patch", "update"],
                        }]);
                    }
                    r
                })
                .collect();
            vs.push(json!({"version": v, "resources": rs, "freshness": "Current"}));
        }
        let meta = if g.is_empty() { json!({}) } else { json!({"name": g}) };
        items.push(json!({"metadata": meta, "versions": vs}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

const AGGREGATED_CT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Serves discovery and other non-resource paths; None for resource paths.
pub fn serve(state: &State, method: &str, path: &str, port: u16, accept: &str) -> Option<Reply> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let wants_aggregated = accept.contains("apidiscovery.k8s.io") && accept.contains("v=v2");
    let reply = match segs.as_slice() {
        [] => {
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]})
        }
        ["version"] => json!({
            "major": "1", "minor": "36", "gitVersion": "v1.36.2", "gitCommit": "fake", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64",
        }),
        ["healthz"] | ["livez"] | ["readyz"] => return Some(Reply::Text(200, "ok".into())),
        ["api"] if wants_aggregated => {
            return Some(Reply::Json(
                200,
                aggregated(state, true),
                vec![("Content-Type".into(), AGGREGATED_CT.into())],
            ));
        }
        ["apis"] if wants_aggregated => {
            return Some(Reply::Json(
                200,
                aggregated(state, false),
                vec![("Content-Type".into(), AGGREGATED_CT.into())],
            ));
        }
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{port}")}],
        }),
        ["api", "v1"] => {
            let defs: Vec<&ResourceDef> = state.defs.iter().filter(|d| d.group.is_empty()).collect();
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resource_entries(&defs)})
        }
        ["apis"] => {
            let gs: Vec<Value> = groups(state).iter().map(|(g, vs)| group_json(g, vs)).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
        }
        ["apis", g] => {
            let (_, vs) = groups(state).into_iter().find(|(name, _)| name == g)?;
            let mut v = group_json(g, &vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        }
        ["apis", g, v] => {
            let defs: Vec<&ResourceDef> = state.defs.iter().filter(|d| d.group == *g && d.version == *v).collect();
            if defs.is_empty() {
                return None;
            }
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{g}/{v}"), "resources": resource_entries(&defs)})
        }
        _ => return None,
    };
    if method != "GET" {
        return Some(Reply::Json(
            405,
            super::errors::status_body(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                None,
            ),
            Vec::new(),
        ));
    }
    Some(Reply::Json(200, reply, Vec::new()))
}
