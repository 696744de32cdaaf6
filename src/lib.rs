//! dsql-credential-operator: keeps Aurora DSQL IAM auth tokens fresh in AWS Secrets Manager for
//! Kubernetes workloads, driven by `DsqlCredential` objects.

pub mod api;
pub mod aws;
pub mod aws_error;
pub mod cache;
pub mod check;
pub mod clock;
pub mod config;
pub mod controller;
pub mod crd;
pub mod login_check;
pub mod ops;
pub mod policy;
pub mod projection;
pub mod reconcile;
pub mod schedule;
pub mod setup;
pub mod telemetry;
pub mod token;
