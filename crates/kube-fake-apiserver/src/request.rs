//! A request as the handlers see it (parsed from HTTP, with the user that authentication found), what
//! it addresses, the reply a handler gives, and the record kept of each request served.

use std::collections::HashMap;

use serde_json::Value;

use crate::auth::UserInfo;
use crate::errors::{ApiError, ErrorBody};
use crate::resources::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};

/// A parsed HTTP request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub raw_query: String,
    pub query: HashMap<String, String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    pub actor: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
    /// Who sent it (set by authentication before routing).
    pub user: UserInfo,
}

impl Req {
    pub(crate) fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|s| !s.is_empty())
    }
    pub(crate) fn flag(&self, k: &str) -> bool {
        matches!(self.q(k), Some("true") | Some("1"))
    }
}

/// Parameters of a watch, handed to the streaming task.
#[derive(Debug, Clone)]
pub struct WatchReq {
    pub def: ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub resource_version: Option<u64>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout_seconds: Option<u64>,
}

pub enum Reply {
    Json(u16, Value, Vec<(String, String)>),
    Text(u16, String),
    Watch(Box<WatchReq>),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        match e.body {
            ErrorBody::Status(v) => Reply::Json(e.code, v, Vec::new()),
            ErrorBody::Text(t) => Reply::Text(e.code, t),
        }
    }
}

/// What a request addresses.
pub struct Target {
    pub def: ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// The field manager of a write: `?fieldManager`, else the User-Agent's first segment.
pub(crate) fn manager_name(req: &Req) -> String {
    if let Some(m) = req.q("fieldManager") {
        return m.to_string();
    }
    let ua = req.user_agent.as_deref().unwrap_or_default();
    let prefix: String = ua
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect();
    if prefix.is_empty() {
        "unknown".to_string()
    } else {
        prefix
    }
}

/// One request the fake served.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// The `x-test-actor` header of the request (see [`crate::FakeApiServer::client_as`]).
    pub actor: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub status: u16,
}

impl RecordedRequest {
    /// The record of `req`, answered with `status`.
    pub(crate) fn of(req: &Req, status: u16) -> Self {
        Self {
            actor: req.actor.clone(),
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.raw_query.clone(),
            content_type: req.content_type.clone(),
            status,
        }
    }

    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }
}
