//! The memory backend and the list of open hubs: a `Bus` is what the hubs
//! of one loop thread share. A memory publish is queued and delivered on
//! the next loop turn to every memory hub, never from inside `publish`;
//! what subscribers publish during a turn waits for the turn after.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use super::Host;

/// What the bus needs of a hub, whatever its `Events`.
pub(super) trait Member {
    /// A memory-backend message (Redis hubs ignore it).
    fn deliver_published(&self, channel: &[u8], message: &[u8]);
    fn close(&self);
}

/// The hubs of one loop thread and the memory backend's queue.
#[derive(Default)]
pub struct Bus {
    /// Every open hub, in creation order, by id.
    open: RefCell<Vec<(u64, Rc<dyn Member>)>>,
    next_id: Cell<u64>,
    /// Messages waiting for the next loop turn.
    queue: RefCell<VecDeque<(Vec<u8>, Vec<u8>)>>,
    /// A turn is spawned and has not started yet.
    scheduled: Cell<bool>,
}

impl Bus {
    /// Closes every open hub (the graceful stop of a worker process uses it).
    pub fn close_all(&self) {
        let hubs: Vec<Rc<dyn Member>> = self.open.borrow().iter().map(|(_, h)| h.clone()).collect();
        for hub in hubs {
            hub.close();
        }
    }

    pub(super) fn fresh_id(&self) -> u64 {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }

    pub(super) fn add(&self, id: u64, hub: Rc<dyn Member>) {
        self.open.borrow_mut().push((id, hub));
    }

    pub(super) fn remove(&self, id: u64) {
        let removed: Vec<_> = {
            let mut open = self.open.borrow_mut();
            let (gone, kept) = std::mem::take(&mut *open).into_iter().partition(|(i, _)| *i == id);
            *open = kept;
            gone
        };
        drop(removed);
    }

    /// Queues a memory-backend message; the first one queued since the
    /// last turn schedules the next turn, which keeps the loop going.
    pub(super) fn publish(self: &Rc<Self>, host: &dyn Host, channel: Vec<u8>, message: Vec<u8>) {
        self.queue.borrow_mut().push_back((channel, message));
        if !self.scheduled.replace(true) {
            let guard = host.hold();
            let bus = self.clone();
            host.spawn(Box::pin(async move {
                bus.deliver_turn();
                drop(guard);
            }));
        }
    }

    /// One loop turn: delivers what was published before it started.
    fn deliver_turn(&self) {
        let batch = std::mem::take(&mut *self.queue.borrow_mut());
        self.scheduled.set(false);
        for (channel, message) in batch {
            // Hubs opened or closed by a subscriber count from the next message on.
            let hubs: Vec<Rc<dyn Member>> = self.open.borrow().iter().map(|(_, h)| h.clone()).collect();
            for hub in hubs {
                hub.deliver_published(&channel, &message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The memory backend's delivery rules, with a subscriber that records
    //! what it gets (no Lua).

    use std::any::Any;
    use std::cell::{Cell, RefCell};
    use std::future::Future;
    use std::pin::Pin;
    use std::rc::Rc;

    use tokio::task::{JoinHandle, LocalSet};

    use super::super::{Events, Fault, Host, Hub, Recipients};
    use super::Bus;

    /// Spawns on the test's `LocalSet`; counts spawned tasks and live guards.
    #[derive(Default)]
    struct TestHost {
        spawned: Cell<usize>,
        held: Rc<Cell<usize>>,
    }

    struct Guard(Rc<Cell<usize>>);

    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.set(self.0.get() - 1);
        }
    }

    impl Host for TestHost {
        fn spawn(&self, task: Pin<Box<dyn Future<Output = ()>>>) -> JoinHandle<()> {
            self.spawned.set(self.spawned.get() + 1);
            tokio::task::spawn_local(task)
        }

        fn hold(&self) -> Box<dyn Any> {
            self.held.set(self.held.get() + 1);
            Box::new(Guard(self.held.clone()))
        }
    }

    /// A subscriber: called with (channel, message).
    type Subscriber = Box<dyn Fn(&[u8], &[u8])>;

    struct TestEvents;

    impl Events for TestEvents {
        type Subscriber = Subscriber;

        fn deliver(&self, channel: &[u8], message: &[u8], to: Recipients<'_, Subscriber>) {
            for subscriber in to {
                subscriber(channel, message);
            }
        }

        fn error(&self, kind: Fault, message: &str) {
            panic!("a memory hub reported {kind:?}: {message}");
        }

        fn connected(&self) {}

        fn attached(&self) -> bool {
            true
        }
    }

    type Log = Rc<RefCell<Vec<String>>>;

    /// A subscriber that logs "<name>:<channel>=<message>".
    fn logger(log: &Log, name: &str) -> Subscriber {
        let (log, name) = (log.clone(), name.to_string());
        Box::new(move |c, m| {
            log.borrow_mut().push(format!(
                "{name}:{}={}",
                String::from_utf8_lossy(c),
                String::from_utf8_lossy(m)
            ))
        })
    }

    fn logged(log: &Log) -> Vec<String> {
        log.borrow().clone()
    }

    /// Lets the loop run until no delivery is pending (bounded).
    async fn settle(host: &TestHost) {
        for _ in 0..100 {
            if host.held.get() == 0 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("deliveries still pending after 100 turns");
    }

    struct Setup {
        bus: Rc<Bus>,
        host: Rc<TestHost>,
        log: Log,
    }

    impl Setup {
        fn new() -> Self {
            Setup { bus: Rc::default(), host: Rc::default(), log: Log::default() }
        }

        fn hub(&self) -> Rc<Hub<TestEvents>> {
            Hub::memory(&self.bus, self.host.clone(), TestEvents)
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn delivers_in_order_on_a_later_turn_to_every_memory_hub() {
        LocalSet::new()
            .run_until(async {
                let s = Setup::new();
                let (h1, h2) = (s.hub(), s.hub());
                h1.subscribe(b"room".to_vec(), logger(&s.log, "a"));
                h2.subscribe(b"room".to_vec(), logger(&s.log, "b"));
                h1.subscribe(b"room".to_vec(), logger(&s.log, "c"));
                h2.subscribe(b"other".to_vec(), logger(&s.log, "o"));
                h1.publish(b"room".to_vec(), b"one".to_vec()).unwrap();
                h2.publish(b"room".to_vec(), b"two".to_vec()).unwrap();
                assert!(logged(&s.log).is_empty(), "delivered from inside publish");
                assert_eq!((s.host.spawned.get(), s.host.held.get()), (1, 1), "one turn for both");
                settle(&s.host).await;
                assert_eq!(
                    logged(&s.log),
                    ["a:room=one", "c:room=one", "b:room=one", "a:room=two", "c:room=two", "b:room=two"]
                );
                assert_eq!(h1.channels(), [b"room".to_vec()]);
                assert_eq!(h2.channels(), [b"other".to_vec(), b"room".to_vec()]);
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unsubscribed_by_token_or_channel_get_nothing() {
        LocalSet::new()
            .run_until(async {
                let s = Setup::new();
                let hub = s.hub();
                let t1 = hub.subscribe(b"c".to_vec(), logger(&s.log, "1"));
                hub.subscribe(b"c".to_vec(), logger(&s.log, "2"));
                hub.subscribe(b"d".to_vec(), logger(&s.log, "d"));
                assert!(hub.unsubscribe_token(t1));
                assert!(!hub.unsubscribe_token(t1), "a token is removed once");
                hub.publish(b"c".to_vec(), b"x".to_vec()).unwrap();
                settle(&s.host).await;
                assert_eq!(logged(&s.log), ["2:c=x"]);
                assert_eq!(hub.unsubscribe_channel(b"c"), 1);
                assert_eq!(hub.unsubscribe_channel(b"c"), 0);
                hub.publish(b"c".to_vec(), b"y".to_vec()).unwrap();
                // Published, then unsubscribed before the turn: not delivered.
                hub.publish(b"d".to_vec(), b"z".to_vec()).unwrap();
                hub.unsubscribe_channel(b"d");
                settle(&s.host).await;
                assert_eq!(logged(&s.log), ["2:c=x"]);
                assert!(hub.channels().is_empty());
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_subscriber_unsubscribed_by_an_earlier_one_is_skipped() {
        LocalSet::new()
            .run_until(async {
                let s = Setup::new();
                let hub = s.hub();
                let second = Rc::new(Cell::new(0));
                let (h, t2) = (Rc::downgrade(&hub), second.clone());
                let log = s.log.clone();
                hub.subscribe(
                    b"c".to_vec(),
                    Box::new(move |_, m| {
                        log.borrow_mut().push(format!("1:{}", String::from_utf8_lossy(m)));
                        h.upgrade().unwrap().unsubscribe_token(t2.get());
                    }),
                );
                second.set(hub.subscribe(b"c".to_vec(), logger(&s.log, "2")));
                hub.publish(b"c".to_vec(), b"x".to_vec()).unwrap();
                settle(&s.host).await;
                assert_eq!(logged(&s.log), ["1:x"]);
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn what_a_subscriber_publishes_waits_for_the_next_turn() {
        LocalSet::new()
            .run_until(async {
                let s = Setup::new();
                let hub = s.hub();
                let (h, log, host) = (Rc::downgrade(&hub), s.log.clone(), s.host.clone());
                hub.subscribe(
                    b"a".to_vec(),
                    Box::new(move |_, m| {
                        log.borrow_mut().push(format!("a:{}", String::from_utf8_lossy(m)));
                        let hub = h.upgrade().unwrap();
                        hub.publish(b"b".to_vec(), [m, b"!"].concat()).unwrap();
                        // Queued for a turn of its own, not delivered within this one.
                        log.borrow_mut().push(format!("a-done, turns spawned: {}", host.spawned.get()));
                    }),
                );
                hub.subscribe(b"b".to_vec(), logger(&s.log, "b"));
                hub.publish(b"a".to_vec(), b"x".to_vec()).unwrap();
                hub.publish(b"a".to_vec(), b"y".to_vec()).unwrap();
                settle(&s.host).await;
                assert_eq!(
                    logged(&s.log),
                    [
                        "a:x",
                        "a-done, turns spawned: 2",
                        "a:y",
                        "a-done, turns spawned: 2",
                        "b:b=x!",
                        "b:b=y!"
                    ]
                );
                assert_eq!(s.host.spawned.get(), 2);
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_hub_refuses_publishes_and_gets_nothing_more() {
        LocalSet::new()
            .run_until(async {
                let s = Setup::new();
                let (open, closing) = (s.hub(), s.hub());
                open.subscribe(b"c".to_vec(), logger(&s.log, "open"));
                closing.subscribe(b"c".to_vec(), logger(&s.log, "closing"));
                open.publish(b"c".to_vec(), b"x".to_vec()).unwrap();
                closing.close();
                closing.close();
                assert!(closing.is_closed() && !closing.is_connected());
                let refused = closing.publish(b"c".to_vec(), b"y".to_vec()).unwrap_err();
                assert_eq!(refused.kind, Fault::Closed);
                assert!(closing.channels().is_empty());
                settle(&s.host).await;
                assert_eq!(logged(&s.log), ["open:c=x"]);
                s.bus.close_all();
                assert!(open.is_closed());
            })
            .await;
    }
}
