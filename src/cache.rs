//! What the controller watches and caches for each `DsqlCredential`.
//!
//! kube's reflector stores a clone of every object it passes on, and `DeserializeGuard` decodes
//! each object three times (into a generic value, a copy of that value, then the type). At
//! 10,000 credentials that churn, not the cache itself, set the operator's resident memory: the
//! short-lived copies are freed between long-lived ones and leave the heap fragmented. A
//! [`WatchedCredential`] is decoded once, from the object's JSON text, and is shared rather than
//! copied: the cached object, the one in the watch stream and the one a reconcile works on are
//! one allocation.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::error_boundary::InvalidObject;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::api::DsqlCredential;

/// A watched `DsqlCredential`: decoded, or, when its stored form does not fit this operator's
/// types (written under a looser schema, say), its metadata and the decode error, so one such
/// object is reported on its own instead of failing the list of its namespace.
#[derive(Clone, Debug)]
pub struct WatchedCredential(Result<Arc<DsqlCredential>, Arc<InvalidObject>>);

impl WatchedCredential {
    /// The decoded credential, or why it could not be decoded.
    pub fn decoded(&self) -> Result<&Arc<DsqlCredential>, &InvalidObject> {
        self.0.as_ref().map_err(|invalid| invalid.as_ref())
    }
}

impl From<DsqlCredential> for WatchedCredential {
    fn from(credential: DsqlCredential) -> Self {
        Self(Ok(Arc::new(credential)))
    }
}

impl<'de> Deserialize<'de> for WatchedCredential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The object's JSON text, kept only while it is decoded: one allocation, where a generic
        // value would be one per field. (This needs serde_json's own deserializer, which is what
        // kube decodes lists and watch events with.)
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        match serde_json::from_str::<DsqlCredential>(raw.get()) {
            Ok(mut credential) => {
                drop_unread_metadata(&mut credential.metadata);
                Ok(credential.into())
            }
            Err(error) => {
                #[derive(Deserialize)]
                struct MetadataOnly {
                    #[serde(default)]
                    metadata: ObjectMeta,
                }
                let MetadataOnly { mut metadata } = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
                drop_unread_metadata(&mut metadata);
                Ok(Self(Err(Arc::new(InvalidObject {
                    error: error.to_string(),
                    metadata,
                }))))
            }
        }
    }
}

/// The annotation `kubectl apply` (and GitOps tools using client-side apply) keep a full copy of
/// the applied manifest in.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the metadata nothing in the operator reads and that is most of an object's size:
/// managedFields (one entry per field manager) and `kubectl apply`'s copy of the manifest. The
/// operator never writes a whole object back, so nothing is lost by not caching them.
fn drop_unread_metadata(metadata: &mut ObjectMeta) {
    metadata.managed_fields = None;
    if let Some(annotations) = &mut metadata.annotations {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

impl Resource for WatchedCredential {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        DsqlCredential::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        DsqlCredential::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        DsqlCredential::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        DsqlCredential::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(credential) => &credential.metadata,
            Err(invalid) => &invalid.metadata,
        }
    }

    /// Copies the object first if it is shared (kube-runtime does not call this on watched
    /// objects).
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(credential) => &mut Arc::make_mut(credential).metadata,
            Err(invalid) => &mut Arc::make_mut(invalid).metadata,
        }
    }
}

#[cfg(test)]
mod tests;
