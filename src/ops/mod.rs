//! Operating the operator: metrics, health endpoints, leader election and bounded shutdown.

pub mod credential_metrics;
pub mod health;
pub mod http;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod shutdown;

pub use health::Health;
pub use metrics::Metrics;
