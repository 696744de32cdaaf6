//! Rotation schedules, renewal times, jitter and failure backoff.
//!
//! Everything in this module is pure: callers pass in the current time, the
//! recorded token lifetime and any randomness, so every decision the
//! reconciler makes about *when* to rotate can be unit tested and is
//! reproducible after a restart.
//!
//! Schedules use the AWS Secrets Manager / EventBridge expression syntax
//! (`rate(12 hours)`, `cron(0 8 1 * ? *)`), evaluated in UTC, so users can
//! copy expressions they already use with Secrets Manager rotation.
//!
//! Three files, each depending only on the ones above it:
//! - `duration`: Go duration parsing and formatting (the spec's `lifetime` and
//!   `renewBefore`, and durations in messages);
//! - `expression`: the `rate()` / `cron()` front end and when a schedule fires;
//! - `renewal`: when to replace a token (expiry, schedule, jitter) and when to
//!   retry after a failure.
//!
//! Callers use the re-exports below, `crate::schedule::X`, so the split is
//! invisible outside this directory.

mod duration;
mod expression;
mod renewal;
#[cfg(test)]
mod test_support;

pub use duration::{DURATION_PATTERN, format_duration, parse_duration};
pub use expression::{CronSchedule, MAX_EXPRESSION_LEN, MAX_RATE, MIN_WRITE_INTERVAL, RotationSchedule, ScheduleError};
pub use renewal::{
    BACKOFF_BASE, BACKOFF_CAP, BACKOFF_FLOOR, EXPIRY_RETRY_MARGIN, MAX_JITTER, RenewalPlan, failure_backoff,
    next_rotation_time, renewal_jitter, retry_time,
};
