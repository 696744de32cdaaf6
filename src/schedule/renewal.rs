//! When to replace a token (its expiry, the user's schedule and a jitter) and when to retry
//! after a failure (exponential backoff, pulled in before the token expires).

use std::time::Duration;

use jiff::Timestamp;

use super::expression::{MIN_WRITE_INTERVAL, RotationSchedule};

/// Base of the failure backoff: the longest wait after the first failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);

/// Ceiling of the failure backoff.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);

/// Shortest wait between retries, so a caller never spins on a zero delay.
pub const BACKOFF_FLOOR: Duration = Duration::from_secs(1);

/// How long before a token's expiry the last retry must happen, leaving time
/// for the write to reach Secrets Manager and for clients to pick it up.
pub const EXPIRY_RETRY_MARGIN: Duration = Duration::from_secs(30);

/// Upper bound of the renewal jitter, however long the renewal window is.
pub const MAX_JITTER: Duration = Duration::from_secs(2 * 60);

/// `t + d`, clamped to the end of representable time.
fn add_saturating(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// `t - d`, clamped to the start of representable time.
fn sub_saturating(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_sub(d).unwrap_or(Timestamp::MIN)
}

/// What is known about the current token when planning its renewal.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPlan<'a> {
    /// When the current token was minted (the last rotation).
    pub issued_at: Timestamp,
    /// The recorded expiry of the current token.
    pub expires_at: Timestamp,
    /// Rotate when this much lifetime remains.
    pub renew_before: Duration,
    /// The user's rotation schedule, if any.
    pub schedule: Option<&'a RotationSchedule>,
}

/// When the current token should be replaced.
///
/// The answer is the earlier of
/// - the expiry deadline `expires_at - renew_before`, moved earlier by
///   `jitter` so that many objects minted together do not all hit AWS in the
///   same second, and
/// - the next firing of the schedule after `issued_at`,
///
/// but not before `issued_at + MIN_WRITE_INTERVAL`, to respect AWS's
/// one-write-per-10-minutes guidance. That floor yields to expiry: if the
/// expiry deadline itself falls before the floor (a short-lived token, e.g.
/// because the signing credentials expire soon), the expiry deadline wins,
/// because a token that expires in the secret breaks every client, while an
/// extra write only goes against a rate guideline.
///
/// The result may lie in the past; callers should then rotate immediately.
pub fn next_rotation_time(plan: &RenewalPlan<'_>, jitter: Duration) -> Timestamp {
    let floor = add_saturating(plan.issued_at, MIN_WRITE_INTERVAL);
    let deadline = sub_saturating(plan.expires_at, plan.renew_before);
    let by_expiry = sub_saturating(deadline, jitter);
    let by_expiry = if deadline >= floor {
        // Jitter may not push below the floor while the deadline is after it.
        by_expiry.max(floor)
    } else {
        by_expiry
    };
    let by_schedule = plan
        .schedule
        .and_then(|s| s.next_after(plan.issued_at))
        .map(|t| t.max(floor));
    by_schedule.map_or(by_expiry, |s| s.min(by_expiry))
}

/// A deterministic renewal jitter for `seed`, in
/// `[0, min(renew_before / 10, 2 minutes)]`.
///
/// Callers pass a hash of the object's uid and rotation number, so a restarted
/// operator computes the same renewal time, while different objects (and
/// successive rotations of one object) spread evenly over the window. The
/// mixing is spelled out (SplitMix64) rather than taken from a seeded RNG so
/// the value cannot change with a dependency upgrade.
pub fn renewal_jitter(renew_before: Duration, seed: u64) -> Duration {
    let window = (renew_before / 10).min(MAX_JITTER);
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let span = u128::from(window_ms) + 1;
    // Multiply-shift maps the 64-bit hash onto [0, span) without the bias of
    // a modulo.
    let offset = (u128::from(splitmix64(seed)) * span) >> 64;
    Duration::from_millis(u64::try_from(offset).unwrap_or(window_ms))
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How long to wait after `consecutive_failures` failures in a row:
/// exponential backoff with full jitter (base 5 s, factor 2, cap 5 minutes),
/// never less than 1 s.
///
/// `random_unit` is a uniform sample from `[0, 1)` supplied by the caller so
/// the function stays deterministic; out-of-range values are clamped and NaN
/// counts as 0. Zero failures is treated like one.
pub fn failure_backoff(consecutive_failures: u32, random_unit: f64) -> Duration {
    let doublings = consecutive_failures.saturating_sub(1);
    // 2^6 * 5 s already exceeds the cap, so larger shifts are never needed.
    let ceiling = BACKOFF_BASE
        .checked_mul(1u32 << doublings.min(16))
        .map_or(BACKOFF_CAP, |d| d.min(BACKOFF_CAP));
    let unit = if random_unit.is_nan() {
        0.0
    } else {
        random_unit.clamp(0.0, 1.0)
    };
    ceiling.mul_f64(unit).max(BACKOFF_FLOOR)
}

/// When to retry after a failure at `now`.
///
/// Normally `now + failure_backoff(..)`. While the current token is still
/// valid, the retry is pulled in so it happens no later than
/// [`EXPIRY_RETRY_MARGIN`] before `expires_at`, and once inside that margin
/// retries use the base backoff, but never later than `expires_at` itself: a
/// token about to expire deserves a faster retry than the growing backoff
/// would give it, and the retry at the expiry is also what turns `Ready`
/// False on time (a retry a few seconds after it would report the expiry late).
pub fn retry_time(
    now: Timestamp,
    consecutive_failures: u32,
    random_unit: f64,
    expires_at: Option<Timestamp>,
) -> Timestamp {
    let backoff = failure_backoff(consecutive_failures, random_unit);
    let retry = add_saturating(now, backoff);
    let Some(expires_at) = expires_at else {
        return retry;
    };
    let last_safe = sub_saturating(expires_at, EXPIRY_RETRY_MARGIN);
    if last_safe > now {
        retry.min(last_safe)
    } else if expires_at > now {
        retry
            .min(add_saturating(now, BACKOFF_BASE.max(BACKOFF_FLOOR)))
            .min(expires_at)
    } else {
        retry
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::schedule::test_support::{MON_1700, mins, sched, ts};

    fn plan<'a>(
        issued: &str,
        expires: &str,
        renew_before_mins: u64,
        schedule: Option<&'a RotationSchedule>,
    ) -> RenewalPlan<'a> {
        RenewalPlan {
            issued_at: ts(issued),
            expires_at: ts(expires),
            renew_before: mins(renew_before_mins),
            schedule,
        }
    }

    #[test]
    fn renewal_by_expiry() {
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T18:00:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:45:00Z"));
        assert_eq!(
            next_rotation_time(&p, Duration::from_secs(90)),
            ts("2026-11-23T17:43:30Z")
        );
    }

    #[test]
    fn renewal_by_schedule_when_earlier() {
        let hourly = sched("cron(0 * * * ? *)");
        let p = plan("2026-11-23T17:20:00Z", "2026-11-24T17:20:00Z", 60, Some(&hourly));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T18:00:00Z"));

        let rate = sched("rate(6 hours)");
        let p = plan("2026-11-23T17:20:00Z", "2026-11-24T17:20:00Z", 60, Some(&rate));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T23:20:00Z"));

        // The expiry still wins when it comes first.
        let daily = sched("cron(0 10 * * ? *)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T20:00:00Z", 30, Some(&daily));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T19:30:00Z"));
    }

    #[test]
    fn renewal_respects_write_floor_for_schedule() {
        // The cron fires 2 minutes after the last rotation; the floor pushes it to +10m.
        let s = sched("cron(0/30 * * * ? *)");
        let p = plan("2026-11-23T17:28:00Z", "2026-11-24T17:28:00Z", 60, Some(&s));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:38:00Z"));
    }

    #[test]
    fn renewal_jitter_cannot_cross_floor_unless_expiry_forces_it() {
        // Deadline exactly at the floor: allowed, jitter clamped to the floor.
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:25:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, mins(2)), ts("2026-11-23T17:10:00Z"));
        // Deadline before the floor (short-lived token): expiry wins, jitter applies.
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:20:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:05:00Z"));
        assert_eq!(next_rotation_time(&p, mins(1)), ts("2026-11-23T17:04:00Z"));
        // Even with a schedule that is later.
        let s = sched("rate(1 day)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:20:00Z", 15, Some(&s));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:05:00Z"));
        // Already past the deadline: the answer is in the past (rotate now).
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T17:01:00Z", 15, None);
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T16:46:00Z"));
    }

    #[test]
    fn renewal_with_never_firing_schedule_falls_back_to_expiry() {
        let ended = sched("cron(0 0 1 1 ? 2020)");
        let p = plan("2026-11-23T17:00:00Z", "2026-11-23T18:00:00Z", 15, Some(&ended));
        assert_eq!(next_rotation_time(&p, Duration::ZERO), ts("2026-11-23T17:45:00Z"));
    }

    #[test]
    fn renewal_saturates_at_extremes() {
        let p = RenewalPlan {
            issued_at: Timestamp::MIN,
            expires_at: Timestamp::MIN,
            renew_before: Duration::MAX,
            schedule: None,
        };
        assert_eq!(next_rotation_time(&p, Duration::MAX), Timestamp::MIN);
        let p = RenewalPlan {
            issued_at: Timestamp::MAX,
            expires_at: Timestamp::MAX,
            renew_before: Duration::ZERO,
            schedule: None,
        };
        assert_eq!(next_rotation_time(&p, Duration::ZERO), Timestamp::MAX);
    }

    #[test]
    fn jitter_bounds() {
        for seed in 0..2_000u64 {
            let j = renewal_jitter(mins(15), seed);
            assert!(j <= Duration::from_secs(90), "{j:?}");
            let j = renewal_jitter(mins(60 * 24), seed.wrapping_mul(0x9E37));
            assert!(j <= MAX_JITTER, "{j:?}");
        }
        assert_eq!(renewal_jitter(Duration::ZERO, 42), Duration::ZERO);
        assert_eq!(renewal_jitter(Duration::from_millis(5), 42), Duration::ZERO);
        assert!(renewal_jitter(Duration::MAX, u64::MAX) <= MAX_JITTER);
    }

    #[test]
    fn jitter_is_deterministic() {
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(renewal_jitter(mins(30), seed), renewal_jitter(mins(30), seed));
        }
        // Pinned so an accidental change of the mixing function is noticed:
        // it would move every object's renewal time after an upgrade.
        assert_eq!(renewal_jitter(mins(30), 42), Duration::from_millis(88_988));
        assert_ne!(renewal_jitter(mins(30), 1), renewal_jitter(mins(30), 2));
    }

    #[test]
    fn jitter_spreads_evenly() {
        let window = MAX_JITTER.as_millis();
        let mut buckets = [0u32; 10];
        for seed in 0..10_000u64 {
            let j = renewal_jitter(mins(60), seed).as_millis();
            let bucket = usize::try_from(j * 10 / (window + 1)).unwrap();
            buckets[bucket] += 1;
        }
        for count in buckets {
            assert!((800..=1_200).contains(&count), "{buckets:?}");
        }
    }

    // ---- backoff ----

    #[test]
    fn backoff_grows_and_caps() {
        let almost_one = 1.0 - f64::EPSILON;
        let ceilings: Vec<u64> = (1..=9)
            .map(|n| failure_backoff(n, almost_one).as_secs_f64().round() as u64)
            .collect();
        assert_eq!(ceilings, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(failure_backoff(0, almost_one).as_secs_f64().round() as u64, 5);
        assert_eq!(failure_backoff(u32::MAX, 0.5), Duration::from_secs(150));
        assert_eq!(failure_backoff(3, 0.5), Duration::from_secs(10));
    }

    #[test]
    fn backoff_has_floor_and_handles_odd_randoms() {
        assert_eq!(failure_backoff(1, 0.0), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(1, 0.1), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, f64::NAN), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, -3.0), BACKOFF_FLOOR);
        assert_eq!(failure_backoff(8, 7.0), BACKOFF_CAP);
        assert_eq!(failure_backoff(8, f64::INFINITY), BACKOFF_CAP);
    }

    #[test]
    fn retry_time_respects_expiry() {
        let now = ts(MON_1700);
        // No expiry known: plain backoff.
        assert_eq!(retry_time(now, 8, 0.5, None), ts("2026-11-23T17:02:30Z"));
        // Expiry far away: plain backoff.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T18:00:00Z"))),
            ts("2026-11-23T17:02:30Z")
        );
        // Expiry soon: retry no later than 30 s before it.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:01:00Z"))),
            ts("2026-11-23T17:00:30Z")
        );
        // Inside the margin but not expired: retry within the base backoff.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:00:20Z"))),
            ts("2026-11-23T17:00:05Z")
        );
        // Expiring before the base backoff is over: the retry is at the expiry, not after it.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T17:00:02Z"))),
            ts("2026-11-23T17:00:02Z")
        );
        // Already expired: plain backoff again.
        assert_eq!(
            retry_time(now, 8, 0.5, Some(ts("2026-11-23T16:00:00Z"))),
            ts("2026-11-23T17:02:30Z")
        );
        assert_eq!(retry_time(Timestamp::MAX, 8, 0.5, None), Timestamp::MAX);
    }
}
