//! Publish/subscribe hubs: `turbo_ws.pubsub.new{backend = ...}` (Lua:
//! lua/turbo_ws/pubsub.lua, native: `core.pubsub(options)`).
//!
//! A hub maps channels to Lua subscribers. `publish(channel, message)` reaches
//! every subscriber of that channel on every hub of the same backend: for
//! `memory`, every memory hub of this process; for `redis`, every hub on the
//! same Redis server, in any process on any machine.
//!
//! Delivery always happens on the loop thread, through `callback::call`, one
//! coroutine per subscriber call. The memory backend delivers on the next
//! loop turn, never from inside `publish`. The Redis backend keeps two
//! connections per hub (one subscribed, one publishing), reconnects with
//! jittered exponential backoff, resubscribes after every reconnect, and
//! reports every failure through `on_error(kind, message)`: nothing here ever
//! ends the process. Redis pub/sub is at-most-once: what is published while a
//! connection is down is lost (docs/scale-out.md says exactly what).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt;
use mlua::{Function, IntoLuaMulti, Lua, MultiValue, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::binding::args;
use crate::binding::callback;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::opts::Opts;

/// Most messages (and bytes) sent to Redis in one pipelined batch.
const BATCH_MESSAGES: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
/// Most channels named in one SUBSCRIBE/UNSUBSCRIBE.
const CHANNELS_PER_COMMAND: usize = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Memory,
    Redis,
}

/// Subscribers of one channel, in subscription order: (token, function).
type Subscribers = Vec<(u64, Rc<RegistryKey>)>;

/// One hub. Shared by its Lua handle, the process-wide list of open hubs
/// and, for Redis, the two connection tasks.
pub struct Hub {
    lp: &'static Loop,
    backend: Backend,
    /// Subscribers per channel, in subscription order: (token, function).
    channels: RefCell<HashMap<Vec<u8>, Subscribers>>,
    /// The channel of every live token.
    tokens: RefCell<HashMap<u64, Vec<u8>>>,
    next_token: Cell<u64>,
    closed: Cell<bool>,
    on_error: Option<RegistryKey>,
    on_connect: Option<RegistryKey>,
    redis: Option<RedisLink>,
}

/// The Redis side of a hub.
struct RedisLink {
    client: redis::Client,
    /// The URL without its password, for messages.
    url: String,
    timeout: Duration,
    ping_interval: Option<Duration>,
    delay_min: Duration,
    delay_max: Duration,
    max_pending: usize,
    /// Messages waiting for the publishing connection, and their bytes.
    queue: RefCell<VecDeque<(Vec<u8>, Vec<u8>)>>,
    queued_bytes: Cell<usize>,
    queued: Notify,
    pub_up: Cell<bool>,
    sub_up: Cell<bool>,
    /// Why the publishing connection is down (for publish's error).
    pub_error: RefCell<String>,
    /// Woken when the set of subscribed channels changes.
    dirty: Notify,
    /// Woken when either connection (re)connects.
    reconnected: Notify,
    /// Asks the publishing connection to ping now (the subscribing one was lost).
    check: Notify,
    tasks: RefCell<Vec<JoinHandle<()>>>,
    /// An open Redis hub keeps `run()` going, as a listener does.
    alive: RefCell<Option<KeepAlive>>,
}

/// Process-wide state (per loop thread), leaked like the loop itself so no
/// Lua reference is released after the Lua state is gone.
struct State {
    /// Every open hub, in creation order.
    open: RefCell<Vec<Rc<Hub>>>,
    /// Memory-backend messages waiting for the next loop turn.
    memory_queue: RefCell<VecDeque<(Vec<u8>, Vec<u8>)>>,
    memory_scheduled: Cell<bool>,
    memory_alive: RefCell<Option<KeepAlive>>,
}

thread_local! {
    static STATE: Cell<Option<&'static State>> = const { Cell::new(None) };
}

fn state() -> &'static State {
    if let Some(s) = STATE.with(|c| c.get()) {
        return s;
    }
    let s: &'static State = Box::leak(Box::new(State {
        open: RefCell::new(Vec::new()),
        memory_queue: RefCell::new(VecDeque::new()),
        memory_scheduled: Cell::new(false),
        memory_alive: RefCell::new(None),
    }));
    STATE.with(|c| c.set(Some(s)));
    s
}

/// Closes every open hub (the graceful stop of a worker process uses it).
pub fn close_all() {
    let hubs: Vec<Rc<Hub>> = state().open.borrow().clone();
    for hub in hubs {
        hub.close();
    }
}

impl Hub {
    fn close(self: &Rc<Hub>) {
        if self.closed.replace(true) {
            return;
        }
        // Released outside the borrow: dropping keys may run no Lua, but keep it simple.
        let channels = std::mem::take(&mut *self.channels.borrow_mut());
        self.tokens.borrow_mut().clear();
        drop(channels);
        if let Some(link) = &self.redis {
            for task in link.tasks.borrow_mut().drain(..) {
                task.abort();
            }
            link.queue.borrow_mut().clear();
            link.queued_bytes.set(0);
            link.pub_up.set(false);
            link.sub_up.set(false);
            link.alive.borrow_mut().take();
        }
        state().open.borrow_mut().retain(|h| !Rc::ptr_eq(h, self));
    }

    fn subscribe(&self, channel: Vec<u8>, key: RegistryKey) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        let mut channels = self.channels.borrow_mut();
        let subs = channels.entry(channel.clone()).or_default();
        let first = subs.is_empty();
        subs.push((token, Rc::new(key)));
        drop(channels);
        self.tokens.borrow_mut().insert(token, channel);
        if first {
            self.channels_changed();
        }
        token
    }

    fn unsubscribe_token(&self, token: u64) -> bool {
        let Some(channel) = self.tokens.borrow_mut().remove(&token) else { return false };
        let mut channels = self.channels.borrow_mut();
        let emptied = match channels.get_mut(&channel) {
            Some(subs) => {
                subs.retain(|(t, _)| *t != token);
                subs.is_empty()
            }
            None => false,
        };
        if emptied {
            channels.remove(&channel);
        }
        drop(channels);
        if emptied {
            self.channels_changed();
        }
        true
    }

    fn unsubscribe_channel(&self, channel: &[u8]) -> usize {
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

    fn channels_changed(&self) {
        if let Some(link) = &self.redis {
            link.dirty.notify_one();
        }
    }

    /// Calls every current subscriber of `channel` with `(message, channel)`.
    fn deliver(&self, lua: &Lua, channel: &[u8], message: &[u8]) {
        let subs = match self.channels.borrow().get(channel) {
            Some(subs) => subs.clone(),
            None => return,
        };
        let (Ok(message), Ok(name)) = (lua.create_string(message), lua.create_string(channel)) else {
            return callback::report("pubsub subscriber", "out of memory");
        };
        for (token, key) in subs {
            if self.closed.get() {
                return;
            }
            // Unsubscribed by a subscriber called before it for this message.
            if !self.tokens.borrow().contains_key(&token) {
                continue;
            }
            match lua.registry_value::<Function>(&key) {
                Ok(f) => {
                    callback::call(lua, "pubsub subscriber", &f, (message.clone(), name.clone()));
                }
                Err(e) => callback::report("pubsub subscriber", &e.to_string()),
            }
        }
    }

    /// Reports a failure through `on_error(kind, message)`, or on stderr.
    fn error(&self, kind: &str, message: &str) {
        if self.closed.get() {
            return;
        }
        let (Some(key), Some(lua)) = (&self.on_error, self.lp.lua()) else {
            eprintln!("turbo_ws.pubsub: {kind}: {message}");
            return;
        };
        match lua.registry_value::<Function>(key) {
            Ok(f) => {
                callback::call(&lua, "pubsub on_error", &f, (kind, message));
            }
            Err(e) => callback::report("pubsub on_error", &e.to_string()),
        }
    }

    fn connected_event(&self) {
        if self.closed.get() {
            return;
        }
        if let (Some(key), Some(lua)) = (&self.on_connect, self.lp.lua()) {
            match lua.registry_value::<Function>(key) {
                Ok(f) => {
                    callback::call(&lua, "pubsub on_connect", &f, ());
                }
                Err(e) => callback::report("pubsub on_connect", &e.to_string()),
            }
        }
    }

    fn is_connected(&self) -> bool {
        match &self.redis {
            _ if self.closed.get() => false,
            None => true,
            Some(link) => link.pub_up.get() && link.sub_up.get(),
        }
    }
}

// ---------------------------------------------------------------- memory

fn publish_memory(lp: &'static Loop, channel: Vec<u8>, message: Vec<u8>) {
    let st = state();
    st.memory_queue.borrow_mut().push_back((channel, message));
    if !st.memory_scheduled.replace(true) {
        *st.memory_alive.borrow_mut() = Some(KeepAlive::new(lp));
        lp.spawn(async move { deliver_memory(lp) });
    }
}

/// One loop turn of the memory backend: delivers what was published before
/// it started; what its subscribers publish waits for the next turn.
fn deliver_memory(lp: &'static Loop) {
    let st = state();
    let batch = std::mem::take(&mut *st.memory_queue.borrow_mut());
    st.memory_scheduled.set(false);
    if let Some(lua) = lp.lua() {
        for (channel, message) in batch {
            let hubs: Vec<Rc<Hub>> =
                st.open.borrow().iter().filter(|h| h.backend == Backend::Memory).cloned().collect();
            for hub in hubs {
                hub.deliver(&lua, &channel, &message);
            }
        }
    }
    if !st.memory_scheduled.get() {
        st.memory_alive.borrow_mut().take();
    }
}

// ---------------------------------------------------------------- redis

/// Whether a Redis error means the connection must be replaced (anything
/// but an error reply from a healthy server).
fn connection_lost(e: &redis::RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_)) || e.is_unrecoverable_error()
}

impl RedisLink {
    /// The delay before reconnect attempt `attempt` (1, 2, ...): doubling
    /// from `delay_min` up to `delay_max`, with ±20% jitter so that many
    /// processes do not reconnect in lockstep.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.delay_min.as_secs_f64() * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        let base = base.min(self.delay_max.as_secs_f64());
        Duration::from_secs_f64(base * (0.8 + 0.4 * jitter()))
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
    async fn connect_failed(&self, hub: &Hub, role: &str, why: &str, failures: u32) {
        let delay = self.backoff(failures);
        hub.error(
            "connect",
            &format!(
                "cannot connect to Redis at {} ({role}): {why} ({failures} failed attempt{}, next in {:.1} s)",
                self.url,
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

/// A number in [0, 1) that differs between processes and calls.
fn jitter() -> f64 {
    thread_local! {
        static SEED: Cell<u64> = Cell::new(
            (std::process::id() as u64) << 32 ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(1)
                | 1,
        );
    }
    SEED.with(|s| {
        // xorshift64*
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn describe(e: &redis::RedisError) -> String {
    e.to_string()
}

/// The publishing connection: connects, sends queued messages in pipelined
/// batches, pings when idle, and starts over when the connection fails.
async fn run_publisher(hub: Rc<Hub>) {
    let Some(link) = hub.redis.as_ref() else { return };
    let mut failures = 0u32;
    loop {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(link.timeout))
            .set_response_timeout(Some(link.timeout));
        let connected = tokio::time::timeout(
            link.timeout + Duration::from_millis(100),
            link.client.get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => describe(&e),
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
        hub.error(
            "disconnected",
            &format!("lost the publishing connection to Redis at {}: {why}{dropped}", link.url),
        );
        // Reconnect after the shortest delay, then back off.
        link.pause(link.backoff(1)).await;
    }
}

async fn publish_until_lost(
    hub: &Hub,
    link: &RedisLink,
    conn: &mut redis::aio::MultiplexedConnection,
) -> String {
    let ping_every = link.ping_interval.unwrap_or(Duration::from_secs(3600 * 24 * 365));
    loop {
        while link.queue.borrow().is_empty() {
            let ping = tokio::select! {
                _ = link.queued.notified() => false,
                _ = link.check.notified() => true,
                _ = tokio::time::sleep(ping_every) => true,
            };
            if ping {
                if let Err(e) = redis::cmd("PING").query_async::<redis::Value>(conn).await {
                    return format!("ping failed: {}", describe(&e));
                }
            }
        }
        let batch = link.take_batch();
        let mut pipe = redis::pipe();
        for (channel, message) in &batch {
            pipe.cmd("PUBLISH").arg(channel.as_slice()).arg(message.as_slice()).ignore();
        }
        let result = pipe.query_async::<()>(conn).await;
        link.release(&batch);
        if let Err(e) = result {
            let why = describe(&e);
            if connection_lost(&e) {
                hub.error("publish", &format!("{} messages may not have reached Redis: {why}", batch.len()));
                return why;
            }
            hub.error("publish", &format!("Redis refused {} messages: {why}", batch.len()));
        }
    }
}

/// The subscribed connection: connects, subscribes to every channel that
/// has a subscriber here, delivers messages, follows subscription changes,
/// pings, and starts over when the connection fails.
async fn run_subscriber(hub: Rc<Hub>) {
    let Some(link) = hub.redis.as_ref() else { return };
    let mut failures = 0u32;
    loop {
        let connected = tokio::time::timeout(link.timeout, link.client.get_async_pubsub()).await;
        let (mut sink, mut stream) = match connected {
            Ok(Ok(pubsub)) => pubsub.split(),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => describe(&e),
                    _ => "timed out".into(),
                };
                failures += 1;
                link.connect_failed(&hub, "subscribing", &why, failures).await;
                continue;
            }
        };
        let mut on_server: HashSet<Vec<u8>> = HashSet::new();
        if let Err(why) = reconcile(&hub, link, &mut sink, &mut on_server).await {
            hub.error("subscribe", &format!("cannot subscribe on Redis at {}: {why}", link.url));
            failures += 1;
            link.pause(link.backoff(failures)).await;
            continue;
        }
        failures = 0;
        link.reconnected.notify_waiters();
        link.sub_up.set(true);
        hub.connected_event();
        let ping_every = link.ping_interval.unwrap_or(Duration::from_secs(3600 * 24 * 365));
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        let Some(lua) = hub.lp.lua() else { return };
                        let channel: Vec<u8> = msg.get_channel().unwrap_or_default();
                        hub.deliver(&lua, &channel, msg.get_payload_bytes());
                        if hub.closed.get() {
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
                    match tokio::time::timeout(link.timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => break format!("ping failed: {}", describe(&e)),
                        Err(_) => break "ping timed out".to_string(),
                    }
                }
            }
        };
        link.sub_up.set(false);
        // The publishing connection probably went the same way: find out
        // before the next publish rather than with it.
        link.check.notify_one();
        hub.error(
            "disconnected",
            &format!(
                "lost the subscribing connection to Redis at {}: {why}; messages published until it is back are not delivered here",
                link.url
            ),
        );
        // Reconnect after the shortest delay, then back off.
        link.pause(link.backoff(1)).await;
    }
}

/// Brings the server's subscriptions in line with the channels that have
/// subscribers here.
async fn reconcile(
    hub: &Hub,
    link: &RedisLink,
    sink: &mut redis::aio::PubSubSink,
    on_server: &mut HashSet<Vec<u8>>,
) -> Result<(), String> {
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
            match tokio::time::timeout(link.timeout, sink.subscribe(chunk)).await {
                Ok(Ok(())) => on_server.extend(chunk.iter().cloned()),
                Ok(Err(e)) => return Err(format!("SUBSCRIBE failed: {}", describe(&e))),
                Err(_) => return Err("SUBSCRIBE timed out".into()),
            }
        }
        for chunk in remove.chunks(CHANNELS_PER_COMMAND) {
            match tokio::time::timeout(link.timeout, sink.unsubscribe(chunk)).await {
                Ok(Ok(())) => {
                    for c in chunk {
                        on_server.remove(c);
                    }
                }
                Ok(Err(e)) => return Err(format!("UNSUBSCRIBE failed: {}", describe(&e))),
                Err(_) => return Err("UNSUBSCRIBE timed out".into()),
            }
        }
        // Subscribers may have changed while we waited: go round again.
    }
}

// ---------------------------------------------------------------- Lua API

/// The Lua handle of a hub.
struct HubHandle(Rc<Hub>);

/// A hub whose handle Lua has collected can never be used again: close it,
/// so its subscribers are released and (Redis) it stops keeping `run()`
/// going. A subscriber that refers to its own hub keeps the handle alive
/// (the callback holds it), so such a program must call `hub:close()`.
impl Drop for HubHandle {
    fn drop(&mut self) {
        self.0.close();
    }
}

fn channel_arg(func: &str, v: Value) -> mlua::Result<Vec<u8>> {
    let s = args::string(func, 1, "channel", v)?;
    let bytes = s.as_bytes().to_vec();
    if bytes.is_empty() {
        return Err(args::misuse(func, "bad argument #1 'channel' (must not be empty)"));
    }
    Ok(bytes)
}

/// A message: a string as is, a table as JSON (turbo_ws.escape.json_encode).
fn message_arg(lua: &Lua, func: &str, v: Value) -> mlua::Result<Vec<u8>> {
    match v {
        Value::String(s) => Ok(s.as_bytes().to_vec()),
        Value::Table(t) => {
            let require: Function = lua.globals().get("require")?;
            let escape: Table = require.call("turbo_ws.escape")?;
            let encode: Function = escape.get("json_encode")?;
            let json: mlua::LuaString = encode.call(t)?;
            Ok(json.as_bytes().to_vec())
        }
        other => Err(args::bad(func, 2, "message", "string or table", &other)),
    }
}

impl UserData for HubHandle {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // subscribe(channel, fn(message, channel)) -> token
        methods.add_method("subscribe", |lua, this, (channel, func): (Value, Value)| {
            const F: &str = "turbo_ws.pubsub hub:subscribe";
            let channel = channel_arg(F, channel)?;
            let func = args::function(F, 2, "callback", func)?;
            if this.0.closed.get() {
                return Err(args::misuse(F, "the hub is closed"));
            }
            Ok(this.0.subscribe(channel, lua.create_registry_value(func)?))
        });
        // unsubscribe(token) -> bool, unsubscribe(channel) -> count
        methods.add_method("unsubscribe", |_, this, what: Value| {
            const F: &str = "turbo_ws.pubsub hub:unsubscribe";
            match what {
                Value::Integer(i) => Ok(Value::Boolean(i > 0 && this.0.unsubscribe_token(i as u64))),
                Value::Number(x) if x.fract() == 0.0 && x > 0.0 => {
                    Ok(Value::Boolean(this.0.unsubscribe_token(x as u64)))
                }
                Value::String(s) => Ok(Value::Integer(this.0.unsubscribe_channel(&s.as_bytes()) as _)),
                other => {
                    Err(args::bad(F, 1, "token or channel", "subscription token or channel name", &other))
                }
            }
        });
        // publish(channel, message) -> true | nil, kind, message
        methods.add_method("publish", |lua, this, (channel, message): (Value, Value)| {
            const F: &str = "turbo_ws.pubsub hub:publish";
            let channel = channel_arg(F, channel)?;
            let message = message_arg(lua, F, message)?;
            let hub = &this.0;
            let fail = |kind: &str, message: String| -> mlua::Result<MultiValue> {
                (Value::Nil, kind, message).into_lua_multi(lua)
            };
            if hub.closed.get() {
                return fail("closed", "the hub is closed".into());
            }
            let Some(link) = &hub.redis else {
                publish_memory(hub.lp, channel, message);
                return true.into_lua_multi(lua);
            };
            if !link.pub_up.get() {
                let why = link.pub_error.borrow().clone();
                let why = if why.is_empty() { "connecting".to_string() } else { why };
                return fail("disconnected", format!("not connected to Redis at {}: {why}", link.url));
            }
            let size = channel.len() + message.len();
            if link.queued_bytes.get() + size > link.max_pending {
                return fail(
                    "too_big",
                    format!("more than max_pending ({} bytes) waiting for Redis", link.max_pending),
                );
            }
            link.queued_bytes.set(link.queued_bytes.get() + size);
            let was_empty = link.queue.borrow().is_empty();
            link.queue.borrow_mut().push_back((channel, message));
            if was_empty {
                link.queued.notify_one();
            }
            true.into_lua_multi(lua)
        });
        methods.add_method("close", |_, this, ()| {
            this.0.close();
            Ok(())
        });
        methods.add_method("closed", |_, this, ()| Ok(this.0.closed.get()));
        methods.add_method("connected", |_, this, ()| Ok(this.0.is_connected()));
        methods.add_method("backend", |_, this, ()| {
            Ok(match this.0.backend {
                Backend::Memory => "memory",
                Backend::Redis => "redis",
            })
        });
        // The channels that have at least one subscriber on this hub, sorted.
        methods.add_method("channels", |lua, this, ()| {
            let mut names: Vec<Vec<u8>> = this.0.channels.borrow().keys().cloned().collect();
            names.sort();
            let t = lua.create_table()?;
            for (i, n) in names.iter().enumerate() {
                t.set(i + 1, lua.create_string(n)?)?;
            }
            Ok(t)
        });
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(match &this.0.redis {
                None => "turbo_ws.pubsub hub (memory)".to_string(),
                Some(link) => format!("turbo_ws.pubsub hub (redis {})", link.url),
            })
        });
    }
}

/// The URL without its password.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// `core.pubsub(options) -> hub`
fn new_hub(lua: &Lua, lp: &'static Loop, opts: Value) -> mlua::Result<HubHandle> {
    const F: &str = "turbo_ws.pubsub.new";
    let opts = Opts::new(F, args::opt_table(F, 1, "options", opts)?);
    let backend = match opts.string("backend")?.as_deref() {
        None | Some("memory") => Backend::Memory,
        Some("redis") => Backend::Redis,
        Some(other) => {
            return Err(args::misuse(
                F,
                format!("bad option 'backend' (\"memory\" or \"redis\" expected, got \"{other}\")"),
            ))
        }
    };
    let callback_opt = |key: &str| -> mlua::Result<Option<RegistryKey>> {
        match opts.value(key)? {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(lua.create_registry_value(f)?)),
            other => Err(args::misuse(
                F,
                format!("bad option '{key}' (function expected, got {})", args::type_name(&other)),
            )),
        }
    };
    let on_error = callback_opt("on_error")?;
    let on_connect = callback_opt("on_connect")?;
    let redis = match backend {
        Backend::Memory => None,
        Backend::Redis => {
            let url = opts.string("url")?.unwrap_or_else(|| "redis://127.0.0.1:6379".into());
            let client = redis::Client::open(url.as_str())
                .map_err(|e| args::misuse(F, format!("bad option 'url' ({e}: {})", redacted(&url))))?;
            let seconds = |key: &str, default: f64| -> mlua::Result<Duration> {
                Ok(opts.seconds(key)?.unwrap_or(Duration::from_secs_f64(default)))
            };
            let timeout = seconds("timeout", 5.0)?;
            if timeout.is_zero() {
                return Err(args::misuse(F, "bad option 'timeout' (must be more than 0)"));
            }
            let delay_min = seconds("reconnect_delay", 0.1)?.max(Duration::from_millis(1));
            let delay_max = seconds("max_reconnect_delay", 2.0)?.max(delay_min);
            Some(RedisLink {
                client,
                url: redacted(&url),
                timeout,
                ping_interval: opts
                    .seconds("ping_interval")?
                    .or(Some(Duration::from_secs(5)))
                    .filter(|d| !d.is_zero()),
                delay_min,
                delay_max,
                max_pending: opts.integer("max_pending", 1, 1 << 40)?.unwrap_or(64 << 20) as usize,
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
            })
        }
    };
    let hub = Rc::new(Hub {
        lp,
        backend,
        channels: RefCell::new(HashMap::new()),
        tokens: RefCell::new(HashMap::new()),
        next_token: Cell::new(1),
        closed: Cell::new(false),
        on_error,
        on_connect,
        redis,
    });
    if let Some(link) = &hub.redis {
        *link.alive.borrow_mut() = Some(KeepAlive::new(lp));
        let publisher = lp.spawn(run_publisher(hub.clone()));
        let subscriber = lp.spawn(run_subscriber(hub.clone()));
        link.tasks.borrow_mut().extend([publisher, subscriber]);
    }
    state().open.borrow_mut().push(hub.clone());
    Ok(HubHandle(hub))
}

/// Registers `core.pubsub(options)`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("pubsub", lua.create_function(move |lua, opts: Value| new_hub(lua, lp, opts))?)?;
    Ok(())
}
