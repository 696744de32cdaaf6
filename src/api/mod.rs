//! The `DsqlCredential` custom resource (group `dsql.credentials.dev`, version `v1alpha1`).
//!
//! Everything the API server can judge by itself (types, enums, bounds, cross-field rules) is
//! expressed here as schema and CEL rules so bad input is refused at admission; what only the
//! controller can judge (schedules, ownership) is checked in `reconcile::validate`.

mod conditions;
mod spec;
mod status;

pub use conditions::{ConditionReason, ConditionType, set_condition};
pub use spec::*;
pub use status::{DsqlCredentialStatus, ProjectionStatus, RolloutRestartStatus};

/// The API group of every resource this operator defines.
pub const API_GROUP: &str = "dsql.credentials.dev";
/// Name of the finalizer that applies `deletionPolicy` before a credential goes away.
pub const FINALIZER: &str = "dsql.credentials.dev/secret-cleanup";
/// Annotation whose new value forces one rotation now.
pub const ROTATE_ANNOTATION: &str = "dsql.credentials.dev/rotate";
/// Value of the `managed-by` label and tag on everything the operator creates.
pub const MANAGER_NAME: &str = "dsql-credential-operator";
