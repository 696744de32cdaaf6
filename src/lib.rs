//! dsql-credential-operator: a Kubernetes operator that keeps Aurora DSQL IAM
//! auth tokens fresh in AWS Secrets Manager.

pub mod schedule;
