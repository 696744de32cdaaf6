//! `dsql-credential-operator check`: verifies a setup end to end without changing anything
//! (reads, discovery and access reviews only) and prints a checklist, one line per check, each
//! failure with what to fix.

pub mod permissions;

use std::path::PathBuf;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube::{CustomResourceExt, Resource};

use crate::api::DsqlCredential;
use crate::policy::AccessPolicy;
use crate::setup::{CRD_INSTALL_HINT, aws_config, kube_config};
use permissions::{Permission, Scope, operator_permissions};

/// What to check: the flags of `run` that decide where the operator looks.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// Kubeconfig file; None infers like `run`.
    pub kubeconfig: Option<PathBuf>,
    /// Watched namespaces; empty for all.
    pub namespaces: Vec<String>,
    /// AWS region; None uses the AWS chain.
    pub region: Option<String>,
    /// Access policy file; None for the built-in default.
    pub access_policy: Option<PathBuf>,
    /// Namespace of the leader-election Lease, when leader election is on.
    pub leader_election_namespace: Option<String>,
    /// Name of that Lease (the chart's RBAC allows get and patch on it only).
    pub leader_election_lease_name: String,
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Whether the check passed.
    pub ok: bool,
    /// What was found, or what is wrong and how to fix it.
    pub text: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", if self.ok { "✓" } else { "✗" }, self.text)
    }
}

fn pass(text: impl Into<String>) -> Line {
    Line {
        ok: true,
        text: text.into(),
    }
}

fn fail(text: impl Into<String>) -> Line {
    Line {
        ok: false,
        text: text.into(),
    }
}

/// Runs every check, handing each line to `out` as soon as it is known.
pub async fn run_checks(options: &CheckOptions, mut out: impl FnMut(&Line)) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut emit = |line: Line| {
        out(&line);
        lines.push(line);
    };
    match kube_config(options.kubeconfig.as_deref()).await {
        Err(e) => emit(fail(format!("Kubernetes cluster: {e}"))),
        Ok(config) => {
            let server = config.cluster_url.to_string();
            match kube::Client::try_from(config) {
                Err(e) => emit(fail(format!("Kubernetes cluster {server}: cannot build a client: {e}"))),
                Ok(client) => {
                    let reachable = check_cluster(&client, &server).await;
                    let ok = reachable.ok;
                    emit(reachable);
                    if ok {
                        emit(check_crd(&client).await);
                        for line in check_rbac(&client, options).await {
                            emit(line);
                        }
                    }
                }
            }
        }
    }
    for line in check_aws(options.region.clone()).await {
        emit(line);
    }
    emit(check_policy(options));
    lines
}

async fn check_cluster(client: &kube::Client, server: &str) -> Line {
    let version = match client.apiserver_version().await {
        Ok(v) => v.git_version,
        Err(e) => {
            return fail(format!(
                "Kubernetes cluster {server} not reachable: {e}; check the server address and credentials in the kubeconfig"
            ));
        }
    };
    // Which identity the server sees; informative only, so a server without the API still passes.
    let identity = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .ok()
        .and_then(|r| r.status?.user_info?.username)
        .unwrap_or_else(|| "an identity the server does not disclose".to_owned());
    pass(format!(
        "Kubernetes cluster {server} reachable (Kubernetes {version}) as {identity}"
    ))
}

async fn check_crd(client: &kube::Client) -> Line {
    let wanted = DsqlCredential::crd();
    let name = wanted.metadata.name.clone().unwrap_or_default();
    let group = DsqlCredential::group(&());
    let version = DsqlCredential::version(&());
    let plural = DsqlCredential::plural(&());
    // Discovery is open to every authenticated user, so this works without CRD read access.
    let served = match client.list_api_group_resources(&format!("{group}/{version}")).await {
        Ok(list) => list.resources.iter().any(|r| r.name == plural),
        Err(kube::Error::Api(s)) if s.code == 404 => false,
        Err(e) => return fail(format!("CRD {name}: discovery failed: {e}")),
    };
    if !served {
        return fail(format!(
            "CRD {name} not installed ({group}/{version} {plural} not served): {CRD_INSTALL_HINT}"
        ));
    }
    match Api::<CustomResourceDefinition>::all(client.clone()).get(&name).await {
        Ok(installed) => compare_crd(&name, &installed, &wanted),
        Err(kube::Error::Api(s)) if s.code == 403 => pass(format!(
            "CRD {name} installed, {group}/{version} served (schema not compared: this identity may not read CRDs)"
        )),
        Err(e) => fail(format!("CRD {name}: cannot read it: {e}")),
    }
}

/// The installed CRD is current when it serves the binary's version with the binary's schema.
fn compare_crd(name: &str, installed: &CustomResourceDefinition, wanted: &CustomResourceDefinition) -> Line {
    for version in &wanted.spec.versions {
        let Some(found) = installed
            .spec
            .versions
            .iter()
            .find(|v| v.name == version.name && v.served)
        else {
            return fail(format!(
                "CRD {name} does not serve version {} that this binary uses: upgrade it: {CRD_INSTALL_HINT}",
                version.name
            ));
        };
        let schema = |v: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinitionVersion| {
            v.schema.as_ref().and_then(|s| serde_json::to_value(&s.open_api_v3_schema).ok())
        };
        if schema(found) != schema(version) {
            return fail(format!(
                "CRD {name} version {} has a different schema than this binary's (an older or newer release): upgrade it: {CRD_INSTALL_HINT}",
                version.name
            ));
        }
    }
    pass(format!("CRD {name} installed and current"))
}

/// One SelfSubjectAccessReview per (verb, group, resource) and namespace.
async fn check_rbac(client: &kube::Client, options: &CheckOptions) -> Vec<Line> {
    let permissions = match operator_permissions() {
        Ok(p) => p,
        Err(e) => {
            return vec![fail(format!(
                "RBAC: the built-in list of API calls does not parse: {e}"
            ))];
        }
    };
    let watched: Vec<Option<String>> = if options.namespaces.is_empty() {
        vec![None]
    } else {
        options.namespaces.iter().cloned().map(Some).collect()
    };
    let mut lines = Vec::new();
    for permission in &permissions {
        let (namespaces, name) = match permission.scope {
            Scope::Watched => (watched.clone(), None),
            Scope::ReleaseNamespace => match &options.leader_election_namespace {
                Some(ns) => (
                    vec![Some(ns.clone())],
                    Some(options.leader_election_lease_name.as_str()),
                ),
                None => continue,
            },
        };
        for namespace in namespaces {
            lines.push(check_permission(client, permission, namespace.as_deref(), name).await);
        }
    }
    lines
}

/// `name` is the one object the operator calls (its Lease): asked for every verb but create,
/// which RBAC cannot limit by name.
async fn check_permission(
    client: &kube::Client,
    permission: &Permission,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Line {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    for verb in &permission.verbs {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.clone()),
                    group: Some(permission.api_group.clone()),
                    resource: Some(permission.resource_name().to_owned()),
                    subresource: Some(permission.subresource().to_owned()).filter(|s| !s.is_empty()),
                    namespace: namespace.map(str::to_owned),
                    name: name.filter(|_| verb != "create").map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SelfSubjectAccessReviewSpec::default()
            },
            ..SelfSubjectAccessReview::default()
        };
        match reviews.create(&PostParams::default(), &review).await {
            Ok(answer) if answer.status.as_ref().is_some_and(|s| s.allowed) => {}
            Ok(_) => denied.push(verb.clone()),
            Err(e) => denied.push(format!("{verb} (review failed: {e})")),
        }
    }
    let scope = match namespace {
        Some(ns) => match name {
            Some(name) => format!("{name} in namespace {ns}"),
            None => format!("in namespace {ns}"),
        },
        None => "in all namespaces".to_owned(),
    };
    let what = format!("RBAC {} {scope}", permission.display_name());
    if denied.is_empty() {
        pass(format!("{what}: {}", permission.verbs.join(", ")))
    } else {
        fail(format!(
            "{what}: denied {}; grant them to the operator's ServiceAccount (the Helm chart's RBAC does; deploy/kubernetes-permissions.yaml lists every call)",
            denied.join(", ")
        ))
    }
}

async fn check_aws(region: Option<String>) -> Vec<Line> {
    let config = match aws_config(region).await {
        Ok(config) => config,
        Err(e) => {
            return vec![
                fail(format!("AWS region: {e}")),
                fail("AWS credentials: not checked (STS needs a region)"),
            ];
        }
    };
    let region = config.region().map(ToString::to_string).unwrap_or_default();
    let mut lines = vec![pass(format!("AWS region {region}"))];
    let sts = aws_sdk_sts::Client::new(&config);
    lines.push(match sts.get_caller_identity().send().await {
        Ok(identity) => pass(format!(
            "AWS credentials found: {} (account {})",
            identity.arn().unwrap_or_default(),
            identity.account().unwrap_or_default()
        )),
        Err(e) => {
            let detail = aws_sdk_sts::error::DisplayErrorContext(&e).to_string();
            if detail.contains("CredentialsNotLoaded") || detail.contains("no providers in chain") {
                fail(format!("AWS credentials: {}", crate::setup::SetupError::NoCredentials))
            } else {
                fail(format!("AWS credentials: STS GetCallerIdentity failed: {detail}"))
            }
        }
    });
    lines
}

fn check_policy(options: &CheckOptions) -> Line {
    match &options.access_policy {
        None => {
            pass("access policy: built-in default (namespaces mint non-admin tokens under <prefix>/<namespace>/ only)")
        }
        Some(path) => match AccessPolicy::load(path) {
            Ok(policy) => pass(format!(
                "access policy {} parsed ({} rule{})",
                path.display(),
                policy.rules.len(),
                if policy.rules.len() == 1 { "" } else { "s" }
            )),
            Err(e) => fail(format!("access policy: {e}; fix the file")),
        },
    }
}
