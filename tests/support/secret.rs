//! The Kubernetes Secrets the operator projects, as the tests read them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::env::TestEnv;

/// The Secret's data, each value decoded as UTF-8.
pub fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("Secret data is UTF-8")))
        .collect()
}

impl TestEnv {
    /// The admin's API for Secrets in this test's namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }
}
