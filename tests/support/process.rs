//! The operator binary as a child process, for what only a real process shows: signals (SIGTERM,
//! SIGKILL), exit codes, and how long it takes to stop.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};

use super::apiserver::FakeApiServer;
use super::moto::{free_loopback_port, test_aws_env, test_credentials};

/// Where a child operator process finds its APIs.
pub struct Endpoints {
    /// A kubeconfig (its text) for the Kubernetes API: the fake's, or a real control plane's.
    pub kubeconfig: String,
    /// AWS endpoint (the counting proxy, or a closed port when the test makes no AWS calls).
    pub aws: String,
}

/// A fake API server with only `namespace` in it (no CRD), its admin client, and endpoints whose
/// AWS side is a closed loopback port: for runs that must never get as far as AWS.
pub async fn fake_without_crd(namespace: &str) -> (FakeApiServer, kube::Client, Endpoints) {
    let fake = FakeApiServer::start().await;
    let kube = fake.client();
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).expect("namespace");
    Api::<Namespace>::all(kube.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    let endpoints = Endpoints {
        kubeconfig: kubeconfig_text(&fake.base_url()),
        aws: format!("http://127.0.0.1:{}", free_loopback_port().expect("a free port")),
    };
    (fake, kube, endpoints)
}

/// A running operator binary; killed (SIGKILL) on drop if still running.
pub struct OperatorProcess {
    child: Child,
    /// Port of its /metrics, /healthz and /readyz server on 127.0.0.1.
    pub http_port: u16,
    /// Its Lease identity (POD_NAME).
    pub identity: String,
    dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts `dsql-credential-operator run` watching `namespace` with leader election on the
    /// Lease `lease` in that namespace as `identity`, plus `extra` arguments.
    pub fn start_elected(
        endpoints: &Endpoints,
        namespace: &str,
        identity: &str,
        lease: &str,
        extra: &[&str],
    ) -> OperatorProcess {
        OperatorProcess::start_elected_with_env(endpoints, namespace, identity, lease, extra, &[])
    }

    /// [`OperatorProcess::start_elected`] with extra environment variables (e.g. `LD_PRELOAD`
    /// and `FAKETIME` to run it on a fast fake clock).
    pub fn start_elected_with_env(
        endpoints: &Endpoints,
        namespace: &str,
        identity: &str,
        lease: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> OperatorProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, &endpoints.kubeconfig).expect("write kubeconfig");
        let policy = dir.path().join("access-policy.yaml");
        std::fs::write(&policy, super::env::test_access_policy_yaml(namespace)).expect("write the access policy");
        let http_port = free_loopback_port().expect("free port");
        let log = std::fs::File::create(dir.path().join("operator.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_dsql-credential-operator"))
            .arg("run")
            .args(["--namespace", namespace, "--secret-prefix", "dsql-e2e"])
            .arg("--access-policy")
            .arg(&policy)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(["--leader-election", "true"])
            .args(["--leader-election-namespace", namespace])
            .args(["--leader-election-lease-name", lease])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", identity)
            .env("RUST_LOG", "info")
            .envs(test_aws_env(&endpoints.aws, &test_credentials()))
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn the operator binary");
        OperatorProcess {
            child,
            http_port,
            identity: identity.to_owned(),
            dir,
        }
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Sends `signal` (as `kill -<signal>` names it: TERM, KILL).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Sends SIGTERM and waits (polling, at most `limit`) for the process to exit; returns how
    /// long that took and how it exited. Fails the test with its log if it outlives `limit`.
    pub async fn terminate(&mut self, limit: Duration) -> (Duration, ExitStatus) {
        let sent = Instant::now();
        self.signal("TERM");
        loop {
            if let Some(status) = self.exited() {
                return (sent.elapsed(), status);
            }
            assert!(
                sent.elapsed() < limit,
                "{} still running {limit:?} after SIGTERM; its log:\n{}",
                self.identity,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL (a node lost, an OOM kill): nothing runs after it, the Lease stays held.
    pub async fn kill(&mut self) {
        self.signal("KILL");
        for _ in 0..500 {
            if self.exited().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} survived SIGKILL for 5s", self.identity);
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A kubeconfig for the fake API server (plain HTTP, no credentials: the admin).
pub fn kubeconfig_text(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\nusers:\n- name: operator\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: operator\n    namespace: default\ncurrent-context: fake\n"
    )
}
