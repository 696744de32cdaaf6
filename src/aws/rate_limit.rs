//! Paces the operator's Secrets Manager writes: they share a 50 requests/s account quota with
//! every other writer in the account and region, so the operator keeps well under it.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Spaces writes at least `1 / rate` apart across all credentials (a token bucket of size one).
#[derive(Debug)]
pub struct WriteRateLimiter {
    interval: Option<Duration>,
    next_slot: Mutex<Instant>,
}

impl WriteRateLimiter {
    /// `writes_per_second` of 0 or less disables the limit.
    pub fn new(writes_per_second: f64) -> Self {
        let interval = (writes_per_second > 0.0).then(|| Duration::from_secs_f64(1.0 / writes_per_second));
        Self {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for the next write slot.
    pub async fn acquire(&self) {
        let Some(interval) = self.interval else { return };
        let slot = {
            let mut next = self.next_slot.lock().await;
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_writes_by_the_configured_rate() {
        let limiter = WriteRateLimiter::new(2.0);
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Five slots at 2/s: the first is immediate, the fifth two seconds later.
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_disables_the_limit() {
        let limiter = WriteRateLimiter::new(0.0);
        let start = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        assert_eq!(Instant::now(), start);
    }
}
