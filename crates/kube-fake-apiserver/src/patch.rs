//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic-merge approximation.

use serde_json::Value;

use crate::field_schema::{Hints, ListType};
use crate::fields::item_el;

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            let entry = t.entry(k.clone()).or_insert(Value::Null);
            merge_patch(entry, v);
        }
    }
}

/// Strategic merge patch for built-in kinds: like a merge patch, but lists with merge keys are
/// merged by key and `$patch`/`$retainKeys`/`$setElementOrder` directives are honoured or dropped.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value, hints: &Hints, hp: &mut Vec<String>) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        strip_directives(&mut clean);
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
                && let (Some(Value::Array(list)), Some(del)) = (t.get_mut(field), v.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        hp.push(k.clone());
        let lt = hints.list_type(hp);
        match (t.get_mut(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) if matches!(lt, ListType::Map(_)) => {
                for item in items {
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    let Some(el) = item_el(&lt, item) else {
                        continue;
                    };
                    let pos = cur.iter().position(|c| item_el(&lt, c).as_ref() == Some(&el));
                    match (pos, delete) {
                        (Some(i), true) => {
                            cur.remove(i);
                        }
                        (Some(i), false) => {
                            hp.push("[]".into());
                            strategic_merge_patch(&mut cur[i], item, hints, hp);
                            hp.pop();
                        }
                        (None, false) => {
                            let mut clean = item.clone();
                            strip_directives(&mut clean);
                            cur.push(clean);
                        }
                        (None, true) => {}
                    }
                }
            }
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge_patch(existing, v, hints, hp),
            _ => {
                let mut clean = v.clone();
                strip_directives(&mut clean);
                t.insert(k.clone(), clean);
            }
        }
        hp.pop();
    }
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.starts_with('$'));
            for c in m.values_mut() {
                strip_directives(c);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn pointer_get<'a>(v: &'a Value, toks: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn parent_mut<'a>(v: &'a mut Value, toks: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i = t.parse::<usize>().ok()?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, toks: &[String], val: Value) -> Result<(), String> {
    let Some((last, parent)) = toks.split_last() else {
        *doc = val;
        return Ok(());
    };
    let p = parent_mut(doc, parent).ok_or_else(|| "missing path".to_string())?;
    match p {
        Value::Object(m) => {
            m.insert(last.clone(), val);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(val);
                return Ok(());
            }
            let i = last
                .parse::<usize>()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, val);
            Ok(())
        }
        _ => Err("missing path".to_string()),
    }
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, String> {
    let Some((last, parent)) = toks.split_last() else {
        return Err("cannot remove the whole document".into());
    };
    let p = parent_mut(doc, parent).ok_or_else(|| "missing path".to_string())?;
    match p {
        Value::Object(m) => m.remove(last).ok_or_else(|| "missing path".to_string()),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| "missing path".to_string())?;
            if i >= a.len() {
                return Err("missing path".into());
            }
            Ok(a.remove(i))
        }
        _ => Err("missing path".into()),
    }
}

/// RFC 6902. Errors carry a message for a 422 like the real server's
/// ("the server rejected our request due to an error in our request").
pub fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or_else(|| "json patch must be an array".to_string())?;
    for op in ops {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("json patch operation without op")?;
        let path = split_pointer(
            op.get("path")
                .and_then(Value::as_str)
                .ok_or("json patch operation without path")?,
        )?;
        match name {
            "add" => add(
                doc,
                &path,
                op.get("value").cloned().ok_or("add operation does not have a value")?,
            )?,
            "remove" => {
                remove(doc, &path)
                    .map_err(|_| format!("remove operation does not apply: doc is missing path: {}", ptr(&path)))?;
            }
            "replace" => {
                let val = op
                    .get("value")
                    .cloned()
                    .ok_or("replace operation does not have a value")?;
                if pointer_get(doc, &path).is_none() {
                    return Err(format!(
                        "replace operation does not apply: doc is missing key: {}",
                        ptr(&path)
                    ));
                }
                if path.is_empty() {
                    *doc = val;
                } else {
                    remove(doc, &path)?;
                    add(doc, &path, val)?;
                }
            }
            "move" | "copy" => {
                let from = split_pointer(op.get("from").and_then(Value::as_str).ok_or("missing from")?)?;
                let val = pointer_get(doc, &from).cloned().ok_or_else(|| {
                    format!(
                        "{name} operation does not apply: doc is missing from path: {}",
                        ptr(&from)
                    )
                })?;
                if name == "move" {
                    remove(doc, &from)?;
                }
                add(doc, &path, val)?;
            }
            "test" => {
                let val = op.get("value").ok_or("test operation does not have a value")?;
                // Like evanphx/json-patch (used by the API server): a missing path equals null,
                // which kube-runtime's finalizer helper relies on.
                let matches = match pointer_get(doc, &path) {
                    None => val.is_null(),
                    Some(current) => current == val,
                };
                if !matches {
                    return Err(format!("testing value {} failed: test failed", ptr(&path)));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

fn ptr(toks: &[String]) -> String {
    toks.iter().map(|t| format!("/{t}")).collect()
}
