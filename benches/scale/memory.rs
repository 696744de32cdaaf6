//! The memory figures: the operator binary as a child process, through the states a user's
//! install goes through at N credentials: N created at once (N first rotations), a mass
//! rotation of all of them, a restart on the same objects, and a full relist.
//!
//! Each state gives the resident set at rest (once the operator's work has settled, sampled for
//! `--steady-secs`) and its peak while it was reached (VmHWM, reset at the start of each state by
//! writing 5 to `/proc/<pid>/clear_refs`).

use std::time::{Duration, Instant};

use dsql_credential_operator::api::{DsqlCredential, ROTATE_ANNOTATION};
use futures::StreamExt;
use kube::api::{Api, Patch, PatchParams};

use crate::MIB;
use crate::args::Args;
use crate::objects::{create_credentials, create_namespace, credential_name};
use crate::observe::{count_where, wait_until, watch_credentials};
use crate::process::{Memory, OperatorProcess};
use crate::report::{Report, Verdict};
use crate::support::env::{Operator, TestEnv};
use crate::work::{Work, nothing_due_row, settle};

/// The target for the resident set at 10,000 credentials, in every state (issue 19).
const TARGET_MIB: f64 = 64.0;

/// Stops the in-process operator and the benchmark's watches and waits for quiet, so the binary
/// steps that follow start from zero counts.
pub(crate) async fn stop_in_process(env: &TestEnv, operator: Operator, watches: [tokio::task::JoinHandle<()>; 2]) {
    operator.stop().await;
    for watch in watches {
        watch.abort();
    }
    settle(env, 0).await;
    env.clear_recorded();
}

/// What one state cost: the resident set at rest and the peak on the way there.
struct StateMemory {
    at_rest: Memory,
    /// The largest resident set sampled while at rest.
    rest_max: u64,
    /// VmHWM since the state began.
    peak: u64,
}

impl StateMemory {
    fn text(&self) -> String {
        format!(
            "{:.1} MiB at rest (heap and stacks {:.1} + binary {:.1}; max at rest {:.1}); peak {:.1} MiB",
            self.at_rest.rss as f64 / MIB,
            self.at_rest.anon as f64 / MIB,
            self.at_rest.file as f64 / MIB,
            self.rest_max as f64 / MIB,
            self.peak as f64 / MIB,
        )
    }
}

/// Samples the process at rest for `--steady-secs` (which spans at least one of the operator's
/// heap trims, every 10 s, at the default 20) and reads the peak since the state began.
async fn at_rest(process: &OperatorProcess, args: &Args) -> StateMemory {
    let mut rest_max = 0;
    let until = Instant::now() + Duration::from_secs(args.steady_secs);
    while Instant::now() < until {
        rest_max = rest_max.max(process.memory().rss);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_rest = process.memory();
    StateMemory {
        rest_max: rest_max.max(at_rest.rss),
        peak: at_rest.hwm,
        at_rest,
    }
}

fn memory_row(report: &mut Report, n: usize, state: &str, memory: &StateMemory) {
    report.row(
        "memory",
        format!("operator RSS, {n} credentials: {state}"),
        memory.text(),
        format!("≤ {TARGET_MIB} MiB at rest at 10,000"),
        Verdict::at_full_scale(n, memory.at_rest.rss as f64 / MIB <= TARGET_MIB),
    );
}

/// The memory figures of the operator binary (`--secrets-manager-writes-per-second 0`, so the
/// bursts are as large as they can be) in its own namespace.
pub(crate) async fn memory_rows(report: &mut Report, env: &TestEnv, kube: &kube::Client, args: &Args) {
    let n = args.n;
    let concurrency = usize::from(args.concurrency);
    let namespace = format!("{}-memory", env.namespace);
    create_namespace(kube, &namespace).await;
    let credentials: Api<DsqlCredential> = Api::namespaced(kube.clone(), &namespace);
    let (creds, creds_task) = watch_credentials(credentials.clone());
    let binary_args = ["--secrets-manager-writes-per-second", "0"];
    let mut process = OperatorProcess::start(env, &namespace, &binary_args, args.heaptrack.as_deref());
    process.wait_ready(Duration::from_secs(60)).await;
    let all_rotated = |count: i64| count_where(&creds, |s| s.ready && s.rotation_count >= count) == n;

    // -- N created at once: N first rotations. -------------------------------------------------
    process.reset_peak();
    create_credentials(kube, &namespace, n, concurrency).await;
    let ready = wait_until(
        "every credential to be Ready",
        Duration::from_secs(120 + n as u64 / 5),
        || all_rotated(1),
    )
    .await;
    report.row(
        "throughput",
        format!("operator binary: {n} created at once → all Ready (write limit lifted)"),
        format!("{:.1} s from the last create", ready.as_secs_f64()),
        "(information)",
        Verdict::Info,
    );
    settle(env, n).await;
    Work::take(env);
    let created = at_rest(&process, args).await;
    memory_row(
        report,
        n,
        "after the first rotations of all of them (created at once)",
        &created,
    );

    // -- A mass rotation: every credential's rotate annotation set at once. --------------------
    process.reset_peak();
    let patch = serde_json::json!({"metadata": {"annotations": {ROTATE_ANNOTATION: "benchmark-mass-rotation"}}});
    futures::stream::iter(0..n)
        .map(|i| {
            let (credentials, patch) = (credentials.clone(), &patch);
            async move {
                credentials
                    .patch(&credential_name(i), &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .expect("annotate a credential");
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    // A forced rotation waits until a minute after the credential's last one.
    wait_until(
        "every credential to rotate again",
        Duration::from_secs(180 + n as u64 / 5),
        || all_rotated(2),
    )
    .await;
    settle(env, n).await;
    Work::take(env);
    let rotated = at_rest(&process, args).await;
    memory_row(report, n, "after a mass rotation of all of them", &rotated);

    // -- A restart on the same objects: nothing is due. ---------------------------------------
    drop(process);
    let profile = args.heaptrack.as_ref().map(|path| path.with_extension("restart"));
    let mut process = OperatorProcess::start(env, &namespace, &binary_args, profile.as_deref());
    let initial_list = process.wait_ready(Duration::from_secs(120 + n as u64 / 20)).await;
    settle(env, n).await;
    nothing_due_row(
        report,
        format!("operator binary start with {n}, nothing due"),
        &Work::take(env),
    );
    let restarted = at_rest(&process, args).await;
    memory_row(
        report,
        n,
        &format!(
            "after a restart (caches synced in {:.1} s, nothing due)",
            initial_list.as_secs_f64()
        ),
        &restarted,
    );

    // -- A full relist: every watch ended with 410 Expired. ------------------------------------
    if let Some(fake) = &env.fake {
        // List requests from the binary (the benchmark's own carry an actor header).
        let binary_lists = || {
            fake.requests()
                .iter()
                .filter(|r| r.actor.is_none() && r.method == "GET" && !r.query.contains("watch=true"))
                .count()
        };
        let lists_before = binary_lists();
        process.reset_peak();
        fake.expire_watches();
        let mut sampled_peak = 0u64;
        let until = Instant::now() + Duration::from_millis(3000 + n as u64);
        while Instant::now() < until {
            sampled_peak = sampled_peak.max(process.memory().rss);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let lists = binary_lists() - lists_before;
        settle(env, n).await;
        let relisted = at_rest(&process, args).await;
        memory_row(
            report,
            n,
            &format!(
                "through a full relist (every watch ended with 410; {lists} list requests; sampled peak {:.1} MiB)",
                sampled_peak as f64 / MIB
            ),
            &relisted,
        );
    }
    drop(process);
    creds_task.abort();
    env.clear_recorded();
}
