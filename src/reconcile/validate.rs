//! Step 1: turn a DsqlCredential's spec into what the controller needs, or say what to change.
//!
//! The CRD schema refuses most bad input at admission; this repeats the checks that matter for
//! safety (an API server without CEL, or an object stored before a rule existed, must not crash or
//! misbehave) and adds what only the controller can judge, such as schedule syntax.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::{ConditionReason, DeletionPolicy, DsqlCredential, RolloutTarget};
use crate::aws::ConnectionInfo;
use crate::config::OperatorConfig;
use crate::login_check::{LoginCheckSettings, parse_ca_bundle};
use crate::policy::{ADMIN_ROLE, AccessRequest, Placeholders};
use crate::projection::template;
use crate::reconcile::status::Targets;
use crate::schedule::{self, MIN_WRITE_INTERVAL, RotationSchedule};
use crate::token::{SigningRole, TokenRequest};

const MIN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const MAX_LIFETIME: Duration = Duration::from_secs(604_800);
const MIN_RENEW_BEFORE: Duration = Duration::from_secs(60);
/// AWS caps a session of a role assumed with role credentials (role chaining) at one hour.
const MAX_CHAINED_SESSION: Duration = Duration::from_secs(3600);

/// A credential whose spec the controller can act on.
#[derive(Debug, Clone)]
pub struct ValidCredential {
    /// What to mint.
    pub token: TokenRequest,
    /// Connection details published beside the token.
    pub connection: ConnectionInfo,
    /// Rotate when this much lifetime remains.
    pub renew_before: Duration,
    /// Optional extra schedule.
    pub schedule: Option<RotationSchedule>,
    /// Secrets Manager secret name.
    pub secret_name: String,
    /// KMS key for a new secret.
    pub kms_key_id: Option<String>,
    /// User tags for a new secret.
    pub tags: BTreeMap<String, String>,
    /// What to do with the secret on delete.
    pub deletion_policy: DeletionPolicy,
    /// Recovery window for `Delete`.
    pub recovery_window_days: i64,
    /// The Kubernetes Secret projection, when enabled.
    pub kubernetes_secret: Option<SecretProjection>,
    /// The SecretProviderClass name, when that projection is enabled.
    pub secret_provider_class: Option<String>,
    /// Workloads to restart after each rotation.
    pub rollout_restart: Vec<RolloutTarget>,
    /// The login check of new tokens, when enabled.
    pub login_check: Option<LoginCheckSettings>,
}

/// The Kubernetes Secret to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProjection {
    /// Secret name.
    pub name: String,
    /// Rendered extra keys (validated templates).
    pub extra_keys: BTreeMap<String, String>,
}

impl ValidCredential {
    /// Which projections `Ready` waits for.
    pub fn targets(&self) -> Targets {
        Targets {
            kubernetes_secret: self.kubernetes_secret.is_some(),
            secret_provider_class: self.secret_provider_class.is_some(),
        }
    }
}

/// Why a spec cannot be acted on: becomes a `Stalled` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    /// `InvalidSpec` or `InvalidSchedule`.
    pub reason: ConditionReason,
    /// What to change, shown to the user.
    pub message: String,
}

fn invalid(message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        reason: ConditionReason::InvalidSpec,
        message: message.into(),
    }
}

/// Validates `credential` against the rules the controller relies on.
pub fn validate(
    credential: &DsqlCredential,
    config: &OperatorConfig,
    now: Timestamp,
) -> Result<ValidCredential, InvalidSpec> {
    let spec = &credential.spec;
    let namespace = credential.namespace().unwrap_or_default();
    let name = credential.name_any();
    let (hostname, region) = resolve_cluster(&spec.cluster)?;

    if spec.role.is_empty() || spec.role.len() > 63 {
        return Err(invalid("role must be 1 to 63 characters"));
    }
    let lifetime =
        schedule::parse_duration(&spec.token.lifetime).map_err(|e| invalid(format!("token.lifetime: {e}")))?;
    if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&lifetime) {
        return Err(invalid(format!(
            "token.lifetime is {}; it must be between 15m and 168h",
            schedule::format_duration(lifetime)
        )));
    }
    let renew_before = match &spec.rotation.renew_before {
        Some(text) => schedule::parse_duration(text).map_err(|e| invalid(format!("rotation.renewBefore: {e}")))?,
        None => lifetime / 3,
    };
    if renew_before < MIN_RENEW_BEFORE || renew_before >= lifetime {
        return Err(invalid(format!(
            "rotation.renewBefore is {}; it must be at least 1m and shorter than token.lifetime ({})",
            schedule::format_duration(renew_before),
            schedule::format_duration(lifetime)
        )));
    }
    if lifetime - renew_before < MIN_WRITE_INTERVAL {
        return Err(invalid(format!(
            "token.lifetime ({}) minus rotation.renewBefore ({}) is under 10m: Secrets Manager allows one write per secret every 10 minutes",
            schedule::format_duration(lifetime),
            schedule::format_duration(renew_before)
        )));
    }
    let schedule = match &spec.rotation.schedule {
        None => None,
        Some(text) => {
            let parsed: RotationSchedule = text.parse().map_err(|e: schedule::ScheduleError| InvalidSpec {
                reason: ConditionReason::InvalidSchedule,
                message: e.to_string(),
            })?;
            parsed.validate(now).map_err(|e| InvalidSpec {
                reason: ConditionReason::InvalidSchedule,
                message: e.to_string(),
            })?;
            Some(parsed)
        }
    };

    let sm = &spec.secrets_manager;
    let secret_name = credential
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .or_else(|| sm.name.clone())
        .unwrap_or_else(|| config.default_secret_name(&namespace, &name));
    validate_secret_name(&secret_name)?;
    if sm.recovery_window_days != 0 && !(7..=30).contains(&sm.recovery_window_days) {
        return Err(invalid(
            "secretsManager.recoveryWindowDays must be 0 (delete at once) or between 7 and 30",
        ));
    }
    let tag_text =
        |t: &str, max: usize| t.len() <= max && t.chars().all(|c| c.is_ascii_alphanumeric() || " _.:/=+@-".contains(c));
    if let Some((key, _)) = sm
        .tags
        .iter()
        .find(|(k, v)| k.is_empty() || !tag_text(k, 128) || !tag_text(v, 256))
    {
        return Err(invalid(format!(
            "secretsManager.tags {key:?}: keys are 1 to 128 and values at most 256 letters, digits, spaces or _.:/=+-@"
        )));
    }
    if let Some(key) = sm
        .tags
        .keys()
        .find(|k| k.to_ascii_lowercase().starts_with("aws:") || k.starts_with("dsql.credentials.dev/"))
    {
        return Err(invalid(format!(
            "secretsManager.tags key {key:?} uses a reserved prefix (aws: or dsql.credentials.dev/)"
        )));
    }

    let kubernetes_secret = match &spec.kubernetes_secret {
        ks if !ks.enabled => None,
        ks => {
            for (key, text) in &ks.extra_keys {
                if template::PLACEHOLDERS.contains(&key.as_str()) {
                    return Err(invalid(format!(
                        "kubernetesSecret.extraKeys.{key} clashes with a built-in key of the Secret"
                    )));
                }
                let valid_key = !key.is_empty()
                    && key.len() <= 253
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
                if !valid_key {
                    return Err(invalid(format!(
                        "kubernetesSecret.extraKeys key {key:?} is not a valid Secret key ([-._a-zA-Z0-9]+)"
                    )));
                }
                template::validate(text).map_err(|e| invalid(format!("kubernetesSecret.extraKeys.{key}: {e}")))?;
            }
            Some(SecretProjection {
                name: ks.name.clone().unwrap_or_else(|| name.clone()),
                extra_keys: ks.extra_keys.clone(),
            })
        }
    };
    let secret_provider_class = spec
        .secret_provider_class
        .enabled
        .then(|| spec.secret_provider_class.name.clone().unwrap_or_else(|| name.clone()));
    let mut rollout_restart = spec.rollout_restart.clone();
    rollout_restart.sort();
    rollout_restart.dedup();
    let signing_role = match &spec.token.signing_role_arn {
        None => None,
        Some(arn) => {
            validate_role_arn(arn)?;
            if lifetime > MAX_CHAINED_SESSION {
                return Err(invalid(format!(
                    "token.lifetime is {}; with token.signingRoleArn it can be at most 1h: AWS limits a chained role session to 1h and the token dies with the session",
                    schedule::format_duration(lifetime)
                )));
            }
            Some(SigningRole {
                role_arn: arn.clone(),
                namespace: namespace.clone(),
                credential: name.clone(),
            })
        }
    };

    let login_check = match &spec.login_check {
        Some(check) if check.enabled => Some(LoginCheckSettings {
            ca_bundle: match &check.ca_bundle {
                None => None,
                Some(pem) => Some(parse_ca_bundle(pem).map_err(|e| invalid(format!("loginCheck.caBundle {e}")))?),
            },
        }),
        _ => None,
    };

    let access = AccessRequest {
        namespace: &namespace,
        name: &name,
        cluster_identifier: hostname.split('.').next().unwrap_or_default(),
        cluster_endpoint: &hostname,
        role: &spec.role,
        secret_name: &secret_name,
        signing_role: spec.token.signing_role_arn.as_deref(),
    };
    let placeholders = Placeholders {
        prefix: &config.secret_name_prefix,
    };
    config
        .access_policy
        .authorize(&access, placeholders)
        .map_err(|message| InvalidSpec {
            reason: ConditionReason::PolicyDenied,
            message,
        })?;

    Ok(ValidCredential {
        token: TokenRequest {
            hostname: hostname.clone(),
            region: region.clone(),
            admin: spec.role == ADMIN_ROLE,
            lifetime,
            signing_role,
        },
        connection: ConnectionInfo {
            host: hostname,
            dbname: spec.database.clone(),
            username: spec.role.clone(),
            region,
        },
        renew_before,
        schedule,
        secret_name,
        kms_key_id: sm.kms_key_id.clone(),
        tags: sm.tags.clone(),
        deletion_policy: sm.deletion_policy,
        recovery_window_days: sm.recovery_window_days,
        kubernetes_secret,
        secret_provider_class,
        rollout_restart,
        login_check,
    })
}

/// `arn:<partition>:iam::<account>:role/<path/name>`, as STS accepts it.
fn validate_role_arn(arn: &str) -> Result<(), InvalidSpec> {
    let role_path = arn
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":iam::"))
        .filter(|(partition, _)| {
            partition.starts_with("aws") && partition.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .and_then(|(_, rest)| rest.split_once(":role/"))
        .filter(|(account, _)| account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()))
        .map(|(_, path)| path);
    match role_path {
        Some(path)
            if !path.is_empty()
                && arn.len() <= 2048
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@_/-".contains(c)) =>
        {
            Ok(())
        }
        _ => Err(invalid(format!(
            "token.signingRoleArn {arn:?} is not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
        ))),
    }
}

/// Endpoint and region from either form of cluster reference.
fn resolve_cluster(cluster: &crate::api::ClusterRef) -> Result<(String, String), InvalidSpec> {
    match (&cluster.endpoint, &cluster.identifier) {
        (Some(endpoint), None) => {
            let labels: Vec<&str> = endpoint.split('.').collect();
            let well_formed = labels.len() == 5
                && labels[0].chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && !labels[0].is_empty()
                && labels[1].starts_with("dsql")
                && labels[3] == "on"
                && labels[4] == "aws";
            if !well_formed {
                return Err(invalid(format!(
                    "cluster.endpoint {endpoint:?} is not an Aurora DSQL endpoint (<identifier>.dsql.<region>.on.aws)"
                )));
            }
            let region = labels[2].to_owned();
            if !is_region(&region) {
                return Err(invalid(format!("cluster.endpoint {endpoint:?} has no valid region")));
            }
            if let Some(r) = &cluster.region
                && r != &region
            {
                return Err(invalid(format!(
                    "cluster.region {r:?} does not match the endpoint's region {region:?}"
                )));
            }
            Ok((endpoint.clone(), region))
        }
        (None, Some(identifier)) => {
            let Some(region) = &cluster.region else {
                return Err(invalid("cluster.region is required with cluster.identifier"));
            };
            if identifier.is_empty()
                || identifier.len() > 63
                || !identifier.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return Err(invalid(format!(
                    "cluster.identifier {identifier:?} must be lowercase letters and digits"
                )));
            }
            if !is_region(region) {
                return Err(invalid(format!("cluster.region {region:?} is not an AWS region name")));
            }
            Ok((format!("{identifier}.dsql.{region}.on.aws"), region.clone()))
        }
        _ => Err(invalid("set exactly one of cluster.endpoint or cluster.identifier")),
    }
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn validate_secret_name(name: &str) -> Result<(), InvalidSpec> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c);
    if name.is_empty() || name.len() > 512 || !name.chars().all(allowed) {
        return Err(invalid(format!(
            "Secrets Manager name {name:?} must be 1 to 512 letters, digits or /_+=.@- characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
