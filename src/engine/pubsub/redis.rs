//! The Redis backend: per hub, a publishing connection (queued messages
//! sent in pipelined batches) and a subscribed one (the hub's channels,
//! kept in line with its subscribers), each pinging when idle and
//! reconnecting with jittered exponential backoff. Failures are reported
//! through the hub's `Events`, never fatal.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use ::redis as client;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{Events, Fault, Hub, Refused};
use crate::engine::random;

/// Most messages (and bytes) sent to Redis in one pipelined batch.
const BATCH_MESSAGES: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
/// Most channels named in one SUBSCRIBE/UNSUBSCRIBE.
const CHANNELS_PER_COMMAND: usize = 1000;
/// "Never", for a ping interval of none.
const NEVER: Duration = Duration::from_secs(3600 * 24 * 365);

/// How a Redis hub connects; `new` checks the URL, the fields have the
/// documented defaults (docs/scale-out.md).
pub struct RedisConfig {
    client: client::Client,
    /// The URL without its password, for messages.
    url: String,
    /// For connecting, each command, and each ping.
    pub timeout: Duration,
    /// Ping an idle connection this often; `None`: never.
    pub ping_interval: Option<Duration>,
    /// The first reconnect delay, doubled per failed attempt up to `delay_max`.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Most bytes (channels and messages) waiting to be published.
    pub max_pending: usize,
}

impl RedisConfig {
    pub const DEFAULT_URL: &'static str = "redis://127.0.0.1:6379";

    /// A configuration for the server at `url`, or why the URL is unusable.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = client::Client::open(url).map_err(|e| format!("{e}: {}", redacted(url)))?;
        Ok(RedisConfig {
            client,
            url: redacted(url),
            timeout: Duration::from_secs(5),
            ping_interval: Some(Duration::from_secs(5)),
            delay_min: Duration::from_millis(100),
            delay_max: Duration::from_secs(2),
            max_pending: 64 << 20,
        })
    }
}

/// The URL without its password: the userinfo's (`redis://:pw@h`) and a
/// `pass`/`password` query parameter's (`redis+unix:///s?pass=pw`), found
/// in the text as written, so a URL that does not parse is masked too.
fn redacted(url: &str) -> String {
    let mut out = url.trim_end_matches('/').to_string();
    // The userinfo ends at the last '@' (a password may hold '/', '?' or
    // '#' unescaped, which a URL then does not parse with; an '@' in a
    // Redis URL's path or query is not expected).
    if let Some(start) = out.find("://").map(|i| i + 3) {
        if let Some(at) = out[start..].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    let Some(query) = out.find('?') else { return out };
    let mut masked = out[..=query].to_string();
    let fields: Vec<String> = out[query + 1..]
        .split('&')
        .map(|field| match field.split_once('=') {
            Some((name, _)) if name == "pass" || name == "password" => format!("{name}=***"),
            _ => field.to_string(),
        })
        .collect();
    masked.push_str(&fields.join("&"));
    masked
}

/// The Redis side of a hub.
pub(super) struct Link {
    config: RedisConfig,
    /// Messages waiting for the publishing connection, and their bytes.
    queue: RefCell<VecDeque<(Vec<u8>, Vec<u8>)>>,
    queued_bytes: Cell<usize>,
    queued: Notify,
    pub_up: Cell<bool>,
    sub_up: Cell<bool>,
    /// Why the publishing connection is down (for publish's refusal).
    pub_error: RefCell<String>,
    /// Woken when the set of subscribed channels changes.
    dirty: Notify,
    /// Woken when either connection (re)connects.
    reconnected: Notify,
    /// Asks the publishing connection to ping now (the subscribing one was lost).
    check: Notify,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// An open Redis hub keeps the loop going, as a listener does.
    alive: RefCell<Option<Box<dyn Any>>>,
}

/// Starts a new Redis hub's two connections.
pub(super) fn start<E: Events>(hub: &Rc<Hub<E>>) {
    let Some(link) = &hub.redis else { return };
    *link.alive.borrow_mut() = Some(hub.host.hold());
    let publisher = hub.host.spawn(Box::pin(run_publisher(hub.clone())));
    let subscriber = hub.host.spawn(Box::pin(run_subscriber(hub.clone())));
    link.tasks.borrow_mut().extend([publisher, subscriber]);
}

impl Link {
    pub(super) fn new(config: RedisConfig) -> Self {
        Link {
            config,
            queue: RefCell::new(VecDeque::new()),
            queued_bytes: Cell::new(0),
            queued: Notify::new(),
            pub_up: Cell::new(false),
            sub_up: Cell::new(false),
            pub_error: RefCell::new(String::new()),
            dirty: Notify::new(),
            reconnected: Notify::new(),
            check: Notify::new(),
            tasks: RefCell::new(Vec::new()),
            alive: RefCell::new(None),
        }
    }

    pub(super) fn url(&self) -> &str {
        &self.config.url
    }

    pub(super) fn is_up(&self) -> bool {
        self.pub_up.get() && self.sub_up.get()
    }

    pub(super) fn channels_changed(&self) {
        self.dirty.notify_one();
    }

    /// Queues a message for the publishing connection.
    pub(super) fn enqueue(&self, channel: Vec<u8>, message: Vec<u8>) -> Result<(), Refused> {
        if !self.pub_up.get() {
            let why = self.pub_error.borrow().clone();
            let why = if why.is_empty() { "connecting".to_string() } else { why };
            return Err(Refused {
                kind: Fault::Disconnected,
                message: format!("not connected to Redis at {}: {why}", self.config.url),
            });
        }
        let size = channel.len() + message.len();
        if self.queued_bytes.get() + size > self.config.max_pending {
            return Err(Refused {
                kind: Fault::TooBig,
                message: format!(
                    "more than max_pending ({} bytes) waiting for Redis",
                    self.config.max_pending
                ),
            });
        }
        self.queued_bytes.set(self.queued_bytes.get() + size);
        let was_empty = self.queue.borrow().is_empty();
        self.queue.borrow_mut().push_back((channel, message));
        if was_empty {
            self.queued.notify_one();
        }
        Ok(())
    }

    /// Ends both connections and lets the loop go.
    pub(super) fn shut_down(&self) {
        for task in self.tasks.borrow_mut().drain(..) {
            task.abort();
        }
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        self.pub_up.set(false);
        self.sub_up.set(false);
        let alive = self.alive.borrow_mut().take();
        drop(alive);
    }

    /// The delay before reconnect attempt `attempt` (1, 2, ...): doubling
    /// from `delay_min` up to `delay_max`, with ±20% jitter so that many
    /// processes do not reconnect in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let c = &self.config;
        let base = c.delay_min.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let base = base.min(c.delay_max.as_secs_f64());
        Duration::from_secs_f64(base * (0.8 + 0.4 * random::fraction()))
    }

    /// Waits before a reconnect attempt; cut short when the hub's other
    /// connection gets through (Redis is back: no need to wait longer).
    async fn pause(&self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.reconnected.notified() => {}
        }
    }

    /// Reports a failed connection attempt, then waits before the next.
    async fn connect_failed<E: Events>(&self, hub: &Hub<E>, role: &str, why: &str, failures: u32) {
        let delay = self.backoff(failures);
        hub.report(
            Fault::Connect,
            &format!(
                "cannot connect to Redis at {} ({role}): {why} ({failures} failed attempt{}, next in {:.1} s)",
                self.config.url,
                if failures == 1 { "" } else { "s" },
                delay.as_secs_f64()
            ),
        );
        self.pause(delay).await;
    }

    fn take_batch(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut queue = self.queue.borrow_mut();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some((c, m)) = queue.pop_front() {
            bytes += c.len() + m.len();
            batch.push((c, m));
            if batch.len() >= BATCH_MESSAGES || bytes >= BATCH_BYTES {
                break;
            }
        }
        batch
    }

    fn release(&self, batch: &[(Vec<u8>, Vec<u8>)]) {
        let bytes: usize = batch.iter().map(|(c, m)| c.len() + m.len()).sum();
        self.queued_bytes.set(self.queued_bytes.get().saturating_sub(bytes));
    }

    /// Drops every queued message; returns how many there were.
    fn drop_queue(&self) -> usize {
        let n = self.queue.borrow().len();
        self.queue.borrow_mut().clear();
        self.queued_bytes.set(0);
        n
    }
}

/// Whether a Redis error means the connection must be replaced (anything
/// but an error reply from a healthy server).
fn connection_lost(e: &client::RedisError) -> bool {
    !matches!(e.kind(), client::ErrorKind::Server(_)) || e.is_unrecoverable_error()
}

/// The publishing connection: connects, sends queued messages in pipelined
/// batches, pings when idle, and starts over when the connection fails.
async fn run_publisher<E: Events>(hub: Rc<Hub<E>>) {
    let Some(link) = hub.redis.as_ref() else { return };
    let timeout = link.config.timeout;
    let mut failures = 0u32;
    loop {
        let config = client::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connected = tokio::time::timeout(
            timeout + Duration::from_millis(100),
            link.config.client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                *link.pub_error.borrow_mut() = why.clone();
                failures += 1;
                link.connect_failed(&hub, "publishing", &why, failures).await;
                continue;
            }
        };
        failures = 0;
        link.reconnected.notify_waiters();
        link.pub_up.set(true);
        let why = publish_until_lost(&hub, link, &mut conn).await;
        link.pub_up.set(false);
        *link.pub_error.borrow_mut() = why.clone();
        let dropped = link.drop_queue();
        let dropped =
            if dropped > 0 { format!("; {dropped} queued messages dropped") } else { String::new() };
        hub.report(
            Fault::Disconnected,
            &format!("lost the publishing connection to Redis at {}: {why}{dropped}", link.config.url),
        );
        // Reconnect after the shortest delay, then back off.
        link.pause(link.backoff(1)).await;
    }
}

/// Publishes queued messages until the connection fails; returns why it did.
async fn publish_until_lost<E: Events>(
    hub: &Hub<E>,
    link: &Link,
    conn: &mut client::aio::MultiplexedConnection,
) -> String {
    let ping_every = link.config.ping_interval.unwrap_or(NEVER);
    loop {
        while link.queue.borrow().is_empty() {
            let ping = tokio::select! {
                _ = link.queued.notified() => false,
                _ = link.check.notified() => true,
                _ = tokio::time::sleep(ping_every) => true,
            };
            if ping {
                if let Err(e) = client::cmd("PING").query_async::<client::Value>(conn).await {
                    return format!("ping failed: {e}");
                }
            }
        }
        let batch = link.take_batch();
        let mut pipe = client::pipe();
        for (channel, message) in &batch {
            pipe.cmd("PUBLISH").arg(channel.as_slice()).arg(message.as_slice()).ignore();
        }
        let result = pipe.query_async::<()>(conn).await;
        link.release(&batch);
        if let Err(e) = result {
            if connection_lost(&e) {
                hub.report(
                    Fault::Publish,
                    &format!("{} messages may not have reached Redis: {e}", batch.len()),
                );
                return e.to_string();
            }
            hub.report(Fault::Publish, &format!("Redis refused {} messages: {e}", batch.len()));
        }
    }
}

/// The subscribed connection: connects, subscribes to every channel that
/// has a subscriber here, delivers messages, follows subscription changes,
/// pings, and starts over when the connection fails.
async fn run_subscriber<E: Events>(hub: Rc<Hub<E>>) {
    let Some(link) = hub.redis.as_ref() else { return };
    let timeout = link.config.timeout;
    let mut failures = 0u32;
    loop {
        let connected = tokio::time::timeout(timeout, link.config.client.get_async_pubsub()).await;
        let (mut sink, mut stream) = match connected {
            Ok(Ok(pubsub)) => pubsub.split(),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                failures += 1;
                link.connect_failed(&hub, "subscribing", &why, failures).await;
                continue;
            }
        };
        let mut on_server: HashSet<Vec<u8>> = HashSet::new();
        if let Err(why) = reconcile(&hub, link, &mut sink, &mut on_server).await {
            hub.report(Fault::Subscribe, &format!("cannot subscribe on Redis at {}: {why}", link.config.url));
            failures += 1;
            link.pause(link.backoff(failures)).await;
            continue;
        }
        failures = 0;
        link.reconnected.notify_waiters();
        link.sub_up.set(true);
        hub.report_connected();
        let ping_every = link.config.ping_interval.unwrap_or(NEVER);
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if !hub.events.attached() {
                            return;
                        }
                        let channel: Vec<u8> = msg.get_channel().unwrap_or_default();
                        hub.deliver(&channel, msg.get_payload_bytes());
                        if hub.is_closed() {
                            return;
                        }
                    }
                    None => break "the connection was closed".to_string(),
                },
                _ = link.dirty.notified() => {
                    if let Err(why) = reconcile(&hub, link, &mut sink, &mut on_server).await {
                        break why;
                    }
                }
                _ = ping.tick() => {
                    match tokio::time::timeout(timeout, sink.ping::<client::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("ping failed: {e}"),
                        Err(_) => break "ping timed out".to_string(),
                    }
                }
            }
        };
        link.sub_up.set(false);
        // The publishing connection probably went the same way: find out
        // before the next publish rather than with it.
        link.check.notify_one();
        hub.report(
            Fault::Disconnected,
            &format!(
                "lost the subscribing connection to Redis at {}: {why}; messages published until it is back are not delivered here",
                link.config.url
            ),
        );
        // Reconnect after the shortest delay, then back off.
        link.pause(link.backoff(1)).await;
    }
}

/// Brings the server's subscriptions in line with the channels that have
/// subscribers here.
async fn reconcile<E: Events>(
    hub: &Hub<E>,
    link: &Link,
    sink: &mut client::aio::PubSubSink,
    on_server: &mut HashSet<Vec<u8>>,
) -> Result<(), String> {
    let timeout = link.config.timeout;
    loop {
        let (add, remove) = {
            let channels = hub.channels.borrow();
            let add: Vec<Vec<u8>> = channels.keys().filter(|c| !on_server.contains(*c)).cloned().collect();
            let remove: Vec<Vec<u8>> =
                on_server.iter().filter(|c| !channels.contains_key(*c)).cloned().collect();
            (add, remove)
        };
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        for chunk in add.chunks(CHANNELS_PER_COMMAND) {
            match tokio::time::timeout(timeout, sink.subscribe(chunk)).await {
                Ok(Ok(())) => on_server.extend(chunk.iter().cloned()),
                Ok(Err(e)) => return Err(format!("SUBSCRIBE failed: {e}")),
                Err(_) => return Err("SUBSCRIBE timed out".into()),
            }
        }
        for chunk in remove.chunks(CHANNELS_PER_COMMAND) {
            match tokio::time::timeout(timeout, sink.unsubscribe(chunk)).await {
                Ok(Ok(())) => {
                    for c in chunk {
                        on_server.remove(c);
                    }
                }
                Ok(Err(e)) => return Err(format!("UNSUBSCRIBE failed: {e}")),
                Err(_) => return Err("UNSUBSCRIBE timed out".into()),
            }
        }
        // Subscribers may have changed while we waited: go round again.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_kept_out_of_messages() {
        let why = RedisConfig::new("http://user:secret@x").err().unwrap();
        assert!(why.ends_with(": http://user:***@x"), "{why}");
        let config = RedisConfig::new("redis://user:secret@127.0.0.1:7000/").unwrap();
        assert_eq!(Link::new(config).url(), "redis://user:***@127.0.0.1:7000");
        assert_eq!(
            redacted("redis+unix:///tmp/r.sock?db=1&pass=secret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        assert_eq!(redacted("redis://:secret@127.0.0.1:99999"), "redis://:***@127.0.0.1:99999");
        assert_eq!(redacted("redis://:secret@[::1:6379"), "redis://:***@[::1:6379");
        assert_eq!(redacted("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redacted("redis://:pa/ss@h:1"), "redis://:***@h:1");
        assert_eq!(redacted("redis://u:pa?ss#x@h/2"), "redis://u:***@h/2");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_a_fifth_of_jitter() {
        let mut config = RedisConfig::new(RedisConfig::DEFAULT_URL).unwrap();
        config.delay_min = Duration::from_millis(100);
        config.delay_max = Duration::from_millis(1000);
        let link = Link::new(config);
        for (attempt, base) in [(1, 100.0), (2, 200.0), (3, 400.0), (4, 800.0), (5, 1000.0), (40, 1000.0)] {
            let delays: Vec<f64> = (0..50).map(|_| link.backoff(attempt).as_secs_f64() * 1000.0).collect();
            for d in &delays {
                assert!(*d >= base * 0.8 && *d <= base * 1.2, "attempt {attempt}: {d} ms");
            }
            // Jittered: not all the same.
            assert!(delays.iter().any(|d| (d - delays[0]).abs() > 1e-6), "attempt {attempt}: no jitter");
        }
    }
}
