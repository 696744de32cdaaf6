//! Replay of the golden exchanges recorded from a real kube-apiserver
//! (`../shared/apiserver-golden/`, one test per file) through the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod golden_admission;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use kube_fake_apiserver::FakeApiServer;
use serde_json::{Value, json};

use support::control_plane::ControlPlane;
use support::{Raw, Recorder, golden_dir, load, parse_events, raw, raw_as};

/// The recordings were made in this order against one server; each file needs the state of the
/// ones before it.
const ORDER: [&str; 8] = [
    "crd.json",
    "crud.json",
    "patch-and-status.json",
    "server-side-apply.json",
    "watch.json",
    "finalizers.json",
    "ownerref-gc.json",
    "misc.json",
];

/// Steps the fake answers through fault injection, because the recording used a situation the
/// fake does not have (one line each: why).
const INJECTED: &[(&str, u16)] = &[
    ("list-while-cache-initializing", 429), // a real CRD's watch cache was still initialising
];

/// Golden files recorded against a fresh server (they create namespace `golden` themselves), so
/// replayed on their own rather than after the ones in [`ORDER`].
/// (crd-cel-cost.json has its own test, `golden_crd_cel_cost`: its steps are dry-run verdicts.)
const STANDALONE: &[&str] = &["rbac-ssa-create.json", "crd-cel-cost.json", "null-pruning.json"];

/// The [`STANDALONE`] files recorded by this repository's recorder (in `golden/`, not shared).
const LOCAL: &[&str] = &["null-pruning.json"];

/// Steps whose recorded answer depends on timing, not compared on the real control plane (one
/// line each: why); the fake reproduces them with fault injection or a paused collector.
const TIMING_ON_REAL: &[&str] = &[
    "list-while-cache-initializing", // a new CRD's watch cache may or may not still be initialising
    "owner-during-foreground",       // the collector may or may not have finished already
    "watch-from-list-rv",            // a bookmark before a short watch ends depends on the cache's timer
    "list-rv-too-old-exact",         // 410 only once etcd has compacted (every 5 minutes), as when recorded
];

/// Steps whose validation causes the real server lists in map order (random in Go): compared as
/// sets on the real control plane, the message by the causes it lists.
const UNORDERED_CAUSES_ON_REAL: &[&str] = &["create-invalid-enum-and-length"];

/// A 422 body with its causes sorted and its message reduced to the object it names plus its
/// sorted causes, for [`UNORDERED_CAUSES_ON_REAL`].
fn causes_as_set(body: &mut Value) {
    let Some(causes) = body.pointer_mut("/details/causes").and_then(Value::as_array_mut) else {
        return;
    };
    causes.sort_by_key(|c| format!("{}|{}|{}", c["field"], c["reason"], c["message"]));
    let listed: Vec<String> = causes
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap_or("<nil>"),
                c["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    if let Some(Value::String(message)) = body.get_mut("message") {
        let object = message.split(" is invalid: ").next().unwrap_or_default().to_owned();
        *message = format!("{object} is invalid: {listed:?}");
    }
}

/// A token the fake never issued, for steps recorded with a bad token.
const BAD_TOKEN: &str = "not-a-token-this-server-issued";

/// Allowlisted differences (one line each: why).
const IGNORED_KEYS: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "time",
    "lastTransitionTime",
    "storageVersionHash", // discovery hash of the storage version: needs etcd's encoding
];

fn normalize_message(step: &str, m: &str) -> String {
    let mut m = m.to_string();
    if m.contains("too old resource version") {
        m = regex::Regex::new(r"\d+").unwrap().replace_all(&m, "N").to_string();
    }
    if step == "list-while-cache-initializing" {
        // The real message names the cache state; an injected 429 uses the max-in-flight wording.
        m = "*".into();
    }
    // generateName suffixes are random.
    regex::Regex::new(r#""w1\.[a-z0-9]{5}""#)
        .unwrap()
        .replace_all(&m, "\"w1.*\"")
        .to_string()
}

fn sort_managed(v: &mut Value) {
    if let Some(mf) = v.pointer_mut("/metadata/managedFields").and_then(Value::as_array_mut) {
        // Order depends on second-granularity timestamps; compare as a set.
        mf.sort_by_key(|e| format!("{}|{}|{}", e["manager"], e["operation"], e["subresource"]));
    }
}

fn canon_key(k: &str) -> String {
    regex::Regex::new(r#"k:\{"uid":"[^"]*"\}"#)
        .unwrap()
        .replace_all(k, "k:{\"uid\":*}")
        .to_string()
}

fn compare(step: &str, path: &str, exp: &Value, act: &Value, diffs: &mut Vec<String>) {
    match (exp, act) {
        (Value::Object(e), Value::Object(a)) => {
            let mut e = e.clone();
            let mut a = a.clone();
            if e.get("kind") == Some(&json!("Status")) {
                for m in [&mut e, &mut a] {
                    if let Some(Value::String(s)) = m.get("message").cloned() {
                        m.insert("message".into(), json!(normalize_message(step, &s)));
                    }
                }
            }
            let mut ev = Value::Object(e.clone());
            let mut av = Value::Object(a.clone());
            sort_managed(&mut ev);
            sort_managed(&mut av);
            let (e, a) = (
                ev.as_object().cloned().unwrap_or_default(),
                av.as_object().cloned().unwrap_or_default(),
            );
            let ek: HashMap<String, &Value> = e.iter().map(|(k, v)| (canon_key(k), v)).collect();
            let ak: HashMap<String, &Value> = a.iter().map(|(k, v)| (canon_key(k), v)).collect();
            for (k, ev) in &ek {
                if IGNORED_KEYS.contains(&k.as_str()) {
                    continue;
                }
                match ak.get(k) {
                    None => diffs.push(format!("{path}.{k}: missing (expected {ev})")),
                    Some(av) if k == "continue" => {
                        if ev.as_str().is_some_and(str::is_empty) != av.as_str().is_some_and(str::is_empty) {
                            diffs.push(format!("{path}.continue: expected {ev}, got {av}"));
                        }
                    }
                    Some(av) if k == "name" && (path.ends_with("details") || path.ends_with("metadata")) => {
                        let n = |v: &Value| normalize_message(step, &v.to_string());
                        if n(ev) != n(av) {
                            diffs.push(format!("{path}.{k}: expected {ev}, got {av}"));
                        }
                    }
                    Some(av) => compare(step, &format!("{path}.{k}"), ev, av, diffs),
                }
            }
            for k in ak.keys() {
                if !ek.contains_key(k) && !IGNORED_KEYS.contains(&k.as_str()) {
                    diffs.push(format!("{path}.{k}: unexpected (got {})", ak[k]));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                diffs.push(format!("{path}: expected {} items, got {}: {act}", e.len(), a.len()));
                return;
            }
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                compare(step, &format!("{path}[{i}]"), x, y, diffs);
            }
        }
        _ => {
            if exp != act {
                diffs.push(format!("{path}: expected {exp}, got {act}"));
            }
        }
    }
}

/// The steps of one golden file whose replies differ from the recording, reported together so a
/// run shows every difference at once.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    /// Records how `got` differs from the recorded response of step `name`, if it does.
    fn compare(&mut self, name: &str, expected: &Value, got: &Raw) {
        let diffs = diff_response(name, expected, got);
        if !diffs.is_empty() {
            self.0.push(format!("step {name}:\n  {}", diffs.join("\n  ")));
        }
    }

    /// Records a difference found some other way.
    fn push(&mut self, failure: String) {
        self.0.push(failure);
    }

    /// The differences of `file`, if any step differed.
    fn report(self, file: &str) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            format!(
                "{file}: {} step(s) differ from the real apiserver:\n{}",
                self.0.len(),
                self.0.join("\n")
            )
        })
    }

    /// Fails the test when any step of `file` differed.
    fn assert_none(self, file: &str) {
        if let Some(report) = self.report(file) {
            panic!("{report}");
        }
    }
}

/// How a reply differs from the recorded response (status, then watch events, text or JSON body).
fn diff_response(name: &str, expected: &Value, got: &Raw) -> Vec<String> {
    let want = expected["status"].as_u64().unwrap() as u16;
    let mut diffs = Vec::new();
    if got.status != want {
        diffs.push(format!("status: expected {want}, got {} ({})", got.status, got.body));
    } else if let Some(events) = expected.get("events") {
        let actual = parse_events(&got.body);
        let summary = |evs: &[Value]| -> Vec<String> {
            evs.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["type"].as_str().unwrap_or("?"),
                        e["object"]["metadata"]["name"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        let exp_events = events.as_array().cloned().unwrap_or_default();
        if summary(&exp_events) != summary(&actual) {
            diffs.push(format!(
                "events: expected {:?}, got {:?}",
                summary(&exp_events),
                summary(&actual)
            ));
        } else {
            for (i, (e, a)) in exp_events.iter().zip(&actual).enumerate() {
                compare(name, &format!("events[{i}]"), e, a, &mut diffs);
            }
        }
    } else if let Some(Value::String(text)) = expected.get("body") {
        if *text != got.body {
            diffs.push(format!("body: expected {text:?}, got {:?}", got.body));
        }
    } else {
        match serde_json::from_str::<Value>(&got.body) {
            Ok(actual) => compare(name, "body", &expected["body"], &actual, &mut diffs),
            Err(e) => diffs.push(format!("body is not JSON ({e}): {}", got.body)),
        }
    }
    diffs
}

/// The server a replay talks to.
enum Server {
    /// The in-process fake, which the recordings pin.
    Fake(FakeApiServer),
    /// A fresh real control plane, which they were recorded from: checks they still hold.
    Real(ControlPlane),
}

impl Server {
    fn fake(&self) -> Option<&FakeApiServer> {
        match self {
            Server::Fake(fake) => Some(fake),
            Server::Real(_) => None,
        }
    }
}

struct Replay {
    srv: Server,
    base: String,
    /// Recorded uid -> uid in the fake, for requests that embed uids.
    uids: Vec<(String, String)>,
    last_continue: Option<String>,
    /// Bearer tokens from the fake's own TokenRequest responses, by ServiceAccount name.
    tokens: HashMap<String, String>,
}

impl Replay {
    /// A fresh server with nothing created yet: the fake, or a real control plane.
    async fn bare_on(real: bool) -> Replay {
        let srv = if real {
            Server::Real(tokio::task::spawn_blocking(ControlPlane::start).await.unwrap())
        } else {
            Server::Fake(FakeApiServer::start().await)
        };
        let base = match &srv {
            Server::Fake(fake) => fake.base_url(),
            Server::Real(plane) => plane.base.clone(),
        };
        Replay {
            srv,
            base,
            uids: Vec::new(),
            last_continue: None,
            tokens: HashMap::new(),
        }
    }

    /// A fresh fake with nothing created yet.
    async fn bare() -> Replay {
        Replay::bare_on(false).await
    }

    /// A fresh server with namespace `golden`.
    async fn new_on(real: bool) -> Replay {
        let r = Replay::bare_on(real).await;
        let ns = r
            .send(
                "POST",
                "/api/v1/namespaces",
                Some("application/json"),
                Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "golden"}}).to_string()),
            )
            .await;
        assert_eq!(ns.status, 201, "{}", ns.body);
        r
    }

    async fn new() -> Replay {
        Replay::new_on(false).await
    }

    async fn send(&self, method: &str, path: &str, ct: Option<&str>, body: Option<&str>) -> Raw {
        raw(&self.base, method, path, ct, body).await
    }

    /// The bearer token a step was recorded with: steps named `as <sa> ...` use that
    /// ServiceAccount's token from the fake's own TokenRequest; misc.json's denials were recorded
    /// as ServiceAccount `nobody` (no RBAC at all) and with a bad token. None: the admin.
    fn token_for(&self, step: &str) -> Option<String> {
        match step {
            "forbidden" | "forbidden-secret-create" => self.tokens.get("nobody").cloned(),
            "unauthorized" => Some(BAD_TOKEN.to_string()),
            _ => {
                let sa = step.strip_prefix("as ")?.split([' ', ':']).next()?;
                let token = self.tokens.get(sa).cloned();
                assert!(
                    token.is_some(),
                    "step {step:?}: no TokenRequest for ServiceAccount {sa} yet"
                );
                token
            }
        }
    }

    /// Remembers the token of a TokenRequest response, and makes the recorded response
    /// comparable: its token is redacted and its audience is the recording server's URL.
    fn take_token(&mut self, step: &str, expected: &mut Value, actual: &str) {
        let Ok(actual) = serde_json::from_str::<Value>(actual) else {
            return;
        };
        if actual["kind"] != "TokenRequest" {
            return;
        }
        let token = actual["status"]["token"].as_str().unwrap_or_default();
        assert!(
            !token.is_empty(),
            "step {step:?}: TokenRequest without a token: {actual}"
        );
        let sa = actual["metadata"]["name"].as_str().unwrap_or_default();
        self.tokens.insert(sa.to_string(), token.to_string());
        // The expiry is creationTimestamp + expirationSeconds, to the second.
        let ts = |v: &Value| v.as_str().unwrap_or_default().parse::<jiff::Timestamp>().unwrap();
        let lifetime = ts(&actual["status"]["expirationTimestamp"]).as_second()
            - ts(&actual["metadata"]["creationTimestamp"]).as_second();
        let wanted = actual["spec"]["expirationSeconds"].as_i64().unwrap();
        assert!(
            (lifetime - wanted).abs() <= 1,
            "step {step:?}: token lifetime {lifetime}s, asked {wanted}s"
        );
        let body = &mut expected["body"];
        if body["status"]["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("REDACTED"))
        {
            body["status"]["token"] = json!(token);
        }
        body["status"]["expirationTimestamp"] = actual["status"]["expirationTimestamp"].clone();
        let url = regex::Regex::new(r"^https?://127\.0\.0\.1:\d+$").unwrap();
        let (exp_aud, act_aud) = (&body["spec"]["audiences"], &actual["spec"]["audiences"]);
        let is_server_url = |v: &Value| {
            v.as_array()
                .is_some_and(|a| a.len() == 1 && url.is_match(a[0].as_str().unwrap_or_default()))
        };
        if is_server_url(exp_aud) && is_server_url(act_aud) {
            body["spec"]["audiences"] = act_aud.clone();
        }
    }

    async fn json(&self, method: &str, path: &str, ct: &str, body: Value) -> Value {
        let r = self.send(method, path, Some(ct), Some(&body.to_string())).await;
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
        serde_json::from_str(&r.body).unwrap()
    }

    /// Requests the recordings made without recording them (setup of later steps).
    async fn unrecorded_setup(&mut self, file: &str) -> Option<u64> {
        const W: &str = "/apis/example.dev/v1alpha1/namespaces/golden/widgets";
        match file {
            "watch.json" => {
                let list = self.send("GET", W, None, None).await;
                let rv: u64 = serde_json::from_str::<Value>(&list.body).unwrap()["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let mp = "application/merge-patch+json";
                self.json("POST", W, "application/json", json!({"apiVersion": "example.dev/v1alpha1", "kind": "Widget", "metadata": {"name": "w-watch"}, "spec": {"size": 1}})).await;
                self.json("PATCH", &format!("{W}/w-watch"), mp, json!({"spec": {"size": 2}}))
                    .await;
                self.json(
                    "PATCH",
                    &format!("{W}/w-watch/status"),
                    mp,
                    json!({"status": {"observedGeneration": 2}}),
                )
                .await;
                let d = self.send("DELETE", &format!("{W}/w-watch"), None, None).await;
                assert_eq!(d.status, 200, "{}", d.body);
                Some(rv)
            }
            "ownerref-gc.json" => {
                for name in ["w-owner", "w-owner2"] {
                    let w = self.json("POST", W, "application/json", json!({"apiVersion": "example.dev/v1alpha1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 1}})).await;
                    let uid = w["metadata"]["uid"].as_str().unwrap().to_string();
                    let recorded = if name == "w-owner" {
                        "ca30b135-c392-456a-8c82-6ec28896c273"
                    } else {
                        "5ca66a83-0410-4998-8526-4aa976ee292e"
                    };
                    self.uids.push((recorded.to_string(), uid));
                }
                None
            }
            "misc.json" => {
                // The denials were recorded as ServiceAccount golden:nobody, bound to nothing.
                let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}});
                self.json(
                    "POST",
                    "/api/v1/namespaces/golden/serviceaccounts",
                    "application/json",
                    sa,
                )
                .await;
                let tr = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}});
                let issued = self
                    .json(
                        "POST",
                        "/api/v1/namespaces/golden/serviceaccounts/nobody/token",
                        "application/json",
                        tr,
                    )
                    .await;
                let token = issued["status"]["token"].as_str().unwrap().to_string();
                self.tokens.insert("nobody".to_string(), token);
                None
            }
            _ => None,
        }
    }

    /// `body` with metadata.resourceVersion set to that of the object at `path` now.
    async fn with_current_rv(&self, path: &str, body: &str) -> String {
        let current = self.send("GET", path, None, None).await;
        assert_eq!(current.status, 200, "GET {path}: {}", current.body);
        let current: Value = serde_json::from_str(&current.body).unwrap();
        let mut body: Value = serde_json::from_str(body).unwrap();
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
        body.to_string()
    }

    fn fix_uids(&self, s: &str) -> String {
        let mut s = s.to_string();
        for (from, to) in &self.uids {
            s = s.replace(from, to);
        }
        s
    }

    /// Runs one file; compares every step when `check`, and returns the differences.
    async fn run(&mut self, file: &str, check: bool) -> Failures {
        let watch_rv = self.unrecorded_setup(file).await;
        let mut failures = Failures::default();
        let mut recorder = Recorder::new(check && self.srv.fake().is_none());
        let continue_re = regex::Regex::new(r"continue=[^&]*").unwrap();
        for step in load(file) {
            let name = step["step"].as_str().unwrap_or("?").to_string();
            let req = &step["request"];
            let method = req["method"].as_str().unwrap();
            let mut path = req["path"].as_str().unwrap().to_string();
            let ct = req["contentType"].as_str();
            let mut body: Option<String> = match &req["body"] {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            };
            // Fix-ups for what the recorder did but did not record.
            if let Some(rv) = watch_rv {
                path = path.replace("resourceVersion=236", &format!("resourceVersion={rv}"));
            }
            if let (Some(tok), true) = (&self.last_continue, path.contains("continue=")) {
                path = continue_re
                    .replace(&path, format!("continue={tok}").as_str())
                    .to_string();
            }
            if name == "create-event-v1-generatename-trailing-dot-invalid" {
                // The recorded body is the next step's; the real request used generateName "w1.".
                body = Some(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"generateName": "w1.", "namespace": "golden"}, "eventTime": "2026-11-23T00:00:00.000000Z", "action": "Rotate", "reason": "Rotated", "reportingController": "example.dev/ctrl", "reportingInstance": "ctrl-1", "type": "Normal", "regarding": {"apiVersion": "example.dev/v1alpha1", "kind": "Widget", "name": "w1", "namespace": "golden"}}).to_string());
            }
            if name == "create-owned-configmap" {
                // The recorded request is owned2's; the response is for "owned" (owned by w-owner).
                body = Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}, "metadata": {"name": "owned", "namespace": "golden", "ownerReferences": [{"apiVersion": "example.dev/v1alpha1", "blockOwnerDeletion": true, "controller": true, "kind": "Widget", "name": "w-owner", "uid": "ca30b135-c392-456a-8c82-6ec28896c273"}]}}).to_string());
                let owned2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}, "metadata": {"name": "owned2", "namespace": "golden", "ownerReferences": [{"apiVersion": "example.dev/v1alpha1", "blockOwnerDeletion": true, "controller": true, "kind": "Widget", "name": "w-owner2", "uid": "5ca66a83-0410-4998-8526-4aa976ee292e"}]}});
                let r = self
                    .send(
                        "POST",
                        "/api/v1/namespaces/golden/configmaps",
                        Some("application/json"),
                        Some(&self.fix_uids(&owned2.to_string())),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.body);
            }
            body = body.map(|b| self.fix_uids(&b));
            if method == "PUT" && name.starts_with("setup") {
                // A setup update carries the resourceVersion the recorder had just read.
                body = Some(self.with_current_rv(&path, body.as_deref().unwrap_or_default()).await);
            }
            if name == "delete-owner-foreground"
                && let Some(fake) = self.srv.fake()
            {
                // The recording caught the collector mid-way; hold it so the next GET sees that too.
                fake.set_gc_paused(true);
            }
            if let (Some((_, code)), Some(fake)) = (INJECTED.iter().find(|(s, _)| *s == name), self.srv.fake()) {
                if !check {
                    continue;
                }
                let bare = path.split('?').next().unwrap_or_default().to_string();
                fake.inject_fault(Some(method), &bare, *code, 1);
            }
            let mut expected = step["response"].clone();
            let want_status = expected["status"].as_u64().unwrap() as u16;
            // Steps that wait for the server (the collector, a new CRD being served) are
            // repeated until they get the recorded status.
            let poll = step.get("seconds_until_gc").is_some() || step.get("poll_until_recorded_status").is_some();
            // The real garbage collector works on its own schedule.
            let patience = if self.srv.fake().is_some() { 5 } else { 30 };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(patience);
            let token = self.token_for(&name);
            let got = loop {
                let got = raw_as(&self.base, token.as_deref(), method, &path, ct, body.as_deref()).await;
                if !poll || got.status == want_status || tokio::time::Instant::now() > deadline {
                    break got;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            if let Ok(v) = serde_json::from_str::<Value>(&got.body)
                && let Some(c) = v.pointer("/metadata/continue").and_then(Value::as_str)
                && !c.is_empty()
            {
                self.last_continue = Some(c.to_string());
            }
            recorder.step(&step, &got);
            self.take_token(&name, &mut expected, &got.body);
            // Later requests embed the uids of created objects (a PUT of a full object does, and
            // the fake checks them as the real server does): map recorded ones to the fake's.
            if let (201, 201, Ok(v)) = (got.status, want_status, serde_json::from_str::<Value>(&got.body))
                && let (Some(recorded), Some(actual)) = (
                    expected.pointer("/body/metadata/uid").and_then(Value::as_str),
                    v.pointer("/metadata/uid").and_then(Value::as_str),
                )
            {
                self.uids.push((recorded.to_string(), actual.to_string()));
            }
            if name == "owner-during-foreground" {
                if let Some(fake) = self.srv.fake() {
                    fake.set_gc_paused(false);
                }
                let owner = path.clone();
                let mut gone = false;
                for _ in 0..100 {
                    if self.send("GET", &owner, None, None).await.status == 404 {
                        gone = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert!(gone, "foreground deletion finishes once the collector runs");
                let dep = self
                    .send("GET", "/api/v1/namespaces/golden/configmaps/owned2", None, None)
                    .await;
                assert_eq!(dep.status, 404, "the dependent went first: {}", dep.body);
            }
            let real = self.srv.fake().is_none();
            if !check || (real && TIMING_ON_REAL.contains(&name.as_str())) {
                continue;
            }
            if real && UNORDERED_CAUSES_ON_REAL.contains(&name.as_str()) {
                causes_as_set(&mut expected["body"]);
                let mut actual: Value = serde_json::from_str(&got.body).unwrap_or(Value::Null);
                causes_as_set(&mut actual);
                failures.compare(
                    &name,
                    &expected,
                    &Raw {
                        status: got.status,
                        body: actual.to_string(),
                    },
                );
                continue;
            }
            failures.compare(&name, &expected, &got);
        }
        recorder.write(file);
        failures
    }
}

/// Replays a [`STANDALONE`] file on a fresh server.
async fn replay_alone(file: &str) {
    assert!(STANDALONE.contains(&file), "{file} is not in STANDALONE");
    Replay::bare().await.run(file, true).await.assert_none(file);
}

async fn replay(file: &str) {
    let mut r = Replay::new().await;
    for f in ORDER {
        if f == file {
            r.run(f, true).await.assert_none(file);
            return;
        }
        r.run(f, false).await;
    }
    panic!("{file} is not in ORDER");
}

#[tokio::test]
async fn golden_crd() {
    replay("crd.json").await;
}
#[tokio::test]
async fn golden_crud() {
    replay("crud.json").await;
}
#[tokio::test]
async fn golden_patch_and_status() {
    replay("patch-and-status.json").await;
}
#[tokio::test]
async fn golden_server_side_apply() {
    replay("server-side-apply.json").await;
}
#[tokio::test]
async fn golden_watch() {
    replay("watch.json").await;
}
#[tokio::test]
async fn golden_finalizers() {
    replay("finalizers.json").await;
}
#[tokio::test]
async fn golden_ownerref_gc() {
    replay("ownerref-gc.json").await;
}
#[tokio::test]
async fn golden_misc() {
    replay("misc.json").await;
}

#[tokio::test]
async fn golden_rbac_ssa_create() {
    replay_alone("rbac-ssa-create.json").await;
}

#[tokio::test]
async fn golden_null_pruning() {
    replay_alone("null-pruning.json").await;
}

// ---------------------------------------------------------------- CEL rule cost (crd-cel-cost.json)

/// "exceeds budget by factor of F" in a message: F as a number, or infinity for "more than 100x".
fn cost_factors(message: &str) -> Vec<f64> {
    let re = regex::Regex::new(r"factor of (more than 100x|[0-9.]+x)").unwrap();
    re.captures_iter(message)
        .map(|c| match &c[1] {
            "more than 100x" => f64::INFINITY,
            f => f.trim_end_matches('x').parse().unwrap(),
        })
        .collect()
}

fn without_factors(message: &str) -> String {
    let re = regex::Regex::new(r"factor of (more than 100x|[0-9.]+x)").unwrap();
    re.replace_all(message, "factor of F").to_string()
}

/// Every recorded CRD POST (`?dryRun=All`) gets the same status, the same causes (field, reason,
/// message) and cost factors within 3% of the real server's; nothing persists.
#[tokio::test]
async fn golden_crd_cel_cost() {
    let srv = FakeApiServer::start().await;
    let failures = crd_cel_cost_verdicts(&srv.base_url()).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Replays crd-cel-cost.json's dry-run CRD POSTs against `base`; returns the differences.
async fn crd_cel_cost_verdicts(base: &str) -> Vec<String> {
    let steps = load("crd-cel-cost.json");
    let mut failures = Vec::new();
    let mut worst: (f64, String) = (0.0, String::new());
    for s in &steps {
        let name = s["step"].as_str().unwrap();
        let req = &s["request"];
        let body = serde_json::to_string(&req["body"]).unwrap();
        let path = req["path"].as_str().unwrap();
        let got = raw(base, "POST", path, Some("application/json"), Some(&body)).await;
        let want = &s["response"];
        if u64::from(got.status) != want["status"].as_u64().unwrap() {
            failures.push(format!("{name}: status {} (want {})", got.status, want["status"]));
            continue;
        }
        if got.status != 422 {
            continue;
        }
        let act: Value = serde_json::from_str(&got.body).unwrap();
        let exp = &want["body"];
        let mut texts = vec![(exp["message"].as_str().unwrap(), act["message"].as_str().unwrap_or(""))];
        let (exp_causes, act_causes) = (
            exp["details"]["causes"].as_array().unwrap(),
            act["details"]["causes"].as_array(),
        );
        if act_causes.map(Vec::len) != Some(exp_causes.len()) {
            failures.push(format!(
                "{name}: causes {}\n  want {}",
                act["details"]["causes"], exp["details"]["causes"]
            ));
            continue;
        }
        for (e, a) in exp_causes.iter().zip(act_causes.into_iter().flatten()) {
            if e["field"] != a["field"] || e["reason"] != a["reason"] {
                failures.push(format!("{name}: cause {a}\n  want {e}"));
            }
            texts.push((e["message"].as_str().unwrap(), a["message"].as_str().unwrap_or("")));
        }
        for (e, a) in texts {
            if without_factors(e) != without_factors(a) {
                failures.push(format!("{name}: message {a:?}\n  want {e:?}"));
            }
            let (ef, af) = (cost_factors(e), cost_factors(a));
            for (x, y) in ef.iter().zip(&af) {
                let dev = if x.is_infinite() || y.is_infinite() {
                    if x == y { 0.0 } else { f64::INFINITY }
                } else {
                    (y / x - 1.0).abs()
                };
                if dev > 0.03 {
                    failures.push(format!("{name}: factor {y} (want {x})"));
                }
                if dev > worst.0 {
                    worst = (dev, name.to_string());
                }
            }
        }
    }
    println!(
        "{} of {} steps match; worst factor deviation {:.4}% ({})",
        steps.len() - failures.len(),
        steps.len(),
        worst.0 * 100.0,
        worst.1
    );
    let listed = raw(
        base,
        "GET",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        None,
        None,
    )
    .await;
    let list: Value = serde_json::from_str(&listed.body).unwrap();
    if list["items"] != json!([]) {
        failures.push(format!("dryRun=All persisted a CRD: {}", list["items"]));
    }
    failures
}

/// Every recording replayed against a fresh real control plane of the release it was recorded
/// from (v1.36, `tests/control-plane`): the recordings pin the fake, and this checks they still
/// describe the real server. The steps that depend on timing are listed in [`TIMING_ON_REAL`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_recordings_hold_on_the_real_control_plane() {
    assert!(
        ControlPlane::configured(),
        "{} must name the control plane binary (scripts/test.sh builds it: tests/control-plane/build.sh): the recordings are checked against the real server too",
        support::control_plane::CONTROL_PLANE_ENV
    );
    let mut reports = Vec::new();
    let mut chained = Replay::new_on(true).await;
    for file in ORDER {
        reports.extend(chained.run(file, true).await.report(file));
    }
    drop(chained);
    for file in STANDALONE.iter().filter(|f| **f != "crd-cel-cost.json") {
        reports.extend(Replay::bare_on(true).await.run(file, true).await.report(file));
    }
    let plane = tokio::task::spawn_blocking(ControlPlane::start).await.unwrap();
    let cel = crd_cel_cost_verdicts(&plane.base).await;
    if !cel.is_empty() {
        reports.push(format!("crd-cel-cost.json: {}", cel.join("\n")));
    }
    drop(plane);
    reports.extend(golden_admission::replay_all_on_real_server().await);
    assert!(reports.is_empty(), "{}", reports.join("\n\n"));
}

/// The same estimate guards real creates and updates: the product CRD as recorded is refused,
/// the fixed one is created, and an update that drops the fix is refused.
#[tokio::test]
async fn crd_cel_cost_applies_to_create_and_update() {
    let srv = FakeApiServer::start().await;
    let base = srv.base_url();
    let steps = load("crd-cel-cost.json");
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let refused = serde_json::to_string(&steps[0]["request"]["body"]).unwrap();
    assert_eq!(
        raw(&base, "POST", path, Some("application/json"), Some(&refused))
            .await
            .status,
        422
    );
    let accepted = serde_json::to_string(&steps[1]["request"]["body"]).unwrap();
    let created = raw(&base, "POST", path, Some("application/json"), Some(&accepted)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let name = steps[1]["request"]["body"]["metadata"]["name"].as_str().unwrap();
    // Establishing the CRD wrote its status, so update the latest version.
    let latest = raw(&base, "GET", &format!("{path}/{name}"), None, None).await;
    let mut update: Value = serde_json::from_str(&latest.body).unwrap();
    update["spec"]["versions"] = steps[0]["request"]["body"]["spec"]["versions"].clone();
    let put = raw(
        &base,
        "PUT",
        &format!("{path}/{name}"),
        Some("application/json"),
        Some(&update.to_string()),
    )
    .await;
    assert_eq!(put.status, 422, "{}", put.body);
    assert!(
        put.body
            .contains("estimated rule cost exceeds budget by factor of 10.1x"),
        "{}",
        put.body
    );
}

#[test]
fn golden_files_are_all_covered() {
    let listed = |dir: std::path::PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".json"))
            .collect()
    };
    let mut files = listed(golden_dir());
    files.extend(listed(support::local_golden_dir()));
    files.sort();
    let mut ours: Vec<String> = ORDER
        .iter()
        .chain(STANDALONE)
        .chain(golden_admission::FILES)
        .map(|s| s.to_string())
        .collect();
    ours.sort();
    assert_eq!(files, ours, "every golden file must have a replay test");
    let mut local = listed(support::local_golden_dir());
    local.sort();
    assert_eq!(local, LOCAL, "the recordings in golden/");
}
