//! Objects this operator cannot decode, e.g. stored under an older or looser schema. The watcher
//! decodes through `DeserializeGuard`, so such an object reaches the controller as an error of its
//! own instead of failing the list of its whole namespace (which would stop every credential in
//! it). It is reported once per generation, as `Stalled/InvalidSpec` and a Warning Event; nothing
//! is minted or written for it. Deleting it removes the finalizer and leaves its secret in place:
//! without its spec and status the deletion policy cannot be known.

use crate::reconcile::events::EventType;
use json_patch::jsonptr::PointerBuf;
use json_patch::{PatchOperation, RemoveOperation, TestOperation};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::error_boundary::InvalidObject;
use kube::runtime::controller::Action;
use serde_json::json;
use tracing::warn;

use super::{Error, object_key};
use crate::api::{ConditionReason, ConditionType, DsqlCredential, FINALIZER, MANAGER_NAME, set_condition};
use crate::reconcile::Context;

/// Reports `invalid`, or lets it be deleted.
pub(super) async fn report(invalid: &InvalidObject, ctx: &Context) -> Result<Action, Error> {
    let meta = &invalid.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let key = object_key(&namespace, &name);
    let resource = ApiResource::erase::<DsqlCredential>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &resource);
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(resource.api_version.clone()),
        kind: Some(resource.kind.clone()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    };

    if meta.deletion_timestamp.is_some() {
        let finalizers = meta.finalizers.clone().unwrap_or_default();
        let Some(index) = finalizers.iter().position(|f| f == FINALIZER) else {
            return Ok(Action::await_change());
        };
        // The same guarded removal kube's finalizer helper does: fails instead of removing
        // another finalizer if the list changed meanwhile.
        let index = index.to_string();
        let path = PointerBuf::from_tokens(["metadata", "finalizers", index.as_str()]);
        let patch = json_patch::Patch(vec![
            PatchOperation::Test(TestOperation {
                path: path.clone(),
                value: FINALIZER.into(),
            }),
            PatchOperation::Remove(RemoveOperation { path }),
        ]);
        api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|source| Error::Unreadable {
                object: key.clone(),
                source,
            })?;
        warn!(credential = %key, "deleted a DsqlCredential that cannot be read; its secret was left in place");
        ctx.events
            .publish_for(
                &reference,
                EventType::Warning,
                "SecretRetained",
                "Delete",
                "The object could not be read, so its deletionPolicy is unknown: its Secrets Manager secret and projections were left in place".to_owned(),
            )
            .await;
        return Ok(Action::await_change());
    }

    let generation = meta.generation.unwrap_or_default();
    if !ctx.first_report_of_unreadable(meta.uid.as_deref().unwrap_or_default(), generation) {
        return Ok(Action::await_change());
    }
    let message = format!(
        "the stored object cannot be read by this operator ({}); fix it with kubectl edit or re-create it",
        invalid.error
    );
    warn!(credential = %key, error = %invalid.error, "cannot read DsqlCredential");
    let mut conditions = Vec::new();
    set_condition(
        &mut conditions,
        ConditionType::Stalled,
        true,
        ConditionReason::InvalidSpec,
        message.clone(),
        meta.generation,
        ctx.clock.now(),
    );
    // A merge patch of the conditions alone: the rest of the status (the secret's ARN, times)
    // cannot be read here and must survive for when the object is fixed.
    let status = json!({"status": {"conditions": conditions}});
    let params = PatchParams {
        field_manager: Some(MANAGER_NAME.to_owned()),
        ..Default::default()
    };
    match api.patch_status(&name, &params, &Patch::Merge(&status)).await {
        Ok(_) => {}
        // An API server without validation ratcheting (before 1.30) refuses any write to an
        // object that fails the current schema: the Event below is then the only report, and
        // retrying would fail the same way.
        Err(kube::Error::Api(response)) if response.code == 422 => {
            warn!(credential = %key, "the API server refused the status of an unreadable DsqlCredential; reported by Event only");
        }
        Err(source) => {
            ctx.forget_unreadable_report(meta.uid.as_deref().unwrap_or_default());
            return Err(Error::Unreadable {
                object: key.clone(),
                source,
            });
        }
    }
    ctx.events
        .publish_for(
            &reference,
            EventType::Warning,
            ConditionReason::InvalidSpec.as_str(),
            "Validate",
            message,
        )
        .await;
    Ok(Action::await_change())
}
