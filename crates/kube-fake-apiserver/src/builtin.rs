//! Kind-specific behaviour of built-in resources: zero values, defaulting, normalisation
//! (Secret stringData, Event field shapes), conversion between the two Event APIs, validation.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::errors::Cause;
use super::resources::ResourceDef;

pub const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// Validates metadata.name (and generateName where the real server does) for a kind.
pub fn validate_name(def: &ResourceDef, obj: &Value, causes: &mut Vec<Cause>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let label = def.kind == "Namespace";
    let ok = if label {
        is_dns_label(name)
    } else {
        is_dns_subdomain(name)
    };
    if !ok {
        let mut msg = if label {
            DNS1123_LABEL_MSG.to_string()
        } else {
            DNS1123_SUBDOMAIN_MSG.to_string()
        };
        if name.len() > if label { 63 } else { 253 } {
            msg = format!("must be no more than {} characters", if label { 63 } else { 253 });
        }
        causes.push(Cause::invalid("metadata.name", &json!(name), &msg));
    }
    validate_labels(obj, causes);
}

fn validate_labels(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        let name = k.rsplit('/').next().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && name.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric);
        let prefix_ok = match k.rsplit_once('/') {
            Some((p, _)) => is_dns_subdomain(p),
            None => true,
        };
        if !name_ok || !prefix_ok {
            causes.push(Cause::invalid(
                "metadata.labels",
                &json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let val = v.as_str().unwrap_or_default();
        let val_ok = val.is_empty()
            || (val.len() <= 63
                && val.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                && val.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
                && val.as_bytes().last().is_some_and(u8::is_ascii_alphanumeric));
        if !val_ok {
            causes.push(Cause::invalid(
                "metadata.labels",
                v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
}

/// Kind-specific validation beyond names.
pub fn validate(def: &ResourceDef, obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    match def.kind.as_str() {
        "Secret" => {
            if let (Some(old), Some(t)) = (old, obj.get("type"))
                && old.get("type").is_some_and(|o| o != t)
            {
                causes.push(Cause::invalid("type", t, "field is immutable"));
            }
            if let (Some(old), Some(true)) = (old, old.and_then(|o| o.get("immutable")).and_then(Value::as_bool))
                && (old.get("data") != obj.get("data"))
            {
                causes.push(Cause::forbidden("data", "field is immutable when `immutable` is set"));
            }
        }
        "Lease" => {
            if let Some(d) = obj.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64)
                && d <= 0
            {
                causes.push(Cause::invalid(
                    "spec.leaseDurationSeconds",
                    &json!(d),
                    "must be greater than 0",
                ));
            }
        }
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            let sel = obj.pointer("/spec/selector");
            if sel.is_none() {
                causes.push(Cause::required("spec.selector", ""));
            }
            let want = sel.and_then(|s| s.get("matchLabels")).and_then(Value::as_object);
            let have = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
            if let Some(want) = want {
                let ok = have.is_some_and(|h| want.iter().all(|(k, v)| h.get(k) == Some(v)));
                if !ok {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(have.cloned().unwrap_or_default()),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            let containers = obj.pointer("/spec/template/spec/containers").and_then(Value::as_array);
            if containers.is_none_or(|c| c.is_empty()) {
                causes.push(Cause::required("spec.template.spec.containers", ""));
            }
            if let (Some(old), Some(sel)) = (old, sel)
                && old.pointer("/spec/selector").is_some_and(|o| o != sel)
            {
                causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
            }
        }
        _ => {}
    }
}

/// The Go zero value of a kind: what the "previous object" looks like on create when computing
/// managedFields (non-pointer structs such as `spec` already exist there).
pub fn zero_object(def: &ResourceDef) -> Value {
    let mut m = Map::new();
    m.insert("metadata".into(), json!({}));
    match def.kind.as_str() {
        kind if kind == "Lease" || is_policy_kind(kind) => {
            m.insert("spec".into(), json!({}));
        }
        "CustomResourceDefinition" => {
            m.insert("spec".into(), json!({"names": {}}));
            m.insert("status".into(), json!({"acceptedNames": {}}));
        }
        "Namespace" => {
            m.insert("spec".into(), json!({}));
            m.insert("status".into(), json!({}));
        }
        // Value (non-pointer) structs exist in the zero object already, so creating a workload
        // does not own them as a whole ("." in managedFields), only their fields.
        "Deployment" | "StatefulSet" | "DaemonSet" => {
            let strategy = if def.kind == "Deployment" {
                "strategy"
            } else {
                "updateStrategy"
            };
            let template = json!({"metadata": {"creationTimestamp": null}, "spec": {"containers": null}});
            m.insert("spec".into(), json!({strategy: {}, "template": template}));
            m.insert("status".into(), json!({}));
        }
        "Event" if def.group == "events.k8s.io" => {
            m.insert("deprecatedSource".into(), json!({}));
        }
        "Event" => {
            m.insert("source".into(), json!({}));
            m.insert("involvedObject".into(), json!({}));
        }
        _ => {}
    }
    Value::Object(m)
}

fn set_default(obj: &mut Value, ptr: &str, v: Value) {
    if obj.pointer(ptr).is_some() {
        return;
    }
    let mut cur = obj;
    let toks: Vec<&str> = ptr.trim_start_matches('/').split('/').collect();
    for (i, t) in toks.iter().enumerate() {
        let Value::Object(m) = cur else { return };
        if i + 1 == toks.len() {
            m.insert((*t).to_string(), v);
            return;
        }
        cur = m.entry((*t).to_string()).or_insert_with(|| json!({}));
    }
}

fn default_pod_template(t: &mut Value) {
    set_default(t, "/metadata/creationTimestamp", Value::Null);
    set_default(t, "/spec/restartPolicy", json!("Always"));
    set_default(t, "/spec/terminationGracePeriodSeconds", json!(30));
    set_default(t, "/spec/dnsPolicy", json!("ClusterFirst"));
    set_default(t, "/spec/securityContext", json!({}));
    set_default(t, "/spec/schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        let Some(cs) = t.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
            set_default(c, "/terminationMessagePolicy", json!("File"));
            set_default(c, "/resources", json!({}));
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default().to_string();
            let tag_latest = {
                let last = image.rsplit('/').next().unwrap_or_default();
                !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"))
            };
            set_default(
                c,
                "/imagePullPolicy",
                json!(if tag_latest { "Always" } else { "IfNotPresent" }),
            );
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, "/protocol", json!("TCP"));
                }
            }
        }
    }
}

/// Sets a Namespace's `kubernetes.io/metadata.name` label to its name. The real server does it
/// in the Namespace strategy, before the field manager runs, so the writer owns the label.
pub fn label_namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    set_default(obj, "/metadata/labels", json!({}));
    if let Some(l) = obj.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        l.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
}

/// Whether `kind` is ValidatingAdmissionPolicy or its binding (evaluated by `admission`).
pub fn is_policy_kind(kind: &str) -> bool {
    matches!(kind, "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding")
}

fn set_key_default(obj: &mut Value, key: &str, v: Value) {
    if let Value::Object(m) = obj
        && m.get(key).is_none_or(Value::is_null)
    {
        m.insert(key.to_string(), v);
    }
}

/// The registry's defaults of the two admission policy kinds: failurePolicy Fail, matchPolicy
/// Equivalent, empty selectors, rule scope `*`; empty lists are dropped (omitempty).
pub fn normalize_policy(def: &ResourceDef, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    if let Value::Object(m) = &mut *spec {
        m.retain(|_, v| !(v.is_null() || v.as_array().is_some_and(Vec::is_empty)));
    }
    let constraints = if def.kind == "ValidatingAdmissionPolicy" {
        set_key_default(spec, "failurePolicy", json!("Fail"));
        spec.get_mut("matchConstraints")
    } else {
        spec.get_mut("matchResources")
    };
    if let Some(c) = constraints.filter(|c| c.is_object()) {
        set_key_default(c, "matchPolicy", json!("Equivalent"));
        set_key_default(c, "namespaceSelector", json!({}));
        set_key_default(c, "objectSelector", json!({}));
        for key in ["resourceRules", "excludeResourceRules"] {
            for rule in c.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten() {
                set_key_default(rule, "scope", json!("*"));
            }
        }
    }
}

/// Server-side defaulting and normalisation applied on every write.
pub fn normalize(def: &ResourceDef, obj: &mut Value) {
    match def.kind.as_str() {
        kind if is_policy_kind(kind) => normalize_policy(def, obj),
        "Secret" => {
            if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                let data = obj
                    .as_object_mut()
                    .map(|o| o.entry("data").or_insert_with(|| json!({})));
                if let Some(Value::Object(data)) = data {
                    for (k, v) in sd {
                        let s = v.as_str().unwrap_or_default();
                        data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
                    }
                }
            }
            set_default(obj, "/type", json!("Opaque"));
        }
        "Namespace" => {
            label_namespace(obj);
            set_default(obj, "/spec/finalizers", json!(["kubernetes"]));
            set_default(obj, "/status/phase", json!("Active"));
        }
        "Event" if def.group == "events.k8s.io" => {
            for f in ["deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
                set_default(obj, &format!("/{f}"), Value::Null);
            }
            set_default(obj, "/deprecatedSource", json!({}));
        }
        "Event" => {
            for f in ["eventTime", "firstTimestamp", "lastTimestamp"] {
                set_default(obj, &format!("/{f}"), Value::Null);
            }
            set_default(obj, "/reportingComponent", json!(""));
            set_default(obj, "/reportingInstance", json!(""));
            set_default(obj, "/source", json!({}));
            set_default(obj, "/involvedObject", json!({}));
        }
        "Deployment" => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/progressDeadlineSeconds", json!(600));
            set_default(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                set_default(obj, "/spec/strategy/rollingUpdate/maxUnavailable", json!("25%"));
            }
            if let Some(t) = obj.pointer_mut("/spec/template") {
                default_pod_template(t);
            }
        }
        "StatefulSet" => {
            set_default(obj, "/spec/replicas", json!(1));
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate/partition", json!(0));
            }
            set_default(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
                json!("Retain"),
            );
            set_default(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
                json!("Retain"),
            );
            if let Some(t) = obj.pointer_mut("/spec/template") {
                default_pod_template(t);
            }
        }
        "DaemonSet" => {
            set_default(obj, "/spec/revisionHistoryLimit", json!(10));
            set_default(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxUnavailable", json!(1));
                set_default(obj, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            if let Some(t) = obj.pointer_mut("/spec/template") {
                default_pod_template(t);
            }
        }
        "CustomResourceDefinition" => {
            set_default(obj, "/spec/conversion/strategy", json!("None"));
            let kind = obj
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            set_default(obj, "/spec/names/listKind", json!(format!("{kind}List")));
            set_default(obj, "/spec/names/singular", json!(kind.to_lowercase()));
            let storage: Vec<Value> = obj
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"].as_bool() == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            set_default(obj, "/status/acceptedNames", json!({"kind": "", "plural": ""}));
            set_default(obj, "/status/conditions", Value::Null);
            set_default(obj, "/status/storedVersions", Value::Array(storage));
        }
        _ => {}
    }
}

const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Converts a stored object to the representation of the version being served.
pub fn to_version(def: &ResourceDef, obj: &Value) -> Value {
    let mut out = obj.clone();
    let api_version = def.api_version();
    if out.get("apiVersion").and_then(Value::as_str) == Some(api_version.as_str()) {
        return out;
    }
    if def.kind == "Event"
        && let Value::Object(m) = &mut out
    {
        let to_new = def.group == "events.k8s.io";
        for (core, new) in EVENT_RENAMES {
            let (from, to) = if to_new { (core, new) } else { (new, core) };
            if let Some(v) = m.remove(*from) {
                m.insert((*to).to_string(), v);
            }
        }
        if to_new {
            m.remove("reportingInstance")
                .map(|v| m.insert("reportingInstance".into(), v));
        }
        normalize(def, &mut out);
    }
    if let Value::Object(m) = &mut out {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(def.kind));
    }
    out
}
