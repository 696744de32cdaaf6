//! An object's metadata: reading and setting its fields, its key in a storage, its finalizers,
//! and the fresh uids and timestamps the server stamps on it.

use serde_json::{Value, json};

/// An object's key in its storage: (namespace, name), the namespace "" when cluster-scoped.
pub type Key = (String, String);

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn key_of(obj: &Value) -> Key {
    (
        meta_str(obj, "namespace").to_string(),
        meta_str(obj, "name").to_string(),
    )
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn set_meta(obj: &mut Value, field: &str, v: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object)
        && let Value::Object(m) = obj
    {
        m.insert("metadata".into(), json!({}));
    }
    if let Some(Value::Object(m)) = obj.get_mut("metadata") {
        if v.is_null() {
            m.remove(field);
        } else {
            m.insert(field.to_string(), v);
        }
    }
}
