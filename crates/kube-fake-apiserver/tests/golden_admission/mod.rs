//! Replays of the recordings that stand alone, each on a fresh server (they create their own
//! namespace `golden`): uid preconditions, a ValidatingAdmissionPolicy confining one
//! ServiceAccount, and what such a policy sees of the request (which fields are absent, and the
//! 422 of an expression reading one). Steps the recording sent as the ServiceAccount are sent
//! with a bearer token of it (see [`Recording`]).

use std::time::Duration;

use kube_fake_apiserver::FakeApiServer;
use serde_json::Value;

use super::Failures;
use super::support::control_plane::ControlPlane;
use super::support::{Raw, Recorder, load, raw_as};

/// The golden files replayed here (for `golden_files_are_all_covered`).
pub const FILES: &[&str] = &[
    "uid-preconditions.json",
    "validating-admission-policy.json",
    "admission-request-shape.json",
];

/// How one recording names its steps.
struct Recording {
    file: &'static str,
    /// The TokenRequest setup step's name starts with this: only its status is compared, since
    /// its body holds a live token and the server's own URL as audience; the token it returns is
    /// what the ServiceAccount's steps send.
    token_step: &'static str,
    /// Whether a step was sent as the ServiceAccount.
    as_operator: fn(&str) -> bool,
    /// Setup steps whose status alone is compared, with why.
    status_only: &'static [(&'static str, &'static str)],
}

/// validating-admission-policy.json and uid-preconditions.json: "as operator: ..." steps.
fn named_as_operator(step: &str) -> bool {
    step.starts_with("as operator")
}

/// admission-request-shape.json: every step but the admin's setup and teardown.
fn not_admin(step: &str) -> bool {
    !(step.starts_with("setup (admin)") || step.starts_with("teardown (admin)"))
}

fn replace_all(text: &str, uids: &[(String, String)]) -> String {
    uids.iter()
        .fold(text.to_string(), |t, (recorded, actual)| t.replace(recorded, actual))
}

fn uid_of(body: &Value) -> Option<String> {
    body.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A PUT carries the resourceVersion the recorder had just read: use the fake's current one.
async fn with_current_rv(base: &str, path: &str, body: String) -> String {
    let current = raw_as(base, None, "GET", path, None, None).await;
    let rv = serde_json::from_str::<Value>(&current.body)
        .ok()
        .and_then(|v| v.pointer("/metadata/resourceVersion").cloned());
    let mut v: Value = serde_json::from_str(&body).unwrap();
    if let (Some(rv), Some(meta)) = (rv, v.get_mut("metadata").and_then(Value::as_object_mut)) {
        meta.insert("resourceVersion".into(), rv);
    }
    v.to_string()
}

/// Replays a recording on a fresh fake, or on a fresh real control plane; returns the
/// differences.
async fn replay_standalone_on(recording: &Recording, real: bool) -> Failures {
    let file = recording.file;
    let (_fake, _plane, base) = if real {
        let plane = tokio::task::spawn_blocking(ControlPlane::start).await.unwrap();
        let base = plane.base.clone();
        (None, Some(plane), base)
    } else {
        let fake = FakeApiServer::start().await;
        let base = fake.base_url();
        (Some(fake), None, base)
    };
    // Recorded uid -> the fake's uid, learnt from each 201; requests and messages embed uids.
    let mut uids: Vec<(String, String)> = Vec::new();
    let mut token: Option<String> = None;
    let mut failures = Failures::default();
    let mut recorder = Recorder::new(real);
    for step in load(file) {
        let name = step["step"].as_str().unwrap_or("?").to_string();
        let req = &step["request"];
        let method = req["method"].as_str().unwrap();
        let path = req["path"].as_str().unwrap();
        let ct = req["contentType"].as_str();
        let mut body = match &req["body"] {
            Value::Null => None,
            Value::String(s) => Some(replace_all(s, &uids)),
            other => Some(replace_all(&other.to_string(), &uids)),
        };
        if method == "PUT"
            && let Some(b) = body.take()
        {
            body = Some(with_current_rv(&base, path, b).await);
        }
        let bearer = if (recording.as_operator)(&name) {
            assert!(token.is_some(), "step {name}: no TokenRequest step before it");
            token.as_deref()
        } else {
            None
        };
        let got: Raw = raw_as(&base, bearer, method, path, ct, body.as_deref()).await;
        recorder.step(&step, &got);
        let expected: Value = serde_json::from_str(&replace_all(&step["response"].to_string(), &uids)).unwrap();
        let want = expected["status"].as_u64().unwrap() as u16;
        let got_json = serde_json::from_str::<Value>(&got.body).ok();
        if got.status == 201
            && want == 201
            && let (Some(recorded), Some(actual)) = (uid_of(&expected["body"]), got_json.as_ref().and_then(uid_of))
        {
            uids.push((recorded, actual));
        }
        if name.starts_with(recording.token_step) {
            match got_json
                .as_ref()
                .and_then(|v| v.pointer("/status/token"))
                .and_then(Value::as_str)
            {
                Some(t) if got.status == want => token = Some(t.to_string()),
                _ => failures.push(format!(
                    "step {name}:\n  expected {want} with a token, got {}: {}",
                    got.status, got.body
                )),
            }
            continue;
        }
        if recording.status_only.iter().any(|(step, _)| *step == name) {
            if got.status != want {
                failures.push(format!(
                    "step {name}:\n  status: expected {want}, got {}: {}",
                    got.status, got.body
                ));
            }
            continue;
        }
        failures.compare(&name, &expected, &got);
        // A real server starts (and stops) enforcing a policy about a second after it or its
        // binding is written; the recorder waited for that on dry-run probes.
        if real && path.contains("/validatingadmissionpolic") && method != "GET" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    recorder.write(file);
    failures
}

async fn replay_standalone(recording: Recording) {
    replay_standalone_on(&recording, false)
        .await
        .assert_none(recording.file);
}

/// Every recording of [`FILES`], each on a fresh real control plane; the reports of those that
/// differ.
pub async fn replay_all_on_real_server() -> Vec<String> {
    let mut reports = Vec::new();
    for recording in [
        uid_preconditions(),
        validating_admission_policy(),
        admission_request_shape(),
    ] {
        reports.extend(replay_standalone_on(&recording, true).await.report(recording.file));
    }
    reports
}

fn uid_preconditions() -> Recording {
    Recording {
        file: "uid-preconditions.json",
        token_step: "setup (admin): TokenRequest ",
        as_operator: named_as_operator,
        status_only: &[],
    }
}

fn validating_admission_policy() -> Recording {
    Recording {
        file: "validating-admission-policy.json",
        token_step: "setup (admin): TokenRequest ",
        as_operator: named_as_operator,
        status_only: &[],
    }
}

fn admission_request_shape() -> Recording {
    Recording {
        file: "admission-request-shape.json",
        token_step: "setup (admin): token request",
        as_operator: not_admin,
        status_only: &[(
            "setup (admin): create secret",
            "a create with stringData: the fake's managedFields name stringData where the real server's name data and type (not what this recording is about)",
        )],
    }
}

#[tokio::test]
async fn golden_uid_preconditions() {
    replay_standalone(uid_preconditions()).await;
}

#[tokio::test]
async fn golden_validating_admission_policy() {
    replay_standalone(validating_admission_policy()).await;
}

/// Which fields of `request` are absent (printed by a messageExpression with `has()`), the 422
/// of an expression that reads an absent `request.subResource`, and `has()` admitting.
#[tokio::test]
async fn golden_admission_request_shape() {
    replay_standalone(admission_request_shape()).await;
}
