//! The Kubernetes API calls the operator makes, read from deploy/kubernetes-permissions.yaml:
//! the file the chart's RBAC and the tests are already checked against, so `check` asks about
//! exactly the calls the operator makes and no list is kept twice.

use serde::Deserialize;

const PERMISSIONS_YAML: &str = include_str!("../../deploy/kubernetes-permissions.yaml");

/// Where a permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every watched namespace (cluster-wide when all are watched).
    Watched,
    /// The namespace the operator runs in (its leader-election Lease).
    ReleaseNamespace,
}

/// One (apiGroup, resource) the operator calls, with the verbs it uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    /// API group, "" for the core group.
    pub api_group: String,
    /// Plural resource, `resource/subresource` for a subresource.
    pub resource: String,
    /// RBAC verbs.
    pub verbs: Vec<String>,
    /// Where it is needed.
    pub scope: Scope,
}

impl Permission {
    /// The resource without its subresource.
    pub fn resource_name(&self) -> &str {
        self.resource.split('/').next().unwrap_or_default()
    }

    /// The subresource, "" when none.
    pub fn subresource(&self) -> &str {
        self.resource.split_once('/').map(|(_, s)| s).unwrap_or_default()
    }

    /// `resource.group[/sub]`, as kubectl names it.
    pub fn display_name(&self) -> String {
        let mut name = self.resource_name().to_owned();
        if !self.api_group.is_empty() {
            name = format!("{name}.{}", self.api_group);
        }
        match self.subresource() {
            "" => name,
            sub => format!("{name}/{sub}"),
        }
    }
}

/// Every call the operator makes (the file is compiled in; a malformed one fails the tests).
pub fn operator_permissions() -> Result<Vec<Permission>, serde_saphyr::Error> {
    serde_saphyr::from_str(PERMISSIONS_YAML)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permissions_file_parses_with_every_scope() {
        let all = operator_permissions().expect("deploy/kubernetes-permissions.yaml parses");
        assert!(
            all.iter()
                .any(|p| p.resource == "dsqlcredentials/status" && p.subresource() == "status")
        );
        assert!(all.iter().any(|p| p.scope == Scope::ReleaseNamespace));
        assert!(all.iter().all(|p| !p.verbs.is_empty()));
    }
}
