//! What the binary prints when it starts, outside a terminal: no ANSI colour codes, and no
//! region lookup through the EC2 instance metadata service (IMDS) when the region is given.
//!
//! The runs stop early on purpose: there is no Kubernetes (KUBECONFIG names a missing file), so
//! `run` exits right after loading the AWS configuration. IMDS is pointed at a local listener
//! that counts connections and drops them, so nothing leaves the machine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A stand-in IMDS endpoint: counts connections and closes each at once (a fast failure).
fn fake_imds() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

/// Runs `dsql-credential-operator run <extra>` with a clean environment (an empty HOME: no AWS
/// config files), bounded to 60s.
fn run_operator(imds: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dsql-credential-operator"));
    cmd.arg("run")
        .args(["--http-addr", "127.0.0.1:0"])
        .args(extra)
        .env_clear()
        .env("HOME", home.path())
        .env("KUBECONFIG", home.path().join("missing-kubeconfig"))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the operator binary runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the operator did not exit within 60s without a cluster");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut stderr).unwrap();
    Output { status, stdout, stderr }
}

#[test]
fn a_given_region_is_never_looked_up_in_imds_and_piped_logs_have_no_colour_codes() {
    for (how, extra, env) in [
        ("--region", &["--region", "eu-west-1"][..], &[][..]),
        (
            "DSQL_OPERATOR_REGION",
            &[][..],
            &[("DSQL_OPERATOR_REGION", "eu-west-1")][..],
        ),
        ("AWS_REGION", &[][..], &[("AWS_REGION", "eu-west-1")][..]),
    ] {
        let (imds, connections) = fake_imds();
        let out = run_operator(&imds, extra, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{how}: without a cluster the run fails: {stderr}"
        );
        assert!(
            stderr.contains("access policy loaded"),
            "{how}: it got as far as logging: {stderr}"
        );
        assert_eq!(
            connections.load(Ordering::SeqCst),
            0,
            "{how}: IMDS was consulted: {stderr}"
        );
        assert!(!stderr.to_lowercase().contains("imds"), "{how}: {stderr}");
        assert!(!stderr.contains(" WARN "), "{how}: a warning at start: {stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "{how}: ANSI escape codes in piped logs: {stderr:?}"
        );
    }
}

/// The control: without any region, the SDK's chain does reach (this stand-in) IMDS, so the test
/// above would notice a lookup.
#[test]
fn without_a_region_the_sdk_chain_asks_imds() {
    let (imds, connections) = fake_imds();
    let out = run_operator(&imds, &[], &[]);
    assert!(
        connections.load(Ordering::SeqCst) > 0,
        "IMDS was not asked: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
