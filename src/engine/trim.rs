//! Gives memory freed after a burst of handshakes back to the system.
//!
//! A handshake allocates several kilobytes (hyper's read buffer, the
//! request head, the 101 answer) that are freed once the connection is
//! upgraded. Among the small allocations of the connections that stay
//! open, glibc keeps those freed pages resident: RSS grows by more per idle
//! connection than the connections hold. A second after the first upgrade
//! of a burst, `malloc_trim(0)` hands the free pages back (glibc releases
//! free ranges inside the heap as well as at its top). At most one trim is
//! pending at a time, so a steady stream of handshakes trims about once a
//! second; nothing on a connection's per-message path calls it.

use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

/// How long after an upgrade the trim runs: a burst of handshakes is
/// usually over by then, and trims stay rare under steady churn.
const DELAY: Duration = Duration::from_secs(1);

thread_local! {
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Called after each upgrade: the trim to run in the background (it must
/// not keep a loop's `run()` going), unless one is pending. Dropped unrun
/// with its loop, it clears the pending mark all the same.
pub fn after_upgrade() -> Option<impl Future<Output = ()>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || PENDING.with(|p| p.replace(true)) {
        return None;
    }
    let pending = PendingMark;
    Some(async move {
        tokio::time::sleep(DELAY).await;
        drop(pending);
        release_free_memory();
    })
}

/// Clears the pending mark when the trim ran or its task was dropped.
struct PendingMark;

impl Drop for PendingMark {
    fn drop(&mut self) {
        PENDING.with(|p| p.set(false));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks and releases glibc's free lists; it
    // takes the allocator's locks itself and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;

    const GLIBC: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

    #[test]
    fn one_trim_is_pending_at_a_time_and_a_dropped_one_lets_the_next_be_scheduled() {
        let first = after_upgrade();
        assert_eq!(first.is_some(), GLIBC);
        assert!(after_upgrade().is_none());
        drop(first); // the loop went away before it ran
        assert_eq!(after_upgrade().is_some(), GLIBC);
    }

    #[tokio::test]
    async fn the_trim_runs_after_the_delay_and_clears_the_mark() {
        let Some(trim) = after_upgrade() else { return }; // not glibc
        let started = std::time::Instant::now();
        trim.await;
        assert!(started.elapsed() >= DELAY);
        assert!(!PENDING.with(Cell::get));
    }
}
