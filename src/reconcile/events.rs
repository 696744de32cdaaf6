//! Kubernetes Events on transitions: a rotation, a deferred rotation, the first failure of a
//! kind, a rollout restart that starts failing, a stall, a deletion. Never one per no-op
//! reconcile. Publishing is best effort: a lost Event is logged, it never fails a rotation.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Resource;
use kube::api::{Api, PostParams};
use tracing::{debug, warn};

use crate::api::{ConditionReason, DsqlCredential, MANAGER_NAME};
use crate::reconcile::plan::RotationCause;
use crate::reconcile::status::{Failure, Published};

/// Normal or Warning, as `events.k8s.io/v1` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    /// Something worth knowing happened.
    Normal,
    /// Something needs attention.
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Publishes the operator's Events, each a new `events.k8s.io/v1` Event.
///
/// Not kube-runtime's `Recorder`: it keeps every Event it published for six minutes (and for
/// ever when nothing is published after it) to count repeats into a series. The operator
/// publishes only on transitions, so there are no repeats to count, and at 10,000 credentials
/// that cache held 10,000 Events after every mass rotation. Its series would also be wrong here:
/// a second rotation within six minutes would bump the count on the first one's Event, whose
/// note names the previous version.
pub(crate) struct EventPublisher {
    client: kube::Client,
    /// `reportingController`.
    controller: String,
    /// `reportingInstance`: the pod's name, or the controller's without one.
    instance: String,
}

impl EventPublisher {
    pub(crate) fn new(client: kube::Client) -> Self {
        Self {
            client,
            controller: MANAGER_NAME.to_owned(),
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER_NAME.to_owned()),
        }
    }

    async fn publish(&self, credential: &DsqlCredential, type_: EventType, reason: &str, action: &str, note: String) {
        self.publish_for(&credential.object_ref(&()), type_, reason, action, note)
            .await;
    }

    /// The Event for `regarding`, named as kube-runtime and client-go name theirs (the object's
    /// name and the time in hexadecimal nanoseconds, unique per object).
    fn event(&self, regarding: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) -> Event {
        let now = jiff::Timestamp::now();
        Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    now.as_nanosecond()
                )),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(shorten_note(note)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_.as_str().to_owned()),
            ..Default::default()
        }
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
        let event = self.event(reference, type_, reason, action, note);
        let events: Api<Event> =
            Api::namespaced(self.client.clone(), reference.namespace.as_deref().unwrap_or("default"));
        match events.create(&PostParams::default(), &event).await {
            Ok(_) => {}
            // While a namespace is deleted, its objects' cleanup Events cannot be written there:
            // expected, and nothing anyone could act on.
            Err(error) if namespace_terminating(&error) => {
                debug!(reason, error = %error, "Kubernetes Event not published: its namespace is being deleted");
            }
            Err(error) => warn!(reason, error = %error, "could not publish a Kubernetes Event"),
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

    /// A rollout restart the API server refused; `message` names the workload and the answer.
    pub(crate) async fn rollout_restart_failed(&self, credential: &DsqlCredential, message: &str, retry_at: &str) {
        self.publish(
            credential,
            EventType::Warning,
            ConditionReason::RolloutRestartFailed.as_str(),
            "RolloutRestart",
            format!("{message}; retrying at {retry_at} without a new token"),
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

/// The most an Event's note may hold (events.k8s.io/v1 refuses a longer one).
const NOTE_LIMIT: usize = 1024;

/// `note` cut to [`NOTE_LIMIT`] bytes (at a character boundary, ending in `…`): an API server's
/// answer can quote a whole admission policy expression.
fn shorten_note(mut note: String) -> String {
    if note.len() > NOTE_LIMIT {
        let mut end = NOTE_LIMIT - '…'.len_utf8();
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push('…');
    }
    note
}

/// The API server's refusal to create anything in a namespace that is being deleted (403 with a
/// `NamespaceTerminating` cause, from the NamespaceLifecycle admission plugin).
fn namespace_terminating(error: &kube::Error) -> bool {
    let kube::Error::Api(status) = error else {
        return false;
    };
    status.code == 403
        && (status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
            || status.message.contains("because it is being terminated"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams, PostParams};
    use kube_fake_apiserver::FakeApiServer;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn reference(namespace: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some("dsql.credentials.dev/v1alpha1".into()),
            kind: Some("DsqlCredential".into()),
            name: Some("orders-db".into()),
            namespace: Some(namespace.into()),
            uid: Some("0b7f4f8e-0000-4000-a000-000000000001".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn an_event_refused_by_a_terminating_namespace_is_debug_other_failures_warn() {
        let fake = FakeApiServer::start().await;
        let client = fake.client();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": "going"}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        // The namespace controller is held, so "going" stays Terminating.
        fake.set_gc_paused(true);
        namespaces.delete("going", &DeleteParams::default()).await.unwrap();

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let publisher = EventPublisher::new(client);
        publisher
            .publish_for(
                &reference("going"),
                EventType::Normal,
                "Deleted",
                "Delete",
                "gone".into(),
            )
            .await;
        let terminating = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = terminating
            .lines()
            .find(|l| l.contains("reason=\"Deleted\""))
            .unwrap_or_else(|| panic!("no log line about the Event:\n{terminating}"));
        assert!(line.contains("DEBUG"), "{line}");
        assert!(line.contains("being deleted"), "{line}");
        assert!(!terminating.contains("WARN"), "{terminating}");

        // Any other refusal (here: a namespace that does not exist) is still a warning.
        publisher
            .publish_for(&reference("absent"), EventType::Normal, "Rotated", "Rotate", "x".into())
            .await;
        let all = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = all
            .lines()
            .find(|l| l.contains("reason=\"Rotated\""))
            .unwrap_or_else(|| panic!("no log line about the Event:\n{all}"));
        assert!(line.contains("WARN") && line.contains("could not publish"), "{line}");
    }
}
