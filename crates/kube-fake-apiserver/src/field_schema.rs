//! Field schemas: what the schema of a resource says about its fields, as managedFields, apply
//! and strategic merge need it: the list type (atomic, set, map with its keys) at a field path
//! and which structs are atomic, from a custom resource's openAPIV3Schema or from the `+listType`
//! / `+structType` markers of the built-in kinds' Go types.

use serde_json::Value;

use crate::resources::{BINDINGS, POLICIES};

/// How a list is merged and tracked.
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// Schema knowledge about lists and atomic structs, by field path (`[]` marks a list item).
#[derive(Debug, Clone)]
pub enum Hints {
    /// A custom resource: openAPIV3Schema drives list types.
    Schema(Value),
    /// A built-in kind, identified by its storage key.
    Builtin(String),
}

fn builtin_metadata_list(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "finalizers"] => Some(ListType::Set),
        ["metadata", "ownerReferences"] => Some(ListType::Map(vec!["uid".into()])),
        _ => None,
    }
}

/// List semantics of the two admission policy kinds (`+listType` markers of the Go types).
fn policy_list_type(storage: &str, path: &[&str]) -> Option<ListType> {
    if storage != POLICIES && storage != BINDINGS {
        return None;
    }
    Some(match path {
        ["spec", "matchConditions" | "variables"] => ListType::Map(vec!["name".into()]),
        ["spec", "validationActions"] => ListType::Set,
        _ => ListType::Atomic,
    })
}

/// Structs of the two admission policy kinds tracked as one unit (`+structType=atomic` in the Go
/// types).
fn policy_atomic_map(storage: &str, path: &[&str]) -> bool {
    (storage == POLICIES || storage == BINDINGS)
        && matches!(
            path,
            ["spec", "matchConstraints" | "matchResources" | "paramKind" | "paramRef"] | ["spec", "variables", "[]"]
        )
}

impl Hints {
    pub fn list_type(&self, path: &[String]) -> ListType {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        if let Some(t) = builtin_metadata_list(&p) {
            return t;
        }
        match self {
            Hints::Schema(schema) => {
                let Some(s) = schema_at(schema, &p) else {
                    return ListType::Atomic;
                };
                match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => ListType::Set,
                    Some("map") => {
                        let keys = s
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                            .unwrap_or_default();
                        ListType::Map(keys)
                    }
                    _ => ListType::Atomic,
                }
            }
            Hints::Builtin(storage) => {
                if let Some(t) = policy_list_type(storage, &p) {
                    return t;
                }
                let last = p.last().copied().unwrap_or_default();
                let in_pod = p.contains(&"template") || p.first() == Some(&"spec");
                match last {
                    "conditions" => ListType::Map(vec!["type".into()]),
                    "containers"
                    | "initContainers"
                    | "ephemeralContainers"
                    | "volumes"
                    | "imagePullSecrets"
                    | "env"
                        if in_pod =>
                    {
                        ListType::Map(vec!["name".into()])
                    }
                    "volumeMounts" => ListType::Map(vec!["mountPath".into()]),
                    "ports" if p.contains(&"containers") => {
                        ListType::Map(vec!["containerPort".into(), "protocol".into()])
                    }
                    _ => ListType::Atomic,
                }
            }
        }
    }

    /// Structs/maps tracked as one unit (`+structType=atomic`, `x-kubernetes-map-type: atomic`).
    pub fn atomic_map(&self, path: &[String]) -> bool {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match self {
            _ if p.as_slice() == ["metadata", "ownerReferences", "[]"] => true,
            Hints::Schema(schema) => {
                if p.first() == Some(&"metadata") {
                    return false;
                }
                schema_at(schema, &p)
                    .and_then(|s| s.get("x-kubernetes-map-type"))
                    .and_then(Value::as_str)
                    == Some("atomic")
            }
            Hints::Builtin(storage) => {
                policy_atomic_map(storage, &p)
                    || storage == "/events" && matches!(p.as_slice(), ["regarding"] | ["related"] | ["involvedObject"])
                    || matches!(p.as_slice(), ["spec", "selector"] if storage.starts_with("apps/"))
                    || matches!(p.as_slice(), ["roleRef"] if storage.ends_with("rolebindings"))
            }
        }
    }
}

/// The sub-schema at a field path (`[]` steps into `items`).
pub fn schema_at<'a>(schema: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = schema;
    for seg in path {
        if *seg == "[]" {
            cur = cur.get("items")?;
        } else if let Some(p) = cur.get("properties").and_then(|p| p.get(*seg)) {
            cur = p;
        } else if let Some(a) = cur.get("additionalProperties").filter(|a| a.is_object()) {
            cur = a;
        } else {
            return None;
        }
    }
    Some(cur)
}
