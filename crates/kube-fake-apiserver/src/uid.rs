//! `metadata.uid` as a write precondition, the way kube-apiserver v1.36 answers it (pinned by
//! `uid-preconditions.json`). The same wrong uid gets a different answer per verb, because each
//! verb meets it at a different layer of the real server:
//!
//! - PUT: the registry turns the body's uid into a storage precondition, checked before the
//!   resourceVersion comparison: 409 with the etcd `StorageError` text.
//! - PATCH (merge, strategic, JSON, apply): the patched object simply carries another uid, and
//!   `ValidateObjectMetaUpdate` refuses it as immutable: 422, cause listed twice (the generic and
//!   the kind's update validation both report it). Apply conflicts are found earlier, so they win.
//! - Apply of a missing object with a uid: the create-on-update path refuses to invent an object
//!   for a uid that does not exist: 409 "uid mismatch".
//! - DELETE `preconditions`: checked by `rest.BeforeDelete` with the Kind (not the resource) in
//!   the error's group-resource.

use serde_json::Value;

use crate::errors::{ApiError, Cause};
use crate::meta::meta_str;
use crate::resources::ResourceDef;

/// The uid a request body (or a patched object) asks for, if any.
pub fn requested(body: &Value) -> Option<&str> {
    body.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
}

/// The etcd key the real server stores an object under (only used in error text): built-in
/// resources are keyed by resource alone, custom resources by group and resource.
fn storage_key(def: &ResourceDef, namespace: &str, name: &str) -> String {
    let resource = if def.custom {
        format!("{}/{}", def.group, def.plural)
    } else {
        def.plural.clone()
    };
    if def.namespaced {
        format!("/registry/{resource}/{namespace}/{name}")
    } else {
        format!("/registry/{resource}/{name}")
    }
}

/// PUT: a body uid other than the stored one fails the storage precondition (409).
pub fn check_update(def: &ResourceDef, wanted: Option<&str>, old: &Value) -> Result<(), ApiError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let actual = meta_str(old, "uid");
    if wanted == actual {
        return Ok(());
    }
    let name = meta_str(old, "name");
    let key = storage_key(def, meta_str(old, "namespace"), name);
    Err(ApiError::conflict(
        &def.group,
        &def.plural,
        name,
        &format!(
            "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {wanted}, UID in object meta: {actual}"
        ),
    ))
}

/// PATCH and apply of an existing object: a changed uid is an immutable-field error (422).
pub fn check_patched(def: &ResourceDef, wanted: Option<&str>, old: &Value) -> Result<(), ApiError> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    if wanted == meta_str(old, "uid") {
        return Ok(());
    }
    let cause = Cause::invalid("metadata.uid", &Value::String(wanted.to_string()), "field is immutable");
    Err(ApiError::invalid(
        &def.group,
        &def.kind,
        meta_str(old, "name"),
        &[cause.clone(), cause],
    ))
}

/// Apply of a name with no object: a uid cannot be honoured, so nothing is created (409).
pub fn check_apply_create(def: &ResourceDef, wanted: Option<&str>, name: &str) -> Result<(), ApiError> {
    match wanted {
        None => Ok(()),
        Some(uid) => Err(ApiError::conflict(
            &def.group,
            &def.plural,
            name,
            &format!("uid mismatch: the provided object specified uid {uid}, and no existing object was found"),
        )),
    }
}

/// DELETE `preconditions` (uid, then resourceVersion) against the stored object.
pub fn check_delete(
    def: &ResourceDef,
    obj: &Value,
    precondition_uid: Option<&str>,
    precondition_rv: Option<&str>,
) -> Result<(), ApiError> {
    let name = meta_str(obj, "name");
    if let Some(uid) = precondition_uid
        && uid != meta_str(obj, "uid")
    {
        return Err(ApiError::conflict(
            &def.group,
            &def.kind,
            name,
            &format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                meta_str(obj, "uid")
            ),
        ));
    }
    if let Some(rv) = precondition_rv
        && rv != meta_str(obj, "resourceVersion")
    {
        return Err(ApiError::conflict(
            &def.group,
            &def.kind,
            name,
            &format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                meta_str(obj, "resourceVersion")
            ),
        ));
    }
    Ok(())
}
