//! Authentication: who sent a request. A request without credentials is the cluster admin (the
//! tests' own client, like a kubeconfig with a client certificate in `system:masters`); a bearer
//! token must be one the fake issued ([`crate::FakeApiServer::issue_token`], or a TokenRequest:
//! see `token_request`), else 401 with the real server's body. What each user may do is the
//! authorizer's business, not this module's.

use std::collections::HashMap;

use crate::errors::ApiError;

/// The authenticated user of a request, as the real server's `user.Info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// `kubernetes-admin`, `system:serviceaccount:<ns>:<name>`, ...
    pub username: String,
    /// The user's uid (a ServiceAccount's uid for its tokens; empty for the admin).
    pub uid: String,
    /// Groups, `system:authenticated` included.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The cluster admin: member of `system:masters`, which the real server lets do anything.
    pub fn admin() -> UserInfo {
        UserInfo {
            username: "kubernetes-admin".to_string(),
            uid: String::new(),
            groups: vec!["system:masters".to_string(), "system:authenticated".to_string()],
        }
    }

    /// A ServiceAccount's identity, with the groups the real token authenticator gives it.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> UserInfo {
        UserInfo {
            username: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.to_string(),
            groups: vec![
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_string(),
            ],
        }
    }

    /// Whether the user is in `system:masters` (every request authorized).
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Bearer tokens the fake has issued, and whom each stands for.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: HashMap<String, UserInfo>,
}

impl Tokens {
    /// Issues a new opaque bearer token for `user`.
    pub fn issue(&mut self, user: UserInfo) -> String {
        let random: [u8; 24] = rand::random();
        let token: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let token = format!("fake-apiserver-token.{token}");
        self.by_token.insert(token.clone(), user);
        token
    }

    /// The user of a request from its `Authorization` header: none is the admin, a bearer token
    /// the fake issued is its user, anything else is 401 Unauthorized.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        let Some(header) = authorization else {
            return Ok(UserInfo::admin());
        };
        header
            .strip_prefix("Bearer ")
            .and_then(|token| self.by_token.get(token.trim()))
            .cloned()
            .ok_or_else(|| ApiError::status(401, "Unauthorized", "Unauthorized", None))
    }
}
