//! One hub: channels, subscription tokens, subscribe/unsubscribe/publish,
//! and the rules of delivering one message to a channel's subscribers.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::memory::{Bus, Member};
use super::redis::{Link, RedisConfig};
use super::{Events, Fault, Host, Refused};

/// Subscribers of one channel, in subscription order: (token, subscriber).
type Subscribers<S> = Vec<(u64, Rc<S>)>;

/// One hub. Shared by its owner's handle, its `Bus` (while open) and, for
/// Redis, the two connection tasks.
pub struct Hub<E: Events> {
    /// Its entry in the bus.
    id: u64,
    bus: Rc<Bus>,
    pub(super) host: Rc<dyn Host>,
    pub(super) events: E,
    pub(super) channels: RefCell<HashMap<Vec<u8>, Subscribers<E::Subscriber>>>,
    /// The channel of every live token.
    tokens: RefCell<HashMap<u64, Vec<u8>>>,
    next_token: Cell<u64>,
    closed: Cell<bool>,
    /// The Redis side; `None` for the memory backend.
    pub(super) redis: Option<Link>,
}

impl<E: Events> Hub<E> {
    /// A hub of the memory backend: it reaches every memory hub of `bus`.
    pub fn memory(bus: &Rc<Bus>, host: Rc<dyn Host>, events: E) -> Rc<Self> {
        Self::open(bus, host, events, None)
    }

    /// A hub of the Redis backend; its connections start on the loop's next turn.
    pub fn redis(bus: &Rc<Bus>, host: Rc<dyn Host>, events: E, config: RedisConfig) -> Rc<Self> {
        let hub = Self::open(bus, host, events, Some(Link::new(config)));
        super::redis::start(&hub);
        hub
    }

    fn open(bus: &Rc<Bus>, host: Rc<dyn Host>, events: E, redis: Option<Link>) -> Rc<Self> {
        let hub = Rc::new(Hub {
            id: bus.fresh_id(),
            bus: bus.clone(),
            host,
            events,
            channels: RefCell::new(HashMap::new()),
            tokens: RefCell::new(HashMap::new()),
            next_token: Cell::new(1),
            closed: Cell::new(false),
            redis,
        });
        bus.add(hub.id, hub.clone());
        hub
    }

    /// The Redis server's URL without its password; `None` for memory.
    pub fn redis_url(&self) -> Option<&str> {
        self.redis.as_ref().map(|link| link.url())
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Memory hubs always are; Redis hubs while both connections are up.
    pub fn is_connected(&self) -> bool {
        match &self.redis {
            _ if self.closed.get() => false,
            None => true,
            Some(link) => link.is_up(),
        }
    }

    /// The channels with at least one subscriber here, sorted.
    pub fn channels(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<Vec<u8>> = self.channels.borrow().keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds a subscriber of `channel`; returns its token (1, 2, ...).
    /// The caller refuses this on a closed hub.
    pub fn subscribe(&self, channel: Vec<u8>, subscriber: E::Subscriber) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let mut channels = self.channels.borrow_mut();
        let subs = channels.entry(channel.clone()).or_default();
        let first = subs.is_empty();
        subs.push((token, Rc::new(subscriber)));
        drop(channels);
        self.tokens.borrow_mut().insert(token, channel);
        if first {
            self.channels_changed();
        }
        token
    }

    /// Removes one subscription; false if the token is not live.
    pub fn unsubscribe_token(&self, token: u64) -> bool {
        let Some(channel) = self.tokens.borrow_mut().remove(&token) else { return false };
        let mut channels = self.channels.borrow_mut();
        let mut removed = None;
        let emptied = match channels.get_mut(&channel) {
            Some(subs) => {
                if let Some(i) = subs.iter().position(|(t, _)| *t == token) {
                    removed = Some(subs.remove(i));
                }
                subs.is_empty()
            }
            None => false,
        };
        if emptied {
            channels.remove(&channel);
        }
        drop(channels);
        // Dropped outside the borrow: a subscriber's drop may reach the hub.
        drop(removed);
        if emptied {
            self.channels_changed();
        }
        true
    }

    /// Removes every subscriber of `channel`; returns how many there were.
    pub fn unsubscribe_channel(&self, channel: &[u8]) -> usize {
        let removed = self.channels.borrow_mut().remove(channel);
        let Some(subs) = removed else { return 0 };
        let mut tokens = self.tokens.borrow_mut();
        for (t, _) in &subs {
            tokens.remove(t);
        }
        drop(tokens);
        self.channels_changed();
        subs.len()
    }

    /// Sends `message` to every subscriber of `channel` on every hub of the
    /// backend (this one included), never from inside this call.
    pub fn publish(&self, channel: Vec<u8>, message: Vec<u8>) -> Result<(), Refused> {
        if self.closed.get() {
            return Err(Refused { kind: Fault::Closed, message: "the hub is closed".into() });
        }
        match &self.redis {
            None => {
                self.bus.publish(&*self.host, channel, message);
                Ok(())
            }
            Some(link) => link.enqueue(channel, message),
        }
    }

    /// Ends the hub: its subscribers are released, its Redis connections
    /// (if any) end, and it no longer keeps the loop going. Idempotent.
    pub fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        // Released outside the borrow: a subscriber's drop may reach the hub.
        let channels = std::mem::take(&mut *self.channels.borrow_mut());
        self.tokens.borrow_mut().clear();
        drop(channels);
        if let Some(link) = &self.redis {
            link.shut_down();
        }
        self.bus.remove(self.id);
    }

    fn channels_changed(&self) {
        if let Some(link) = &self.redis {
            link.channels_changed();
        }
    }

    /// Hands one message to the current subscribers of `channel`.
    pub(super) fn deliver(&self, channel: &[u8], message: &[u8]) {
        let subs = match self.channels.borrow().get(channel) {
            Some(subs) => subs.clone(),
            None => return,
        };
        let to = Recipients { subs: subs.into_iter(), tokens: &self.tokens, closed: &self.closed };
        self.events.deliver(channel, message, to);
    }

    /// Reports a failure, unless the hub is closed.
    pub(super) fn report(&self, kind: Fault, message: &str) {
        if !self.closed.get() {
            self.events.error(kind, message);
        }
    }

    /// Reports that both connections are up, unless the hub is closed.
    pub(super) fn report_connected(&self) {
        if !self.closed.get() {
            self.events.connected();
        }
    }
}

impl<E: Events> Member for Hub<E> {
    fn deliver_published(&self, channel: &[u8], message: &[u8]) {
        if self.redis.is_none() {
            self.deliver(channel, message);
        }
    }

    fn close(&self) {
        Hub::close(self);
    }
}

/// The subscribers one message is for, in subscription order. Each is
/// checked as it is reached: one unsubscribed by an earlier subscriber
/// (for this same message) is skipped, and none comes once the hub is
/// closed.
pub struct Recipients<'a, S> {
    subs: std::vec::IntoIter<(u64, Rc<S>)>,
    tokens: &'a RefCell<HashMap<u64, Vec<u8>>>,
    closed: &'a Cell<bool>,
}

impl<S> Iterator for Recipients<'_, S> {
    type Item = Rc<S>;

    fn next(&mut self) -> Option<Rc<S>> {
        loop {
            if self.closed.get() {
                return None;
            }
            let (token, subscriber) = self.subs.next()?;
            if self.tokens.borrow().contains_key(&token) {
                return Some(subscriber);
            }
        }
    }
}
