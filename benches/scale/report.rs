//! The results table: rows with a verdict against their target, notes, and the statistics
//! the rows are computed with.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};

/// One line of the results table.
pub(crate) struct Row {
    pub(crate) section: &'static str,
    pub(crate) figure: String,
    pub(crate) measured: String,
    pub(crate) target: String,
    pub(crate) verdict: Verdict,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Met,
    Missed,
    Info,
}

impl Verdict {
    pub(crate) fn of(ok: bool) -> Verdict {
        if ok { Verdict::Met } else { Verdict::Missed }
    }
    /// The memory targets are stated for 10,000 credentials: judged there (and above), shown
    /// for information below.
    pub(crate) fn at_full_scale(n: usize, ok: bool) -> Verdict {
        if n >= 10_000 { Verdict::of(ok) } else { Verdict::Info }
    }
    pub(crate) fn text(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
        }
    }
}

#[derive(Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
}

impl Report {
    pub(crate) fn row(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        verdict: Verdict,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            measured: measured.into(),
            target: target.into(),
            verdict,
        };
        eprintln!(
            "[{}] {}: {} (target {}) {}",
            row.section,
            row.figure,
            row.measured,
            row.target,
            row.verdict.text()
        );
        self.rows.push(row);
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("note: {note}");
        self.notes.push(note);
    }

    pub(crate) fn markdown(&self, header: &str) -> String {
        let mut out = String::new();
        writeln!(out, "{header}\n").unwrap();
        writeln!(out, "| section | figure | measured | target / baseline | |").unwrap();
        writeln!(out, "|---|---|---|---|---|").unwrap();
        for r in &self.rows {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.section,
                r.figure,
                r.measured,
                r.target,
                r.verdict.text()
            )
            .unwrap();
        }
        if !self.notes.is_empty() {
            writeln!(out).unwrap();
            for n in &self.notes {
                writeln!(out, "- {n}").unwrap();
            }
        }
        out
    }
}

/// `count / n`, as an integer when it is one.
pub(crate) fn per(count: usize, n: usize) -> String {
    let x = count as f64 / n as f64;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

/// The `p`th percentile of sorted values (nearest rank).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The most timestamps within any window of `width` (a sliding window over sorted times).
pub(crate) fn max_in_window(times: &mut [Timestamp], width: SignedDuration) -> usize {
    times.sort();
    let (mut best, mut lo) = (0, 0);
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}
