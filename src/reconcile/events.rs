//! Kubernetes Events on transitions: a rotation, a deferred rotation, the first failure of a
//! kind, a stall, a deletion. Never one per no-op reconcile. Publishing is best effort: a lost Event is logged,
//! it never fails a rotation.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tracing::warn;

use crate::api::{ConditionReason, DsqlCredential, MANAGER_NAME};
use crate::reconcile::plan::RotationCause;
use crate::reconcile::status::{Failure, Published};

/// Publishes the operator's Events.
pub(crate) struct EventPublisher {
    recorder: Recorder,
}

impl EventPublisher {
    pub(crate) fn new(client: kube::Client) -> Self {
        let reporter = Reporter {
            controller: MANAGER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client, reporter),
        }
    }

    async fn publish(&self, credential: &DsqlCredential, type_: EventType, reason: &str, action: &str, note: String) {
        self.publish_for(&credential.object_ref(&()), type_, reason, action, note)
            .await;
    }

    /// Publishes about an object known only by its reference (one that cannot be decoded).
    pub(crate) async fn publish_for(
        &self,
        reference: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, reference).await {
            warn!(reason, error = %error, "could not publish a Kubernetes Event");
        }
    }

    pub(crate) async fn rotated(
        &self,
        credential: &DsqlCredential,
        cause: &RotationCause,
        published: &Published,
        failures_before: i32,
    ) {
        let recovered = if failures_before > 0 {
            format!(" after {failures_before} failed attempts")
        } else {
            String::new()
        };
        let note = format!(
            "Published Secrets Manager version {} ({}){recovered}; token valid until {}",
            published.version.version_id,
            cause.describe(),
            published.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        );
        self.publish(credential, EventType::Normal, "Rotated", "Rotate", note)
            .await;
    }

    /// A requested rotation waits for the one-a-minute limit; `note` is the status's
    /// [`deferral_note`](crate::reconcile::status::deferral_note).
    pub(crate) async fn rotation_deferred(&self, credential: &DsqlCredential, note: &str) {
        self.publish(
            credential,
            EventType::Normal,
            "RotationDeferred",
            "Rotate",
            note.to_owned(),
        )
        .await;
    }

    pub(crate) async fn rotation_failed(&self, credential: &DsqlCredential, failure: &Failure, action: &str) {
        self.publish(
            credential,
            EventType::Warning,
            "RotationFailed",
            action,
            format!("{}: {}", failure.reason.as_str(), failure.message),
        )
        .await;
    }

    pub(crate) async fn stalled(&self, credential: &DsqlCredential, reason: ConditionReason, message: &str) {
        self.publish(
            credential,
            EventType::Warning,
            reason.as_str(),
            "Validate",
            message.to_owned(),
        )
        .await;
    }

    pub(crate) async fn cleaned_up(&self, credential: &DsqlCredential, reason: &str, note: String) {
        self.publish(credential, EventType::Normal, reason, "Delete", note)
            .await;
    }
}
