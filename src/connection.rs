//! One open WebSocket connection, server or client side: the userdata Lua
//! holds, and the task that moves its bytes.
//!
//! Lua never blocks: `send`, `ping`, `pong` and `close` only queue a message
//! and wake the task. The task writes what is queued, delivers what arrives
//! to the Lua callbacks, and flushes when nothing more is ready to read, so a
//! burst of requests is answered with one write.
//!
//! Ownership: the Lua side holds the userdata; the callbacks are kept as
//! registry keys and dropped when the connection ends, so a handler that
//! refers to its own connection is not kept alive past the close.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mlua::{AnyUserData, Function, IntoLuaMulti, Lua, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep, Sleep};

use crate::args;
use crate::callback;
use crate::config::{Limits, Opts};
use crate::error::{Error, Kind};
use crate::frame::{self, Bytes, Message, WsStream};
use crate::ioloop::{self, KeepAlive};
use crate::registry::Closable;

/// How long a failing connection may take to send its close frame.
const FAIL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// Replies are flushed at the latest after this many messages are read, even
/// while more input is ready: one write per burst keeps CPU per message low,
/// and flushing every few messages keeps a pipelining peer busy. Measured in
/// bench/RESULTS.md: 4 beat both 1 (a write per message) and 32.
const FLUSH_EVERY: u32 = 4;
/// Messages delivered in a row before the task lets others run.
const FAIRNESS_BATCH: u32 = 64;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// Accepted by Lua, handshake not finished: writes queue up.
    Connecting,
    Open,
    /// A close frame was queued, sent or received.
    Closing,
    Closed,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

/// The Lua functions events go to.
#[derive(Default)]
struct Callbacks {
    on_message: Option<RegistryKey>,
    on_ping: Option<RegistryKey>,
    on_pong: Option<RegistryKey>,
    on_close: Option<RegistryKey>,
    on_error: Option<RegistryKey>,
}

/// State shared by the userdata and the task.
pub struct Shared {
    state: Cell<State>,
    queue: RefCell<VecDeque<Message>>,
    buffered: Cell<usize>,
    waker: RefCell<Option<Waker>>,
    /// The task is inside a Lua callback: no need to wake it.
    delivering: Cell<bool>,
    /// Lua asked to drop the connection without a closing handshake.
    aborted: Cell<bool>,
    callbacks: RefCell<Callbacks>,
    limits: Limits,
    peer: Cell<Option<SocketAddr>>,
    protocol: RefCell<Option<String>>,
    /// The close code and reason received from the peer.
    peer_close: RefCell<Option<(u16, String)>>,
    /// Its entry in the loop's registry (for graceful shutdown).
    registry_id: Cell<u64>,
    /// Bytes accepted by send() that were dropped unsent (the peer closed first).
    unsent: Cell<usize>,
}

impl Closable for Shared {
    fn going_away(&self) {
        self.close(Some(1001), "going away");
    }

    fn abort(&self) {
        Shared::abort(self);
    }
}

impl Shared {
    pub fn new(limits: Limits) -> Rc<Self> {
        let shared = Rc::new(Shared {
            state: Cell::new(State::Connecting),
            queue: RefCell::new(VecDeque::new()),
            buffered: Cell::new(0),
            waker: RefCell::new(None),
            delivering: Cell::new(false),
            aborted: Cell::new(false),
            callbacks: RefCell::new(Callbacks::default()),
            limits,
            peer: Cell::new(None),
            protocol: RefCell::new(None),
            peer_close: RefCell::new(None),
            registry_id: Cell::new(0),
            unsent: Cell::new(0),
        });
        if let Some(lp) = ioloop::current() {
            let weak: std::rc::Weak<dyn Closable> = Rc::downgrade(&shared) as std::rc::Weak<dyn Closable>;
            shared.registry_id.set(lp.registry().add_connection(weak));
        }
        shared
    }

    /// The handshake is done: the connection is open (unless Lua already closed it).
    pub fn opened(&self, ws: &WsStream) {
        self.peer.set(ws.get_ref().peer_addr().ok());
        if self.state.get() == State::Connecting {
            self.state.set(State::Open);
        }
    }

    pub fn set_protocol(&self, protocol: Option<String>) {
        *self.protocol.borrow_mut() = protocol;
    }

    fn wake(&self) {
        if !self.delivering.get() {
            if let Some(w) = self.waker.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    fn enqueue(&self, msg: Message) {
        self.buffered.set(self.buffered.get() + message_len(&msg));
        self.queue.borrow_mut().push_back(msg);
        self.wake();
    }

    fn can_send(&self) -> Result<(), Error> {
        match self.state.get() {
            State::Connecting | State::Open => Ok(()),
            State::Closing => Err(Error::new(Kind::Closed, "the connection is closing")),
            State::Closed => Err(Error::new(Kind::Closed, "the connection is closed")),
        }
    }

    /// Queues a data message. Text must be valid UTF-8 (checked by the caller).
    fn send(&self, msg: Message) -> Result<(), Error> {
        self.can_send()?;
        let len = message_len(&msg);
        if self.buffered.get() + len > self.limits.max_buffered {
            return Err(Error::new(
                Kind::TooBig,
                format!(
                    "send buffer full ({} bytes queued, limit max_buffered = {})",
                    self.buffered.get(),
                    self.limits.max_buffered
                ),
            ));
        }
        self.enqueue(msg);
        Ok(())
    }

    fn close(&self, code: Option<u16>, reason: &str) {
        if matches!(self.state.get(), State::Connecting | State::Open) {
            self.state.set(State::Closing);
            self.enqueue(frame::close_message(code, reason));
        }
    }

    fn abort(&self) {
        if self.state.get() != State::Closed {
            // Nothing more may be sent from now on.
            self.state.set(State::Closing);
            self.aborted.set(true);
            self.wake();
        }
    }

    /// Calls the callback chosen by `which`, if set.
    fn emit(
        &self,
        lua: &Lua,
        which: fn(&Callbacks) -> &Option<RegistryKey>,
        what: &str,
        a: impl IntoLuaMulti,
    ) {
        let func = {
            let callbacks = self.callbacks.borrow();
            match which(&callbacks) {
                Some(key) => lua.registry_value::<Function>(key),
                None => return,
            }
        };
        match func {
            Ok(func) => {
                self.delivering.set(true);
                callback::call(lua, what, &func, a);
                self.delivering.set(false);
            }
            Err(e) => callback::report(what, &e.to_string()),
        }
    }

    fn deliver(&self, lua: &Lua, msg: Message) {
        let result = match msg {
            Message::Text(t) => lua
                .create_string(t.as_bytes())
                .map(|s| self.emit(lua, |c| &c.on_message, "on_message", (s, false))),
            Message::Binary(b) => {
                lua.create_string(&b).map(|s| self.emit(lua, |c| &c.on_message, "on_message", (s, true)))
            }
            Message::Ping(p) => lua.create_string(&p).map(|s| self.emit(lua, |c| &c.on_ping, "on_ping", s)),
            Message::Pong(p) => lua.create_string(&p).map(|s| self.emit(lua, |c| &c.on_pong, "on_pong", s)),
            Message::Close(frame) => {
                // The reply is queued by the framing layer; on_close fires once TCP is closed.
                *self.peer_close.borrow_mut() = Some(frame::close_details(&frame));
                self.state.set(State::Closing);
                // Nothing may follow the peer's close; what is still queued
                // cannot be sent (finish() tells the program so).
                self.drop_queue();
                Ok(())
            }
            Message::Frame(_) => Ok(()),
        };
        if let Err(e) = result {
            callback::report("message delivery", &e.to_string());
        }
    }

    /// Empties the send queue, remembering how much was never sent.
    fn drop_queue(&self) {
        self.queue.borrow_mut().clear();
        self.unsent.set(self.unsent.get() + self.buffered.replace(0));
    }

    /// Reports the end of the connection once, then drops the callbacks.
    pub fn finish(&self, error: Option<Error>, code: u16, reason: String) {
        self.state.set(State::Closed);
        if let Some(lp) = ioloop::current() {
            lp.registry().remove_connection(self.registry_id.get());
        }
        self.drop_queue();
        // Data accepted by send() but never written is reported, not lost silently.
        let unsent = self.unsent.get();
        let error = error.or_else(|| {
            (unsent > 0).then(|| {
                Error::new(
                    Kind::Closed,
                    format!("{unsent} queued bytes were not sent: the connection closed first"),
                )
            })
        });
        if let Some(lua) = ioloop::current().and_then(|lp| lp.lua()) {
            if let Some(err) = error {
                self.emit(&lua, |c| &c.on_error, "on_error", (err.kind.name(), err.message));
            }
            self.emit(&lua, |c| &c.on_close, "on_close", (code, reason));
        }
        // Taken out before dropping: dropping a key must not run under a borrow.
        let callbacks = std::mem::take(&mut *self.callbacks.borrow_mut());
        drop(callbacks);
        self.waker.borrow_mut().take();
    }
}

fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) => 2,
        Message::Frame(f) => f.len(),
    }
}

/// What the I/O driver hands back to the task.
enum Event {
    Message(Message),
    /// The framing layer ended the stream after a closing handshake.
    Ended,
    ReadFailed(tokio_tungstenite::tungstenite::Error),
    WriteFailed(tokio_tungstenite::tungstenite::Error),
    CloseTimeout,
    Aborted,
}

/// Pings a quiet peer and closes one that stays quiet. Checked once per
/// tick rather than reset per message, so the hot path only counts reads.
struct Keepalive {
    timer: Pin<Box<Sleep>>,
    tick: Duration,
    ping_after: Option<Duration>,
    close_after: Option<Duration>,
    reads_at_last_tick: u64,
    quiet_for: Duration,
}

enum KeepaliveAction {
    Nothing,
    Ping,
    Close,
}

impl Keepalive {
    fn new(limits: &Limits) -> Option<Keepalive> {
        let tick = match (limits.ping_interval, limits.idle_timeout) {
            (Some(p), Some(i)) => p.min(i),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => return None,
        };
        Some(Keepalive {
            timer: Box::pin(sleep(tick)),
            tick,
            ping_after: limits.ping_interval,
            close_after: limits.idle_timeout,
            reads_at_last_tick: 0,
            quiet_for: Duration::ZERO,
        })
    }

    fn poll(&mut self, cx: &mut Context<'_>, reads: u64) -> KeepaliveAction {
        if self.timer.as_mut().poll(cx).is_pending() {
            return KeepaliveAction::Nothing;
        }
        self.timer.as_mut().reset(tokio::time::Instant::now() + self.tick);
        // Arm the next tick with this context.
        let _ = self.timer.as_mut().poll(cx);
        if reads != self.reads_at_last_tick {
            self.reads_at_last_tick = reads;
            self.quiet_for = Duration::ZERO;
            return KeepaliveAction::Nothing;
        }
        self.quiet_for += self.tick;
        if self.close_after.is_some_and(|t| self.quiet_for >= t) {
            KeepaliveAction::Close
        } else if self.ping_after.is_some_and(|t| self.quiet_for >= t) {
            KeepaliveAction::Ping
        } else {
            KeepaliveAction::Nothing
        }
    }
}

/// Moves bytes between the queue, the socket and the task.
struct Driver {
    ws: WsStream,
    need_flush: bool,
    /// Messages delivered since the last flush.
    unflushed_reads: u32,
    close_timer: Option<Pin<Box<Sleep>>>,
    keepalive: Option<Keepalive>,
    /// Messages (of any kind) read so far.
    reads: u64,
}

impl Driver {
    fn poll(&mut self, sh: &Shared, cx: &mut Context<'_>) -> Poll<Event> {
        {
            let mut waker = sh.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        loop {
            if sh.aborted.get() {
                return Poll::Ready(Event::Aborted);
            }
            if let Err(e) = self.write_queued(sh, cx) {
                return Poll::Ready(Event::WriteFailed(e));
            }
            if let Some(timer) = &mut self.close_timer {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::CloseTimeout);
                }
            }
            if let Some(keepalive) = &mut self.keepalive {
                match keepalive.poll(cx, self.reads) {
                    KeepaliveAction::Nothing => {}
                    KeepaliveAction::Ping => {
                        if sh.state.get() == State::Open {
                            sh.enqueue(Message::Ping(Bytes::new()));
                        }
                        continue;
                    }
                    KeepaliveAction::Close => {
                        self.keepalive = None;
                        sh.close(Some(1001), "idle timeout");
                        continue;
                    }
                }
            }
            // After a few reads, flush before reading more (see FLUSH_EVERY).
            let read_now = !(self.need_flush && self.unflushed_reads >= FLUSH_EVERY);
            if read_now {
                match self.ws.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(msg))) => {
                        self.unflushed_reads += 1;
                        self.reads += 1;
                        if matches!(msg, Message::Close(_)) {
                            self.arm_close_timer(sh);
                        }
                        return Poll::Ready(Event::Message(msg));
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::ReadFailed(e)),
                    Poll::Ready(None) => return Poll::Ready(Event::Ended),
                    Poll::Pending => {}
                }
            }
            if self.need_flush {
                match self.ws.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => {
                        self.need_flush = false;
                        self.unflushed_reads = 0;
                        if !read_now {
                            continue;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Event::WriteFailed(e)),
                    Poll::Pending => {}
                }
            }
            return Poll::Pending;
        }
    }

    /// Hands queued messages to the framing layer while it accepts them.
    fn write_queued(
        &mut self,
        sh: &Shared,
        cx: &mut Context<'_>,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        loop {
            if sh.queue.borrow().is_empty() {
                return Ok(());
            }
            match self.ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
            let Some(msg) = sh.queue.borrow_mut().pop_front() else {
                return Ok(());
            };
            sh.buffered.set(sh.buffered.get().saturating_sub(message_len(&msg)));
            let closing = matches!(msg, Message::Close(_));
            self.ws.start_send_unpin(msg)?;
            self.need_flush = true;
            if closing {
                self.arm_close_timer(sh);
            }
        }
    }

    fn arm_close_timer(&mut self, sh: &Shared) {
        if self.close_timer.is_none() {
            self.close_timer = Some(Box::pin(sleep(sh.limits.close_timeout)));
        }
    }

    /// Best effort: tell the peer why we fail the connection, then close TCP.
    async fn fail(&mut self, code: u16, reason: &str) {
        let send = self.ws.send(frame::close_message(Some(code), reason));
        let _ = tokio::time::timeout(FAIL_FLUSH_TIMEOUT, send).await;
        self.shutdown().await;
    }

    /// Closes the TCP (and TLS) stream politely, bounded in time.
    async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(FAIL_FLUSH_TIMEOUT, self.ws.get_mut().shutdown()).await;
    }
}

/// Runs an established connection until it is closed.
pub async fn run(shared: Rc<Shared>, ws: WsStream, alive: KeepAlive) {
    shared.opened(&ws);
    let keepalive = Keepalive::new(&shared.limits);
    let mut driver =
        Driver { ws, need_flush: false, unflushed_reads: 0, close_timer: None, keepalive, reads: 0 };
    let mut in_a_row = 0u32;
    let (error, code, reason) = loop {
        let event = poll_fn(|cx| driver.poll(&shared, cx)).await;
        let Event::Message(msg) = event else {
            break end_of(&shared, &mut driver, event).await;
        };
        match ioloop::current().and_then(|lp| lp.lua()) {
            Some(lua) => shared.deliver(&lua, msg),
            None => break (None, 1001, "the Lua state is gone".into()),
        }
        in_a_row += 1;
        if in_a_row >= FAIRNESS_BATCH {
            in_a_row = 0;
            tokio::task::yield_now().await;
        }
    };
    drop(driver);
    shared.finish(error, code, reason);
    drop(alive);
}

/// Works out how the connection ended and closes the socket accordingly.
async fn end_of(shared: &Shared, driver: &mut Driver, event: Event) -> (Option<Error>, u16, String) {
    let peer_close = shared.peer_close.borrow_mut().take();
    match event {
        Event::Ended => {
            driver.shutdown().await;
            match peer_close {
                Some((code, reason)) => (None, code, reason),
                None => (None, 1006, "closed without a close frame".into()),
            }
        }
        Event::ReadFailed(e) => {
            let (err, code) = frame::classify(&e);
            match code {
                Some(code) if peer_close.is_none() => {
                    driver.fail(code, "").await;
                    (Some(err), code, String::new())
                }
                _ => (Some(err).filter(|e| e.kind != Kind::Closed), 1006, String::new()),
            }
        }
        Event::WriteFailed(e) => {
            (Some(frame::classify(&e).0).filter(|e| e.kind != Kind::Closed), 1006, String::new())
        }
        Event::CloseTimeout => {
            driver.shutdown().await;
            match peer_close {
                Some((code, reason)) => (None, code, reason),
                None => (None, 1006, "the closing handshake timed out".into()),
            }
        }
        Event::Aborted => (None, 1006, "aborted".into()),
        Event::Message(_) => (None, 1006, String::new()),
    }
}

/// The Lua handle of a connection.
pub struct Connection(pub Rc<Shared>);

const SEND: &str = "turbo_ws connection:send";

fn payload_arg(func: &str, n: usize, name: &str, v: Value) -> mlua::Result<Bytes> {
    match v {
        Value::Nil => Ok(Bytes::new()),
        Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
        other => Err(args::bad(func, n, name, "string", &other)),
    }
}

fn control_payload(func: &str, v: Value) -> mlua::Result<Bytes> {
    let data = payload_arg(func, 1, "data", v)?;
    if data.len() > 125 {
        return Err(args::misuse(
            func,
            format!(
                "bad argument #1 'data' (control frame payload is {} bytes, at most 125 allowed)",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// `nil, kind, message` for Lua.
fn failure(e: Error) -> (Value, Option<&'static str>, Option<String>) {
    (Value::Nil, Some(e.kind.name()), Some(e.message))
}

fn ok() -> (Value, Option<&'static str>, Option<String>) {
    (Value::Boolean(true), None, None)
}

impl UserData for Connection {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // send(data [, binary]) -> true | nil, kind, message
        methods.add_method("send", |_, this, (data, binary): (Value, Value)| {
            let binary = args::opt_bool(SEND, 2, "binary", binary)?.unwrap_or(false);
            let Value::String(data) = data else {
                return Err(args::bad(SEND, 1, "data", "string", &data));
            };
            let bytes = data.as_bytes();
            let msg =
                if binary {
                    Message::Binary(Bytes::copy_from_slice(&bytes))
                } else {
                    match std::str::from_utf8(&bytes) {
                        Ok(text) => Message::Text(text.to_owned().into()),
                        Err(_) => return Err(args::misuse(
                            SEND,
                            "bad argument #1 'data' (a text message must be valid UTF-8; send it as binary)",
                        )),
                    }
                };
            Ok(match this.0.send(msg) {
                Ok(()) => ok(),
                Err(e) => failure(e),
            })
        });
        methods.add_method("ping", |_, this, data: Value| {
            let data = control_payload("turbo_ws connection:ping", data)?;
            Ok(match this.0.send(Message::Ping(data)) {
                Ok(()) => ok(),
                Err(e) => failure(e),
            })
        });
        methods.add_method("pong", |_, this, data: Value| {
            let data = control_payload("turbo_ws connection:pong", data)?;
            Ok(match this.0.send(Message::Pong(data)) {
                Ok(()) => ok(),
                Err(e) => failure(e),
            })
        });
        // close([code [, reason]]): starts the closing handshake; code defaults to
        // 1000, and `false` sends a close frame without a status code.
        methods.add_method("close", |_, this, (code, reason): (Value, Value)| {
            const F: &str = "turbo_ws connection:close";
            let code = match code {
                Value::Boolean(false) => None,
                Value::Nil => Some(1000),
                other => Some(args::count(F, 1, "code", other, 65535)? as u16),
            };
            let reason = args::opt_string(F, 2, "reason", reason)?.unwrap_or_default();
            if let Some(c) = code {
                if !frame::check_close_code(c) {
                    return Err(args::misuse(
                        F,
                        format!("bad argument #1 'code' ({c} is not a close code an endpoint may send)"),
                    ));
                }
            }
            if reason.len() > 123 {
                return Err(args::misuse(F, "bad argument #2 'reason' (at most 123 bytes)"));
            }
            if !reason.is_empty() && code.is_none() {
                return Err(args::misuse(F, "bad argument #2 'reason' (a reason needs a code)"));
            }
            this.0.close(code, &reason);
            Ok(())
        });
        // send_frame(opcode, data, fin): one data frame, for programs that
        // fragment messages themselves (opcode 1 or 2 starts, 0 continues).
        methods.add_method("send_frame", |_, this, (opcode, data, fin): (Value, Value, Value)| {
            const F: &str = "turbo_ws connection:send_frame";
            let opcode = args::count(F, 1, "opcode", opcode, 15)? as u8;
            let payload = payload_arg(F, 2, "data", data)?;
            let fin = args::opt_bool(F, 3, "fin", fin)?.unwrap_or(true);
            let msg = frame::data_frame(opcode, payload, fin).ok_or_else(|| {
                args::misuse(F, format!("bad argument #1 'opcode' ({opcode} is not 0, 1 or 2)"))
            })?;
            Ok(match this.0.send(msg) {
                Ok(()) => ok(),
                Err(e) => failure(e),
            })
        });
        methods.add_method("abort", |_, this, ()| {
            this.0.abort();
            Ok(())
        });
        methods.add_method("closed", |_, this, ()| Ok(this.0.state.get() == State::Closed));
        methods.add_method("state", |_, this, ()| Ok(this.0.state.get().name()));
        methods.add_method("buffered_amount", |_, this, ()| Ok(this.0.buffered.get()));
        methods.add_method("protocol", |_, this, ()| Ok(this.0.protocol.borrow().clone()));
        methods.add_method("remote_address", |_, this, ()| {
            Ok(match this.0.peer.get() {
                Some(addr) => (Some(addr.ip().to_string()), Some(addr.port())),
                None => (None, None),
            })
        });
        // set_callbacks{on_message=, on_ping=, on_pong=, on_close=, on_error=}
        methods.add_method("set_callbacks", |lua, this, t: Value| {
            const F: &str = "turbo_ws connection:set_callbacks";
            let t = args::opt_table(F, 1, "callbacks", t)?
                .ok_or_else(|| args::bad(F, 1, "callbacks", "table", &Value::Nil))?;
            let callbacks = read_callbacks(lua, F, &t)?;
            if this.0.state.get() != State::Closed {
                let old = std::mem::replace(&mut *this.0.callbacks.borrow_mut(), callbacks);
                drop(old);
            }
            Ok(())
        });
    }
}

fn read_callbacks(lua: &Lua, func: &str, t: &Table) -> mlua::Result<Callbacks> {
    let opts = Opts::new(func, Some(t.clone()));
    let key = |name: &str| -> mlua::Result<Option<RegistryKey>> {
        match opts.value(name)? {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(lua.create_registry_value(f)?)),
            other => Err(mlua::Error::runtime(format!(
                "{func}: bad option '{name}' (function expected, got {})",
                args::type_name(&other)
            ))),
        }
    };
    Ok(Callbacks {
        on_message: key("on_message")?,
        on_ping: key("on_ping")?,
        on_pong: key("on_pong")?,
        on_close: key("on_close")?,
        on_error: key("on_error")?,
    })
}

/// A new connection userdata over `shared`.
pub fn userdata(lua: &Lua, shared: Rc<Shared>) -> mlua::Result<AnyUserData> {
    lua.create_userdata(Connection(shared))
}
