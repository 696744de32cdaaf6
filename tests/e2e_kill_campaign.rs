//! The kill campaign (issue 12, item 4): the real binary is SIGKILLed (no cleanup) over and over,
//! at random points and at targeted ones, across at least 200 rotations of six credentials, and
//! restarted each time. After every restart's convergence and at the end: every rotation number
//! has exactly one Secrets Manager version and no version lacks a rotation number, the Kubernetes
//! Secret and Secrets Manager's AWSCURRENT hold the same version and token, status names them,
//! and no published token is expired at the operator's time.
//!
//! Time: tokens live at least 15 minutes and a forced rotation happens at most once a minute, so
//! the binary runs under libfaketime (Debian package `faketime`), `x60` by default: every process
//! starts its clock on one fake timeline (the test's [`Timeline`]) that runs 60 times faster than
//! the real clock, monotonic clock and sleeps included. moto and the fake API server keep the real
//! clock; neither compares the operator's timestamps (Lease times are compared only by operator
//! processes, which all share the timeline).
//!
//! Kill points (seeded; the seed is printed and `DSQL_OPERATOR_KILL_SEED` replays it):
//! - startup: within 0.4 s of spawning, before the process has converged;
//! - random: within 0.7 s of a round of forced rotations;
//! - Secrets Manager write in flight: the proxy holds the next `PutSecretValue` before moto;
//! - Secrets Manager write landed unanswered: moto wrote it, the proxy holds the response;
//! - between the Secrets Manager write and the Kubernetes Secret write: the fake API server holds
//!   the Secret's apply (the Secrets Manager write was answered);
//! - between the Secret write and the status write: the fake holds the next status apply.
//!
//! Fake-only: it needs the fake API server's and the proxy's holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::aws::client_request_token;
use dsql_credential_operator::projection::secret::{EXPIRY_ANNOTATION, VERSION_ANNOTATION};
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use support::credential::{ENDPOINT, admin_spec_with};
use support::env::{TestEnv, condition};
use support::moto::test_credentials;
use support::process::{Endpoints, OperatorProcess};
use support::token_check::{ExpectedToken, token_query_param, token_signature, verify_dsql_token};

const REGION: &str = "us-east-1";
const LEASE: &str = "dsql-operator";
const ROTATE_ANNOTATION: &str = "dsql.credentials.dev/rotate";
/// The preload library; the `MT` build is the one for multi-threaded programs (tokio).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
/// The first four are also rotated by annotation (the test asks for one per round: at most one a
/// fake minute takes effect); the last two rotate only on schedule (15m tokens, renewed 5m early).
const CREDENTIALS: [&str; 6] = ["orders", "billing", "search", "audit", "reports", "ledger"];
const FORCED: usize = 4;
const MIN_ROTATIONS: i64 = 200;
const MIN_KILLS: usize = 40;
/// Each targeted kill point is hit at least this often.
const MIN_TARGETED: usize = 3;
/// Real time the campaign may take before it stops short (and fails if it has not enough).
const BUDGET: Duration = Duration::from_secs(150);
/// Real time a restarted operator has to bring every credential back to a consistent state.
const CONVERGE_LIMIT: Duration = Duration::from_secs(30);
/// Real time an armed hold may wait for its request before the kill happens anyway.
const HOLD_WAIT: Duration = Duration::from_secs(3);
const PUT: &str = "secretsmanager.PutSecretValue";
const CREATE: &str = "secretsmanager.CreateSecret";

/// The one fake timeline every operator process lives on: it starts at the real time the
/// campaign starts and runs `speed` times faster.
struct Timeline {
    real_start: Instant,
    fake_start: Timestamp,
    speed: u32,
}

impl Timeline {
    fn now(&self) -> Timestamp {
        let real = self.real_start.elapsed().as_secs_f64();
        self.fake_start + SignedDuration::from_secs_f64(real * f64::from(self.speed))
    }

    /// `LD_PRELOAD` and `FAKETIME` for a process starting now: its clock starts at the
    /// timeline's now (to the second, so at most 1 s behind it) and runs at the timeline's speed.
    fn process_env(&self) -> Vec<(String, String)> {
        let start = self
            .now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M:%S");
        vec![
            ("LD_PRELOAD".to_owned(), FAKETIME_LIB.to_owned()),
            ("FAKETIME".to_owned(), format!("@{start} x{}", self.speed)),
            // `@` times are local times; the child's environment is otherwise cleared.
            ("TZ".to_owned(), "UTC".to_owned()),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    Startup,
    Random,
    SecretsManagerWriteInFlight,
    SecretsManagerWriteLandedUnanswered,
    BetweenSecretsManagerAndSecretWrites,
    BetweenSecretAndStatusWrites,
}

const KILL_POINTS: [KillPoint; 6] = [
    KillPoint::Startup,
    KillPoint::Random,
    KillPoint::SecretsManagerWriteInFlight,
    KillPoint::SecretsManagerWriteLandedUnanswered,
    KillPoint::BetweenSecretsManagerAndSecretWrites,
    KillPoint::BetweenSecretAndStatusWrites,
];

#[derive(Default, Debug)]
struct Counts {
    kills: BTreeMap<KillPoint, usize>,
    /// Targeted kills whose hold no request reached within [`HOLD_WAIT`] (killed then anyway).
    holds_not_reached: usize,
    /// Status holds where the held credential's Secret already carried a version its status did
    /// not name yet: a kill truly between the Secret write and the status write.
    status_holds_after_a_secret_write: usize,
    convergences: usize,
    tokens_verified: usize,
    /// The least lifetime left (fake seconds) of any published token at any check.
    min_margin_secs: Option<i64>,
    forced_requests: usize,
    /// Rotation numbers skipped (see [`skipped`]) after each kind of kill point: counted at the
    /// convergence following the kill.
    skipped_after: BTreeMap<KillPoint, usize>,
}

impl Counts {
    fn kills(&self) -> usize {
        self.kills.values().sum()
    }
}

/// One credential's state, read in an order that shows whether it is consistent.
struct Snapshot {
    rotation_count: i64,
    version_id: String,
    /// Every Secrets Manager version id.
    versions: Vec<String>,
}

fn endpoints(env: &TestEnv) -> Endpoints {
    Endpoints {
        kubeconfig: env.kubeconfig_text(None),
        aws: env.aws.endpoint_url(),
    }
}

fn spawn(env: &TestEnv, timeline: &Timeline) -> OperatorProcess {
    OperatorProcess::start_elected_with_env(
        &endpoints(env),
        &env.namespace,
        "a",
        LEASE,
        // A restart is a container restart in the same pod (same identity), so it takes its own
        // Lease back at once; 60 fake seconds is 1 s of real time at x60.
        &["--leader-election-lease-seconds", "60"],
        &timeline.process_env(),
    )
}

fn secret_id(env: &TestEnv, name: &str) -> String {
    format!("dsql-e2e/{}/{name}", env.namespace)
}

fn time_of(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not a timestamp: {e}"))
}

/// The token's own expiry: its `X-Amz-Date` plus `X-Amz-Expires`.
fn token_expiry(token: &str) -> Timestamp {
    let date = token_query_param(token, "X-Amz-Date").expect("the token has X-Amz-Date");
    let signed = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", &date)
        .expect("X-Amz-Date parses")
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("UTC")
        .timestamp();
    let expires: i64 = token_query_param(token, "X-Amz-Expires")
        .expect("the token has X-Amz-Expires")
        .parse()
        .expect("X-Amz-Expires is a number");
    signed + SignedDuration::from_secs(expires)
}

/// Reads `name`'s status, Secrets Manager (its versions and AWSCURRENT), the Kubernetes Secret
/// and the status again. `Ok` when they agree (and the status did not move in between);
/// `Err(why)` otherwise, saying what differs (never a token). Checks that a published token is
/// unexpired at `now` either way, recording the least margin.
async fn snapshot(env: &TestEnv, name: &str, now: Timestamp, counts: &mut Counts) -> Result<Snapshot, String> {
    let api = env.credentials();
    let before: DsqlCredential = api.get(name).await.map_err(|e| e.to_string())?;
    let status = before.status.clone().ok_or("no status yet")?;
    let id = secret_id(env, name);
    let versions = env
        .secret_versions_opt(&id)
        .await
        .ok_or("no Secrets Manager secret yet")?;
    let current = env.current_secret(&id).await.ok_or("no AWSCURRENT")?;
    let current_password = current.1["password"]
        .as_str()
        .ok_or("no password in AWSCURRENT")?
        .to_owned();
    let current_expiry = time_of(current.1["expiresAt"].as_str().ok_or("no expiresAt in AWSCURRENT")?);

    let secret_name = status
        .kubernetes_secret
        .as_ref()
        .map(|k| k.name.clone())
        .ok_or("no kubernetesSecret in status")?;
    let secrets = env.secrets();
    let secret = secrets.get_opt(&secret_name).await.map_err(|e| e.to_string())?;
    let secret = secret.ok_or("no Kubernetes Secret yet")?;
    let annotation = |key: &str| secret.annotations().get(key).cloned();
    let data = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let secret_password = data("password").ok_or("the Secret has no password")?;

    // What is published must not be expired, whether or not it is consistent yet.
    let secret_expiry = time_of(&annotation(EXPIRY_ANNOTATION).ok_or("no expiry annotation")?);
    for (what, expiry) in [
        ("AWSCURRENT expiresAt", current_expiry),
        ("AWSCURRENT token", token_expiry(&current_password)),
        ("Kubernetes Secret expiry annotation", secret_expiry),
        ("Kubernetes Secret token", token_expiry(&secret_password)),
    ] {
        let margin = expiry.duration_since(now).as_secs();
        counts.min_margin_secs = Some(counts.min_margin_secs.map_or(margin, |m| m.min(margin)));
        assert!(
            margin > 0,
            "{name}: the published {what} expired at {expiry}, fake now {now}"
        );
    }

    let after: DsqlCredential = api.get(name).await.map_err(|e| e.to_string())?;
    let settled = after.status.clone().ok_or("no status")?;
    if settled.version_id != status.version_id || settled.rotation_count != status.rotation_count {
        return Err("status moved while it was read".into());
    }
    if condition(&after, "Ready").is_none_or(|r| r.status != "True") {
        return Err(format!(
            "not Ready: {:?}",
            condition(&after, "Ready").map(|r| &r.message)
        ));
    }
    let version_id = status.version_id.clone().ok_or("no versionId")?;
    let rotation_count = status.rotation_count.ok_or("no rotationCount")?;
    if current.0 != version_id {
        return Err(format!("AWSCURRENT is {} while status names {version_id}", current.0));
    }
    let projected = annotation(VERSION_ANNOTATION);
    if projected.as_deref() != Some(version_id.as_str()) {
        return Err(format!(
            "the Secret carries {projected:?} while status names {version_id}"
        ));
    }
    let projection = status.kubernetes_secret.as_ref().ok_or("no kubernetesSecret")?;
    if projection.version_id.as_deref() != Some(version_id.as_str()) || !projection.synced {
        return Err(format!(
            "status.kubernetesSecret is {:?} (synced {}) while status names {version_id}",
            projection.version_id, projection.synced
        ));
    }
    // The same version, so the same token and expiry (compared, never printed).
    assert!(
        secret_password == current_password,
        "{name}: the Secret and AWSCURRENT both say {version_id} but hold different tokens"
    );
    let recorded = status
        .token_expiration_time
        .as_ref()
        .map(|t| t.0)
        .ok_or("no tokenExpirationTime")?;
    assert_eq!(
        recorded, current_expiry,
        "{name}: status and AWSCURRENT expiry of {version_id}"
    );
    assert_eq!(
        recorded, secret_expiry,
        "{name}: status and Secret expiry of {version_id}"
    );
    Ok(Snapshot {
        rotation_count,
        version_id,
        versions,
    })
}

/// Every rotation number of `name` has exactly one version and every version a rotation number:
/// the version ids are exactly the ClientRequestTokens of 1..=rotationCount, and status names the
/// last one.
fn assert_versions_accounted(name: &str, uid: &str, snapshot: &Snapshot) {
    let expected: BTreeSet<String> = (1..=snapshot.rotation_count)
        .map(|n| client_request_token(uid, n))
        .collect();
    let actual: BTreeSet<String> = snapshot.versions.iter().cloned().collect();
    assert_eq!(
        actual.len(),
        snapshot.versions.len(),
        "{name}: a version id twice: {:?}",
        snapshot.versions
    );
    assert_eq!(
        actual, expected,
        "{name}: versions vs rotation numbers 1..={}",
        snapshot.rotation_count
    );
    assert_eq!(
        snapshot.version_id,
        client_request_token(uid, snapshot.rotation_count),
        "{name}: status names the version of its rotation number"
    );
}

/// Waits (at most [`CONVERGE_LIMIT`]) until every credential is consistent, checking the
/// invariants on the way; returns each credential's rotation count and number of versions.
async fn converge(
    env: &TestEnv,
    timeline: &Timeline,
    process: &mut OperatorProcess,
    uids: &BTreeMap<String, String>,
    counts: &mut Counts,
) -> BTreeMap<&'static str, (i64, usize)> {
    let start = Instant::now();
    let mut pending: Vec<&'static str> = CREDENTIALS.to_vec();
    let mut snapshots = BTreeMap::new();
    let mut last_reason = BTreeMap::new();
    while !pending.is_empty() {
        if let Some(status) = process.exited() {
            panic!("the operator exited ({status}); its log:\n{}", process.log());
        }
        assert!(
            start.elapsed() < CONVERGE_LIMIT,
            "not consistent within {CONVERGE_LIMIT:?} (fake now {}): {last_reason:?}; operator log tail:\n{}",
            timeline.now(),
            tail(&process.log(), 60)
        );
        let mut still = Vec::new();
        for name in pending {
            match snapshot(env, name, timeline.now(), counts).await {
                Ok(s) => {
                    snapshots.insert(name, s);
                }
                Err(why) => {
                    last_reason.insert(name, why);
                    still.push(name);
                }
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for (name, s) in &snapshots {
        assert_versions_accounted(name, &uids[*name], s);
    }
    counts.convergences += 1;
    // A sample of the published tokens is recomputed with botocore from its own signing time.
    if counts.convergences % 5 == 1 {
        let name = CREDENTIALS[counts.convergences / 5 % CREDENTIALS.len()];
        let token = env.current_secret(&secret_id(env, name)).await.expect("AWSCURRENT").1["password"]
            .as_str()
            .expect("a token")
            .to_owned();
        let expected = ExpectedToken::new(ENDPOINT, REGION, true, &test_credentials());
        if let Err(why) = verify_dsql_token(&token, &expected) {
            panic!("{name}: the published token is not a valid DSQL token: {why}");
        }
        counts.tokens_verified += 1;
    }
    snapshots
        .into_iter()
        .map(|(name, s)| (name, (s.rotation_count, s.versions.len())))
        .collect()
}

/// Total rotation count and versions of [`converge`]'s answer.
fn totals(converged: &BTreeMap<&'static str, (i64, usize)>) -> (i64, usize) {
    converged
        .values()
        .fold((0, 0), |(r, v), (rotations, versions)| (r + rotations, v + versions))
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn wait_until(limit: Duration, mut reached: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if reached() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    reached()
}

/// Kills `process` at `point`; returns whether a targeted point was reached.
async fn kill_at(
    env: &TestEnv,
    point: KillPoint,
    process: &mut OperatorProcess,
    rng: &mut StdRng,
    counts: &mut Counts,
) -> bool {
    let fake = env.fake.as_ref().expect("checked by the caller");
    let reached = match point {
        KillPoint::Startup => {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            true
        }
        KillPoint::Random => {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..700))).await;
            true
        }
        KillPoint::SecretsManagerWriteInFlight => {
            let before = env.aws.count(PUT);
            let gate = env.aws.hold_next(PUT);
            let reached = wait_until(HOLD_WAIT, || env.aws.count(PUT) > before).await;
            process.kill().await;
            env.aws.cancel_holds();
            gate.notify_one();
            return reached;
        }
        KillPoint::SecretsManagerWriteLandedUnanswered => {
            let before = env.aws.responses_held();
            let gate = env.aws.hold_response_next(PUT);
            let reached = wait_until(HOLD_WAIT, || env.aws.responses_held() > before).await;
            process.kill().await;
            env.aws.cancel_holds();
            gate.notify_one();
            return reached;
        }
        KillPoint::BetweenSecretsManagerAndSecretWrites => {
            let hold = fake.hold_next("PATCH", &format!("/namespaces/{}/secrets/", env.namespace));
            let reached = wait_until(HOLD_WAIT, || hold.reached()).await;
            process.kill().await;
            fake.cancel_holds();
            hold.release();
            return reached;
        }
        KillPoint::BetweenSecretAndStatusWrites => {
            // The status apply of one credential asked to rotate, once its Secret has been
            // applied (a status write without a rotation, e.g. a deferral, is not held).
            let name = CREDENTIALS[rng.random_range(0..FORCED)];
            let credential = env.credentials().get(name).await.expect("get");
            let secret = credential
                .status
                .and_then(|s| s.kubernetes_secret)
                .map_or_else(|| name.to_owned(), |k| k.name);
            let hold = fake.hold_next_after(
                "PATCH",
                &format!("/dsqlcredentials/{name}/status?"),
                "PATCH",
                &format!("/namespaces/{}/secrets/{secret}?", env.namespace),
            );
            let reached = wait_until(HOLD_WAIT, || hold.reached()).await;
            process.kill().await;
            fake.cancel_holds();
            hold.release();
            if hold.reached() && secret_ahead_of_status(env, name).await {
                counts.status_holds_after_a_secret_write += 1;
            }
            return reached;
        }
    };
    process.kill().await;
    reached
}

/// Whether `name`'s Kubernetes Secret carries a version its status does not name.
async fn secret_ahead_of_status(env: &TestEnv, name: &str) -> bool {
    let Ok(credential) = env.credentials().get(name).await else {
        return false;
    };
    let Some(status) = credential.status else {
        return false;
    };
    let Some(secret_name) = status.kubernetes_secret.as_ref().map(|k| k.name.clone()) else {
        return false;
    };
    let secrets = env.secrets();
    let Ok(Some(secret)) = secrets.get_opt(&secret_name).await else {
        return false;
    };
    secret.annotations().get(VERSION_ANNOTATION) != status.version_id.as_ref()
}

/// Rotation numbers skipped so far: a killed process had written that number's version, the
/// next process could not sign the same token again (docs/behaviour.md, Idempotency) and moved
/// to the next number, so that version was never published. Counted by idempotency token: a
/// process killed again before its next write meets the same version twice.
fn skipped(env: &TestEnv) -> usize {
    // The last answer per idempotency token: a number whose last answer is "already exists" was
    // given up for the next one; one answered "already exists" and then written (the earlier
    // attempt's token signed again) was recovered, not skipped.
    let mut last = BTreeMap::new();
    for answer in env.aws.upstream_answers(PUT) {
        let token = answer
            .client_request_token
            .expect("the operator's writes carry a ClientRequestToken");
        last.insert(token, answer.code);
    }
    last.values()
        .filter(|code| code.as_deref() == Some("ResourceExistsException"))
        .count()
}

/// Rotation numbers whose version a killed process wrote and a later process found again by
/// signing its token again: answered "already exists", then written with the same token.
fn recovered(env: &TestEnv) -> usize {
    let mut seen_exists = BTreeSet::new();
    let mut recovered = BTreeSet::new();
    for answer in env.aws.upstream_answers(PUT) {
        let token = answer
            .client_request_token
            .expect("the operator's writes carry a ClientRequestToken");
        match answer.code.as_deref() {
            Some("ResourceExistsException") => {
                seen_exists.insert(token);
            }
            None if seen_exists.contains(&token) => {
                recovered.insert(token);
            }
            _ => {}
        }
    }
    recovered.len()
}

/// `WARN`/`ERROR` lines of the operator's logs by message (the text after the target), for the
/// report: at this clock speed an AWS or API call that is slow in real time can time out.
fn warnings(logs: &str) -> BTreeMap<String, usize> {
    // Grouped without the credential's name and the retry time.
    let noise = regex::Regex::new(r"credential=\S+ |\d{4}-\d\d-\d\dT[\d:.]+Z").expect("a regex");
    let mut seen = BTreeMap::new();
    for line in logs.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")) {
        let message = line.split_once(": ").map_or(line, |(_, m)| m);
        let key: String = noise.replace_all(message, "").chars().take(240).collect();
        *seen.entry(key).or_default() += 1;
    }
    seen
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|e| panic!("{name}={text:?} is not a number: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_campaign_across_200_rotations_keeps_every_version_published_and_accounted_for() {
    let env = TestEnv::new("kill-campaign").await;
    if env
        .fake_or_skip("the kill campaign holds requests in the fake API server and runs the binary under libfaketime")
        .is_none()
    {
        return;
    }
    assert!(
        Path::new(FAKETIME_LIB).exists(),
        "{FAKETIME_LIB} is missing: the kill campaign needs libfaketime (as root: apt-get install -y faketime; scripts/test.sh installs it)"
    );
    let seed = env_number("DSQL_OPERATOR_KILL_SEED").unwrap_or_else(rand::random);
    let speed = env_number("DSQL_OPERATOR_KILL_SPEED").unwrap_or(60) as u32;
    eprintln!("[kill campaign] seed {seed} (replay with DSQL_OPERATOR_KILL_SEED={seed}), fake clock x{speed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let timeline = Timeline {
        real_start: started,
        fake_start: Timestamp::now(),
        speed,
    };

    // moto builds its Secrets Manager backend on the first call, which takes longer than the
    // operator's 15 s attempt timeout at this clock speed: pay for it before the campaign.
    assert!(env.secret_versions_opt("kill-campaign/warm-up").await.is_none());
    let mut uids = BTreeMap::new();
    for name in CREDENTIALS {
        let created = env
            .create_credential(
                name,
                admin_spec_with(serde_json::json!({"token": {"lifetime": "15m"}, "rotation": {"renewBefore": "5m"}})),
            )
            .await
            .unwrap();
        uids.insert(name.to_owned(), created.uid().expect("a uid"));
    }

    let mut counts = Counts::default();
    let mut logs = String::new();
    let mut process = spawn(&env, &timeline);
    let (mut rotations, _) = totals(&converge(&env, &timeline, &mut process, &uids, &mut counts).await);
    let mut round = 0u64;
    let mut last_kill: Option<(KillPoint, usize)> = None;
    loop {
        // Rotations that published a token: the skipped numbers' versions were never published.
        let enough = rotations - skipped(&env) as i64 >= MIN_ROTATIONS
            && counts.kills() >= MIN_KILLS
            && KILL_POINTS[2..]
                .iter()
                .all(|p| counts.kills.get(p).copied().unwrap_or(0) >= MIN_TARGETED);
        if enough || started.elapsed() > BUDGET {
            break;
        }
        round += 1;
        let point = KILL_POINTS[rng.random_range(0..KILL_POINTS.len())];
        if point != KillPoint::Startup {
            rotations = totals(&converge(&env, &timeline, &mut process, &uids, &mut counts).await).0;
            if let Some((kind, before)) = last_kill.take() {
                *counts.skipped_after.entry(kind).or_default() += skipped(&env) - before;
            }
        }
        for name in &CREDENTIALS[..FORCED] {
            env.annotate(name, ROTATE_ANNOTATION, &format!("round-{round}")).await;
            counts.forced_requests += 1;
        }
        if !kill_at(&env, point, &mut process, &mut rng, &mut counts).await {
            counts.holds_not_reached += 1;
        }
        *counts.kills.entry(point).or_default() += 1;
        // A startup kill follows another kill before any convergence: charge both to the first.
        last_kill = Some(last_kill.unwrap_or((point, skipped(&env))));
        logs.push_str(&process.log());
        process = spawn(&env, &timeline);
    }
    // The last convergence's snapshots are the final figures: the operator keeps running (and
    // rotating on schedule) after it.
    let converged = converge(&env, &timeline, &mut process, &uids, &mut counts).await;
    let (final_rotations, versions) = totals(&converged);
    let scheduled_only: Vec<i64> = CREDENTIALS[FORCED..].iter().map(|n| converged[n].0).collect();
    let took = started.elapsed();
    if let Some((kind, before)) = last_kill.take() {
        *counts.skipped_after.entry(kind).or_default() += skipped(&env) - before;
    }

    let writes = env.aws.count(PUT) + env.aws.count(CREATE);
    // The operator really lived on the fake timeline: its newest token was signed well after
    // the real now (the timeline is ~50 minutes ahead by the end).
    let newest = env
        .current_secret(&secret_id(&env, CREDENTIALS[0]))
        .await
        .expect("AWSCURRENT");
    let signed = token_expiry(newest.1["password"].as_str().expect("a token")) - SignedDuration::from_mins(15);
    assert!(
        signed > Timestamp::now() + SignedDuration::from_mins(10),
        "the newest token was signed at {signed}, not on the fake clock (is libfaketime preloaded?)"
    );
    let skipped = skipped(&env);
    let recovered = recovered(&env);
    let published = final_rotations - skipped as i64;
    eprintln!(
        "[figure] kill campaign (seed {seed}, x{speed}): {} SIGKILLs {:?} ({} holds not reached, {} status holds after a Secret write) in {took:.1?} real, {:.0} fake minutes; {published} published rotations of {} credentials ({} forced requests) + {skipped} rotation numbers skipped past a version a killed process wrote and never published (after {:?}) = {final_rotations} rotation numbers; {recovered} versions a killed process wrote found again by signing its token again; {versions} Secrets Manager versions; {writes} write calls ({} PutSecretValue, {} CreateSecret); {} convergences checked, {} tokens recomputed, least published lifetime left {:?} s (fake); rotation numbers of the schedule-only credentials {scheduled_only:?}",
        counts.kills(),
        counts.kills,
        counts.holds_not_reached,
        counts.status_holds_after_a_secret_write,
        timeline.now().duration_since(timeline.fake_start).as_secs_f64() / 60.0,
        CREDENTIALS.len(),
        counts.forced_requests,
        counts.skipped_after,
        env.aws.count(PUT),
        env.aws.count(CREATE),
        counts.convergences,
        counts.tokens_verified,
        counts.min_margin_secs,
    );
    assert!(
        published >= MIN_ROTATIONS,
        "only {published} published rotations within {BUDGET:?}"
    );
    assert!(counts.kills() >= MIN_KILLS, "only {} kills", counts.kills());
    for point in &KILL_POINTS[2..] {
        assert!(
            counts.kills.get(point).copied().unwrap_or(0) >= MIN_TARGETED,
            "{point:?} hit fewer than {MIN_TARGETED} times: {:?}",
            counts.kills
        );
    }
    assert_eq!(versions as i64, final_rotations, "one version per rotation number");
    // A version a killed process wrote is found again by the next one (same credentials, its
    // token signed again at the earlier signing minute), never skipped: every rotation number is
    // one published rotation and one version.
    assert_eq!(
        skipped, 0,
        "{skipped} rotation numbers skipped past an unpublished version ({recovered} found again)"
    );

    // No token in anything any of the processes logged, nor in Events or statuses.
    let (_, exit) = process.terminate(Duration::from_secs(10)).await;
    assert!(exit.success(), "{exit}");
    logs.push_str(&process.log());
    eprintln!(
        "[kill campaign] operator WARN/ERROR lines by message: {:#?}",
        warnings(&logs)
    );
    logs.push_str(&env.everything_emitted().await);
    let mut scanned = 0;
    for name in CREDENTIALS {
        for token in env.all_tokens(&secret_id(&env, name)).await {
            scanned += 1;
            assert!(
                !logs.contains(&token),
                "a token of {name} appears in the operator's output"
            );
            let signature = token_signature(&token).expect("a signature");
            assert!(
                !logs.contains(&signature),
                "a token signature of {name} appears in the operator's output"
            );
        }
    }
    assert!(
        scanned >= versions,
        "every version's token was scanned for: {scanned} of {versions}"
    );
}
