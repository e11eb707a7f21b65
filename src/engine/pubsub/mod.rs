//! Publish/subscribe hubs, without Lua (the binding, `binding/pubsub.rs`,
//! puts `core.pubsub` on top).
//!
//! A hub maps channels to subscribers. `publish(channel, message)` reaches
//! every subscriber of that channel on every hub of the same backend: for
//! `memory`, every memory hub of the same `Bus` (one per loop thread); for
//! `redis`, every hub on the same Redis server, in any process on any
//! machine.
//!
//! A hub reports through `Events`: messages for its subscribers (one call
//! per message, with the subscribers to reach, so the receiver can prepare
//! the message once), failures and (re)connections. Its tasks run on the
//! loop through `Host`. The memory backend (`memory.rs`) delivers on the
//! next loop turn, never from inside `publish`. The Redis backend
//! (`redis.rs`) keeps two connections per hub (one subscribed, one
//! publishing), reconnects with jittered exponential backoff, resubscribes
//! after every reconnect, and reports every failure: nothing here ever ends
//! the process. Redis pub/sub is at-most-once: what is published while a
//! connection is down is lost (docs/scale-out.md says exactly what).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use tokio::task::JoinHandle;

mod hub;
mod memory;
mod redis;

pub use self::redis::RedisConfig;
pub use hub::{Hub, Recipients};
pub use memory::Bus;

/// What a hub reports to whoever owns it. Every call happens on the loop
/// thread, never from inside `publish`, `subscribe` or `unsubscribe`.
pub trait Events: 'static {
    /// What one subscription holds (the binding: a Lua function).
    type Subscriber: 'static;
    /// One message for `to`: the channel's subscribers, in subscription
    /// order, as they are when each is reached (one unsubscribed by an
    /// earlier one is skipped; none once the hub is closed).
    fn deliver(&self, channel: &[u8], message: &[u8], to: Recipients<'_, Self::Subscriber>);
    /// A failure of the Redis backend (`Fault::Connect`, `Subscribe`,
    /// `Disconnected` or `Publish`); the hub goes on trying.
    fn error(&self, kind: Fault, message: &str);
    /// Both Redis connections are up, after the first connect or a reconnect.
    fn connected(&self);
    /// Whether the receiver is still there; the Redis tasks stop when it is not.
    fn attached(&self) -> bool;
}

/// The loop a hub's work runs on.
pub trait Host {
    /// Runs `task` on the loop, from its next turn on.
    fn spawn(&self, task: Pin<Box<dyn Future<Output = ()>>>) -> JoinHandle<()>;
    /// Keeps the loop running while the returned guard lives (pending
    /// memory deliveries, an open Redis hub).
    fn hold(&self) -> Box<dyn Any>;
}

/// The kinds of failure a hub reports or a publish is refused with; their
/// names are the Lua API's `kind` strings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// A Redis connection could not be made.
    Connect,
    /// SUBSCRIBE/UNSUBSCRIBE failed on a fresh connection.
    Subscribe,
    /// A Redis connection was lost (or, for a publish, is not up).
    Disconnected,
    /// Redis refused, or may not have received, published messages.
    Publish,
    /// The hub is closed.
    Closed,
    /// More than `max_pending` bytes would wait for Redis.
    TooBig,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Connect => "connect",
            Fault::Subscribe => "subscribe",
            Fault::Disconnected => "disconnected",
            Fault::Publish => "publish",
            Fault::Closed => "closed",
            Fault::TooBig => "too_big",
        }
    }
}

/// Why a publish was refused.
#[derive(Debug)]
pub struct Refused {
    pub kind: Fault,
    pub message: String,
}
