//! The run: the steps of the benchmark in order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsql_credential_operator::api::DsqlCredential;
use dsql_credential_operator::clock::Clock;
use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::Api;

use crate::DEFAULT_WRITE_RATE;
use crate::args::Args;
use crate::baseline::baseline_loop;
use crate::memory::{memory_rows, stop_in_process};
use crate::mint::{mint_boto3, mint_rust};
use crate::objects::{create_credentials, create_namespace, credential_name};
use crate::observe::{CredState, count_where, wait_until, watch_credentials, watch_secrets};
use crate::process::OperatorProcess;
use crate::report::{Report, Verdict, max_in_window, per, percentile};
use crate::support::env::TestEnv;
use crate::work::{Work, nothing_due_row, settle, work_rows};

/// Runs every step at `args.n` and returns the table.
pub(crate) async fn run(args: &Args) -> Report {
    let n = args.n;
    let concurrency = usize::from(args.concurrency);
    let mut report = Report::default();
    let mut env = TestEnv::new("scale").await;
    env.config.concurrency = args.concurrency;
    env.config.secrets_manager_writes_per_second = 0.0; // lifted for the throughput comparison
    if let Some(fake) = &env.fake {
        // A real watch cache keeps more history than the fake's default 1000 events; without
        // this, mass creation would force extra relists that a real server would not.
        fake.set_history_limit(8 * n + 1000);
        // The fake's garbage collector deep-copies every object on each pass, holding the server's
        // lock; nothing is deleted here, so it is only an artefact that slows everyone down.
        fake.set_gc_paused(true);
    }
    let kube = match &env.fake {
        Some(fake) => fake.client_as("bench"),
        None => env.kube.clone(),
    };
    if args.memory_only {
        memory_rows(&mut report, &env, &kube, args).await;
        drop(env);
        return report;
    }
    let namespace = env.namespace.clone();
    let baseline_namespace = format!("{namespace}-baseline");
    create_namespace(&kube, &baseline_namespace).await;

    // -- Mass creation: N credentials exist, then the operator starts (rate limit lifted). ----
    let create_time = create_credentials(&kube, &namespace, n, concurrency).await;
    create_credentials(&kube, &baseline_namespace, n, concurrency).await;
    report.note(format!(
        "creating the {n} DsqlCredential objects took {:.1} s (not part of any figure)",
        create_time.as_secs_f64()
    ));
    let credentials: Api<DsqlCredential> = Api::namespaced(kube.clone(), &namespace);
    let (creds, creds_task) = watch_credentials(credentials.clone());
    let clock: Arc<dyn Clock> = env.clock.clone();
    let (secrets, secrets_task) = watch_secrets(Api::namespaced(kube.clone(), &namespace), clock);
    wait_until("the benchmark's watch to list", Duration::from_secs(120), || {
        creds.lock().unwrap().len() == n
    })
    .await;
    env.clear_recorded();

    let operator_start = Instant::now();
    let operator = env.start_operator();
    let all_ready = Duration::from_secs(120 + n as u64 / 5);
    wait_until("every credential to be Ready", all_ready, || {
        count_where(&creds, |s| s.ready && s.rotation_count >= 1) == n
    })
    .await;
    let operator_time = operator_start.elapsed();
    settle(&env, n).await;
    let created = Work::take(&env);

    // The baseline does the same essential writes for its own N credentials.
    let template = credentials.get(&credential_name(0)).await.expect("get a credential");
    let status = serde_json::to_value(template.status.clone().unwrap_or_default()).unwrap();
    let baseline_time = baseline_loop(&env, &kube, &baseline_namespace, n, concurrency, &status).await;
    env.clear_recorded();
    let ratio = operator_time.as_secs_f64() / baseline_time.as_secs_f64();
    report.row(
        "throughput",
        format!("{n} created at once → all Ready (write limit lifted)"),
        format!(
            "{:.2} s ({:.0}/s)",
            operator_time.as_secs_f64(),
            n as f64 / operator_time.as_secs_f64()
        ),
        format!(
            "baseline loop {:.2} s ({:.0}/s); ratio {ratio:.2} ≤ 1.5",
            baseline_time.as_secs_f64(),
            n as f64 / baseline_time.as_secs_f64()
        ),
        Verdict::of(ratio <= 1.5),
    );
    report.row(
        "work",
        "first rotation (create): AWS calls per credential",
        format!("{} (total: {})", per(created.aws_total(), n), created.aws_text()),
        "1 CreateSecret, 0 reads",
        Verdict::of(created.aws_count("secretsmanager.CreateSecret") == n && created.aws_total() == n),
    );
    report.row(
        "work",
        "first rotation (create): Kubernetes writes per credential",
        format!(
            "{} (total: {})",
            created.writes_total().map(|w| per(w, n)).unwrap_or("n/a".into()),
            created.writes_text()
        ),
        "finalizer + Secret + status (+ Rotated Event)",
        Verdict::Info,
    );
    let mut next_times: Vec<Timestamp> = creds.lock().unwrap().values().filter_map(|s| s.next).collect();
    let herd = max_in_window(&mut next_times, SignedDuration::from_secs(1));
    report.row(
        "spread",
        "renewals due in the busiest second, after mass create (limit lifted)",
        format!(
            "{herd} of {n} (due times span {:.0} s)",
            next_times
                .last()
                .zip(next_times.first())
                .map(|(l, f)| l.duration_since(*f).as_secs_f64())
                .unwrap_or(0.0)
        ),
        "jitter ≤ min(renewBefore/10, 2 min)",
        Verdict::Info,
    );

    // -- No-op resync: nothing is due. --------------------------------------------------------
    env.clock.resync();
    settle(&env, n).await;
    let noop = Work::take(&env);
    report.row(
        "work",
        format!("no-op resync of {n}: AWS calls"),
        noop.aws_total().to_string(),
        "0",
        Verdict::of(noop.aws_total() == 0),
    );
    if let Some(writes) = noop.writes_total() {
        report.row(
            "work",
            format!("no-op resync of {n}: Kubernetes writes"),
            writes.to_string(),
            "0",
            Verdict::of(writes == 0),
        );
        report.row(
            "work",
            format!("no-op resync of {n}: Kubernetes reads"),
            noop.kube_reads.unwrap_or(0).to_string(),
            "0",
            Verdict::Info,
        );
    }

    // -- Mass rotation: the clock jumps past every renewal, so all N are overdue at once. -----
    let round1: HashMap<String, CredState> = creds.lock().unwrap().clone();
    let last_due = round1
        .values()
        .filter_map(|s| s.next)
        .max()
        .expect("next rotation times");
    env.clock.advance_to(last_due);
    let mass = wait_until(
        "every credential to rotate",
        Duration::from_secs(120 + n as u64 / 5),
        || count_where(&creds, |s| s.rotation_count >= 2 && s.ready) == n,
    )
    .await;
    settle(&env, n).await;
    let rotated = Work::take(&env);
    report.row(
        "throughput",
        format!("mass rotation: {n} overdue at once → all rotated"),
        format!("{:.2} s ({:.0}/s)", mass.as_secs_f64(), n as f64 / mass.as_secs_f64()),
        "(informational)",
        Verdict::Info,
    );
    work_rows(&mut report, "rotation", &rotated, n);

    // -- Rotations on the operator's own timers: latency. The clock is moved to just before the
    // first renewal of the next round falls due; from then on every renewal falls due in real
    // time and fires on the operator's requeue timer. The due times are spread as the previous
    // round's issue times were (plus jitter), as in a steady state. Latency is due → the
    // benchmark's watch sees the Secret's new version.
    let round2: HashMap<String, CredState> = creds.lock().unwrap().clone();
    let first_due = round2
        .values()
        .filter_map(|s| s.next)
        .min()
        .expect("next rotation times");
    let last_due = round2
        .values()
        .filter_map(|s| s.next)
        .max()
        .expect("next rotation times");
    let lead = 3 + n as i64 / 2000;
    let ahead = (first_due - SignedDuration::from_secs(lead))
        .duration_since(env.clock.now())
        .as_secs();
    if ahead > 0 {
        env.clock.advance(Duration::from_secs(ahead as u64));
    }
    let jumped_at = env.clock.now();
    let window_end = if args.window_secs > 0 {
        (first_due + SignedDuration::from_secs(args.window_secs)).min(last_due)
    } else {
        last_due
    };
    let measured: Vec<String> = round2
        .iter()
        .filter(|(_, s)| s.next.is_some_and(|t| t <= window_end))
        .map(|(name, _)| name.clone())
        .collect();
    let wait = window_end.duration_since(jumped_at).as_secs().max(0) as u64 + 120 + n as u64 / 5;
    let timed_start = Instant::now();
    wait_until(
        "the renewals falling due in real time",
        Duration::from_secs(wait),
        || {
            let map = creds.lock().unwrap();
            measured
                .iter()
                .all(|name| map.get(name).is_some_and(|s| s.rotation_count >= 3 && s.ready))
        },
    )
    .await;
    let timed_elapsed = timed_start.elapsed();
    if measured.len() < n {
        // Catch up the rest (not measured) so the next steps start with nothing due.
        env.clock.advance_to(last_due);
        wait_until("the rest to rotate", Duration::from_secs(120 + n as u64 / 5), || {
            count_where(&creds, |s| s.rotation_count >= 3 && s.ready) == n
        })
        .await;
    }
    settle(&env, n).await;
    let timed = Work::take(&env);
    let mut latencies = Vec::new();
    {
        let seen = secrets.lock().unwrap();
        for name in &measured {
            let state = &round2[name];
            let (Some(due), Some(v2)) = (state.next, state.version.as_ref()) else {
                continue;
            };
            let Some((_, at)) = seen.get(name).and_then(|vs| vs.iter().rev().find(|(v, _)| v != v2)) else {
                continue;
            };
            latencies.push(at.duration_since(due.max(jumped_at)).as_secs_f64());
        }
    }
    latencies.sort_by(f64::total_cmp);
    report.row(
        "latency",
        format!(
            "due → Secret updated, {} renewals falling due over {:.0} s on the operator's timers",
            latencies.len(),
            timed_elapsed.as_secs_f64()
        ),
        format!(
            "p50 {:.3} s, p99 {:.3} s, max {:.3} s",
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            percentile(&latencies, 100.0)
        ),
        "p99 ≤ 2 s",
        if latencies.is_empty() {
            Verdict::Info
        } else {
            Verdict::of(percentile(&latencies, 99.0) <= 2.0)
        },
    );
    if latencies.len() < measured.len() {
        report.note(format!(
            "latency: {} of {} measured Secrets had no new version seen by the watch",
            measured.len() - latencies.len(),
            measured.len()
        ));
    }
    work_rows(&mut report, "rotation on timers", &timed, n);

    // -- No-op resync after the rotation, then a restart with nothing due. -------------------
    env.clock.resync();
    settle(&env, n).await;
    let noop2 = Work::take(&env);
    nothing_due_row(&mut report, format!("no-op resync of {n} after rotation"), &noop2);
    operator.stop().await;
    settle(&env, 0).await;
    env.clear_recorded();
    let operator = env.start_operator();
    settle(&env, n).await;
    let restart = Work::take(&env);
    nothing_due_row(&mut report, format!("restart with {n}, nothing due"), &restart);
    stop_in_process(&env, operator, [creds_task, secrets_task]).await;

    memory_rows(&mut report, &env, &kube, args).await;

    // -- Default write limit: the operator binary with its defaults, M created at once. -------
    let rate_namespace = format!("{namespace}-rate");
    create_namespace(&kube, &rate_namespace).await;
    let rate_creds: Api<DsqlCredential> = Api::namespaced(kube.clone(), &rate_namespace);
    let (rate_map, rate_task) = watch_credentials(rate_creds);
    let mut process = OperatorProcess::start(&env, &rate_namespace, &[], None);
    process.wait_ready(Duration::from_secs(60)).await;
    let m = args.rate_n;
    let start = Instant::now();
    let creator = {
        let (kube, rate_namespace) = (kube.clone(), rate_namespace.clone());
        tokio::spawn(async move { create_credentials(&kube, &rate_namespace, m, concurrency).await })
    };
    // Secrets Manager calls seen by the proxy, sampled every 50 ms.
    let mut samples: Vec<(Instant, usize)> = Vec::new();
    let deadline = Duration::from_secs(60 + (m as f64 / DEFAULT_WRITE_RATE * 2.0) as u64);
    while count_where(&rate_map, |s| s.ready && s.rotation_count >= 1) < m {
        if start.elapsed() > deadline {
            let listed = Api::<DsqlCredential>::namespaced(kube.clone(), &rate_namespace)
                .list(&Default::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .map(|c| {
                            format!(
                                "{} {:?}",
                                c.name_any(),
                                c.status.as_ref().map(|s| (&s.rotation_count, &s.conditions))
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            panic!(
                "rate-limited credentials not Ready within {deadline:?} ({} of {m} seen Ready; creator finished: {}; \
                 AWS calls: {:?}); listed: {listed:#?}\noperator log:\n{}",
                count_where(&rate_map, |s| s.ready && s.rotation_count >= 1),
                creator.is_finished(),
                env.aws.calls(),
                process.log()
            );
        }
        samples.push((Instant::now(), env.aws.calls().len()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    samples.push((Instant::now(), env.aws.calls().len()));
    let rate_time = start.elapsed();
    creator.await.expect("creating rate-limited credentials");
    // Writes are counted where they arrive (the proxy), so scheduling jitter between the
    // limiter's slot and the request reaching the proxy shows up in short windows.
    let busiest_in = |width: Duration| {
        let (mut best, mut lo) = (0, 0);
        for hi in 0..samples.len() {
            while samples[hi].0.duration_since(samples[lo].0) > width {
                lo += 1;
            }
            best = best.max(samples[hi].1 - samples[lo].1);
        }
        best
    };
    let (busiest_1s, busiest_10s) = (busiest_in(Duration::from_secs(1)), busiest_in(Duration::from_secs(10)));
    let writes = Work::take(&env);
    let write_count =
        writes.aws_count("secretsmanager.CreateSecret") + writes.aws_count("secretsmanager.PutSecretValue");
    let ten = rate_time.as_secs_f64().min(10.0);
    report.row(
        "rate",
        format!("default limit ({DEFAULT_WRITE_RATE}/s): Secrets Manager writes arriving at AWS, {m} created at once"),
        format!(
            "busiest 1 s: {busiest_1s}; busiest 10 s: {busiest_10s} ({:.1}/s); overall {:.2}/s ({write_count} writes, all Ready in {:.1} s)",
            busiest_10s as f64 / ten,
            write_count as f64 / rate_time.as_secs_f64(),
            rate_time.as_secs_f64(),
        ),
        format!("≤ {DEFAULT_WRITE_RATE}/s (the limiter gives out one slot every {} ms)", (1000.0 / DEFAULT_WRITE_RATE) as u64),
        Verdict::of(busiest_10s as f64 <= DEFAULT_WRITE_RATE * ten + 1.0),
    );
    let mut due: Vec<Timestamp> = rate_map.lock().unwrap().values().filter_map(|s| s.next).collect();
    let herd_second = max_in_window(&mut due, SignedDuration::from_secs(1));
    let herd_minute = max_in_window(&mut due, SignedDuration::from_secs(60));
    report.row(
        "spread",
        format!("default limit: next renewals due in the busiest minute, {m} created at once"),
        format!(
            "{herd_minute} (busiest second: {herd_second}; due times span {:.0} s)",
            due.last()
                .zip(due.first())
                .map(|(l, f)| l.duration_since(*f).as_secs_f64())
                .unwrap_or(0.0)
        ),
        format!(
            "≤ {} (what the limit writes in a minute: no herd to queue)",
            DEFAULT_WRITE_RATE * 60.0
        ),
        Verdict::of(herd_minute as f64 <= DEFAULT_WRITE_RATE * 60.0),
    );
    rate_task.abort();
    drop(process);

    // -- Token minting, per token, against boto3. ---------------------------------------------
    let k = args.mint_tokens;
    let rust_us = mint_rust(&env, k).await;
    match mint_boto3(k) {
        Ok(boto_us) => report.row(
            "mint",
            format!("DSQL admin token, per token ({k} tokens)"),
            format!("{rust_us:.1} µs (operator's TokenMinter)"),
            format!(
                "boto3 generate_db_connect_admin_auth_token {boto_us:.1} µs ({:.1}×)",
                boto_us / rust_us
            ),
            Verdict::Info,
        ),
        Err(e) => report.note(format!("boto3 minting could not run: {e}")),
    }
    drop(env);
    report
}
