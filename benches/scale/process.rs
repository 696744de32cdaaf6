//! The operator binary as a child process, and its memory as /proc reports it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::env::{REAL_CLUSTER_ENV, TestEnv, test_access_policy_yaml};
use crate::support::moto::{free_loopback_port, test_aws_env, test_credentials};

// ---------------------------------------------------------------------------------------------
// The operator binary as a child process (memory, default write rate).

/// A process's memory, in bytes.
pub(crate) struct Memory {
    /// Resident set (VmRSS).
    pub(crate) rss: u64,
    /// Peak resident set (VmHWM).
    pub(crate) hwm: u64,
    /// Anonymous resident memory: the heap and thread stacks.
    pub(crate) anon: u64,
    /// File-backed resident memory: the pages of the binary and libraries in use.
    pub(crate) file: u64,
}

pub(crate) struct OperatorProcess {
    child: Child,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl OperatorProcess {
    /// Starts the binary in a process group of its own; under heaptrack (writing its profile to
    /// that path) when given one, in which case the memory figures are the wrapper's, not the
    /// operator's.
    pub(crate) fn start(env: &TestEnv, namespace: &str, extra: &[&str], heaptrack: Option<&Path>) -> OperatorProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = match (
            &env.fake,
            std::env::var(REAL_CLUSTER_ENV).ok().filter(|v| !v.is_empty()),
        ) {
            (_, Some(path)) => PathBuf::from(path),
            (Some(fake), None) => {
                let path = dir.path().join("kubeconfig");
                let text = crate::support::process::kubeconfig_text(&fake.base_url());
                std::fs::write(&path, text).expect("write kubeconfig");
                path
            }
            (None, None) => unreachable!("TestEnv has either a fake or a real cluster"),
        };
        let policy = dir.path().join("access-policy.yaml");
        std::fs::write(&policy, test_access_policy_yaml(namespace)).expect("write the access policy");
        let http_port = free_loopback_port().expect("free port");
        let log = std::fs::File::create(dir.path().join("operator.log")).expect("log file");
        let binary = env!("CARGO_BIN_EXE_dsql-credential-operator");
        let mut command = match heaptrack {
            Some(out) => {
                let mut heaptrack = Command::new("heaptrack");
                heaptrack.arg("-o").arg(out).arg(binary);
                heaptrack
            }
            None => Command::new(binary),
        };
        // Its own group, so that stopping it also stops the operator under a heaptrack wrapper.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .arg("run")
            .args(["--namespace", namespace, "--secret-prefix", "dsql-e2e"])
            .arg("--access-policy")
            .arg(&policy)
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            // glibc's allocator settings pass through, for allocator tuning experiments.
            .envs(std::env::vars().filter(|(name, _)| name == "GLIBC_TUNABLES" || name.starts_with("MALLOC_")))
            .envs(test_aws_env(&env.aws.endpoint_url(), &test_credentials()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn the operator binary");
        OperatorProcess { child, http_port, dir }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    /// The child's resident set, from /proc/<pid>/status.
    pub(crate) fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
                .unwrap_or(0)
        };
        Memory {
            rss: field("VmRSS:"),
            hwm: field("VmHWM:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }

    /// Starts a new peak: VmHWM is reset to the current resident set.
    pub(crate) fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").expect("reset VmHWM (clear_refs)");
    }

    /// Waits until /readyz answers 200 (the caches have synced).
    pub(crate) async fn wait_ready(&mut self, timeout: Duration) -> Duration {
        let start = Instant::now();
        let url = format!("http://127.0.0.1:{}/readyz", self.http_port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator binary exited ({status}); its log:\n{}", self.log());
            }
            if http_get_status(&url).await == Some(200) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "the operator binary was not ready within {timeout:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OperatorProcess {
    /// SIGKILL to the operator, so that under heaptrack the profile ends with the heap as it was
    /// at rest (its "leaked" memory is then what was live), and the wrapper writes it out and
    /// exits by itself; SIGKILL to the whole group after 30 s.
    fn drop(&mut self) {
        for pid in operators_in_group(self.child.id()) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The operator binary's processes in the process group `group`: the child itself, or the one a
/// heaptrack wrapper started.
fn operators_in_group(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // Field 5 of /proc/<pid>/stat is the process group (after the parenthesised name).
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2));
            let argv0 = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let argv0 = argv0.split(|b| *b == 0).next().unwrap_or_default();
            pgrp == Some(group.to_string().as_str()) && argv0.ends_with(b"dsql-credential-operator")
        })
        .collect()
}

pub(crate) async fn http_get_status(url: &str) -> Option<u16> {
    use hyper_util::client::legacy::Client;
    let client: Client<_, http_body_util::Empty<axum::body::Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: axum::http::Uri = url.parse().ok()?;
    let response = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}
