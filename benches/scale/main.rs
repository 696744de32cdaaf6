//! Scale benchmark (issue 7): memory, work per rotation and per no-op reconcile, throughput
//! against a plain client loop, rotation latency, Secrets Manager write rate and renewal spread,
//! and token minting against boto3.
//!
//! ```sh
//! cargo bench --bench scale -- --n 1000 --out target/bench-scale.md
//! ```
//!
//! Runs against moto (behind the counting proxy) and the in-process fake API server, or a real
//! cluster when `DSQL_OPERATOR_E2E_KUBECONFIG` is set (Kubernetes request counts are then not
//! available). Without `--n` (as `cargo test --all-targets` runs it) it is a smoke run with N=20
//! that asserts the work figures, so a regression cannot pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/support/mod.rs"]
mod support;

mod args;
mod baseline;
mod memory;
mod mint;
mod objects;
mod observe;
mod process;
mod report;
mod scenario;
mod work;

use std::time::{Duration, Instant};

use jiff::Timestamp;

use args::Args;
use report::Verdict;
use support::env::REAL_CLUSTER_ENV;

/// The DSQL endpoint every benchmark credential names.
const ENDPOINT: &str = "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws";
/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// The operator's default `--secrets-manager-writes-per-second`.
const DEFAULT_WRITE_RATE: f64 = 5.0;

fn main() {
    let args = Args::parse();
    // Operator logs go to stderr at warn level: the support's trace-level capture buffer would
    // grow with N and slow the operator down. (support::logs::init is a no-op afterwards.)
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let report = runtime.block_on(scenario::run(&args));
    let header = format!(
        "## dsql-credential-operator scale benchmark, N = {}{}\n\n{} build, {} CPUs, concurrency {}, against {}; took {:.0} s; {}",
        args.n,
        if args.smoke { " (smoke run)" } else { "" },
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.concurrency,
        if real_cluster() {
            "a real cluster + moto"
        } else {
            "the fake API server + moto"
        },
        started.elapsed().as_secs_f64(),
        Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
    );
    let table = report.markdown(&header);
    println!("{table}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).expect("output directory");
        }
        std::fs::write(out, &table).expect("write --out");
        eprintln!("written to {}", out.display());
    }
    if args.smoke {
        let missed: Vec<String> = report
            .rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed && r.section == "work")
            .map(|r| format!("{}: {} (target {})", r.figure, r.measured, r.target))
            .collect();
        assert!(
            missed.is_empty(),
            "work figures missed their targets:\n{}",
            missed.join("\n")
        );
    }
    // The fake API server and moto stop with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
}

pub(crate) fn real_cluster() -> bool {
    std::env::var(REAL_CLUSTER_ENV).is_ok_and(|v| !v.is_empty())
}
