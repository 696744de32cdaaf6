//! Counting the operator's work: AWS calls at the proxy, Kubernetes requests at the fake API
//! server, and the rows that judge them.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::report::{Report, Verdict, per};
use crate::support;
use crate::support::env::TestEnv;

// ---------------------------------------------------------------------------------------------
// Counting requests.

/// The operator's Kubernetes requests since the last clear: in-process operators are marked
/// `operator*`, the operator binary sends no actor header (the benchmark's own client is `bench`).
pub(crate) fn operator_requests(env: &TestEnv) -> Option<Vec<support::apiserver::RecordedRequest>> {
    env.fake.as_ref().map(|f| {
        f.requests()
            .into_iter()
            .filter(|r| r.actor.as_deref().is_none_or(|a| a.starts_with("operator")))
            .collect()
    })
}

pub(crate) fn write_kind(r: &support::apiserver::RecordedRequest) -> &'static str {
    if r.path.ends_with("/status") {
        "status"
    } else if r.path.contains("/secrets") {
        "Secret"
    } else if r.path.contains("/events") {
        "Event"
    } else if r.path.contains("/dsqlcredentials") {
        "DsqlCredential metadata (finalizer)"
    } else {
        "other"
    }
}

#[derive(Debug, Default)]
pub(crate) struct Work {
    pub(crate) aws: BTreeMap<String, usize>,
    /// None against a real cluster.
    pub(crate) kube_writes: Option<BTreeMap<&'static str, usize>>,
    pub(crate) kube_reads: Option<usize>,
}

impl Work {
    pub(crate) fn take(env: &TestEnv) -> Work {
        let mut aws = BTreeMap::new();
        for call in env.aws.calls() {
            *aws.entry(call).or_insert(0) += 1;
        }
        let requests = operator_requests(env);
        let kube_writes = requests.as_ref().map(|rs| {
            let mut m = BTreeMap::new();
            for r in rs.iter().filter(|r| r.is_write()) {
                *m.entry(write_kind(r)).or_insert(0) += 1;
            }
            m
        });
        let kube_reads = requests.map(|rs| {
            rs.iter()
                .filter(|r| r.method == "GET" && !r.query.contains("watch=true") && !r.query.contains("watch=1"))
                .count()
        });
        env.clear_recorded();
        Work {
            aws,
            kube_writes,
            kube_reads,
        }
    }

    pub(crate) fn aws_total(&self) -> usize {
        self.aws.values().sum()
    }

    pub(crate) fn aws_count(&self, op: &str) -> usize {
        self.aws.get(op).copied().unwrap_or(0)
    }

    pub(crate) fn writes_total(&self) -> Option<usize> {
        self.kube_writes.as_ref().map(|m| m.values().sum())
    }

    pub(crate) fn writes(&self, kind: &str) -> Option<usize> {
        self.kube_writes.as_ref().map(|m| m.get(kind).copied().unwrap_or(0))
    }

    pub(crate) fn aws_text(&self) -> String {
        if self.aws.is_empty() {
            return "none".into();
        }
        self.aws
            .iter()
            .map(|(k, v)| format!("{} ×{v}", k.trim_start_matches("secretsmanager.")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn writes_text(&self) -> String {
        match &self.kube_writes {
            None => "n/a (real cluster)".into(),
            Some(m) if m.is_empty() => "none".into(),
            Some(m) => m
                .iter()
                .map(|(k, v)| format!("{k} ×{v}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The row for a step where nothing is due: no AWS call and no Kubernetes write.
pub(crate) fn nothing_due_row(report: &mut Report, what: String, work: &Work) {
    report.row(
        "work",
        format!("{what}: AWS calls / Kubernetes writes"),
        format!(
            "{} / {}",
            work.aws_total(),
            work.writes_total().map(|w| w.to_string()).unwrap_or("n/a".into())
        ),
        "0 / 0",
        Verdict::of(work.aws_total() == 0 && work.writes_total().unwrap_or(0) == 0),
    );
}

pub(crate) fn work_rows(report: &mut Report, what: &str, rotated: &Work, n: usize) {
    let puts = rotated.aws_count("secretsmanager.PutSecretValue");
    report.row(
        "work",
        format!("{what}: Secrets Manager writes per rotation"),
        format!("{} (total: {})", per(puts, n), rotated.aws_text()),
        "exactly 1 PutSecretValue",
        Verdict::of(puts == n),
    );
    let others = rotated.aws_total() - puts;
    report.row(
        "work",
        format!("{what}: other AWS calls (Secrets Manager reads, DSQL, STS) per rotation"),
        per(others, n),
        "0",
        Verdict::of(others == 0),
    );
    if let Some(total) = rotated.writes_total() {
        let secret = rotated.writes("Secret").unwrap_or(0);
        let status = rotated.writes("status").unwrap_or(0);
        let events = rotated.writes("Event").unwrap_or(0);
        report.row(
            "work",
            format!("{what}: Kubernetes writes per rotation"),
            format!("{} (total: {})", per(total, n), rotated.writes_text()),
            "≤ 1 per projected object (1 Secret) + 1 status",
            Verdict::of(secret <= n && status == n && events == 0 && total == secret + status),
        );
        report.row(
            "work",
            format!("{what}: Kubernetes reads (GET/LIST) per rotation"),
            per(rotated.kube_reads.unwrap_or(0), n),
            "0",
            Verdict::of(rotated.kube_reads == Some(0)),
        );
    }
}

/// Waits long enough for a resync/restart of N no-op reconciles to finish, then until neither
/// AWS nor the API server has seen a request for a second.
pub(crate) async fn settle(env: &TestEnv, n: usize) {
    tokio::time::sleep(Duration::from_millis(1500 + n as u64 / 2)).await;
    let snapshot = || {
        (
            env.aws.calls().len(),
            env.fake.as_ref().map(|f| f.requests().len()).unwrap_or(0),
        )
    };
    let mut last = snapshot();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = snapshot();
        if now == last {
            return;
        }
        last = now;
    }
}
