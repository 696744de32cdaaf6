//! Operating the operator: metrics, health endpoints and leader election.

pub mod credential_metrics;
pub mod health;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;

pub use health::Health;
pub use metrics::Metrics;
