//! Ownership-checked writes of the objects the operator makes: server-side apply under the
//! operator's field manager, and deletes only of objects it owns.

use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::PartialObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::MANAGER_NAME;

/// Label naming the DsqlCredential an object was made for.
pub const CREDENTIAL_LABEL: &str = "dsql.credentials.dev/credential";

/// The DsqlCredential that owns a projected object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectOwner {
    /// Namespace (the projected objects live in the same one).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
}

impl ObjectOwner {
    /// The ownerReference put on projected objects (garbage-collected with the credential).
    /// `blockOwnerDeletion` stays unset: it would need update rights on the credential's
    /// finalizers under the OwnerReferencesPermissionEnforcement admission plugin.
    pub fn owner_reference(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "dsql.credentials.dev/v1alpha1",
            "kind": "DsqlCredential",
            "name": self.name,
            "uid": self.uid,
            "controller": true,
        })
    }

    /// Labels put on projected objects.
    pub fn labels(&self) -> serde_json::Value {
        serde_json::json!({
            "app.kubernetes.io/managed-by": MANAGER_NAME,
            CREDENTIAL_LABEL: self.name,
        })
    }

    /// Whether an existing object belongs to this credential: it names it as owner (by uid,
    /// or by name with the operator's labels, for a credential recreated under the same name).
    pub fn owns(&self, meta: &kube::api::ObjectMeta) -> bool {
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        if refs.iter().any(|r| r.uid == self.uid) {
            return true;
        }
        let labels = meta.labels.as_ref();
        let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
        label("app.kubernetes.io/managed-by") == Some(MANAGER_NAME)
            && label(CREDENTIAL_LABEL) == Some(self.name.as_str())
            && refs.iter().any(|r| r.kind == "DsqlCredential" && r.name == self.name)
    }
}

/// Why a projection could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// An object of that name exists and is not the operator's.
    #[error(
        "{kind} {name:?} already exists and was not created by this DsqlCredential; the operator never overwrites it: choose another name, or delete it"
    )]
    OwnedByOther {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The resource type is not served (its CRD is not installed).
    #[error("the {kind} API is not served by this cluster: {hint}")]
    ApiMissing {
        /// Kind.
        kind: &'static str,
        /// What to install.
        hint: &'static str,
    },
    /// The object the operator created under that name was deleted and another one created in
    /// its place (its uid differs); the operator never writes it.
    #[error(
        "{kind} {name:?} was replaced by an object this DsqlCredential did not create (its uid changed); the operator never overwrites it: choose another name, or delete it"
    )]
    Replaced {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// Any other API error.
    #[error("writing {kind} {name:?}: {source}")]
    Api {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Fails unless `name` is absent or owned by `owner`. One read, done only when the operator has
/// not written the object before (its status does not record it yet).
pub async fn ensure_owned<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    owner: &ObjectOwner,
) -> Result<(), ProjectionError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match metadata_of(api, name).await {
        Ok(None) => Ok(()),
        Ok(Some(PartialObjectMeta { metadata, .. })) if owner.owns(&metadata) => Ok(()),
        Ok(Some(_)) => Err(ProjectionError::OwnedByOther {
            kind,
            name: name.to_owned(),
        }),
        Err(source) => Err(ProjectionError::Api {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// The object's metadata, or `None` when it is absent. A resource type that is not served at
/// all (its CRD missing) also answers 404, with a plain-text body kube's `get_opt` does not
/// recognise as "not found"; both mean there is no such object.
async fn metadata_of<K>(api: &Api<K>, name: &str) -> Result<Option<PartialObjectMeta<K>>, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.get_metadata(name).await {
        Ok(meta) => Ok(Some(meta)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(error) => Err(error),
    }
}

/// Server-side applies `body` as the operator's field manager; returns the written object's uid.
pub async fn apply<K, B>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    body: &B,
    missing_hint: &'static str,
) -> Result<Option<String>, ProjectionError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    B: Serialize + std::fmt::Debug,
{
    match api
        .patch(name, &PatchParams::apply(MANAGER_NAME).force(), &Patch::Apply(body))
        .await
    {
        Ok(written) => Ok(written.meta().uid.clone()),
        // Apply creates absent objects, so a 404 means the resource type itself is missing.
        Err(kube::Error::Api(status)) if status.code == 404 => Err(ProjectionError::ApiMissing {
            kind,
            hint: missing_hint,
        }),
        Err(source) => Err(ProjectionError::Api {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Server-side applies `body`, which carries the uid of the object the operator created as
/// `metadata.uid`, so only that very object is written. `Ok(false)`: no object has that name any
/// more (the API server answers 409 "uid mismatch ... no existing object was found" and creates
/// nothing). An object with another uid is someone else's: the API server refuses the uid change
/// (422 "field is immutable"), reported as [`ProjectionError::Replaced`].
pub async fn apply_to_uid<K, B>(api: &Api<K>, kind: &'static str, name: &str, body: &B) -> Result<bool, ProjectionError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    B: Serialize + std::fmt::Debug,
{
    match api
        .patch(name, &PatchParams::apply(MANAGER_NAME).force(), &Patch::Apply(body))
        .await
    {
        Ok(_) => Ok(true),
        // A forced apply has no field conflicts, so a 409 is the uid precondition failing.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(kube::Error::Api(status)) if status.code == 422 => Err(ProjectionError::Replaced {
            kind,
            name: name.to_owned(),
        }),
        Err(source) => Err(ProjectionError::Api {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Only the metadata of a created object; its data (a token) is skipped while decoding.
#[derive(serde::Deserialize)]
struct Created {
    metadata: kube::api::ObjectMeta,
}

/// Creates the object (POST, never an update) and returns its uid, without any read. An object
/// of that name that already exists (409 AlreadyExists) is someone else's, reported as
/// [`ProjectionError::OwnedByOther`], unless [`created_earlier`] shows `owner` created it (a
/// restart between the create and the status write that records its uid). `url_path` is the
/// collection, e.g. `/api/v1/namespaces/<ns>/secrets`.
pub async fn create<B>(
    client: &kube::Client,
    url_path: &str,
    kind: &'static str,
    name: &str,
    owner: &ObjectOwner,
    body: &B,
) -> Result<String, ProjectionError>
where
    B: Serialize + std::fmt::Debug,
{
    let api_error = |source| ProjectionError::Api {
        kind,
        name: name.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(body).map_err(|e| api_error(kube::Error::SerdeError(e)))?;
    let params = PostParams {
        field_manager: Some(MANAGER_NAME.to_owned()),
        ..PostParams::default()
    };
    let request = kube::core::Request::new(url_path)
        .create(&params, bytes)
        .map_err(|e| api_error(kube::Error::BuildRequest(e)))?;
    match client.request::<Created>(request).await {
        Ok(Created { metadata }) => metadata
            .uid
            .ok_or_else(|| api_error(kube::Error::Service("the created object has no uid".into()))),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            match created_earlier(client, url_path, name, owner).await {
                Ok(Some(uid)) => Ok(uid),
                Ok(None) => Err(ProjectionError::OwnedByOther {
                    kind,
                    name: name.to_owned(),
                }),
                Err(source) => Err(api_error(source)),
            }
        }
        Err(source) => Err(api_error(source)),
    }
}

/// Whether the existing object `name` is one `owner` created, asked without reading it: a JSON
/// patch whose only operation tests that its first ownerReference carries the owner's uid (as
/// every object the operator creates does). The API server applies it (changing nothing, and
/// answering with the object's uid) only when the test holds; anyone else's object fails the test
/// (422, with nothing of the object in the answer) or, unlabelled, is refused by the chart's
/// admission policy (403). `Ok(Some(uid))` when it is the owner's.
async fn created_earlier(
    client: &kube::Client,
    url_path: &str,
    name: &str,
    owner: &ObjectOwner,
) -> Result<Option<String>, kube::Error> {
    let test: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": owner.uid},
    ]))
    .map_err(kube::Error::SerdeError)?;
    let request = kube::core::Request::new(url_path)
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(test))
        .map_err(kube::Error::BuildRequest)?;
    match client.request::<Created>(request).await {
        Ok(Created { metadata }) => Ok(metadata.uid),
        Err(kube::Error::Api(status)) if matches!(status.code, 403 | 422) => Ok(None),
        Err(source) => Err(source),
    }
}

/// Deletes `name` only if it is still the object with `uid` (a `preconditions.uid` delete, no
/// read). Absent (404) or replaced (409) objects are left alone; `Ok(true)` when it was deleted.
pub async fn delete_uid<K>(api: &Api<K>, kind: &'static str, name: &str, uid: &str) -> Result<bool, ProjectionError>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(ProjectionError::Api {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

/// Deletes `name` if `owner` owns it (checked, then deleted with a uid precondition so an
/// object replaced in between is left alone). Absent objects count as deleted.
pub async fn delete_if_owned<K>(
    api: &Api<K>,
    kind: &'static str,
    name: &str,
    owner: &ObjectOwner,
) -> Result<bool, ProjectionError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let api_error = |source| ProjectionError::Api {
        kind,
        name: name.to_owned(),
        source,
    };
    let Some(existing) = metadata_of(api, name).await.map_err(api_error)? else {
        return Ok(false);
    };
    if !owner.owns(&existing.metadata) {
        return Ok(false);
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: existing.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(source) => Err(api_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner() -> ObjectOwner {
        ObjectOwner {
            namespace: "shop".into(),
            name: "orders".into(),
            uid: "u1".into(),
        }
    }

    fn reference(name: &str, uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "dsql.credentials.dev/v1alpha1".into(),
            kind: "DsqlCredential".into(),
            name: name.into(),
            uid: uid.into(),
            ..Default::default()
        }
    }

    #[test]
    fn owned_by_uid_or_by_name_with_the_operator_labels() {
        let mut meta = kube::api::ObjectMeta {
            owner_references: Some(vec![reference("orders", "u1")]),
            ..Default::default()
        };
        assert!(owner().owns(&meta));
        meta.owner_references = Some(vec![reference("orders", "old-uid")]);
        assert!(
            !owner().owns(&meta),
            "a stale owner without the operator's labels is not enough"
        );
        meta.labels = serde_json::from_value(owner().labels()).ok();
        assert!(owner().owns(&meta));
        meta.owner_references = None;
        assert!(!owner().owns(&meta), "labels alone can be copied by anyone");
        assert!(!owner().owns(&kube::api::ObjectMeta::default()));
    }
}
