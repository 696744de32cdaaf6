//! What the tests of `expression` and `renewal` share: times and schedules from text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use jiff::Timestamp;

use super::RotationSchedule;

/// A Monday, 17:00 UTC.
pub const MON_1700: &str = "2026-11-23T17:00:00Z";

/// An RFC 3339 time.
pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A schedule expression that must parse.
pub fn sched(s: &str) -> RotationSchedule {
    s.parse().unwrap_or_else(|e| panic!("{s} should parse: {e}"))
}

/// `n` minutes.
pub fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}
