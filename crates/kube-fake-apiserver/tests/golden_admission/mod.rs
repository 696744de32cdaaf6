//! Replays of the recordings that stand alone, each on a fresh server (they create their own
//! namespace `golden`): uid preconditions, and a ValidatingAdmissionPolicy confining one
//! ServiceAccount. Steps named "as operator" are sent with a bearer token of that ServiceAccount.

use std::time::Duration;

use kube_fake_apiserver::FakeApiServer;
use serde_json::Value;

use super::Failures;
use super::support::control_plane::ControlPlane;
use super::support::{Raw, Recorder, load, raw_as};

/// The golden files replayed here (for `golden_files_are_all_covered`).
pub const FILES: &[&str] = &["uid-preconditions.json", "validating-admission-policy.json"];

/// The TokenRequest setup step: only its status is compared, since its body holds a live token
/// and the server's own URL as audience; the token it returns is what "as operator" steps send.
const TOKEN_REQUEST_STEP: &str = "setup (admin): TokenRequest ";

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

/// Replays `file` on a fresh fake, or on a fresh real control plane; returns the differences.
async fn replay_standalone_on(file: &str, real: bool) -> Failures {
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
        let bearer = if name.starts_with("as operator") {
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
        if name.starts_with(TOKEN_REQUEST_STEP) {
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

async fn replay_standalone(file: &str) {
    replay_standalone_on(file, false).await.assert_none(file);
}

/// Every file of [`FILES`], each on a fresh real control plane; the reports of those that differ.
pub async fn replay_all_on_real_server() -> Vec<String> {
    let mut reports = Vec::new();
    for file in FILES {
        reports.extend(replay_standalone_on(file, true).await.report(file));
    }
    reports
}

#[tokio::test]
async fn golden_uid_preconditions() {
    replay_standalone("uid-preconditions.json").await;
}

#[tokio::test]
async fn golden_validating_admission_policy() {
    replay_standalone("validating-admission-policy.json").await;
}
