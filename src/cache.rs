//! What the controller watches and caches for each `DsqlCredential`.
//!
//! At 10,000 credentials the cache is most of the operator's memory, and how it is filled sets
//! much of the rest: short-lived allocations freed between long-lived ones leave the heap
//! fragmented. kube's reflector stores a clone of every object it passes on, `DeserializeGuard`
//! decodes each object three times (a generic value, a copy of it, then the type), and the
//! metadata nobody reads (managedFields, `kubectl apply`'s copy of the manifest) is most of an
//! object. A [`WatchedCredential`] keeps the metadata decoded (the reflector and the controller
//! key objects by it) and the spec and status as the API server's JSON text, two allocations
//! where the decoded types are some forty (about 1.2 KiB less per credential, measured in
//! docs/performance.md); a reconcile decodes them when it starts. It is shared rather than
//! copied: the cached object and the one in the watch stream are one allocation.

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

use crate::api::{DsqlCredential, DsqlCredentialSpec, DsqlCredentialStatus, ROTATE_ANNOTATION};

/// A watched `DsqlCredential`: its metadata, and its spec and status as text until a reconcile
/// decodes them. An object whose stored form does not fit this operator's types (written under a
/// looser schema, say) is reported on its own when it is reconciled, instead of failing the list
/// of its namespace.
#[derive(Clone, Debug)]
pub struct WatchedCredential(Arc<CachedCredential>);

#[derive(Clone, Debug)]
struct CachedCredential {
    /// The metadata without annotations.
    metadata: ObjectMeta,
    /// The value of [`ROTATE_ANNOTATION`], the one annotation the operator reads.
    rotate_annotation: Option<Box<str>>,
    /// `spec` as the API server wrote it (absent: an object without one, reported as such).
    spec: Option<Box<str>>,
    /// `status` as the API server wrote it.
    status: Option<Box<str>>,
}

impl WatchedCredential {
    /// The credential decoded, or why it cannot be.
    pub fn decoded(&self) -> Result<DsqlCredential, Box<InvalidObject>> {
        let cached = &self.0;
        match decode_spec_and_status(cached.spec.as_deref(), cached.status.as_deref()) {
            Ok((spec, status)) => {
                let mut metadata = cached.metadata.clone();
                metadata.annotations = cached
                    .rotate_annotation
                    .as_ref()
                    .map(|value| BTreeMap::from([(ROTATE_ANNOTATION.to_owned(), value.to_string())]));
                Ok(DsqlCredential { metadata, spec, status })
            }
            Err(error) => Err(Box::new(InvalidObject {
                error,
                metadata: cached.metadata.clone(),
            })),
        }
    }
}

impl<'de> Deserialize<'de> for WatchedCredential {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The object's JSON text, kept only while it is read: one allocation, where a generic
        // value would be one per field. (This needs serde_json's own deserializer, which is what
        // kube decodes lists and watch events with.)
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let wire: WireCredential<'_> = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        let (metadata, rotate_annotation) = wire.metadata.split();
        Ok(Self(Arc::new(CachedCredential {
            metadata,
            rotate_annotation,
            spec: wire.spec.map(|text| Box::from(text.get())),
            status: wire.status.map(|text| Box::from(text.get())),
        })))
    }
}

/// Decodes spec and status from their text; the error says which of them did not fit.
fn decode_spec_and_status(
    spec: Option<&str>,
    status: Option<&str>,
) -> Result<(DsqlCredentialSpec, Option<DsqlCredentialStatus>), String> {
    let spec = spec.ok_or("missing field `spec`")?;
    let spec = serde_json::from_str(spec).map_err(|e| format!("spec: {e}"))?;
    let status = match status {
        Some(status) => serde_json::from_str(status).map_err(|e| format!("status: {e}"))?,
        None => None,
    };
    Ok((spec, status))
}

/// A `DsqlCredential` as it arrives: metadata decoded straight into what is kept, spec and
/// status left as text.
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
/// managedFields (one entry per field manager, each a tree of field names) and the annotations
/// but one (among them the copy of the manifest `kubectl apply` keeps). They are skipped while parsing, never
/// allocated: decoding them only to drop them would leave the heap fragmented (at 10,000
/// credentials that alone cost 7 MiB of resident memory). The operator never writes a whole
/// object back, so nothing is lost by not caching them.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct CachedMetadata {
    annotations: Option<RotateAnnotation>,
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

impl CachedMetadata {
    /// The metadata kept, without annotations, and the rotate annotation's value.
    fn split(self) -> (ObjectMeta, Option<Box<str>>) {
        let m = self;
        let rotate = m.annotations.and_then(|a| a.0);
        let metadata = ObjectMeta {
            annotations: None,
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
        };
        (metadata, rotate)
    }
}

/// The annotation `kubectl apply` (and GitOps tools using client-side apply) keep a full copy of
/// the applied manifest in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Of an object's annotations, the one the operator reads ([`ROTATE_ANNOTATION`]); the others
/// are skipped while parsing. Kept in an object's metadata, even one annotation costs a map node
/// of eleven entries' room (about 600 bytes with its strings): 6 MiB at 10,000 credentials that
/// were all rotated by hand once.
struct RotateAnnotation(Option<Box<str>>);

impl<'de> Deserialize<'de> for RotateAnnotation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Annotations;
        impl<'de> Visitor<'de> for Annotations {
            type Value = RotateAnnotation;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of annotations")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut rotate = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == ROTATE_ANNOTATION {
                        rotate = Some(map.next_value::<String>()?.into_boxed_str());
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RotateAnnotation(rotate))
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
        &self.0.metadata
    }

    /// Copies the object first if it is shared (kube-runtime does not call this on watched
    /// objects).
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut Arc::make_mut(&mut self.0).metadata
    }
}

pub mod relist;

#[cfg(test)]
mod tests;
