//! Server-side printing: `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`, what `kubectl get`
//! sends, answers a meta.k8s.io Table instead of the object or list.
//!
//! There is no recorded exchange for this; it is ported from the Kubernetes source:
//! - apiextensions-apiserver `pkg/registry/customresource/tableconvertor`: a `Name` column
//!   (format `name`) then one column per `additionalPrinterColumns` entry; `string` cells are the
//!   JSONPath result printed as text, `integer`/`number`/`boolean` typed values, `date` cells the
//!   time since the timestamp as an age (`<invalid>` for a time in the future, so a date column
//!   can only show the past); a missing value is null.
//! - apiextensions `GetColumnsForVersion`: a version without columns gets a single `Age` column.
//! - apiserver `endpoints/handlers/response.go` `asTable`: each row's `object` is a
//!   PartialObjectMetadata (`includeObject=Metadata`, the default), the whole object (`Object`)
//!   or null (`None`); the Table's metadata is the list's resourceVersion/continue/
//!   remainingItemCount, or the object's resourceVersion for a get.
//! - apimachinery `util/duration.HumanDuration` for ages.
//!
//! Built-in kinds get `Name` and `Age` (the real server has a printer per kind with more columns).

use serde_json::{Map, Value, json};

use super::errors::{ApiError, ApiResult};
use super::jsonpath::JsonPath;
use super::request::{Reply, Req, Target};
use super::store::State;

/// ObjectMeta's swagger description of `name`, the real server's `Name` column description.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// ObjectMeta's swagger description of `creationTimestamp`, used for the default `Age` column.
const AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Turns a successful get/list reply into a Table when the request's Accept header asks for one
/// first; anything else passes through unchanged.
pub fn negotiate(state: &State, t: &Target, req: &Req, reply: Reply) -> ApiResult<Reply> {
    let Some(table_version) = wanted_table(req.accept.as_deref().unwrap_or_default()) else {
        return Ok(reply);
    };
    let Reply::Json(code @ 200, body, headers) = reply else {
        return Ok(reply);
    };
    let include = match req.query.get("includeObject").map(String::as_str) {
        None | Some("") | Some("Metadata") => Include::Metadata,
        Some("Object") => Include::Object,
        Some("None") => Include::None,
        Some(other) => {
            return Err(ApiError::bad_request(&format!(
                "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            )));
        }
    };
    let no_headers = req.query.get("noHeaders").is_some_and(|v| v == "true");
    let columns = columns_for(state, t);
    let table = render(
        &body,
        &columns,
        &Options {
            api_version: format!("meta.k8s.io/{table_version}"),
            include,
            no_headers,
            now: jiff::Timestamp::now(),
        },
    );
    Ok(Reply::Json(code, table, headers))
}

/// The Table version (`v1` or `v1beta1`) if the first acceptable media type asks for a Table.
fn wanted_table(accept: &str) -> Option<&'static str> {
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let base = parts.next().unwrap_or_default();
        if !matches!(base, "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut as_kind, mut group, mut version) = (None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("as", v)) => as_kind = Some(v),
                Some(("g", v)) => group = Some(v),
                Some(("v", v)) => version = Some(v),
                _ => {}
            }
        }
        match (as_kind, group, version) {
            (None, _, _) => return None,
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return Some("v1"),
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => return Some("v1beta1"),
            // Another conversion (PartialObjectMetadata, another group): not served here, so the
            // client's next choice applies.
            _ => continue,
        }
    }
    None
}

/// How each row carries its object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Include {
    /// A PartialObjectMetadata (the default).
    Metadata,
    /// The object itself.
    Object,
    /// Null.
    None,
}

/// Rendering parameters.
pub struct Options {
    /// `meta.k8s.io/v1` or `meta.k8s.io/v1beta1`.
    pub api_version: String,
    /// What each row carries as its `object` (`?includeObject=`).
    pub include: Include,
    /// `?noHeaders=true`: no column definitions (watch events after the first).
    pub no_headers: bool,
    /// The time ages are measured against.
    pub now: jiff::Timestamp,
}

/// One printer column: its definition as served, and the path its cells come from.
#[derive(Debug, Clone)]
pub struct Column {
    /// The TableColumnDefinition (name, type, format, description, priority).
    pub definition: Value,
    /// None for the Name column and for a jsonPath that does not parse (always-null cells).
    path: Option<JsonPath>,
    kind: String,
}

/// The columns a resource is printed with: Name, then the CRD version's
/// additionalPrinterColumns (or Age when it has none); built-ins get Name and Age.
pub fn columns_for(state: &State, t: &Target) -> Vec<Column> {
    let mut columns = vec![Column {
        definition: json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}),
        path: None,
        kind: "name".into(),
    }];
    let printer_columns = if t.def.custom {
        crd_columns(state, t)
    } else {
        Vec::new()
    };
    let printer_columns = if printer_columns.is_empty() {
        vec![
            json!({"name": "Age", "type": "date", "description": AGE_DESCRIPTION, "jsonPath": ".metadata.creationTimestamp"}),
        ]
    } else {
        printer_columns
    };
    for c in printer_columns {
        let path = c["jsonPath"].as_str().unwrap_or_default();
        let description = match c["description"].as_str() {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => format!("Custom resource definition column (in JSONPath format): {path}"),
        };
        let kind = c["type"].as_str().unwrap_or_default().to_string();
        columns.push(Column {
            definition: json!({
                "name": c["name"].as_str().unwrap_or_default(),
                "type": kind,
                "format": c["format"].as_str().unwrap_or_default(),
                "description": description,
                "priority": c["priority"].as_i64().unwrap_or(0),
            }),
            path: JsonPath::parse(path).ok(),
            kind,
        });
    }
    columns
}

fn crd_columns(state: &State, t: &Target) -> Vec<Value> {
    let name = format!("{}.{}", t.def.plural, t.def.group);
    state
        .get("apiextensions.k8s.io/customresourcedefinitions", "", &name)
        .and_then(|crd| crd.pointer("/spec/versions")?.as_array())
        .and_then(|versions| {
            versions
                .iter()
                .find(|v| v["name"].as_str() == Some(t.def.version.as_str()))
        })
        .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
        .unwrap_or_default()
}

/// The Table for `body`, a single object or a list.
pub fn render(body: &Value, columns: &[Column], opts: &Options) -> Value {
    let is_list = body.get("items").is_some_and(Value::is_array);
    let mut meta = Map::new();
    if is_list {
        let m = &body["metadata"];
        meta.insert("resourceVersion".into(), m["resourceVersion"].clone());
        for key in ["continue", "remainingItemCount"] {
            match m.get(key) {
                Some(Value::String(s)) if s.is_empty() => {}
                Some(v) if !v.is_null() => {
                    meta.insert(key.into(), v.clone());
                }
                _ => {}
            }
        }
    } else if let Some(rv) = body.pointer("/metadata/resourceVersion") {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    let objects: Vec<&Value> = if is_list {
        body["items"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
    } else {
        vec![body]
    };
    let rows: Vec<Value> = objects.into_iter().map(|o| row(o, columns, opts)).collect();
    let mut table = Map::new();
    table.insert("kind".into(), json!("Table"));
    table.insert("apiVersion".into(), json!(opts.api_version));
    table.insert("metadata".into(), Value::Object(meta));
    if !opts.no_headers {
        table.insert(
            "columnDefinitions".into(),
            Value::Array(columns.iter().map(|c| c.definition.clone()).collect()),
        );
    }
    table.insert("rows".into(), Value::Array(rows));
    Value::Object(table)
}

fn row(obj: &Value, columns: &[Column], opts: &Options) -> Value {
    let cells: Vec<Value> = columns
        .iter()
        .map(|c| match (&c.path, c.kind.as_str()) {
            (None, "name") => obj.pointer("/metadata/name").cloned().unwrap_or(json!("")),
            (None, _) => Value::Null,
            (Some(path), kind) => match path.find(obj).first() {
                None => Value::Null,
                Some(v) => cell(kind, v, opts.now),
            },
        })
        .collect();
    let object = match opts.include {
        Include::Object => obj.clone(),
        Include::None => Value::Null,
        Include::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": opts.api_version,
            "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
        }),
    };
    json!({"cells": cells, "object": object})
}

/// One cell from the value a column's path found, by the column's type.
fn cell(kind: &str, v: &Value, now: jiff::Timestamp) -> Value {
    match (kind, v) {
        (_, Value::Null) => Value::Null,
        ("string", v) => json!(as_text(v)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => json!(i),
            // Go converts a float64 to int64 by truncation.
            None => n.as_f64().map_or(Value::Null, |f| json!(f.trunc() as i64)),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        // An empty timestamp decodes to Go's zero time, like 0001-01-01T00:00:00Z.
        ("date", Value::String(s)) if s.is_empty() => json!("<unknown>"),
        ("date", Value::String(s)) => json!(match s.parse::<jiff::Timestamp>() {
            Err(_) => "<invalid>".to_string(),
            Ok(t) if t.as_second() == ZERO_TIME_SECONDS => "<unknown>".to_string(),
            Ok(t) => human_duration(now.as_nanosecond() - t.as_nanosecond()),
        }),
        _ => Value::Null,
    }
}

/// 0001-01-01T00:00:00Z, Go's zero time, which ages print as `<unknown>`.
const ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// The JSONPath result printed as text: strings as they are, scalars as Go prints them, maps and
/// lists as compact JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// An age as `kubectl get` shows it, with ~2-3 significant figures (HumanDuration). More than
/// a second in the future is `<invalid>`.
pub fn human_duration(nanos: i128) -> String {
    const SECOND: i128 = 1_000_000_000;
    // Go's int(d.Seconds()) truncates towards zero.
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if nanos < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-29T10:00:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn at(offset_seconds: i64) -> String {
        (now() + jiff::SignedDuration::from_secs(offset_seconds)).to_string()
    }

    fn column(name: &str, kind: &str, path: &str, priority: i64) -> Column {
        Column {
            definition: json!({"name": name, "type": kind, "format": "", "description": "", "priority": priority}),
            path: JsonPath::parse(path).ok(),
            kind: kind.into(),
        }
    }

    #[test]
    fn ages_read_like_kubectl() {
        let s = 1_000_000_000i128;
        let cases = [
            (-2 * s, "<invalid>"),
            (-s - 1, "0s"),
            (0, "0s"),
            (119 * s, "119s"),
            (125 * s, "2m5s"),
            (600 * s, "10m"),
            (179 * 60 * s, "179m"),
            (3 * 3600 * s + 60 * s, "3h1m"),
            (8 * 3600 * s, "8h"),
            (50 * 3600 * s, "2d2h"),
            (30 * 24 * 3600 * s, "30d"),
            (3 * 365 * 24 * 3600 * s + 24 * 3600 * s, "3y1d"),
            (9 * 365 * 24 * 3600 * s, "9y"),
        ];
        for (nanos, want) in cases {
            assert_eq!(human_duration(nanos), want, "{nanos}ns");
        }
    }

    #[test]
    fn cells_follow_the_column_type() {
        let obj = json!({
            "metadata": {"name": "one", "resourceVersion": "7", "creationTimestamp": at(-3600)},
            "spec": {"n": 2.7, "flag": true, "m": {"a": 1}},
            "status": {"expires": at(1800), "past": at(-90), "bad": "yesterday"},
        });
        let columns = vec![
            column("Int", "integer", ".spec.n", 0),
            column("Num", "number", ".spec.n", 0),
            column("Bool", "boolean", ".spec.flag", 0),
            column("Text", "string", ".spec.n", 0),
            column("Map", "string", ".spec.m", 0),
            column("Future", "date", ".status.expires", 0),
            column("Past", "date", ".status.past", 0),
            column("Bad", "date", ".status.bad", 0),
            column("Missing", "string", ".status.nothing", 1),
            column("WrongType", "boolean", ".spec.n", 0),
        ];
        let opts = Options {
            api_version: "meta.k8s.io/v1".into(),
            include: Include::Metadata,
            no_headers: false,
            now: now(),
        };
        let table = render(&obj, &columns, &opts);
        assert_eq!(
            table["rows"][0]["cells"],
            json!([
                2,
                2.7,
                true,
                "2.7",
                "{\"a\":1}",
                "<invalid>",
                "90s",
                "<invalid>",
                null,
                null
            ])
        );
        assert_eq!(table["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "one");
        assert_eq!(table["columnDefinitions"][8]["priority"], 1);
    }

    #[test]
    fn lists_carry_list_metadata_and_include_object_choices() {
        let list = json!({
            "metadata": {"resourceVersion": "9", "continue": "abc", "remainingItemCount": 3},
            "items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}],
        });
        let name = column("Name", "name", "", 0);
        let name = Column { path: None, ..name };
        let mut opts = Options {
            api_version: "meta.k8s.io/v1".into(),
            include: Include::None,
            no_headers: true,
            now: now(),
        };
        let table = render(&list, std::slice::from_ref(&name), &opts);
        assert_eq!(
            table["metadata"],
            json!({"resourceVersion": "9", "continue": "abc", "remainingItemCount": 3})
        );
        assert!(table.get("columnDefinitions").is_none());
        assert_eq!(table["rows"][1]["cells"], json!(["b"]));
        assert_eq!(table["rows"][1]["object"], Value::Null);
        opts.include = Include::Object;
        let table = render(&list, std::slice::from_ref(&name), &opts);
        assert_eq!(table["rows"][0]["object"], list["items"][0]);
    }

    #[test]
    fn only_a_first_choice_table_is_a_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(wanted_table(kubectl), Some("v1"));
        assert_eq!(
            wanted_table("application/json;as=Table;v=v1beta1;g=meta.k8s.io"),
            Some("v1beta1")
        );
        assert_eq!(wanted_table("application/json"), None);
        assert_eq!(
            wanted_table("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"),
            None
        );
        assert_eq!(wanted_table("application/vnd.kubernetes.protobuf, */*"), None);
    }
}
