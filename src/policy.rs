//! The cluster administrator's access policy: which namespaces may mint tokens for which
//! clusters, Postgres roles, Secrets Manager names and signing roles.
//!
//! A DsqlCredential turns "may create an object in a namespace" into "may log in to a
//! database", so the operator refuses to act for a namespace the policy does not cover. The
//! policy is operator configuration (a file the Helm chart renders from its values into a
//! ConfigMap in the operator's namespace), not an object namespace users can create or edit.
//! A credential is allowed when at least one rule whose `namespaces` match its namespace allows
//! everything it asks for; otherwise it is Stalled with reason `PolicyDenied` and a message that
//! names the rules that were considered and what each of them refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

/// The Postgres role whose tokens are `DbConnectAdmin` tokens.
pub const ADMIN_ROLE: &str = "admin";

/// Rules, tried in order; the first that allows the whole request wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessPolicy {
    /// The rules. An empty list denies everything.
    pub rules: Vec<AccessRule>,
}

/// One grant: the namespaces it covers and what they may ask for.
///
/// Patterns are globs: `*` matches any run of characters (including none, and including `/`),
/// `?` matches one character, everything else matches itself. In `secretNames` and
/// `signingRoles`, `{namespace}`, `{name}` (the DsqlCredential's) and `{prefix}` (the
/// operator's `--secret-name-prefix`) are replaced before matching, so one rule can confine
/// every namespace to its own path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessRule {
    /// Named in `PolicyDenied` messages and in the audit trail.
    pub name: String,
    /// Namespaces this rule covers (globs).
    pub namespaces: Vec<String>,
    /// Clusters these namespaces may mint for: globs matched against the cluster identifier and
    /// against its endpoint host name. Defaults to any cluster the operator's IAM policy reaches.
    #[serde(default = "any")]
    pub clusters: Vec<String>,
    /// Postgres roles other than `admin` (globs). Defaults to any. A pattern never grants
    /// `admin`: that takes `allowAdmin`.
    #[serde(default = "any")]
    pub roles: Vec<String>,
    /// Whether these namespaces may mint `admin` (DbConnectAdmin) tokens. Defaults to false.
    #[serde(default)]
    pub allow_admin: bool,
    /// Secrets Manager names these namespaces may write (globs with placeholders). Defaults to
    /// `{prefix}/{namespace}/*`: each namespace only under its own path.
    #[serde(default = "own_path")]
    pub secret_names: Vec<String>,
    /// IAM role ARNs these namespaces may name in `token.signingRoleArn` (globs with
    /// placeholders). Defaults to none.
    #[serde(default)]
    pub signing_roles: Vec<String>,
    /// Whether tokens must be signed by a `token.signingRoleArn` rather than by the operator's
    /// own identity. Defaults to false.
    #[serde(default)]
    pub require_signing_role: bool,
}

fn any() -> Vec<String> {
    vec!["*".to_owned()]
}

fn own_path() -> Vec<String> {
    vec!["{prefix}/{namespace}/*".to_owned()]
}

impl Default for AccessPolicy {
    /// The policy without a policy file: every watched namespace may mint non-admin tokens for
    /// any cluster the operator's IAM policy reaches, into secrets under its own path, signed by
    /// the operator.
    fn default() -> Self {
        Self {
            rules: vec![AccessRule {
                name: "default".to_owned(),
                namespaces: any(),
                clusters: any(),
                roles: any(),
                allow_admin: false,
                secret_names: own_path(),
                signing_roles: Vec::new(),
                require_signing_role: false,
            }],
        }
    }
}

/// What a DsqlCredential asks for, as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The credential's namespace.
    pub namespace: &'a str,
    /// The credential's name.
    pub name: &'a str,
    /// Cluster identifier (first label of the endpoint).
    pub cluster_identifier: &'a str,
    /// Cluster endpoint host name.
    pub cluster_endpoint: &'a str,
    /// Postgres role.
    pub role: &'a str,
    /// Secrets Manager secret name.
    pub secret_name: &'a str,
    /// The role that signs, when not the operator itself.
    pub signing_role: Option<&'a str>,
}

/// Why a policy file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("reading access policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a policy.
    #[error("access policy {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The operator's `--secret-name-prefix`, which `{prefix}` stands for.
#[derive(Debug, Clone, Copy)]
pub struct Placeholders<'a> {
    /// Default secret name prefix.
    pub prefix: &'a str,
}

impl AccessPolicy {
    /// Reads and checks a policy file (YAML or JSON).
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid { path: shown, message })
    }

    /// Parses and checks policy text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let policy: AccessPolicy = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        policy.check()?;
        Ok(policy)
    }

    /// Refuses policies whose meaning would surprise the administrator who wrote them.
    fn check(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for rule in &self.rules {
            if rule.name.trim().is_empty() {
                return Err("every rule needs a name".to_owned());
            }
            if !names.insert(rule.name.as_str()) {
                return Err(format!("two rules are named {:?}", rule.name));
            }
            let lists = [
                ("namespaces", &rule.namespaces),
                ("clusters", &rule.clusters),
                ("roles", &rule.roles),
                ("secretNames", &rule.secret_names),
            ];
            for (field, patterns) in lists {
                if patterns.is_empty() {
                    return Err(format!(
                        "rule {:?}: {field} is empty, so the rule allows nothing",
                        rule.name
                    ));
                }
            }
            for (field, patterns) in lists.into_iter().chain([("signingRoles", &rule.signing_roles)]) {
                if patterns.iter().any(|p| p.is_empty()) {
                    return Err(format!("rule {:?}: {field} has an empty pattern", rule.name));
                }
            }
            if rule.roles.iter().any(|r| r == ADMIN_ROLE) {
                return Err(format!(
                    "rule {:?}: roles lists \"admin\"; admin tokens are granted only by allowAdmin: true",
                    rule.name
                ));
            }
            if rule.require_signing_role && rule.signing_roles.is_empty() {
                return Err(format!(
                    "rule {:?}: requireSigningRole is true but signingRoles is empty, so the rule allows nothing",
                    rule.name
                ));
            }
        }
        Ok(())
    }

    /// Allows `request`, or says which rules were considered and what each refused.
    pub fn authorize(&self, request: &AccessRequest<'_>, placeholders: Placeholders<'_>) -> Result<(), String> {
        let covering: Vec<&AccessRule> = self
            .rules
            .iter()
            .filter(|rule| rule.namespaces.iter().any(|p| glob_match(p, request.namespace)))
            .collect();
        if covering.is_empty() {
            return Err(format!(
                "no rule of the operator's access policy covers namespace {:?}; ask the cluster administrator to add one",
                request.namespace
            ));
        }
        let mut refusals = Vec::with_capacity(covering.len());
        for rule in covering {
            match rule.refusal(request, placeholders) {
                None => return Ok(()),
                Some(why) => refusals.push(format!("rule {:?} {why}", rule.name)),
            }
        }
        Err(format!(
            "denied by the operator's access policy: {}",
            refusals.join("; ")
        ))
    }
}

impl AccessRule {
    /// The first thing this rule does not allow, or `None` when it allows the whole request.
    fn refusal(&self, request: &AccessRequest<'_>, placeholders: Placeholders<'_>) -> Option<String> {
        let cluster_allowed = self
            .clusters
            .iter()
            .any(|p| glob_match(p, request.cluster_identifier) || glob_match(p, request.cluster_endpoint));
        if !cluster_allowed {
            return Some(format!(
                "does not allow cluster {:?} (clusters: {})",
                request.cluster_identifier,
                self.clusters.join(", ")
            ));
        }
        if request.role == ADMIN_ROLE {
            if !self.allow_admin {
                return Some("does not allow the admin role (allowAdmin is false)".to_owned());
            }
        } else if !self.roles.iter().any(|p| glob_match(p, request.role)) {
            return Some(format!(
                "does not allow role {:?} (roles: {})",
                request.role,
                self.roles.join(", ")
            ));
        }
        let values = [
            ("{namespace}", request.namespace),
            ("{name}", request.name),
            ("{prefix}", placeholders.prefix.trim_end_matches('/')),
        ];
        let allows = |pattern: &str, text: &str| matches(&compile(pattern, &values), text);
        // For messages: the patterns as they applied to this credential.
        let listed = |patterns: &[String]| {
            if patterns.is_empty() {
                return "none".to_owned();
            }
            let shown: Vec<String> = patterns.iter().map(|p| render(&compile(p, &values))).collect();
            shown.join(", ")
        };
        if !self.secret_names.iter().any(|p| allows(p, request.secret_name)) {
            return Some(format!(
                "does not allow secret name {:?} (secretNames: {})",
                request.secret_name,
                listed(&self.secret_names)
            ));
        }
        match request.signing_role {
            Some(arn) if !self.signing_roles.iter().any(|p| allows(p, arn)) => Some(format!(
                "does not allow signing role {arn:?} (signingRoles: {})",
                listed(&self.signing_roles)
            )),
            None if self.require_signing_role => {
                Some("requires token.signingRoleArn (requireSigningRole is true)".to_owned())
            }
            _ => None,
        }
    }
}

/// One element of a compiled glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Glob {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    One,
    /// A character that matches itself.
    Literal(char),
}

/// Compiles `pattern`, replacing each placeholder by its value as literal characters, so a value
/// can never widen the pattern.
fn compile(pattern: &str, placeholders: &[(&str, &str)]) -> Vec<Glob> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut rest = pattern;
    'outer: while let Some(c) = rest.chars().next() {
        for (key, value) in placeholders {
            if let Some(after) = rest.strip_prefix(key) {
                out.extend(value.chars().map(Glob::Literal));
                rest = after;
                continue 'outer;
            }
        }
        out.push(match c {
            '*' => Glob::Star,
            '?' => Glob::One,
            c => Glob::Literal(c),
        });
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A compiled glob written back as a pattern, placeholders filled in.
fn render(pattern: &[Glob]) -> String {
    pattern
        .iter()
        .map(|g| match g {
            Glob::Star => '*',
            Glob::One => '?',
            Glob::Literal(c) => *c,
        })
        .collect()
}

/// Glob match: `*` is any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    matches(&compile(pattern, &[]), text)
}

/// Backtracking only to the last `*` bounds the work by len(pattern) × len(text), so no pattern
/// or name can make it slow.
fn matches(pattern: &[Glob], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(Glob::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(Glob::One) => {
                p += 1;
                t += 1;
            }
            Some(Glob::Literal(l)) if *l == c => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern.get(p..).unwrap_or_default().iter().all(|g| *g == Glob::Star)
}

#[cfg(test)]
mod tests;
