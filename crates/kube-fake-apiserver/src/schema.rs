//! Custom resource schema handling: defaulting, pruning, structural (OpenAPI) validation and
//! `x-kubernetes-validations` CEL rules (through kube-cel), with errors worded like the real server.

use serde_json::{Map, Value};

use super::errors::{Cause, go_value};

fn prop_path(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

fn nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

/// Removes nulls the schema does not allow and cannot default, in properties and map values
/// alike (kube-apiserver's `PruneNonNullableNullsWithoutDefaults`, before defaulting): `{"tags":
/// {"team": null}}` is stored as `{"tags": {}}`, and a required field sent as null is then missing.
/// Null list items are left for validation to refuse.
pub fn prune_non_nullable_nulls(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(obj) => {
            let child_schema = |k: &str| {
                schema
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
            };
            obj.retain(|k, v| {
                !(v.is_null() && child_schema(k).is_some_and(|s| !nullable(s) && s.get("default").is_none()))
            });
            for (k, v) in obj.iter_mut() {
                if let Some(s) = child_schema(k) {
                    prune_non_nullable_nulls(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                items.iter_mut().for_each(|i| prune_non_nullable_nulls(is, i));
            }
        }
        _ => {}
    }
}

/// Applies `default`s (also replacing nulls in non-nullable defaulted fields).
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, ps) in props {
                    if let Some(d) = ps.get("default") {
                        let missing = match obj.get(name) {
                            None => true,
                            Some(Value::Null) => !nullable(ps),
                            Some(_) => false,
                        };
                        if missing {
                            obj.insert(name.clone(), d.clone());
                        }
                    }
                    if let Some(child) = obj.get_mut(name) {
                        apply_defaults(ps, child);
                    }
                }
            }
            if let Some(ap) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                let known: Vec<String> = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for (k, v) in obj.iter_mut() {
                    if !known.contains(k) {
                        apply_defaults(ap, v);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for i in items {
                    apply_defaults(is, i);
                }
            }
        }
        _ => {}
    }
}

/// Drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`);
/// returns the dropped paths (the real server reports them as warnings).
pub fn prune(schema: &Value, value: &mut Value, path: &str, root: bool, dropped: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            let embedded = root || schema.get("x-kubernetes-embedded-resource").and_then(Value::as_bool) == Some(true);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = preserves_unknown(schema);
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = obj.get_mut(&k) {
                            prune(cs, child, &prop_path(path, &k), false, dropped);
                        }
                    }
                    None if preserve => {}
                    None => {
                        obj.remove(&k);
                        dropped.push(prop_path(path, &k));
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(is, item, &format!("{path}[{i}]"), false, dropped);
                }
            }
        }
        _ => {}
    }
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                "integer"
            } else {
                "number"
            }
        }
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => true,
    }
}

fn is_date_time(s: &str) -> bool {
    s.parse::<jiff::Timestamp>().is_ok()
}

fn fmt_num(n: &Value) -> String {
    n.to_string()
}

/// Structural validation against an OpenAPI v3 schema.
pub fn validate(schema: &Value, v: &Value, path: &str, root: bool, errs: &mut Vec<Cause>) {
    if v.is_null() {
        if nullable(schema) {
            return;
        }
        if let Some(ty) = schema.get("type").and_then(Value::as_str) {
            errs.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!("Invalid value: \"null\": {path} in body must be of type {ty}: \"null\""),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !(v.is_string() || type_ok("integer", v)) {
            errs.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {:?}: {path} in body must be of type integer,string: {:?}",
                    json_type_name(v),
                    json_type_name(v)
                ),
            ));
            return;
        }
    } else if let Some(ty) = schema.get("type").and_then(Value::as_str)
        && !type_ok(ty, v)
    {
        let tn = json_type_name(v);
        errs.push(Cause::new(
            "FieldValueTypeInvalid",
            path,
            format!("Invalid value: {tn:?}: {path} in body must be of type {ty}: {tn:?}"),
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(go_value).collect();
        errs.push(Cause::new(
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {}: supported values: {}",
                go_value(v),
                list.join(", ")
            ),
        ));
    }
    match v {
        Value::String(s) => validate_string(schema, s, v, path, errs),
        Value::Number(_) => validate_number(schema, v, path, errs),
        Value::Array(items) => validate_array(schema, items, v, path, errs),
        Value::Object(obj) => validate_object(schema, obj, v, path, root, errs),
        _ => {}
    }
}

fn validate_string(schema: &Value, s: &str, v: &Value, path: &str, errs: &mut Vec<Cause>) {
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && s.len() as u64 > max
    {
        errs.push(Cause::new(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (s.chars().count() as u64) < min
    {
        errs.push(Cause::invalid(
            path,
            v,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(p) {
            Ok(re) if !re.is_match(s) => {
                errs.push(Cause::invalid(path, v, &format!("{path} in body should match '{p}'")));
            }
            _ => {}
        }
    }
    if let Some(f) = schema.get("format").and_then(Value::as_str) {
        let ok = match f {
            "date-time" => is_date_time(s),
            "date" => s.parse::<jiff::civil::Date>().is_ok(),
            "byte" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            }
            "int32" | "int64" | "double" | "float" => true,
            _ => true,
        };
        if !ok {
            errs.push(Cause::invalid(
                path,
                v,
                &format!("{path} in body must be of type {f}: {s:?}"),
            ));
        }
    }
}

fn validate_number(schema: &Value, v: &Value, path: &str, errs: &mut Vec<Cause>) {
    let Some(x) = v.as_f64() else { return };
    if let Some(min) = schema.get("minimum") {
        let excl = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
        if let Some(m) = min.as_f64() {
            if excl && x <= m {
                errs.push(Cause::invalid(
                    path,
                    v,
                    &format!("{path} in body should be greater than {}", fmt_num(min)),
                ));
            } else if !excl && x < m {
                errs.push(Cause::invalid(
                    path,
                    v,
                    &format!("{path} in body should be greater than or equal to {}", fmt_num(min)),
                ));
            }
        }
    }
    if let Some(max) = schema.get("maximum") {
        let excl = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
        if let Some(m) = max.as_f64() {
            if excl && x >= m {
                errs.push(Cause::invalid(
                    path,
                    v,
                    &format!("{path} in body should be less than {}", fmt_num(max)),
                ));
            } else if !excl && x > m {
                errs.push(Cause::invalid(
                    path,
                    v,
                    &format!("{path} in body should be less than or equal to {}", fmt_num(max)),
                ));
            }
        }
    }
    if let Some(mo) = schema.get("multipleOf").and_then(Value::as_f64)
        && mo != 0.0
        && (x / mo).fract() != 0.0
    {
        errs.push(Cause::invalid(
            path,
            v,
            &format!("{path} in body should be a multiple of {mo}"),
        ));
    }
}

fn validate_array(schema: &Value, items: &[Value], v: &Value, path: &str, errs: &mut Vec<Cause>) {
    let n = items.len() as u64;
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && n > max
    {
        errs.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && n < min
    {
        errs.push(Cause::invalid(
            path,
            &Value::from(n),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    let _ = v;
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, it) in items.iter().enumerate() {
                if items[..i].contains(it) {
                    errs.push(Cause::new(
                        "FieldValueDuplicate",
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", go_value(it)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |it: &Value| -> Vec<Value> {
                keys.iter()
                    .map(|k| it.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, it) in items.iter().enumerate() {
                let k = key_of(it);
                if items[..i].iter().any(|o| key_of(o) == k) {
                    let mut m = Map::new();
                    for (name, val) in keys.iter().zip(k) {
                        m.insert(name.to_string(), val);
                    }
                    errs.push(Cause::new(
                        "FieldValueDuplicate",
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", Value::Object(m)),
                    ));
                }
            }
        }
        _ => {}
    }
    if let Some(is) = schema.get("items") {
        for (i, it) in items.iter().enumerate() {
            validate(is, it, &format!("{path}[{i}]"), false, errs);
        }
    }
}

fn validate_object(schema: &Value, obj: &Map<String, Value>, v: &Value, path: &str, root: bool, errs: &mut Vec<Cause>) {
    let _ = v;
    let n = obj.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && n > max
    {
        errs.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && n < min
    {
        errs.push(Cause::invalid(
            path,
            &Value::from(n),
            &format!("{path} in body should have at least {min} properties"),
        ));
    }
    for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = r.as_str()
            && !obj.contains_key(name)
        {
            errs.push(Cause::required(&prop_path(path, name), ""));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    for (k, child) in obj {
        if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
            validate(cs, child, &prop_path(path, k), false, errs);
        }
    }
}

fn has_cel_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_cel_rules),
        Value::Array(a) => a.iter().any(has_cel_rules),
        _ => false,
    }
}

/// The value at a field path as causes name it (`spec.items[2].name`).
fn value_at<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(root, |value, segment| {
        let (key, indices) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        let mut current = if key.is_empty() { value } else { value.get(key)? };
        for index in indices.split('[').filter(|s| !s.is_empty()) {
            current = current.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
        Some(current)
    })
}

/// Full custom resource validation: structural first; CEL rules only when that passes (as the real
/// server, which then reports that some rules were not checked).
pub fn validate_custom(
    schema: &Value,
    obj: &Value,
    old: Option<&Value>,
    group: &str,
    version: &str,
    kind: &str,
) -> Vec<Cause> {
    let mut errs = Vec::new();
    validate(schema, obj, "", true, &mut errs);
    // Validation ratcheting (CRDValidationRatcheting, on by default since 1.30, GA in 1.33): on an
    // update, a value left unchanged is not refused for failing a schema that has since become
    // stricter, so an object stored under an older schema can still have its status written.
    if let Some(old) = old {
        errs.retain(|cause| {
            let now = value_at(obj, &cause.field);
            now.is_none() || now != value_at(old, &cause.field)
        });
    }
    if !errs.is_empty() {
        if has_cel_rules(schema) {
            errs.push(Cause::new(
                "FieldValueInvalid",
                "<nil>",
                "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        }
        return errs;
    }
    if !has_cel_rules(schema) {
        return errs;
    }
    let ctx = kube_cel::RootContext {
        api_version: format!("{group}/{version}"),
        api_group: group.to_string(),
        kind: kind.to_string(),
    };
    let validator = kube_cel::Validator::new();
    if let Err(failures) = validator.validate_with_context(schema, obj, old, Some(&ctx)) {
        for f in failures.iter() {
            let field = if f.field_path.is_empty() {
                "<nil>".to_string()
            } else {
                f.field_path.clone()
            };
            let reason = f.reason.clone().unwrap_or_else(|| "FieldValueInvalid".to_string());
            let prefix = match reason.as_str() {
                "FieldValueForbidden" => "Forbidden",
                "FieldValueRequired" => "Required value",
                "FieldValueDuplicate" => "Duplicate value",
                _ => "Invalid value",
            };
            errs.push(Cause::new(&reason, &field, format!("{prefix}: {}", f.message)));
        }
    }
    errs
}
