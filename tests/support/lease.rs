//! The leader-election Lease, as the tests read it.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use super::env::TestEnv;

/// Who holds the Lease `lease` in `namespace`, if anyone (and if it exists).
pub async fn holder(kube: &kube::Client, namespace: &str, lease: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(kube.clone(), namespace);
    leases
        .get_opt(lease)
        .await
        .expect("get the Lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

impl TestEnv {
    /// [`holder`] of the Lease `lease` in this test's namespace.
    pub async fn lease_holder(&self, lease: &str) -> Option<String> {
        holder(&self.kube, &self.namespace, lease).await
    }
}
