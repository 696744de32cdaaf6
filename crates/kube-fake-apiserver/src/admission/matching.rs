//! Which requests a policy (`spec.matchConstraints`) or a binding (`spec.matchResources`)
//! covers: resource rules, exclusions, namespace and object label selectors.

use serde_json::Value;

use super::Attributes;

fn strings(v: &Value) -> impl Iterator<Item = &str> {
    v.as_array().into_iter().flatten().filter_map(Value::as_str)
}

fn has(list: &Value, wanted: &str) -> bool {
    strings(list).any(|s| s == "*" || s == wanted)
}

/// `resources` entries: `secrets` and `*` (main resources only), `deployments/status`,
/// `*/status`, `deployments/*` (every subresource, not the resource itself), `*/*` (everything).
fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    if pattern == "*/*" {
        return true;
    }
    let (res, sub) = pattern.split_once('/').unwrap_or((pattern, ""));
    let res_ok = res == "*" || res == resource;
    let sub_ok = match sub {
        "*" => !subresource.is_empty(),
        s => s == subresource,
    };
    res_ok && sub_ok
}

fn rule_matches(rule: &Value, a: &Attributes) -> bool {
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !a.def.namespaced,
        "Namespaced" => a.def.namespaced,
        _ => true,
    };
    let names = &rule["resourceNames"];
    let name_ok = strings(names).next().is_none() || strings(names).any(|n| n == a.name);
    scope_ok
        && name_ok
        && has(&rule["operations"], a.operation.as_str())
        && has(&rule["apiGroups"], &a.def.group)
        && has(&rule["apiVersions"], &a.def.version)
        && strings(&rule["resources"]).any(|p| resource_matches(p, &a.def.plural, a.subresource))
}

/// A metav1.LabelSelector against a label map; an absent or empty selector matches everything.
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_label = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_expr = selector["matchExpressions"].as_array().into_iter().flatten().all(|e| {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values = strings(&e["values"]);
        match (e["operator"].as_str().unwrap_or_default(), label(key)) {
            ("In", Some(v)) => values.any(|x| x == v),
            ("NotIn", Some(v)) => !values.any(|x| x == v),
            ("NotIn", None) => true,
            ("Exists", found) => found.is_some(),
            ("DoesNotExist", found) => found.is_none(),
            _ => false,
        }
    });
    by_label && by_expr
}

/// `namespaceSelector` looks at the namespace's labels; for a Namespace itself at its own labels,
/// and any other cluster-scoped object always passes it.
fn namespace_matches(selector: &Value, a: &Attributes) -> bool {
    if a.def.kind == "Namespace" {
        let obj = a.object.or(a.old_object);
        return selector_matches(selector, obj.and_then(|o| o.pointer("/metadata/labels")));
    }
    if !a.def.namespaced {
        return true;
    }
    selector_matches(selector, a.namespace_object.and_then(|n| n.pointer("/metadata/labels")))
}

/// `objectSelector` passes when either the new or the old object's labels match.
fn object_matches(selector: &Value, a: &Attributes) -> bool {
    let empty = selector.as_object().is_none_or(|m| m.is_empty());
    empty
        || [a.object, a.old_object]
            .into_iter()
            .flatten()
            .any(|o| selector_matches(selector, o.pointer("/metadata/labels")))
}

/// Whether `criteria` (matchConstraints or matchResources) covers the request. `rules_required`:
/// a policy with no resourceRules matches nothing; a binding without them defers to its policy.
pub fn covers(criteria: &Value, a: &Attributes, rules_required: bool) -> bool {
    let rules = criteria["resourceRules"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let included = if rules.is_empty() {
        !rules_required
    } else {
        rules.iter().any(|r| rule_matches(r, a))
    };
    let excluded = criteria["excludeResourceRules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| rule_matches(r, a));
    included
        && !excluded
        && namespace_matches(&criteria["namespaceSelector"], a)
        && object_matches(&criteria["objectSelector"], a)
}
