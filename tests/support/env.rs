//! The end-to-end test environment: a Kubernetes API (the in-process fake, or a real cluster when
//! `DSQL_OPERATOR_E2E_KUBECONFIG` is set), moto behind a counting/fault-injecting proxy, a clock
//! tests can move forward, and the operator itself running in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use aws_config::SdkConfig;
use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::aws::{SecretsManager, WriteRateLimiter};
use dsql_credential_operator::clock::Clock;
use dsql_credential_operator::config::OperatorConfig;
use dsql_credential_operator::login_check::LoginChecker;
use dsql_credential_operator::ops::{Health, Metrics};
use dsql_credential_operator::policy::AccessPolicy;
use dsql_credential_operator::reconcile::Context;
use dsql_credential_operator::token::TokenMinter;
use futures::channel::mpsc;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::apiserver::FakeApiServer;
use super::aws_proxy::AwsProxy;
use super::login_server::TestResolver;
use super::moto::{MotoServer, test_credentials, test_sdk_config};
use super::rbac::{OperatorIdentity, RbacMode};

/// The actor name marking the operator's requests to the fake API server.
const OPERATOR_ACTOR: &str = "operator";

/// Environment variable with a kubeconfig path: run the suite against that real cluster.
pub const REAL_CLUSTER_ENV: &str = "DSQL_OPERATOR_E2E_KUBECONFIG";

/// A clock that starts at real time and that tests move forward; moving it makes the running
/// operator look at every credential again (as it would when its requeue timers fire).
#[derive(Debug, Default)]
pub struct TestClock {
    offset_secs: AtomicI64,
    resync: std::sync::Mutex<Option<mpsc::UnboundedSender<()>>>,
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::now() + SignedDuration::from_secs(self.offset_secs.load(Ordering::SeqCst))
    }
}

impl TestClock {
    /// Moves time forward and wakes the operator.
    pub fn advance(&self, by: Duration) {
        self.offset_secs.fetch_add(by.as_secs() as i64, Ordering::SeqCst);
        self.resync();
    }

    /// Moves time to `at` (if it is in the future) and wakes the operator.
    pub fn advance_to(&self, at: Timestamp) {
        let ahead = at.duration_since(self.now()).as_secs() + 1;
        if ahead > 0 {
            self.advance(Duration::from_secs(ahead as u64));
        }
    }

    /// Makes the operator reconcile everything without moving time (a no-op resync).
    pub fn resync(&self) {
        if let Some(tx) = self.resync.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.unbounded_send(());
        }
    }

    fn resync_stream(&self) -> mpsc::UnboundedReceiver<()> {
        let (tx, rx) = mpsc::unbounded();
        *self.resync.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        rx
    }
}

/// A running operator instance.
pub struct Operator {
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Operator {
    /// Whether the operator task has ended (returned or panicked) without being asked to stop.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it gracefully (as on SIGTERM) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task)
            .await
            .expect("operator stops within 20s after shutdown")
            .expect("operator task did not panic");
    }
}

/// Everything one end-to-end test needs.
pub struct TestEnv {
    /// The fake API server, unless running against a real cluster.
    pub fake: Option<FakeApiServer>,
    /// Client to the Kubernetes API, for the test's own requests.
    pub kube: kube::Client,
    /// Client the operator uses: authenticated as the operator's ServiceAccount, which has only
    /// the chart's RBAC (against the fake, its requests are also marked as the operator's).
    pub operator_kube: kube::Client,
    /// The operator's ServiceAccount, RBAC layout and token.
    pub operator_identity: OperatorIdentity,
    /// The kubeconfig path when running against a real cluster.
    kubeconfig: Option<String>,
    /// moto.
    pub moto: MotoServer,
    /// Proxy in front of moto that counts and fails calls.
    pub aws: AwsProxy,
    /// SDK config the operator uses (through the proxy).
    pub operator_sdk: SdkConfig,
    /// SDK config for the test's own checks (straight to moto, not counted).
    pub check_sdk: SdkConfig,
    /// The operator's clock.
    pub clock: Arc<TestClock>,
    /// This test's namespace; the operator watches only it.
    pub namespace: String,
    /// Operator settings used by `start_operator`.
    pub config: OperatorConfig,
    /// Metrics of the operator instances this test starts.
    pub metrics: Arc<Metrics>,
    /// Where the operator's login checks find cluster endpoints: nothing resolves until a test
    /// routes a name to its local server.
    pub login_resolver: Arc<TestResolver>,
    /// The operator's requests from before the last `clear_recorded`.
    earlier_operator_requests: std::sync::Mutex<Vec<super::apiserver::RecordedRequest>>,
}

/// What a cluster admin would grant the namespace of an e2e test: admin tokens, its own secret
/// path, and the foreign path the ownership tests point at. As a policy file, for the binary.
pub fn test_access_policy_yaml(namespace: &str) -> String {
    format!(
        "rules:\n  - name: e2e\n    namespaces: [{namespace}]\n    allowAdmin: true\n    secretNames: ['{{prefix}}/{{namespace}}/*', 'someone-else/*']\n"
    )
}

/// [`test_access_policy_yaml`], parsed. Policy tests replace it.
pub fn test_access_policy(namespace: &str) -> AccessPolicy {
    AccessPolicy::parse(&test_access_policy_yaml(namespace)).expect("the e2e access policy parses")
}

impl TestEnv {
    /// Starts moto, the proxy, the API (fake or real), installs the CRD, creates a namespace and
    /// the operator's ServiceAccount with the chart's default RBAC (all namespaces: ClusterRole).
    pub async fn new(test_name: &str) -> TestEnv {
        TestEnv::with_rbac(test_name, RbacMode::AllNamespaces).await
    }

    /// Like [`TestEnv::new`], with the chart's RBAC rendered in `mode`.
    pub async fn with_rbac(test_name: &str, mode: RbacMode) -> TestEnv {
        super::logs::init();
        let moto = MotoServer::start().await.expect("moto starts");
        let aws = AwsProxy::start(&moto.endpoint_url()).await.expect("AWS proxy starts");
        let operator_sdk = test_sdk_config(&aws.endpoint_url(), test_credentials());
        let check_sdk = test_sdk_config(&moto.endpoint_url(), test_credentials());

        let kubeconfig = std::env::var(REAL_CLUSTER_ENV).ok().filter(|v| !v.is_empty());
        let (fake, kube) = match &kubeconfig {
            Some(path) => (None, real_cluster_client(path).await),
            None => {
                let fake = FakeApiServer::start().await;
                let client = fake.client();
                (Some(fake), client)
            }
        };
        install_crd(&kube).await;
        let namespace = format!("{}-{}", test_name.replace('_', "-"), rand::random::<u32>() % 100_000);
        let namespaces: Api<Namespace> = Api::all(kube.clone());
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).expect("namespace");
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace created");
        let operator_identity = super::rbac::install(&kube, &namespace, mode).await;
        let operator_kube = match (&fake, &kubeconfig) {
            (Some(fake), _) => fake.client_with_token(&operator_identity.token, OPERATOR_ACTOR),
            (None, Some(path)) => {
                super::rbac::real_cluster_client(path, &operator_identity.token, OPERATOR_ACTOR).await
            }
            (None, None) => unreachable!("either the fake or a kubeconfig"),
        };

        let config = OperatorConfig {
            secret_name_prefix: "dsql-e2e".to_owned(),
            namespaces: vec![namespace.clone()],
            concurrency: 4,
            secrets_manager_writes_per_second: 0.0,
            rollout_restarts_per_second: 0.0,
            access_policy: test_access_policy(&namespace),
        };
        TestEnv {
            fake,
            kube,
            operator_kube,
            operator_identity,
            kubeconfig,
            moto,
            aws,
            operator_sdk,
            check_sdk,
            clock: Arc::new(TestClock::default()),
            namespace,
            config,
            metrics: Arc::new(Metrics::default()),
            login_resolver: Arc::default(),
            earlier_operator_requests: Default::default(),
        }
    }

    /// A kubeconfig (its text) for the API server this test runs on, authenticating with `token`,
    /// or as the admin without one (the fake's admin; a real cluster's kubeconfig user).
    pub fn kubeconfig_text(&self, token: Option<&str>) -> String {
        let Some(path) = &self.kubeconfig else {
            let fake = self.fake.as_ref().expect("the fake when no kubeconfig is given");
            let text = super::process::kubeconfig_text(&fake.base_url());
            return match token {
                Some(token) => text.replace("  user: {}", &format!("  user:\n    token: {token}")),
                None => text,
            };
        };
        let mut config = kube::config::Kubeconfig::read_from(path).expect("kubeconfig readable");
        if let Some(token) = token {
            for user in &mut config.auth_infos {
                user.auth_info = Some(kube::config::AuthInfo {
                    token: Some(token.to_owned().into()),
                    ..Default::default()
                });
            }
        }
        serde_saphyr::to_string(&config).expect("a kubeconfig serializes")
    }

    /// [`TestEnv::kubeconfig_text`] as the operator's ServiceAccount.
    pub fn operator_kubeconfig_text(&self) -> String {
        self.kubeconfig_text(Some(&self.operator_identity.token))
    }

    /// The Lease name the chart's leader-election Role allows (the chart's fullname).
    pub fn lease_name(&self) -> &str {
        &self.operator_identity.fullname
    }

    /// Starts an operator instance with leader election on the Lease `lease` in the test's
    /// namespace, as `identity`; against the fake its requests are marked `operator-<identity>`.
    /// Moving the test clock does not wake it (several instances share one clock).
    pub async fn start_elected_operator(&self, identity: &str, lease: &str) -> (Operator, Arc<Health>) {
        let actor = format!("{OPERATOR_ACTOR}-{identity}");
        let token = &self.operator_identity.token;
        let client = match (&self.fake, &self.kubeconfig) {
            (Some(fake), _) => fake.client_with_token(token, &actor),
            (None, Some(path)) => super::rbac::real_cluster_client(path, token, &actor).await,
            (None, None) => self.operator_kube.clone(),
        };
        self.spawn_elected_operator(client, identity, lease, false)
    }

    /// Like [`TestEnv::start_elected_operator`] (fake API server only), with the operator's
    /// requests going through `gate`, so a test can take the API server away from it and bring
    /// it back; moving the test clock wakes it, as it does [`TestEnv::start_operator`]'s.
    pub fn start_elected_operator_behind(
        &self,
        gate: &super::apiserver::outage::OutageGate,
        identity: &str,
        lease: &str,
    ) -> (Operator, Arc<Health>) {
        let fake = self
            .fake
            .as_ref()
            .expect("a gate stands in front of the fake API server");
        let actor = format!("{OPERATOR_ACTOR}-{identity}");
        let client = fake.client_with_token_at(&gate.base_url(), &self.operator_identity.token, &actor);
        self.spawn_elected_operator(client, identity, lease, true)
    }

    fn spawn_elected_operator(
        &self,
        client: kube::Client,
        identity: &str,
        lease: &str,
        clock_resyncs: bool,
    ) -> (Operator, Arc<Health>) {
        let health = Arc::new(Health::default());
        let ctx = self.context(client.clone(), health.clone());
        let lease = dsql_credential_operator::ops::leader::LeaseConfig {
            namespace: self.namespace.clone(),
            name: lease.to_owned(),
            identity: identity.to_owned(),
            duration_seconds: 3,
            grace_seconds: 1,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let metrics = self.metrics.clone();
        let elected_health = health.clone();
        let clock = self.clock.clone();
        let task = tokio::spawn(async move {
            // Each time it leads, a new controller starts with a new resync stream.
            let resync = || -> futures::stream::BoxStream<'static, ()> {
                if clock_resyncs {
                    Box::pin(clock.resync_stream())
                } else {
                    Box::pin(futures::stream::pending::<()>())
                }
            };
            let run = dsql_credential_operator::ops::leader::run_when_leading(
                client,
                lease,
                elected_health,
                metrics,
                |stop| dsql_credential_operator::controller::run(ctx.clone(), resync(), stop),
                async move {
                    let _ = rx.await;
                },
            );
            if let Err(error) = run.await {
                tracing::error!(%error, "leader election failed");
            }
        });
        (
            Operator {
                shutdown: Some(tx),
                task,
            },
            health,
        )
    }

    fn context(&self, client: kube::Client, health: Arc<Health>) -> Arc<Context> {
        let secrets = SecretsManager::new(
            aws_sdk_secretsmanager::Client::new(&self.operator_sdk),
            WriteRateLimiter::new(self.config.secrets_manager_writes_per_second),
            self.metrics.clone(),
        );
        let clock: Arc<dyn Clock> = self.clock.clone();
        let minter = TokenMinter::new(&self.operator_sdk, clock.clone());
        Arc::new(
            Context::new(
                client,
                secrets,
                minter,
                clock,
                self.config.clone(),
                self.metrics.clone(),
                health,
            )
            .with_login_checker(LoginChecker::new(self.login_resolver.clone())),
        )
    }

    /// Starts an operator instance watching this test's namespace.
    pub fn start_operator(&self) -> Operator {
        let ctx = self.context(self.operator_kube.clone(), Arc::new(Health::default()));
        let (tx, rx) = oneshot::channel::<()>();
        let resync = self.clock.resync_stream();
        let task = tokio::spawn(dsql_credential_operator::controller::run(ctx, resync, async move {
            let _ = rx.await;
        }));
        Operator {
            shutdown: Some(tx),
            task,
        }
    }

    /// API for DsqlCredentials in this test's namespace.
    pub fn credentials(&self) -> Api<DsqlCredential> {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }

    /// Creates a DsqlCredential from a spec given as raw JSON (which may be invalid: it is sent
    /// as is, so admission validation is what judges it).
    pub async fn create_credential(&self, name: &str, spec: serde_json::Value) -> Result<DsqlCredential, kube::Error> {
        let resource = kube::api::ApiResource::erase::<DsqlCredential>(&());
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(self.kube.clone(), &self.namespace, &resource);
        let object: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "dsql.credentials.dev/v1alpha1",
            "kind": "DsqlCredential",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }))
        .expect("a DynamicObject");
        let created = api.create(&PostParams::default(), &object).await?;
        Ok(
            serde_json::from_value(serde_json::to_value(created).expect("serializes"))
                .expect("the API returns a valid DsqlCredential"),
        )
    }

    /// Creates a DsqlCredential from `spec` (which admission must accept) and waits until it is
    /// Ready after its first rotation.
    pub async fn create_ready(&self, name: &str, spec: serde_json::Value) -> DsqlCredential {
        self.create_credential(name, spec)
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        self.wait_ready(name, 1).await
    }

    /// Polls the credential until `done` holds (bounded by `timeout`).
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&DsqlCredential) -> bool,
    ) -> DsqlCredential {
        let api = self.credentials();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            if let Ok(object) = api.get(name).await {
                if done(&object) {
                    return object;
                }
                last = Some(object);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A permission the chart lacks shows up as a credential that never gets there: say so.
        let refused: Vec<String> = self
            .operator_requests()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| matches!(r.status, 401 | 403))
            .map(|r| format!("{} {} {}", r.status, r.method, r.path))
            .collect();
        panic!(
            "timed out after {timeout:?} waiting for {name} to be {what}; last seen status: {:#?}\noperator requests refused by the API server's authorizer: {refused:?}\nlast operator log lines:\n{}",
            last.and_then(|o| o.status),
            super::logs::tail(400)
        );
    }

    /// Polls the credential until its condition `type_` is True (bounded by `timeout`).
    pub async fn wait_condition(&self, name: &str, type_: &str, timeout: Duration) -> DsqlCredential {
        self.wait_for(name, timeout, type_, |c| {
            condition(c, type_).is_some_and(|x| x.status == "True")
        })
        .await
    }

    /// Waits until the credential is Ready=True with the given rotation count.
    pub async fn wait_ready(&self, name: &str, rotation_count: i64) -> DsqlCredential {
        self.wait_for(
            name,
            Duration::from_secs(30),
            &format!("Ready after rotation {rotation_count}"),
            |c| {
                condition(c, "Ready").is_some_and(|r| r.status == "True")
                    && c.status.as_ref().and_then(|s| s.rotation_count) == Some(rotation_count)
            },
        )
        .await
    }

    /// Moves the clock to each retry `name`'s status schedules (`nextRotationTime`) while that
    /// retry is before `until`, and waits after each step until the retry has failed once more
    /// (`consecutiveFailures` grew): the steps of a failure that lasts until `until`, with every
    /// retry happening. Stops at the first retry at or after `until` (the clock stays before it);
    /// returns the failures counted. Bounded: at most 100 steps of at most 20 s each.
    pub async fn step_through_failing_retries(&self, name: &str, until: Timestamp) -> i32 {
        let status = |c: &DsqlCredential| c.status.clone().unwrap_or_default();
        let mut failures = status(&self.credentials().get(name).await.expect("get")).consecutive_failures;
        for _ in 0..100 {
            let current = status(&self.credentials().get(name).await.expect("get"));
            let retry = current
                .next_rotation_time
                .expect("a failing credential has a retry time")
                .0;
            if retry >= until {
                return failures;
            }
            self.clock.advance_to(retry);
            let after = self
                .wait_for(name, Duration::from_secs(20), "failed once more", |c| {
                    status(c).consecutive_failures > failures
                })
                .await;
            failures = status(&after).consecutive_failures;
        }
        panic!("{name}: still retrying before {until} after 100 retries");
    }

    /// The exposition lines of the operator's metrics about credential `name`, polled until
    /// `done` holds (bounded: 10 s).
    pub async fn metric_series_until(&self, name: &str, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let needle = format!(r#"name="{name}""#);
        let mut lines = Vec::new();
        for _ in 0..200 {
            lines = self
                .metrics
                .encode()
                .lines()
                .filter(|line| line.contains(&needle))
                .map(str::to_owned)
                .collect();
            if done(&lines) {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting for {what}; series of {name}: {lines:#?}");
    }

    /// Waits until the credential is gone.
    pub async fn wait_deleted(&self, name: &str) {
        let api = self.credentials();
        for _ in 0..600 {
            if api.get_opt(name).await.expect("get").is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} was not deleted within 30s");
    }

    /// Creates a one-container Deployment `name` in the test's namespace (a rollout-restart
    /// target; no pod runs for it); returns the admin's API for Deployments there.
    pub async fn create_deployment(&self, name: &str) -> Api<k8s_openapi::api::apps::v1::Deployment> {
        let deployments = Api::namespaced(self.kube.clone(), &self.namespace);
        let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": "busybox"}]}}
            }
        }))
        .expect("a Deployment");
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("Deployment created");
        deployments
    }

    /// Patches the credential's metadata annotations.
    pub async fn annotate(&self, name: &str, key: &str, value: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
        self.credentials()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate");
    }

    /// Deletes the credential.
    pub async fn delete_credential(&self, name: &str) {
        self.credentials()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    /// The operator's requests the fake served since the last `clear_recorded`, or `None`
    /// against a real cluster (where the test cannot see them).
    pub fn operator_requests(&self) -> Option<Vec<super::apiserver::RecordedRequest>> {
        self.fake.as_ref().map(|f| {
            f.requests()
                .into_iter()
                .filter(|r| r.actor.as_deref().is_some_and(|a| a.starts_with(OPERATOR_ACTOR)))
                .collect()
        })
    }

    /// The operator's Kubernetes writes (POST/PUT/PATCH/DELETE) since the last `clear_recorded`,
    /// or `None` against a real cluster.
    pub fn kube_writes(&self) -> Option<Vec<String>> {
        self.operator_requests().map(|requests| {
            requests
                .into_iter()
                .filter(|r| r.is_write())
                .map(|r| format!("{} {}", r.method, r.path))
                .collect()
        })
    }

    /// Fails if the operator made a Kubernetes call its RBAC (deploy/kubernetes-permissions.yaml)
    /// does not allow, or one the API server's authorizer refused (401/403: the chart's RBAC,
    /// bound to the operator's ServiceAccount, is what the fake authorizes against). Against a
    /// real cluster the operator runs with the same ServiceAccount and RBAC; its requests are not
    /// visible here.
    pub fn assert_operator_calls_permitted(&self) {
        if let Some(recent) = self.operator_requests() {
            let mut requests = self
                .earlier_operator_requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            requests.extend(recent);
            assert!(!requests.is_empty(), "no operator requests were recorded");
            super::permissions::assert_all_permitted(&requests);
            super::permissions::assert_none_refused(&requests, &self.operator_identity);
        }
    }

    /// Forgets the recorded Kubernetes and AWS requests.
    pub fn clear_recorded(&self) {
        if let Some(requests) = self.operator_requests() {
            self.earlier_operator_requests
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(requests);
        }
        if let Some(f) = &self.fake {
            f.clear_requests();
        }
        self.aws.clear();
    }

    /// Events in this test's namespace about `name` as `reason: note` lines.
    pub async fn events_for(&self, name: &str) -> Vec<String> {
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.kube.clone(), &self.namespace);
        let list = api.list(&Default::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| format!("{}: {}", e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Asserts that an Event about `name` starting with `prefix` (as `events_for` renders it,
    /// "Reason: note") appears within 15 s. The operator publishes an Event after the status
    /// write it accompanies, so a test that has just seen the status must wait for it.
    pub async fn assert_event(&self, name: &str, prefix: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let events = self.events_for(name).await;
            if events.iter().any(|e| e.starts_with(prefix)) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {prefix:?} Event for {name} within 15s; its Events: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Everything the operator emitted that a user could see, for leak scanning: logs, Events,
    /// and every DsqlCredential's status in the namespace.
    pub async fn everything_emitted(&self) -> String {
        let mut all = super::logs::captured();
        all.push_str(&self.metrics.encode());
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(self.kube.clone(), &self.namespace);
        if let Ok(list) = events.list(&Default::default()).await {
            all.push_str(&serde_json::to_string(&list.items).unwrap_or_default());
        }
        if let Ok(list) = self.credentials().list(&Default::default()).await {
            for item in list.items {
                all.push_str(&serde_json::to_string(&item.status).unwrap_or_default());
                all.push_str(&item.name_any());
            }
        }
        all
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Against a real cluster, remove the namespace (and everything in it) in the background.
        // The chart's cluster-scoped RBAC goes too.
        if self.fake.is_none() {
            let namespaces: Api<Namespace> = Api::all(self.kube.clone());
            let name = self.namespace.clone();
            let (admin, identity) = (self.kube.clone(), self.operator_identity.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
                    super::rbac::uninstall_cluster_scoped(admin, &identity).await;
                });
            }
        }
    }
}

/// The named condition of a credential.
pub fn condition<'a>(
    c: &'a DsqlCredential,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    c.status.as_ref()?.conditions.iter().find(|x| x.type_ == type_)
}

async fn real_cluster_client(kubeconfig_path: &str) -> kube::Client {
    kube::Client::try_from(real_cluster_config(kubeconfig_path).await).expect("client")
}

/// The client configuration of the kubeconfig's current context (the test's admin credentials).
pub async fn real_cluster_config(kubeconfig_path: &str) -> kube::Config {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig_path).expect("kubeconfig readable");
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig valid")
}

/// Applies the CRD from crds/ (the committed file, as users install it) and waits until the API
/// serves it.
async fn install_crd(client: &kube::Client) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/dsqlcredential.yaml");
    let text = std::fs::read_to_string(path).expect("crds/dsqlcredential.yaml exists");
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("CRD parses");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("dsql-operator-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("CRD applied");
    let api: Api<DsqlCredential> = Api::all(client.clone());
    for _ in 0..200 {
        if api.list(&Default::default()).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the API did not serve {} within 10s", DsqlCredential::crd_name());
}

/// The test's own view of Secrets Manager (straight to moto; never counted as operator calls).
impl TestEnv {
    fn check_client(&self) -> aws_sdk_secretsmanager::Client {
        aws_sdk_secretsmanager::Client::new(&self.check_sdk)
    }

    /// Creates `secret_id` in Secrets Manager as someone else would (without the operator's
    /// ownership tags): a secret the operator must never overwrite or delete.
    pub async fn create_foreign_secret(&self, secret_id: &str) {
        self.check_client()
            .create_secret()
            .name(secret_id)
            .secret_string("{\"owner\":\"someone else\"}")
            .send()
            .await
            .expect("CreateSecret of a foreign secret");
    }

    /// The current secret value parsed as JSON.
    pub async fn secret_document(&self, secret_id: &str) -> serde_json::Value {
        self.current_secret(secret_id)
            .await
            .expect("GetSecretValue: an AWSCURRENT JSON string secret")
            .1
    }

    /// Every version id of the secret, deprecated ones included.
    pub async fn secret_versions(&self, secret_id: &str) -> Vec<String> {
        self.secret_versions_opt(secret_id).await.expect("ListSecretVersionIds")
    }

    /// [`TestEnv::secret_versions`], or `None` when they cannot be listed (no such secret yet).
    pub async fn secret_versions_opt(&self, secret_id: &str) -> Option<Vec<String>> {
        let out = self
            .check_client()
            .list_secret_version_ids()
            .secret_id(secret_id)
            .include_deprecated(true)
            .send()
            .await
            .ok()?;
        Some(
            out.versions
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.version_id)
                .collect(),
        )
    }

    /// The AWSCURRENT version id and value (parsed as JSON), or `None` when there is none yet.
    pub async fn current_secret(&self, secret_id: &str) -> Option<(String, serde_json::Value)> {
        let out = self
            .check_client()
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .ok()?;
        let value = serde_json::from_str(out.secret_string()?).ok()?;
        Some((out.version_id?, value))
    }

    /// Every token ever written to the secret (the `password` of each version).
    pub async fn all_tokens(&self, secret_id: &str) -> Vec<String> {
        let mut tokens = Vec::new();
        for version in self.secret_versions(secret_id).await {
            let out = self
                .check_client()
                .get_secret_value()
                .secret_id(secret_id)
                .version_id(version)
                .send()
                .await
                .expect("GetSecretValue");
            if let Some(text) = out.secret_string() {
                let doc: serde_json::Value = serde_json::from_str(text).expect("JSON");
                if let Some(p) = doc["password"].as_str() {
                    tokens.push(p.to_owned());
                }
            }
        }
        tokens
    }

    /// The secret's description (tags, deletion date).
    pub async fn describe_secret(
        &self,
        secret_id: &str,
    ) -> Option<aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput> {
        self.check_client()
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .ok()
    }

    /// Fails if any token written to `secret_ids`, or its signature, appears in anything the
    /// operator emitted (logs at trace level, Events, statuses).
    pub async fn assert_no_token_leaks(&self, secret_ids: &[&str]) {
        self.assert_operator_calls_permitted();
        let mut tokens = Vec::new();
        for id in secret_ids {
            tokens.extend(self.all_tokens(id).await.into_iter().map(|t| (id.to_string(), t)));
        }
        self.assert_not_emitted(&tokens).await;
    }

    /// Fails if any of `tokens` (with where each came from), or its signature, appears in
    /// anything the operator emitted; also for tokens never written, e.g. ones a login check
    /// refused.
    pub async fn assert_not_emitted(&self, tokens: &[(String, String)]) {
        let emitted = self.everything_emitted().await;
        assert!(!emitted.is_empty(), "nothing captured to scan");
        assert!(!tokens.is_empty(), "no tokens found to scan for");
        for (from, token) in tokens {
            assert!(
                !emitted.contains(token.as_str()),
                "a token from {from} appears in the operator's output"
            );
            let signature = super::token_check::token_signature(token).expect("token has a signature");
            assert!(
                !emitted.contains(&signature),
                "a token signature from {from} appears in the operator's output"
            );
        }
    }
}
