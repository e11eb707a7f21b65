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
use std::time::Duration;

use crate::engine::server::Requests;

/// How long after an upgrade the trim runs: a burst of handshakes is
/// usually over by then, and trims stay rare under steady churn.
const DELAY: Duration = Duration::from_secs(1);

thread_local! {
    static PENDING: Cell<bool> = const { Cell::new(false) };
}

/// Called after each upgrade: schedules a trim unless one is pending. The
/// task does not keep a loop's `run()` going; dropped unrun with its loop,
/// it clears the pending mark all the same.
pub fn after_upgrade(requests: &dyn Requests) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || PENDING.with(|p| p.replace(true)) {
        return;
    }
    let pending = PendingMark;
    requests.spawn_background(Box::pin(async move {
        tokio::time::sleep(DELAY).await;
        drop(pending);
        release_free_memory();
    }));
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
    use std::cell::RefCell;

    use super::*;
    use crate::engine::server::{PendingRequest, Task};

    /// Keeps what it is asked to run, to run or drop it by hand.
    #[derive(Default)]
    struct Tasks(RefCell<Vec<Task>>);

    impl Requests for Tasks {
        fn request(&self, _req: PendingRequest) {}
        fn spawn(&self, task: Task) {
            self.0.borrow_mut().push(task);
        }
    }

    #[test]
    fn one_trim_is_pending_at_a_time_and_a_dropped_one_lets_the_next_be_scheduled() {
        let tasks = Tasks::default();
        after_upgrade(&tasks);
        after_upgrade(&tasks);
        let expected = usize::from(cfg!(all(target_os = "linux", target_env = "gnu")));
        assert_eq!(tasks.0.borrow().len(), expected);
        tasks.0.borrow_mut().clear(); // the loop went away before it ran
        after_upgrade(&tasks);
        assert_eq!(tasks.0.borrow().len(), expected);
    }

    #[tokio::test]
    async fn the_trim_runs_after_the_delay_and_clears_the_mark() {
        let tasks = Tasks::default();
        after_upgrade(&tasks);
        let Some(task) = tasks.0.borrow_mut().pop() else { return }; // not glibc
        let started = std::time::Instant::now();
        task.await;
        assert!(started.elapsed() >= DELAY);
        assert!(!PENDING.with(Cell::get));
        after_upgrade(&tasks);
        assert_eq!(tasks.0.borrow().len(), 1);
    }
}
