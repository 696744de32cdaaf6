//! Projections of the published token into the cluster: a Kubernetes Secret (carries the token,
//! so it is written in the rotation that minted it), a SecretProviderClass (points at the Secrets
//! Manager secret, no token) and rollout restarts of workloads that read the credential once.

pub mod objects;
pub mod provider_class;
pub mod restart;
pub mod secret;
pub mod template;

pub use objects::{ObjectOwner, ProjectionError};
