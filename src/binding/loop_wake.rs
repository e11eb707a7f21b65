//! The wake-up of the loop's driving future (`Loop::drive` waits on it
//! for "look again at whether to return"): tokio's `Notify`
//! `notify_one`/`notified` for one thread, without its atomics and list
//! of waiters. The `LocalSet` polls the driving future every time any of
//! its tasks is woken, so with one message per wake-up (one connection,
//! one message in flight) a `Notified` poll was ~230 instructions of every
//! message; this one is a flag read.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

#[derive(Default)]
pub struct LoopWake {
    /// A wake-up nobody has taken yet (as `Notify` keeps one permit).
    permit: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LoopWake {
    /// Wakes the waiting `notified`, or the next one to wait.
    pub fn notify_one(&self) {
        self.permit.set(true);
        let waker = self.waker.borrow_mut().take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Completes once `notify_one` was called (before or while waiting).
    pub async fn notified(&self) {
        poll_fn(|cx| {
            if self.permit.replace(false) {
                return Poll::Ready(());
            }
            let mut waker = self.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_before_waiting_is_kept_for_the_next_wait() {
        let wake = LoopWake::default();
        wake.notify_one();
        wake.notified().await;
        // Taken: the next wait waits.
        let pending = tokio::time::timeout(std::time::Duration::from_millis(20), wake.notified()).await;
        assert!(pending.is_err());
    }

    #[tokio::test]
    async fn a_notification_wakes_the_waiting_task() {
        let wake = std::rc::Rc::new(LoopWake::default());
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let waiter = wake.clone();
                let task = tokio::task::spawn_local(async move { waiter.notified().await });
                tokio::task::yield_now().await;
                wake.notify_one();
                tokio::time::timeout(std::time::Duration::from_secs(5), task)
                    .await
                    .expect("woken")
                    .expect("task ran");
            })
            .await;
    }
}
