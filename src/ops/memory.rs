//! Keeping the heap close to what the operator actually holds (glibc's malloc only).
//!
//! The operator's memory comes in bursts: a full list decodes every object while the previous
//! cache still exists, and each list is followed by a reconcile of every object. Two glibc
//! defaults make the resident set follow those bursts rather than the cache:
//! - one arena per thread (up to 8 per CPU): an object decoded on one worker thread and its
//!   temporaries freed on another leave free memory that only the first thread's arena can
//!   reuse. One arena's lock did not slow the binary down where it is busiest (its initial list
//!   of 10,000 synced in 27 s, against 29 s before), and at 3,000 credentials heap and stacks
//!   took about 16 MiB instead of 19 (docs/performance.md);
//! - freed memory is given back only from the top of each heap. `malloc_trim` hands every free
//!   page in every arena back to the kernel.

use std::future::Future;
use std::time::Duration;

use tracing::debug;

/// How often freed memory is returned: it bounds how long a burst's garbage stays resident.
/// Trimming walks the arena's free chunks, so its cost follows how much is free, not the size of
/// the cache.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Makes every thread allocate from one malloc arena. Call before any thread is started.
pub fn use_one_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers and only changes glibc's allocator settings, under
        // its own lock; M_ARENA_MAX limits arenas created from now on.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns the heap's free pages to the operating system; false where there is nothing to do
/// (allocators other than glibc's return memory on their own schedule).
pub fn release_free_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointers and only operates on glibc's own allocator
        // state, under that allocator's locks; it is safe to call from any thread at any time.
        #[allow(unsafe_code)]
        let released = unsafe { libc::malloc_trim(0) };
        released == 1
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Calls [`release_free_heap`] every [`TRIM_INTERVAL`] until `shutdown` resolves.
pub async fn release_free_heap_periodically(shutdown: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(TRIM_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {
                let started = std::time::Instant::now();
                let released = release_free_heap();
                debug!(released, micros = started.elapsed().as_micros() as u64, "returned free heap memory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_freed_memory_on_glibc() {
        // Many small blocks freed together leave whole free pages behind the heap's top, which
        // only malloc_trim gives back. (The return value only says whether any was released, so
        // this test pins that the call is made, not how much it frees.)
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 512]).collect();
        let keep_last = blocks.last().cloned();
        drop(blocks);
        let released = release_free_heap();
        assert_eq!(released, cfg!(all(target_os = "linux", target_env = "gnu")));
        assert!(keep_last.is_some());
    }
}
