//! The SecretProviderClass projection for the Secrets Store CSI driver's AWS provider: pods
//! mount each key of the Secrets Manager JSON as a file, fetched with their own Pod Identity.
//! It carries no token, only where to find it.

use kube::core::ApiResource;

use super::ObjectOwner;
use super::template::PLACEHOLDERS;

/// What to install when the SecretProviderClass API is missing.
pub const MISSING_HINT: &str = "install the Secrets Store CSI driver and its AWS provider (secrets-store.csi.x-k8s.io/v1), or set secretProviderClass.enabled to false";

/// The SecretProviderClass API resource.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "secrets-store.csi.x-k8s.io".into(),
        version: "v1".into(),
        api_version: "secrets-store.csi.x-k8s.io/v1".into(),
        kind: "SecretProviderClass".into(),
        plural: "secretproviderclasses".into(),
    }
}

/// The SecretProviderClass to apply for the secret at `secret_arn` in `region`.
pub fn provider_class_body(owner: &ObjectOwner, name: &str, secret_arn: &str, region: &str) -> serde_json::Value {
    let mut objects = format!(
        "- objectName: \"{secret_arn}\"\n  objectType: \"secretsmanager\"\n  objectAlias: \"credential.json\"\n  jmesPath:\n"
    );
    for key in PLACEHOLDERS {
        objects.push_str(&format!("    - path: \"{key}\"\n      objectAlias: \"{key}\"\n"));
    }
    serde_json::json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": owner.labels(),
            "ownerReferences": [owner.owner_reference()],
        },
        "spec": {
            "provider": "aws",
            "parameters": {
                "usePodIdentity": "true",
                "region": region,
                "objects": objects,
            },
        },
    })
}

/// The region of a Secrets Manager ARN (`arn:aws:secretsmanager:<region>:...`).
pub fn arn_region(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn points_the_aws_provider_at_the_secret_with_pod_identity_and_an_alias_per_key() {
        let owner = ObjectOwner {
            namespace: "shop".into(),
            name: "orders".into(),
            uid: "u1".into(),
        };
        let arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:dsql/shop/orders-AbCdEf";
        let body = provider_class_body(&owner, "orders", arn, arn_region(arn).unwrap());
        assert_eq!(body["spec"]["provider"], "aws");
        assert_eq!(body["spec"]["parameters"]["usePodIdentity"], "true");
        assert_eq!(body["spec"]["parameters"]["region"], "eu-west-1");
        let objects = body["spec"]["parameters"]["objects"].as_str().unwrap();
        assert!(objects.starts_with(&format!("- objectName: \"{arn}\"")));
        for key in PLACEHOLDERS {
            assert!(
                objects.contains(&format!("- path: \"{key}\"\n      objectAlias: \"{key}\"")),
                "{key}"
            );
        }
        assert_eq!(body["metadata"]["ownerReferences"][0]["kind"], "DsqlCredential");
        assert_eq!(arn_region("not-an-arn"), None);
    }
}
