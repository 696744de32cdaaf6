//! Spec types of `DsqlCredential`. Doc comments here become `kubectl explain` text.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::DsqlCredentialStatus;

/// Desired state of a DsqlCredential: which Aurora DSQL cluster and Postgres role to mint IAM auth
/// tokens for, how long each token lives, when it is rotated, and where it is published.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "dsql.credentials.dev",
    version = "v1alpha1",
    kind = "DsqlCredential",
    plural = "dsqlcredentials",
    shortname = "dsqlcred",
    category = "dsql",
    doc = "A DsqlCredential keeps an Aurora DSQL IAM auth token for one cluster and Postgres role fresh in an AWS Secrets Manager secret, rotating it before it expires.",
    namespaced,
    status = "DsqlCredentialStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    // Timestamps, not `date`: the API server prints a date column as the time since it, and a
    // time in the future (every healthy expiry and next rotation) as `<invalid>`.
    printcolumn = r#"{"name":"Expires","type":"string","format":"date-time","jsonPath":".status.tokenExpirationTime","description":"When the published token stops working (RFC 3339, UTC)."}"#,
    printcolumn = r#"{"name":"Next Rotation","type":"string","format":"date-time","jsonPath":".status.nextRotationTime","description":"When the operator rotates next, or retries after a failure (RFC 3339, UTC)."}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.consecutiveFailures","priority":1}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secretName","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.rotation) || !has(self.rotation.renewBefore) || duration(self.rotation.renewBefore) < duration(has(self.token) && has(self.token.lifetime) ? self.token.lifetime : '1h')").message("rotation.renewBefore must be shorter than token.lifetime").field_path(".rotation.renewBefore"),
    validation = Rule::new("!has(self.rotation) || !has(self.rotation.renewBefore) || duration(has(self.token) && has(self.token.lifetime) ? self.token.lifetime : '1h') - duration(self.rotation.renewBefore) >= duration('10m')").message("token.lifetime minus rotation.renewBefore must be at least 10m: Secrets Manager allows one write per secret every 10 minutes").field_path(".rotation.renewBefore")
)]
#[serde(rename_all = "camelCase")]
pub struct DsqlCredentialSpec {
    /// The Aurora DSQL cluster to mint tokens for: either its endpoint, or its identifier and region.
    pub cluster: ClusterRef,

    /// Postgres role the token logs in as. `admin` mints a DbConnectAdmin token (full control of
    /// the cluster); any other role mints a DbConnect token for a role created with
    /// `AWS IAM GRANT`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_$]*$"))]
    pub role: String,

    /// Database name written into the published credential (`dbname`). Defaults to `postgres`.
    #[serde(default = "default_database")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z_][a-zA-Z0-9_$]*$"))]
    pub database: String,

    /// Token lifetime settings.
    #[serde(default)]
    pub token: TokenSpec,

    /// When tokens are rotated.
    #[serde(default)]
    pub rotation: RotationSpec,

    /// The AWS Secrets Manager secret the token is written to.
    #[serde(default)]
    pub secrets_manager: SecretsManagerSpec,

    /// Projection into a Kubernetes Secret in this namespace (on by default), for pods that
    /// mount it as a volume or read it as environment variables.
    #[serde(default)]
    pub kubernetes_secret: KubernetesSecretSpec,

    /// Projection as a SecretProviderClass for the Secrets Store CSI driver and its AWS provider,
    /// so pods mount the values straight from Secrets Manager with their own EKS Pod Identity.
    #[serde(default)]
    pub secret_provider_class: SecretProviderClassSpec,

    /// Workloads in this namespace to restart after each rotation, for consumers that read the
    /// credential once at start (environment variables). Restarts are rate-limited operator-wide.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub rollout_restart: Vec<RolloutTarget>,

    /// Log in with each new token before publishing it (off when absent): the operator connects
    /// to the cluster endpoint on port 5432 over TLS (verify-full), runs `SELECT 1` as `role` in
    /// `database` and closes. A failure is `Degraded` with a reason naming the step (DNS, TCP,
    /// TLS, login); nothing is written and the published token stays. Needs network access from
    /// the operator pod to the endpoint; no IAM permission beyond minting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_check: Option<LoginCheckSpec>,
}

/// The login check of each new token before it is published.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LoginCheckSpec {
    /// Whether to run the check. Defaults to true, so `loginCheck: {}` turns it on.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// PEM CA certificates to trust for the endpoint instead of the bundled public roots (which
    /// include Amazon Trust Services, the CA of Aurora DSQL endpoints), e.g. for a TLS-inspecting
    /// proxy. The host name is verified either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub ca_bundle: Option<String>,
}

impl Default for LoginCheckSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            ca_bundle: None,
        }
    }
}

/// A Kubernetes object name (DNS-1123 subdomain).
const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn default_database() -> String {
    "postgres".to_owned()
}

/// Identifies an Aurora DSQL cluster. Set `endpoint`, or `identifier` together with `region`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.endpoint) != has(self.identifier)").message("set exactly one of cluster.endpoint or cluster.identifier"),
    validation = Rule::new("!has(self.identifier) || has(self.region)").message("cluster.region is required with cluster.identifier"),
    validation = Rule::new("!has(self.endpoint) || !has(self.region) || self.endpoint.split('.')[2] == self.region").message("cluster.region must match the region in cluster.endpoint")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Cluster endpoint, e.g. `abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = r"^[a-z0-9]{1,63}\.dsql(-[a-z0-9]{1,16})?\.[a-z]{2}(-[a-z]+)+-[0-9]{1,2}\.on\.aws$")
    )]
    pub endpoint: Option<String>,

    /// Cluster identifier, e.g. `abcdefghijklmnopqrstuvwxyz`; the endpoint is derived from it and `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]+$"))]
    pub identifier: Option<String>,

    /// AWS region of the cluster, e.g. `us-east-1`. Required with `identifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$"))]
    pub region: Option<String>,
}

/// How long each minted token is valid, and who signs it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!has(self.signingRoleArn) || !has(self.lifetime) || duration(self.lifetime) <= duration('1h')").message("token.lifetime must be at most 1h with token.signingRoleArn: AWS limits a chained role session to 1h").field_path(".lifetime")
)]
#[serde(rename_all = "camelCase")]
pub struct TokenSpec {
    /// Token lifetime as a duration (`15m` to `168h`), counted from its signing time, which is
    /// the rotation's time rounded down to the minute (so a retried write after a crash can
    /// reproduce the same token). The token also dies with the operator's signing credentials,
    /// so the recorded expiry may be earlier. Defaults to `1h`.
    #[serde(default = "default_lifetime")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('15m') && duration(self) <= duration('168h')").message("token.lifetime must be between 15m and 168h"))]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = crate::schedule::DURATION_PATTERN)
    )]
    pub lifetime: String,

    /// IAM role that signs the tokens instead of the operator's own identity. For each rotation
    /// the operator assumes it (STS AssumeRole, with session tags `dsql-namespace` and
    /// `dsql-credential`), so the role's own IAM policy limits which clusters and Postgres roles
    /// this credential reaches, and CloudTrail names the credential. The operator's access policy
    /// must allow the role for this namespace. AWS caps such a session at 1h, so `lifetime` may
    /// be at most `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 20, max = 2048),
        regex(pattern = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$")
    )]
    pub signing_role_arn: Option<String>,
}

fn default_lifetime() -> String {
    "1h".to_owned()
}

impl Default for TokenSpec {
    fn default() -> Self {
        Self {
            lifetime: default_lifetime(),
            signing_role_arn: None,
        }
    }
}

/// When the token is rotated. Rotation happens when `renewBefore` of the token's lifetime remains,
/// or earlier when `schedule` says so, whichever comes first.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// Rotate when this much of the token's lifetime remains (duration, e.g. `20m`). Defaults to a
    /// third of `token.lifetime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("rotation.renewBefore must be at least 1m"))]
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = crate::schedule::DURATION_PATTERN)
    )]
    pub renew_before: Option<String>,

    /// Optional schedule in Secrets Manager syntax, UTC: `rate(30 minutes)`, `rate(1 day)` or
    /// `cron(0 */4 * * ? *)`. Rotates at least this often; never later than `renewBefore` allows.
    /// Schedules that would write more often than every 10 minutes are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^(rate|cron)\(.*\)$"))]
    pub schedule: Option<String>,
}

/// What happens to the Secrets Manager secret when the DsqlCredential is deleted.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete the secret (after `recoveryWindowDays`, or at once when that is 0).
    #[default]
    Delete,
    /// Keep the secret; it stops being rotated.
    Retain,
}

/// Where the token is stored in AWS Secrets Manager.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("self.recoveryWindowDays == 0 || (self.recoveryWindowDays >= 7 && self.recoveryWindowDays <= 30)").message("secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30").field_path(".recoveryWindowDays"),
    validation = Rule::new("has(self.name) == has(oldSelf.name) && (!has(self.name) || self.name == oldSelf.name)").message("secretsManager.name is immutable: create a new DsqlCredential to use another secret").field_path(".name")
)]
#[serde(rename_all = "camelCase")]
pub struct SecretsManagerSpec {
    /// Secret name. Defaults to `<prefix>/<namespace>/<name>`, where the prefix is operator
    /// configuration. Letters, digits and `/_+=.@-`, at most 512 characters. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = r"^[A-Za-z0-9/_+=.@-]+$"))]
    pub name: Option<String>,

    /// KMS key (id, ARN or alias) that encrypts the secret. Defaults to the account's
    /// `aws/secretsmanager` key. Used when the secret is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,

    /// Extra tags for the secret, added to the operator's own ownership tags when the secret is
    /// created. Keys may not start with `aws:` (any case) or `dsql.credentials.dev/`; keys and
    /// values use letters, digits, spaces and `_.:/=+-@` (the Secrets Manager tag alphabet).
    /// At most 46 tags (Secrets Manager allows 50 per secret and the operator adds 4), keys of 1
    /// to 128 and values of at most 256 characters, as AWS allows.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[a-zA-Z0-9 _.:/=+@-]{1,128}$') && !k.lowerAscii().startsWith('aws:') && !k.startsWith('dsql.credentials.dev/') && self[k].matches('^[a-zA-Z0-9 _.:/=+@-]{0,256}$'))").message("tag keys may not start with 'aws:' or 'dsql.credentials.dev/'; keys are 1 to 128 and values at most 256 letters, digits, spaces or _.:/=+-@"))]
    // The values' maxLength is what keeps the rule's regex over them affordable: without it the
    // API server prices each value at the whole request size and refuses the CRD.
    #[schemars(extend("maxProperties" = 46, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    pub tags: BTreeMap<String, String>,

    /// `Delete` (default) or `Retain`: what happens to the secret when this object is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Days Secrets Manager keeps a deleted secret recoverable: 7 to 30, or 0 to delete at once.
    #[serde(default = "default_recovery_window_days")]
    pub recovery_window_days: i64,
}

/// The Kubernetes Secret projection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesSecretSpec {
    /// Whether to write the Secret. Defaults to true. Turning it off deletes the Secret the
    /// operator made.
    #[serde(default = "default_true")]
    pub enabled: bool,

    /// Secret name. Defaults to the DsqlCredential's name. A Secret of that name that the
    /// operator did not create is never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN_PATTERN)
    )]
    pub name: Option<String>,

    /// Extra keys rendered from the credential's values. Placeholders: `{engine}`, `{host}`,
    /// `{port}`, `{dbname}`, `{username}`, `{password}`, `{region}`, `{expiresAt}`; append
    /// `|urlencode` to percent-encode a value, e.g.
    /// `postgres://{username}:{password|urlencode}@{host}:{port}/{dbname}?sslmode=verify-full`.
    /// `{{` and `}}` are literal braces. At most 32 keys of at most 253 characters, templates of
    /// at most 4096 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new("self.all(k, k.matches('^[-._a-zA-Z0-9]+$') && size(k) <= 253)").message("kubernetesSecret.extraKeys keys must be valid Secret keys ([-._a-zA-Z0-9]+, at most 253 characters)"))]
    #[schemars(extend("maxProperties" = 32, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    pub extra_keys: BTreeMap<String, String>,
}

fn default_true() -> bool {
    true
}

impl Default for KubernetesSecretSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            name: None,
            extra_keys: BTreeMap::new(),
        }
    }
}

/// The SecretProviderClass projection (Secrets Store CSI driver with the AWS provider).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretProviderClassSpec {
    /// Whether to write the SecretProviderClass. Defaults to false. Needs the Secrets Store CSI
    /// driver and its AWS provider installed in the cluster.
    #[serde(default)]
    pub enabled: bool,

    /// SecretProviderClass name. Defaults to the DsqlCredential's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = DNS_SUBDOMAIN_PATTERN)
    )]
    pub name: Option<String>,
}

/// Kinds of workload that can be restarted after a rotation.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

/// A workload in the credential's namespace to restart after each rotation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct RolloutTarget {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_recovery_window_days() -> i64 {
    7
}

impl Default for SecretsManagerSpec {
    fn default() -> Self {
        Self {
            name: None,
            kms_key_id: None,
            tags: BTreeMap::new(),
            deletion_policy: DeletionPolicy::default(),
            recovery_window_days: default_recovery_window_days(),
        }
    }
}
