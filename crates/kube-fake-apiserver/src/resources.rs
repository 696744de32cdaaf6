//! The resource registry: built-in kinds plus whatever CustomResourceDefinitions register.

use serde_json::Value;

const ADMISSION_GROUP: &str = "admissionregistration.k8s.io";
/// Storage key of ValidatingAdmissionPolicies.
pub const POLICIES: &str = "admissionregistration.k8s.io/validatingadmissionpolicies";
/// Storage key of ValidatingAdmissionPolicyBindings.
pub const BINDINGS: &str = "admissionregistration.k8s.io/validatingadmissionpolicybindings";

/// How a resource is served at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// openAPIV3Schema for custom resources (None for built-ins).
    pub schema: Option<Value>,
    pub custom: bool,
    /// Objects of all versions (and of aliases like events.k8s.io/v1 events) share this storage key.
    pub storage: String,
    /// Whether the object carries metadata.generation.
    pub has_generation: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn builtin(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceDef {
        ResourceDef {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            kind: kind.to_string(),
            list_kind: format!("{kind}List"),
            short_names: Vec::new(),
            namespaced,
            status_subresource: false,
            schema: None,
            custom: false,
            storage: format!("{group}/{plural}"),
            has_generation: false,
        }
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self
    }
    fn with_generation(mut self) -> Self {
        self.has_generation = true;
        self
    }
    fn with_short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }
    fn with_storage(mut self, storage: &str) -> Self {
        self.storage = storage.to_string();
        self
    }

    /// `details.group` / messages use the group; core is "".
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// The built-in resources this fake serves.
pub fn builtins() -> Vec<ResourceDef> {
    vec![
        ResourceDef::builtin("", "v1", "namespaces", "Namespace", false)
            .with_status()
            .with_short(&["ns"]),
        ResourceDef::builtin("", "v1", "secrets", "Secret", true),
        ResourceDef::builtin("", "v1", "configmaps", "ConfigMap", true).with_short(&["cm"]),
        ResourceDef::builtin("", "v1", "serviceaccounts", "ServiceAccount", true).with_short(&["sa"]),
        ResourceDef::builtin("", "v1", "events", "Event", true)
            .with_short(&["ev"])
            .with_storage("/events"),
        ResourceDef::builtin("events.k8s.io", "v1", "events", "Event", true)
            .with_short(&["ev"])
            .with_storage("/events"),
        ResourceDef::builtin("coordination.k8s.io", "v1", "leases", "Lease", true),
        ResourceDef::builtin("apps", "v1", "deployments", "Deployment", true)
            .with_status()
            .with_generation()
            .with_short(&["deploy"]),
        ResourceDef::builtin("apps", "v1", "statefulsets", "StatefulSet", true)
            .with_status()
            .with_generation()
            .with_short(&["sts"]),
        ResourceDef::builtin("apps", "v1", "daemonsets", "DaemonSet", true)
            .with_status()
            .with_generation()
            .with_short(&["ds"]),
        ResourceDef::builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
        ResourceDef::builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
        ResourceDef::builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
        ResourceDef::builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
        ),
        ResourceDef::builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
        )
        .with_status()
        .with_generation()
        .with_short(&["crd", "crds"]),
        // Evaluated on writes by `admission`; the policy has a status subresource.
        ResourceDef::builtin(
            ADMISSION_GROUP,
            "v1",
            "validatingadmissionpolicies",
            "ValidatingAdmissionPolicy",
            false,
        )
        .with_status()
        .with_generation(),
        ResourceDef::builtin(
            ADMISSION_GROUP,
            "v1",
            "validatingadmissionpolicybindings",
            "ValidatingAdmissionPolicyBinding",
            false,
        )
        .with_generation(),
    ]
}

/// Parses a CustomResourceDefinition object into one ResourceDef per served version.
pub fn defs_from_crd(crd: &Value) -> Vec<ResourceDef> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = names["listKind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}List"));
    let short_names: Vec<String> = names["shortNames"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let Some(version) = v["name"].as_str() else {
            continue;
        };
        out.push(ResourceDef {
            group: group.clone(),
            version: version.to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            short_names: short_names.clone(),
            namespaced,
            status_subresource: v["subresources"].get("status").is_some(),
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            custom: true,
            storage: format!("{group}/{plural}"),
            has_generation: true,
        });
    }
    out
}
