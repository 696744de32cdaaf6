//! Finding the cluster and AWS at start, with failures that say in one line what was looked for
//! and what to do: the first run of an operator is where most setups go wrong, and a raw error
//! chain from the client libraries does not tell a user which of several places to fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;

/// Where a pod's ServiceAccount token is mounted; in-cluster config needs it.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How to install the CRD, for every message that finds it missing.
pub const CRD_INSTALL_HINT: &str = "install it with `kubectl apply -f crds/dsqlcredential.yaml` (or `dsql-credential-operator crd | kubectl apply -f -`), or the Helm chart with crds.enabled=true";

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No source of Kubernetes configuration exists.
    #[error(
        "no Kubernetes cluster configured: looked for in-cluster config ({in_cluster}), KUBECONFIG ({kubeconfig_env}) and {home_config}; run in a pod with a ServiceAccount, or set KUBECONFIG or --kubeconfig to a kubeconfig file"
    )]
    NoCluster {
        /// What was found of the in-cluster environment.
        in_cluster: String,
        /// What KUBECONFIG held.
        kubeconfig_env: String,
        /// What ~/.kube/config was.
        home_config: String,
    },
    /// A kubeconfig exists but cannot be used.
    #[error(
        "the Kubernetes configuration {source_name} cannot be used: {message}; fix the file or point --kubeconfig / KUBECONFIG elsewhere"
    )]
    BadKubeconfig {
        /// Which file or source.
        source_name: String,
        /// The client library's error.
        message: String,
    },
    /// No region in flags, environment or AWS config files.
    #[error(
        "no AWS region: set --region (or DSQL_OPERATOR_REGION, AWS_REGION), or `region` in the AWS config file's profile"
    )]
    NoRegion,
    /// No AWS credential provider found anything.
    #[error(
        "no AWS credentials: looked in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN, as IRSA sets), the AWS config/credentials files, ECS/EKS Pod Identity and EC2 instance metadata; give the operator's ServiceAccount an IAM role (IRSA or EKS Pod Identity) or set AWS credentials"
    )]
    NoCredentials,
}

/// The Kubernetes client configuration: `kubeconfig` if given, else what `kube` infers
/// (in-cluster, then KUBECONFIG, then ~/.kube/config).
pub async fn kube_config(kubeconfig: Option<&Path>) -> Result<kube::Config, SetupError> {
    let options = kube::config::KubeConfigOptions::default();
    if let Some(path) = kubeconfig {
        let bad = |message: String| SetupError::BadKubeconfig {
            source_name: path.display().to_string(),
            message,
        };
        let file = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
        return kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| bad(e.to_string()));
    }
    match kube::Config::infer().await {
        Ok(config) => Ok(config),
        Err(e) => Err(explain_infer_failure(&e.to_string())),
    }
}

/// Tells "nothing there" (the first run's usual state) from "something there but broken".
fn explain_infer_failure(message: &str) -> SetupError {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let host = env("KUBERNETES_SERVICE_HOST");
    let port = env("KUBERNETES_SERVICE_PORT");
    let token = Path::new(SERVICE_ACCOUNT_TOKEN).exists();
    let token_state = if token { "present" } else { "missing" };
    let in_cluster = if host.is_some() && port.is_some() && token {
        "present".to_owned()
    } else {
        format!(
            "KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT {}, ServiceAccount token {SERVICE_ACCOUNT_TOKEN} {token_state}",
            if host.is_some() && port.is_some() {
                "set"
            } else {
                "unset"
            }
        )
    };
    let kubeconfig_env = env("KUBECONFIG").map(PathBuf::from);
    let home = env("HOME").map(|h| PathBuf::from(h).join(".kube").join("config"));
    let exists = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.exists());
    if in_cluster == "present" || exists(&kubeconfig_env) || (kubeconfig_env.is_none() && exists(&home)) {
        let source_name = match (&kubeconfig_env, in_cluster.as_str()) {
            (Some(p), _) => p.display().to_string(),
            (None, "present") => "in-cluster config".to_owned(),
            (None, _) => home.map(|p| p.display().to_string()).unwrap_or_default(),
        };
        return SetupError::BadKubeconfig {
            source_name,
            message: message.to_owned(),
        };
    }
    SetupError::NoCluster {
        in_cluster,
        kubeconfig_env: match &kubeconfig_env {
            Some(p) => format!("{}: not found", p.display()),
            None => "unset".to_owned(),
        },
        home_config: match &home {
            Some(p) => format!("~/.kube/config ({}: not found)", p.display()),
            None => "~/.kube/config (HOME unset)".to_owned(),
        },
    }
}

/// The AWS configuration: the default chains, with `region` if given and every call bounded
/// (a hung AWS call must not hold a credential's reconcile forever).
pub async fn aws_config(region: Option<String>) -> Result<aws_config::SdkConfig, SetupError> {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(15))
        .operation_timeout(Duration::from_secs(45))
        .build();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(SetupError::NoRegion);
    }
    Ok(config)
}

/// Fails only when no credential provider in the chain is configured at all: a provider that
/// is configured but failing now (STS briefly unreachable) may work on the next reconcile, and
/// exiting for it would turn a blip into a crash loop.
pub async fn aws_credentials_configured(config: &aws_config::SdkConfig) -> Result<(), SetupError> {
    let Some(provider) = config.credentials_provider() else {
        return Err(SetupError::NoCredentials);
    };
    match provider.provide_credentials().await {
        Err(CredentialsError::CredentialsNotLoaded(_)) => Err(SetupError::NoCredentials),
        _ => Ok(()),
    }
}

/// Whether a watch failed because the API server does not serve DsqlCredentials (404: the CRD
/// is not installed), as opposed to a failure worth a warning each time.
pub fn is_crd_missing(error: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as W;
    match error {
        W::InitialListFailed(kube::Error::Api(status))
        | W::WatchStartFailed(kube::Error::Api(status))
        | W::WatchFailed(kube::Error::Api(status)) => status.code == 404,
        W::WatchError(status) => status.code == 404,
        _ => false,
    }
}
