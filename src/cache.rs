//! What the controller watches and caches for each `DsqlCredential`.
//!
//! At 10,000 credentials the operator's resident memory is set less by the cache itself than by
//! how it is filled: short-lived allocations freed between long-lived ones leave the heap
//! fragmented. kube's reflector stores a clone of every object it passes on, `DeserializeGuard`
//! decodes each object three times (a generic value, a copy of it, then the type), and the
//! metadata nobody reads (managedFields, `kubectl apply`'s copy of the manifest) is most of an
//! object. A [`WatchedCredential`] is decoded once, from the object's JSON text, skipping that
//! metadata, and is shared rather than copied: the cached object, the one in the watch stream and
//! the one a reconcile works on are one allocation.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::core::error_boundary::InvalidObject;
use serde::de::{Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::api::{DsqlCredential, DsqlCredentialSpec, DsqlCredentialStatus};

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

impl<'de> Deserialize<'de> for WatchedCredential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The object's JSON text, kept only while it is decoded: one allocation, where a generic
        // value would be one per field. (This needs serde_json's own deserializer, which is what
        // kube decodes lists and watch events with.)
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let wire: WireCredential<'_> = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        let metadata = ObjectMeta::from(wire.metadata);
        Ok(Self(match decode_spec_and_status(wire.spec, wire.status) {
            Ok((spec, status)) => Ok(Arc::new(DsqlCredential { metadata, spec, status })),
            Err(error) => Err(Arc::new(InvalidObject { error, metadata })),
        }))
    }
}

/// Decodes spec and status from their text; the error says which of them did not fit.
fn decode_spec_and_status(
    spec: Option<&RawValue>,
    status: Option<&RawValue>,
) -> Result<(DsqlCredentialSpec, Option<DsqlCredentialStatus>), String> {
    let spec = spec.ok_or("missing field `spec`")?;
    let spec = serde_json::from_str(spec.get()).map_err(|e| format!("spec: {e}"))?;
    let status = match status {
        Some(status) => serde_json::from_str(status.get()).map_err(|e| format!("status: {e}"))?,
        None => None,
    };
    Ok((spec, status))
}

/// A `DsqlCredential` as it arrives: metadata decoded straight into what is kept, spec and
/// status left as text until they are decoded on their own (so an error names which one).
#[derive(Deserialize)]
struct WireCredential<'a> {
    #[serde(default)]
    metadata: CachedMetadata,
    #[serde(borrow, default)]
    spec: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<&'a RawValue>,
}

/// `ObjectMeta` without what nothing in the operator reads and is most of an object's size:
/// managedFields (one entry per field manager, each a tree of field names) and the copy of the
/// manifest `kubectl apply` keeps in an annotation. They are skipped while parsing, never
/// allocated: decoding them only to drop them would leave the heap fragmented (at 10,000
/// credentials that alone cost 7 MiB of resident memory). The operator never writes a whole
/// object back, so nothing is lost by not caching them.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CachedMetadata {
    annotations: Option<AnnotationsWithoutLastApplied>,
    creation_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    deletion_timestamp: Option<Time>,
    finalizers: Option<Vec<String>>,
    generate_name: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    name: Option<String>,
    namespace: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    resource_version: Option<String>,
    self_link: Option<String>,
    uid: Option<String>,
}

impl From<CachedMetadata> for ObjectMeta {
    fn from(m: CachedMetadata) -> Self {
        ObjectMeta {
            annotations: m.annotations.map(|a| a.0),
            creation_timestamp: m.creation_timestamp,
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp,
            finalizers: m.finalizers,
            generate_name: m.generate_name,
            generation: m.generation,
            labels: m.labels,
            managed_fields: None,
            name: m.name,
            namespace: m.namespace,
            owner_references: m.owner_references,
            resource_version: m.resource_version,
            self_link: m.self_link,
            uid: m.uid,
        }
    }
}

/// The annotation `kubectl apply` (and GitOps tools using client-side apply) keep a full copy of
/// the applied manifest in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations, parsed without allocating [`LAST_APPLIED_ANNOTATION`]'s value.
struct AnnotationsWithoutLastApplied(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for AnnotationsWithoutLastApplied {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Annotations;
        impl<'de> Visitor<'de> for Annotations {
            type Value = AnnotationsWithoutLastApplied;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut annotations = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == LAST_APPLIED_ANNOTATION {
                        map.next_value::<IgnoredAny>()?;
                    } else {
                        annotations.insert(key, map.next_value()?);
                    }
                }
                Ok(AnnotationsWithoutLastApplied(annotations))
            }
        }
        deserializer.deserialize_map(Annotations)
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

pub mod relist;

#[cfg(test)]
mod tests;
