//! `metav1.Status` error bodies shaped like the real kube-apiserver's.

use serde_json::{Map, Value, json};

/// An error response: an HTTP code plus either a Status JSON body or a plain-text body
/// (the real server answers unknown paths with `404 page not found`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: ErrorBody,
}

#[derive(Debug, Clone)]
pub enum ErrorBody {
    Status(Value),
    Text(String),
}

/// One `details.causes` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Cause {
        Cause {
            reason: reason.to_string(),
            message: message.into(),
            field: field.to_string(),
        }
    }
    /// `field.Invalid(path, value, detail)`: "Invalid value: <value>: <detail>".
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
        Cause::new(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {}: {detail}", go_value(value)),
        )
    }
    pub fn required(field: &str, detail: &str) -> Cause {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Cause::new("FieldValueRequired", field, msg)
    }
    pub fn forbidden(field: &str, detail: &str) -> Cause {
        Cause::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }
    fn to_json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// Renders a value the way `field.Invalid` prints it (`%#v`-ish: strings quoted, numbers bare).
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        other => other.to_string(),
    }
}

/// The `reason` the real server uses for an HTTP status code.
pub fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        406 => "NotAcceptable",
        409 => "Conflict",
        410 => "Expired",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

pub fn status_body(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("kind".into(), json!("Status"));
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("metadata".into(), json!({}));
    m.insert("status".into(), json!("Failure"));
    if !message.is_empty() {
        m.insert("message".into(), json!(message));
    }
    if !reason.is_empty() {
        m.insert("reason".into(), json!(reason));
    }
    if let Some(d) = details {
        m.insert("details".into(), d);
    }
    m.insert("code".into(), json!(code));
    Value::Object(m)
}

/// Builds `details` with only the non-empty fields, like Go's omitempty.
pub fn details(name: &str, group: &str, kind: &str, causes: &[Cause]) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), json!(kind));
    }
    if !causes.is_empty() {
        d.insert(
            "causes".into(),
            Value::Array(causes.iter().map(Cause::to_json).collect()),
        );
    }
    Value::Object(d)
}

/// `resource.group` the way `schema.GroupResource.String()` prints it.
pub fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> ApiError {
        ApiError {
            code,
            body: ErrorBody::Status(status_body(code, reason, message, details)),
        }
    }

    pub fn text(code: u16, text: &str) -> ApiError {
        ApiError {
            code,
            body: ErrorBody::Text(text.to_string()),
        }
    }

    /// `404 page not found` (plain text), what the real server answers for unknown paths/resources.
    pub fn page_not_found() -> ApiError {
        ApiError::text(404, "404 page not found\n")
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::status(
            404,
            "NotFound",
            &format!("{} {name:?} not found", group_resource(group, resource)),
            Some(details(name, group, resource, &[])),
        )
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::status(
            409,
            "AlreadyExists",
            &format!("{} {name:?} already exists", group_resource(group, resource)),
            Some(details(name, group, resource, &[])),
        )
    }

    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> ApiError {
        ApiError::status(
            409,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on {} {name:?}: {detail}",
                group_resource(group, resource)
            ),
            Some(details(name, group, resource, &[])),
        )
    }

    pub fn stale_rv(group: &str, resource: &str, name: &str) -> ApiError {
        ApiError::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid: `Kind.group "name" is invalid: ...` with one cause per field error.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: &[Cause]) -> ApiError {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let rendered: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        // The real server de-duplicates identical errors in the message but not in causes.
        let mut unique: Vec<String> = Vec::new();
        for r in rendered {
            if !unique.contains(&r) {
                unique.push(r);
            }
        }
        let joined = match unique.len() {
            0 => String::new(),
            1 => unique.remove(0),
            _ => format!("[{}]", unique.join(", ")),
        };
        ApiError::status(
            422,
            "Invalid",
            &format!("{qualified} {name:?} is invalid: {joined}"),
            Some(details(name, group, kind, causes)),
        )
    }

    pub fn bad_request(message: &str) -> ApiError {
        ApiError::status(400, "BadRequest", message, None)
    }

    pub fn method_not_allowed(message: &str) -> ApiError {
        ApiError::status(405, "MethodNotAllowed", message, None)
    }

    pub fn unsupported_media(accepted: &[&str]) -> ApiError {
        ApiError::status(
            415,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            None,
        )
    }

    pub fn expired(message: &str) -> ApiError {
        ApiError::status(410, "Expired", message, None)
    }

    pub fn internal(message: &str) -> ApiError {
        ApiError::status(
            500,
            "InternalError",
            &format!("Internal error occurred: {message}"),
            None,
        )
    }

    pub fn not_implemented(message: &str) -> ApiError {
        ApiError::status(501, "NotImplemented", message, None)
    }

    pub fn body_json(&self) -> Option<&Value> {
        match &self.body {
            ErrorBody::Status(v) => Some(v),
            ErrorBody::Text(_) => None,
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
