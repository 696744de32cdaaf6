//! What the real API server concludes about data sizes from a schema alone, before any object
//! exists: the longest a string can be, how many items a list or entries a map can hold, and how
//! many times a schema node can repeat in one request. Unbounded values are bounded by the maximum
//! request size, so a missing `maxLength` / `maxItems` / `maxProperties` is never "infinite", just
//! very large.

use serde_json::Value;

/// The largest request body the server accepts (3 MiB); every unbounded size derives from it.
pub(crate) const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;

/// An unbounded string fills the whole request minus its two quotes.
pub(crate) const UNBOUNDED_STRING: u64 = MAX_REQUEST_BYTES - 2;

/// The CEL type a schema node turns into, as far as cost estimation cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Strings (also bytes, durations and timestamps, which are sized like strings).
    Str,
    List,
    Map,
    Object,
    /// Booleans, integers, numbers.
    Scalar,
    /// `x-kubernetes-int-or-string`.
    Dyn,
}

fn ty(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn format(s: &Value) -> &str {
    s.get("format").and_then(Value::as_str).unwrap_or("")
}

fn int(s: &Value, key: &str) -> Option<u64> {
    // Negative limits count as zero, as on the real server.
    s.get(key).and_then(Value::as_i64).map(|v| v.max(0).unsigned_abs())
}

fn int_or_string(s: &Value) -> bool {
    s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true)
}

/// The schema of a map's values, if `s` is a map (an object with an additionalProperties schema).
pub(crate) fn map_values(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

/// The schema of a list's items, if `s` is a list.
pub(crate) fn list_items(s: &Value) -> Option<&Value> {
    if ty(s) == "array" { s.get("items") } else { None }
}

/// The schema of property `name` of an object.
pub(crate) fn property<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s.get("properties").and_then(|p| p.get(name))
}

/// The CEL kind of a schema node.
pub(crate) fn kind(s: &Value) -> Kind {
    if int_or_string(s) {
        return Kind::Dyn;
    }
    match ty(s) {
        "string" => Kind::Str,
        "array" => Kind::List,
        "object" if map_values(s).is_some() => Kind::Map,
        "object" => Kind::Object,
        _ => Kind::Scalar,
    }
}

/// The largest size the estimator assumes for a value of this schema: bytes for strings (a
/// character may take 4 bytes in UTF-8, so `maxLength` counts four times), items for lists,
/// entries for maps, zero for everything else.
pub(crate) fn max_elements(s: &Value) -> u64 {
    if int_or_string(s) {
        return UNBOUNDED_STRING;
    }
    match kind(s) {
        Kind::Str => match format(s) {
            "byte" => int(s, "maxLength").unwrap_or(UNBOUNDED_STRING),
            // Formatted strings are sized by their format, whatever maxLength says.
            "duration" | "date-time" => 32,
            "date" => 12,
            _ => int(s, "maxLength").map_or(UNBOUNDED_STRING, |n| n.saturating_mul(4)),
        },
        Kind::List => int(s, "maxItems").unwrap_or_else(|| {
            let item = list_items(s).map_or(1, min_json_size);
            UNBOUNDED_STRING / (item + 1)
        }),
        Kind::Map => int(s, "maxProperties").unwrap_or_else(|| {
            // Quotes, a colon and a comma around a near-empty key, plus the smallest value.
            let entry = map_values(s).map_or(1, min_json_size) + 6;
            UNBOUNDED_STRING / entry
        }),
        Kind::Object | Kind::Scalar | Kind::Dyn => 0,
    }
}

/// The fewest JSON bytes a value of this schema can take (required properties included,
/// defaulted ones not, since the server fills those in).
pub(crate) fn min_json_size(s: &Value) -> u64 {
    if int_or_string(s) {
        return 1;
    }
    match ty(s) {
        "boolean" => 4,
        "number" | "integer" => 1,
        "string" => match format(s) {
            "duration" => 3,
            "date" => 12,
            "date-time" => 21,
            _ => 2,
        },
        "array" => 2,
        "object" => {
            let required = s.get("required").and_then(Value::as_array).into_iter().flatten();
            required
                .filter_map(Value::as_str)
                .fold(2, |acc, name| match property(s, name) {
                    Some(p) if p.get("default").is_none() => acc + name.len() as u64 + min_json_size(p) + 4,
                    _ => acc,
                })
        }
        _ => 1,
    }
}

/// How often data of this schema can repeat in one request when no parent bounds it.
pub(crate) fn max_cardinality(s: &Value) -> u64 {
    MAX_REQUEST_BYTES / (min_json_size(s) + 1)
}

/// By how much this node multiplies the number of its children: maxItems / maxProperties for
/// lists and maps (`None` when unbounded), one for objects and scalars.
pub(crate) fn child_factor(s: &Value) -> Option<u64> {
    match kind(s) {
        Kind::List => int(s, "maxItems"),
        Kind::Map => int(s, "maxProperties"),
        Kind::Str | Kind::Object | Kind::Scalar | Kind::Dyn => Some(1),
    }
}
