//! One open WebSocket connection, server or client side: its state
//! (`Shared`, which the program's handle and the task share) and the task
//! that moves its bytes (`run`). What happens is reported through
//! `Events`; the binding layer turns that into Lua callbacks.
//!
//! Sending never blocks: `send`, `ping`, `pong` and `close` encode a frame
//! into the connection's outbox and wake the task. The task reads, reports
//! each message as it is parsed, and writes the outbox once per few
//! messages or when input runs dry, so a burst of requests is answered
//! with one write.
//!
//! Memory: the input buffer and the outbox are given back whenever they
//! run empty, so an idle connection holds no buffers.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep, Instant, Sleep};

use crate::engine::buffers;
use crate::engine::codec::{DirectWrite, Event, Outbox, Reader, Role, Step, Violation};
use crate::engine::deflate::{Agreed, Deflater, Inflater};
use crate::engine::error::{Error, Kind};
use crate::engine::frame;
use crate::engine::limits::Limits;
use crate::engine::registry::Closable;
use crate::engine::stream::Stream;

/// How long a failing connection may take to send its close frame.
const FAIL_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// The outbox is written at the latest after this many messages are read,
/// even while more input is ready: one write per burst keeps CPU per
/// message low, and writing every few messages keeps a pipelining peer
/// busy. Measured in bench/RESULTS.md: 4 beat both 1 and 32.
const FLUSH_EVERY: u32 = 4;
/// Messages delivered in a row before the task lets others run.
const FAIRNESS_BATCH: u32 = 64;
/// With this much unwritten (or half `max_buffered`, if less), a server's
/// task stops reading until the peer reads: a peer that sends but does not
/// read cannot grow our memory, and an echo handler is not refused its
/// sends. A client reads on: two endpoints that both stop reading while
/// their output waits deadlock (a client streaming large messages to an
/// echo server while it reads the echoes), and a client program has its
/// own brakes (sends wait or are refused past `max_buffered`; a face that
/// queues unread messages pauses reading, see `pause_reading`).
const HIGH_WATER: usize = 256 << 10;
/// With this much unwritten, a ping's pong waits, and only the latest
/// waiting one is sent once the backlog drains (§5.5.3 allows answering
/// just the most recent ping), so a ping flood cannot grow the outbox.
const PONG_BACKLOG: usize = 64 << 10;
/// A pending large frame is read at most this much per system call.
const MAX_READ: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Accepted by Lua, handshake not finished: writes queue up.
    Connecting,
    Open,
    /// A close frame was queued, sent or received.
    Closing,
    Closed,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

/// What a connection reports to whoever runs it. Each call happens on the
/// connection's task; sends made from inside one are written after it.
pub trait Events {
    /// A whole message (fragments reassembled, inflated, UTF-8 checked).
    fn message(&self, data: &[u8], binary: bool);
    /// A ping, already answered.
    fn ping(&self, data: &[u8]);
    fn pong(&self, data: &[u8]);
    /// The peer's close frame arrived (checked, our answer queued): the
    /// closing handshake is under way. `finished` follows when the
    /// connection ends, which a peer that holds TCP open delays.
    fn closing(&self, _code: u16, _reason: &str) {}
    /// A send was refused for `max_buffered`, and the queue has room again.
    fn drained(&self);
    /// Reading is paused and everything queued was written: the
    /// connection no longer keeps the loop going (`Closable::keeps_loop`).
    fn quiet(&self) {}
    /// The connection ended: called once, last. `error` says why when it
    /// failed (or when queued data could not be sent); `code` is the peer's
    /// close code, the one we failed with, or 1006.
    fn finished(&self, error: Option<Error>, code: u16, reason: String);
    /// Whether the receiver is still there; the task stops when it is not.
    fn attached(&self) -> bool;
}

/// The limits `Shared` reads while the connection runs.
struct SendLimits {
    max_buffered: usize,
    close_slow_readers: bool,
    close_timeout: Duration,
}

/// State shared by the program's handle and the task.
pub struct Shared {
    state: Cell<State>,
    out: RefCell<Outbox>,
    /// We queued a close frame: nothing may follow it.
    close_sent: Cell<bool>,
    /// The pong for the latest ping, while the outbox is too full for it.
    pending_pong: RefCell<Option<Vec<u8>>>,
    waker: RefCell<Option<Waker>>,
    /// The task is reporting an event: no need to wake it.
    delivering: Cell<bool>,
    /// The program asked to drop the connection without a closing handshake.
    aborted: Cell<bool>,
    /// A send was refused for `max_buffered`: `on_drain` fires once the
    /// queue is down to a quarter of it.
    blocked: Cell<bool>,
    /// Closed for not reading (`close_slow_readers`): reported in on_error.
    slow_reader: Cell<bool>,
    /// The program asked for no more events for now (`pause_reading`).
    read_paused: Cell<bool>,
    /// Bytes were written that the stream may still hold (TLS records).
    unflushed: Cell<bool>,
    events: Rc<dyn Events>,
    limits: SendLimits,
    /// The rest of the limits, for the task to start with (taken then):
    /// an open connection's state keeps only what it reads while running.
    start_limits: Cell<Option<Box<Limits>>>,
    role: Role,
    /// permessage-deflate, when the handshake agreed on it.
    deflate: Option<Agreed>,
    peer: Cell<Option<SocketAddr>>,
    protocol: RefCell<Option<Box<str>>>,
    /// The close code and reason received from the peer.
    peer_close: RefCell<Option<(u16, String)>>,
}

impl Closable for Shared {
    fn going_away(&self) {
        self.close(Some(1001), "going away");
    }

    fn abort(&self) {
        Shared::abort(self);
    }

    fn keeps_loop(&self) -> bool {
        !(self.read_paused.get()
            && self.state.get() == State::Open
            && self.out.borrow().is_empty()
            && !self.unflushed.get()
            && self.pending_pong.borrow().is_none())
    }
}

impl Shared {
    pub fn new(limits: Limits, role: Role, deflate: Option<Agreed>, events: Rc<dyn Events>) -> Rc<Self> {
        Rc::new(Shared {
            state: Cell::new(State::Connecting),
            out: RefCell::new(Outbox::new(role, deflate.map(Deflater::new))),
            close_sent: Cell::new(false),
            pending_pong: RefCell::new(None),
            waker: RefCell::new(None),
            delivering: Cell::new(false),
            aborted: Cell::new(false),
            blocked: Cell::new(false),
            slow_reader: Cell::new(false),
            read_paused: Cell::new(false),
            unflushed: Cell::new(false),
            events,
            limits: SendLimits {
                max_buffered: limits.max_buffered,
                close_slow_readers: limits.close_slow_readers,
                close_timeout: limits.close_timeout,
            },
            start_limits: Cell::new(Some(Box::new(limits))),
            role,
            deflate,
            peer: Cell::new(None),
            protocol: RefCell::new(None),
            peer_close: RefCell::new(None),
        })
    }

    /// The handshake is done: the connection is open (unless the program
    /// already closed it).
    pub fn opened(&self, stream: &Stream) {
        self.peer.set(stream.peer_addr().ok());
        if self.state.get() == State::Connecting {
            self.state.set(State::Open);
        }
    }

    pub fn set_protocol(&self, protocol: Option<String>) {
        *self.protocol.borrow_mut() = protocol.map(String::into_boxed_str);
    }

    pub fn state(&self) -> State {
        self.state.get()
    }

    /// The subprotocol agreed on, if any.
    pub fn protocol(&self) -> Option<String> {
        self.protocol.borrow().as_deref().map(str::to_owned)
    }

    /// The peer's address, once open.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer.get()
    }

    /// Payload bytes queued and not yet handed to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.out.borrow().queued()
    }

    /// Stops reading and delivering events until `resume_reading`: the
    /// peer is held back by TCP, as a program that does not read would hold
    /// it (a face whose program is not ready for the next message: Turbo's
    /// on_message suspended, luvit's reader not reading). Writing, the
    /// close timer and the keepalive go on; the event being delivered, if
    /// any, is the last until then. Only while open: once a close is
    /// sent or received the task reads on, to finish the handshake.
    pub fn pause_reading(&self) {
        self.read_paused.set(true);
    }

    /// Reads and delivers again after `pause_reading`.
    pub fn resume_reading(&self) {
        if self.read_paused.replace(false) {
            self.wake();
        }
    }

    /// Calls the receiver of events, marking the task as busy meanwhile.
    fn report(&self, f: impl FnOnce(&dyn Events)) {
        self.delivering.set(true);
        f(&*self.events);
        self.delivering.set(false);
    }

    fn wake(&self) {
        if !self.delivering.get() {
            if let Some(w) = self.waker.borrow().as_ref() {
                w.wake_by_ref();
            }
        }
    }

    fn can_send(&self) -> Result<(), Error> {
        match self.state.get() {
            State::Connecting | State::Open => Ok(()),
            State::Closing => Err(Error::new(Kind::Closed, "the connection is closing")),
            State::Closed => Err(Error::new(Kind::Closed, "the connection is closed")),
        }
    }

    /// Queues what the program sends: `push` encodes `payload` into the outbox.
    /// Text must be valid UTF-8 (checked by the caller). Past `max_buffered`
    /// the send is refused (or, with `close_slow_readers`, the connection
    /// closed with 1008); a message into an empty queue is always taken, so
    /// any single message can be sent.
    pub fn send(&self, payload: &[u8], push: impl FnOnce(&mut Outbox, &[u8])) -> Result<(), Error> {
        self.can_send()?;
        let queued = self.out.borrow().queued();
        if !self.has_room(queued, payload.len()) {
            return Err(self.refuse_send(queued));
        }
        push(&mut self.out.borrow_mut(), payload);
        self.wake();
        Ok(())
    }

    /// `send` when it would succeed; otherwise nothing happens (no error
    /// built, no refusal recorded) and it returns false, so that the
    /// caller can take `send` itself to learn why. The binding's fast path.
    pub fn try_send(&self, payload: &[u8], push: impl FnOnce(&mut Outbox, &[u8])) -> bool {
        if self.can_send_now() && self.has_room(self.out.borrow().queued(), payload.len()) {
            push(&mut self.out.borrow_mut(), payload);
            self.wake();
            return true;
        }
        false
    }

    fn can_send_now(&self) -> bool {
        matches!(self.state.get(), State::Connecting | State::Open)
    }

    /// A message into an empty queue is always taken, so any single
    /// message can be sent; past `max_buffered` the queue is full.
    fn has_room(&self, queued: usize, len: usize) -> bool {
        queued == 0 || queued.saturating_add(len) <= self.limits.max_buffered
    }

    /// The peer has not read what is queued: refuse, or close it for good.
    fn refuse_send(&self, queued: usize) -> Error {
        let limit = self.limits.max_buffered;
        if self.limits.close_slow_readers {
            self.slow_reader.set(true);
            self.close(Some(1008), "not reading");
            return Error::new(
                Kind::TooBig,
                format!(
                    "closed with 1008: the peer did not read ({queued} bytes queued, max_buffered = {limit})"
                ),
            );
        }
        self.blocked.set(true);
        Error::new(
            Kind::TooBig,
            format!("send buffer full ({queued} bytes queued, limit max_buffered = {limit})"),
        )
    }

    /// After a write: tells a blocked sender (`drained`) that the queue
    /// has room again. Returns whether that queued more.
    fn notify_drained(&self) -> bool {
        if !self.blocked.get() || self.out.borrow().queued() > self.limits.max_buffered / 4 {
            return false;
        }
        self.blocked.set(false);
        self.report(|e| e.drained());
        !self.out.borrow().is_empty()
    }

    /// Queues our close frame, once.
    fn queue_close(&self, code: Option<u16>, reason: &str) {
        if !self.close_sent.replace(true) {
            self.out.borrow_mut().push(frame::CLOSE, true, &frame::close_payload(code, reason));
            self.wake();
        }
    }

    /// Starts the closing handshake (no code: a close frame without one).
    pub fn close(&self, code: Option<u16>, reason: &str) {
        if matches!(self.state.get(), State::Connecting | State::Open) {
            self.state.set(State::Closing);
            self.queue_close(code, reason);
        }
    }

    /// Drops the connection without a closing handshake.
    pub fn abort(&self) {
        if self.state.get() != State::Closed {
            // Nothing more may be sent from now on.
            self.state.set(State::Closing);
            self.aborted.set(true);
            self.wake();
        }
    }

    /// Reports one received event; pings are answered and a close is
    /// answered in kind (§5.5.1), both before the program hears of them.
    fn deliver(&self, event: Event<'_>) {
        match event {
            Event::Message { data, binary } => self.report(|e| e.message(data, binary)),
            Event::Ping(p) => {
                // Answered after our own close too: only the peer's close
                // ends the duty (§5.5.2), and nothing after it is delivered.
                let mut out = self.out.borrow_mut();
                if out.len() < PONG_BACKLOG {
                    out.push(frame::PONG, true, p);
                } else {
                    *self.pending_pong.borrow_mut() = Some(p.to_vec());
                }
                drop(out);
                self.report(|e| e.ping(p));
            }
            Event::Pong(p) => self.report(|e| e.pong(p)),
            Event::Close { code, reason } => {
                self.state.set(State::Closing);
                self.queue_close((code != 1005).then_some(code), &reason);
                self.report(|e| e.closing(code, &reason));
                // `finished` reports it again once TCP is closed.
                *self.peer_close.borrow_mut() = Some((code, reason));
            }
        }
    }

    /// Reports the end of the connection, once.
    pub fn finish(&self, error: Option<Error>, code: u16, reason: String) {
        if self.state.replace(State::Closed) == State::Closed {
            return;
        }
        // Data accepted by send() but never written is reported, not lost silently.
        let unsent = self.out.borrow_mut().discard();
        let error = error.or_else(|| {
            self.slow_reader.get().then(|| {
                Error::new(
                    Kind::TooBig,
                    format!("closed with 1008: the peer did not read ({unsent} queued bytes were not sent)"),
                )
            })
        });
        let error = error.or_else(|| {
            (unsent > 0).then(|| {
                Error::new(
                    Kind::Closed,
                    format!("{unsent} queued bytes were not sent: the connection closed first"),
                )
            })
        });
        self.report(|e| e.finished(error, code, reason));
        self.waker.borrow_mut().take();
    }
}

/// Why the task stopped.
enum End {
    /// The closing handshake is done (or the peer went away after it).
    Closed,
    /// The peer closed TCP without a close frame.
    Vanished,
    Violation(Violation),
    ReadFailed(io::Error),
    WriteFailed(io::Error),
    CloseTimeout,
    Aborted,
    /// Nobody receives the events any more (the Lua state is gone).
    Detached,
}

/// Pings a quiet peer and closes one that stays quiet, counting from the
/// last read that brought bytes. A read only notes the time (and only
/// when a keepalive is set); the timer is not reset per read but wakes at
/// the deadline it was set for and, finding the peer heard since, sets
/// the next one.
struct Keepalive {
    timer: Pin<Box<Sleep>>,
    ping_after: Option<Duration>,
    close_after: Option<Duration>,
    heard_at: Instant,
    /// When the last keepalive ping went out: a quiet peer is pinged again
    /// every `ping_after`.
    pinged_at: Option<Instant>,
}

enum KeepaliveAction {
    Nothing,
    Ping,
    Close,
}

impl Keepalive {
    fn new(limits: &Limits) -> Option<Box<Keepalive>> {
        if limits.ping_interval.is_none() && limits.idle_timeout.is_none() {
            return None;
        }
        let now = Instant::now();
        let mut keepalive = Keepalive {
            timer: Box::pin(sleep(Duration::ZERO)),
            ping_after: limits.ping_interval,
            close_after: limits.idle_timeout,
            heard_at: now,
            pinged_at: None,
        };
        let first = keepalive.next_deadline();
        keepalive.timer.as_mut().reset(first);
        Some(Box::new(keepalive))
    }

    /// The peer was heard from (a read brought bytes).
    fn heard(&mut self) {
        self.heard_at = Instant::now();
    }

    fn ping_due(&self) -> Option<Instant> {
        let since = self.pinged_at.map_or(self.heard_at, |p| p.max(self.heard_at));
        self.ping_after.map(|p| since + p)
    }

    fn close_due(&self) -> Option<Instant> {
        self.close_after.map(|t| self.heard_at + t)
    }

    fn next_deadline(&self) -> Instant {
        match (self.ping_due(), self.close_due()) {
            (Some(p), Some(c)) => p.min(c),
            (Some(t), None) | (None, Some(t)) => t,
            // Not made without one of the two.
            (None, None) => self.heard_at + Duration::from_secs(3600),
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> KeepaliveAction {
        if self.timer.as_mut().poll(cx).is_pending() {
            return KeepaliveAction::Nothing;
        }
        let now = Instant::now();
        let action = if self.close_due().is_some_and(|c| now >= c) {
            KeepaliveAction::Close
        } else if self.ping_due().is_some_and(|p| now >= p) {
            self.pinged_at = Some(now);
            KeepaliveAction::Ping
        } else {
            KeepaliveAction::Nothing
        };
        let next = self.next_deadline();
        self.timer.as_mut().reset(next);
        // Arm the next deadline with this context.
        let _ = self.timer.as_mut().poll(cx);
        action
    }
}

/// The connection's stream, shared by the task, which reads and writes
/// it, and the outbox, which writes a large frame to it at once when
/// nothing is queued (no copy into the outbox; see `codec::DIRECT_MIN`).
/// Taken out for the closing steps.
struct Socket(RefCell<Option<Stream>>);

impl DirectWrite for Socket {
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> usize {
        let Ok(stream) = self.0.try_borrow() else { return 0 };
        match &*stream {
            // A TLS stream copies into its records anyway.
            Some(Stream::Plain(tcp)) => tcp.try_write_vectored(bufs).unwrap_or(0),
            _ => 0,
        }
    }
}

/// Moves bytes between the socket, the reader, the events and the outbox.
struct Driver {
    socket: Rc<Socket>,
    reader: Reader,
    input: BytesMut,
    read_size: usize,
    /// The peer closed its side of TCP.
    eof: bool,
    /// Messages delivered since the outbox was last written.
    since_write: u32,
    close_timer: Option<Pin<Box<Sleep>>>,
    /// Boxed: most connections have none, and the task's size is per connection.
    keepalive: Option<Box<Keepalive>>,
    /// Reading pauses with this many bytes unwritten (servers: `HIGH_WATER`).
    high_water: usize,
    /// The keepalive closed the connection (`idle_timeout`): said in the
    /// report if the peer does not answer that close either.
    idle_closed: bool,
}

impl Driver {
    fn new(socket: Rc<Socket>, leftover: BytesMut, sh: &Shared) -> Driver {
        let limits = sh.start_limits.take().unwrap_or_default();
        let limits = &*limits;
        Driver {
            socket,
            reader: Reader::new(
                sh.role,
                limits.max_frame_size,
                limits.max_message_size,
                sh.deflate.map(Inflater::new),
            ),
            input: leftover,
            read_size: limits.read_buffer_size,
            eof: false,
            since_write: 0,
            close_timer: None,
            keepalive: Keepalive::new(limits),
            high_water: match sh.role {
                Role::Server => HIGH_WATER.min(limits.max_buffered / 2).max(1),
                Role::Client => usize::MAX,
            },
            idle_closed: false,
        }
    }

    /// Runs until the connection ends, delivering messages as they come.
    fn poll(&mut self, sh: &Shared, cx: &mut Context<'_>) -> Poll<End> {
        {
            let mut waker = sh.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
        }
        if !sh.events.attached() {
            return Poll::Ready(End::Detached);
        }
        let mut delivered = 0u32;
        loop {
            if sh.aborted.get() {
                return Poll::Ready(End::Aborted);
            }
            if let Some(end) = self.poll_timers(sh, cx) {
                return Poll::Ready(end);
            }
            if self.since_write >= FLUSH_EVERY || sh.out.borrow().len() >= self.high_water {
                if let Err(e) = self.write_out(sh, cx) {
                    return Poll::Ready(End::WriteFailed(e));
                }
                if sh.out.borrow().len() >= self.high_water {
                    // Woken when the socket can take more.
                    return Poll::Pending;
                }
            }
            if delivered >= FAIRNESS_BATCH {
                if let Err(e) = self.write_out(sh, cx) {
                    return Poll::Ready(End::WriteFailed(e));
                }
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if sh.read_paused.get() && sh.state.get() == State::Open {
                // Nothing is read or delivered until resume_reading wakes
                // the task; what the events produced is written meanwhile.
                // (Once closing, the task reads on: the handshake needs
                // the peer's close.)
                if let Err(e) = self.write_out(sh, cx) {
                    return Poll::Ready(End::WriteFailed(e));
                }
                if !sh.keeps_loop() {
                    sh.events.quiet();
                }
                return Poll::Pending;
            }
            if sh.peer_close.borrow().is_some() {
                // Nothing the peer sends after its close matters,
                // not even a broken frame: it must not cost the close
                // reply and what was queued before it.
                self.input.clear();
            }
            let need = match self.reader.next(&mut self.input) {
                Err(v) => return Poll::Ready(End::Violation(v)),
                Ok(Step::Fragment(used)) => {
                    self.input.advance(used);
                    continue;
                }
                Ok(Step::Event(event, used)) => {
                    sh.deliver(event);
                    self.input.advance(used);
                    self.reader.delivered();
                    self.since_write += 1;
                    delivered += 1;
                    continue;
                }
                Ok(Step::Need(total)) => total,
            };
            if !self.eof {
                match self.read_more(cx, need) {
                    Poll::Ready(Ok(0)) => self.eof = true,
                    Poll::Ready(Ok(_)) => {
                        if let Some(keepalive) = &mut self.keepalive {
                            keepalive.heard();
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(End::ReadFailed(e)),
                    Poll::Pending => {}
                }
            }
            // Input ran dry: write what the messages produced.
            if let Err(e) = self.write_out(sh, cx) {
                return Poll::Ready(End::WriteFailed(e));
            }
            if let Some(end) = self.finished(sh) {
                return Poll::Ready(end);
            }
            return Poll::Pending;
        }
    }

    /// The close timer and the keepalive; either may end the connection or
    /// queue a frame.
    fn poll_timers(&mut self, sh: &Shared, cx: &mut Context<'_>) -> Option<End> {
        if sh.state.get() == State::Closing && self.close_timer.is_none() {
            self.close_timer = Some(Box::pin(sleep(sh.limits.close_timeout)));
        }
        if let Some(timer) = &mut self.close_timer {
            if timer.as_mut().poll(cx).is_ready() {
                return Some(End::CloseTimeout);
            }
        }
        let keepalive = self.keepalive.as_mut()?;
        match keepalive.poll(cx) {
            KeepaliveAction::Nothing => {}
            KeepaliveAction::Ping => {
                if sh.state.get() == State::Open {
                    sh.out.borrow_mut().push(frame::PING, true, b"");
                    self.since_write = FLUSH_EVERY;
                }
            }
            KeepaliveAction::Close => {
                self.keepalive = None;
                // (Only if this close is the one that starts the handshake.)
                self.idle_closed = sh.state.get() == State::Open;
                sh.close(Some(1001), "idle timeout");
                self.since_write = FLUSH_EVERY;
            }
        }
        None
    }

    /// Whether the connection is over, once everything queued is written.
    fn finished(&self, sh: &Shared) -> Option<End> {
        if !sh.out.borrow().is_empty() || sh.unflushed.get() {
            return None;
        }
        let handshake_done = sh.close_sent.get() && sh.peer_close.borrow().is_some();
        // The server closes TCP first (§7.1.1); a client waits for it.
        if handshake_done && (sh.role == Role::Server || self.eof) {
            return Some(End::Closed);
        }
        if self.eof {
            return Some(if sh.peer_close.borrow().is_some() || sh.close_sent.get() {
                End::Closed
            } else {
                End::Vanished
            });
        }
        None
    }

    /// Reads into the input buffer: at least `read_size` bytes, more when
    /// a large frame is pending. An empty buffer is given back while the
    /// socket has nothing, so idle connections hold no input memory.
    fn read_more(&mut self, cx: &mut Context<'_>, need: usize) -> Poll<io::Result<usize>> {
        let want = need.saturating_sub(self.input.len()).clamp(self.read_size, MAX_READ.max(self.read_size));
        if self.input.capacity() == 0 {
            self.input = buffers::take(want);
        } else {
            self.input.reserve(want);
        }
        let mut socket = self.socket.0.borrow_mut();
        let Some(stream) = socket.as_mut() else { return Poll::Ready(Ok(0)) };
        match tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut self.input) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => {
                if self.input.is_empty() {
                    buffers::give_back(std::mem::take(&mut self.input));
                }
                Poll::Pending
            }
        }
    }

    /// Writes the outbox until it is empty or the socket is full.
    fn write_out(&mut self, sh: &Shared, cx: &mut Context<'_>) -> io::Result<()> {
        self.since_write = 0;
        let mut out = sh.out.borrow_mut();
        let mut socket = self.socket.0.borrow_mut();
        let Some(stream) = socket.as_mut() else { return Err(io::ErrorKind::NotConnected.into()) };
        loop {
            if out.len() < PONG_BACKLOG {
                // Owed until the peer's close arrives (§5.5.2), not after.
                if let Some(pong) = sh.pending_pong.borrow_mut().take() {
                    if sh.peer_close.borrow().is_none() {
                        out.push(frame::PONG, true, &pong);
                    }
                }
            }
            if out.is_empty() {
                break;
            }
            match stream.poll_write_now(cx, out.bytes()) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    out.written(n);
                    sh.unflushed.set(true);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        drop(out);
        if sh.unflushed.get() {
            match Pin::new(&mut *stream).poll_flush(cx) {
                Poll::Ready(Ok(())) => sh.unflushed.set(false),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        // on_drain may send, and a large frame goes to the socket directly.
        drop(socket);
        if sh.notify_drained() {
            // on_drain queued more: come back to write it.
            cx.waker().wake_by_ref();
        }
        Ok(())
    }

    /// Best effort: tell the peer why we fail the connection, then close TCP.
    async fn fail(&mut self, sh: &Shared, code: u16) {
        sh.queue_close(Some(code), "");
        let Some(mut stream) = self.socket.0.borrow_mut().take() else { return };
        let pending = sh.out.borrow().bytes().to_vec();
        let send = async {
            stream.write_all(&pending).await?;
            stream.flush().await
        };
        if let Ok(Ok(())) = tokio::time::timeout(FAIL_FLUSH_TIMEOUT, send).await {
            sh.out.borrow_mut().written(pending.len());
        }
        let _ = tokio::time::timeout(FAIL_FLUSH_TIMEOUT, stream.shutdown()).await;
    }

    /// Closes the TCP (and TLS) stream politely, bounded in time.
    async fn shutdown(&mut self) {
        let Some(mut stream) = self.socket.0.borrow_mut().take() else { return };
        let _ = tokio::time::timeout(FAIL_FLUSH_TIMEOUT, stream.shutdown()).await;
    }
}

/// Runs an established connection until it is closed; `leftover` holds
/// bytes read past the handshake.
pub fn run(shared: Rc<Shared>, stream: Stream, leftover: BytesMut) -> impl Future<Output = ()> {
    run_holding(shared, stream, leftover, ())
}

/// `run`, keeping `guard` until the connection is over (a server's count
/// of open connections).
///
/// The task is the largest part of an idle connection's memory, so its
/// future holds little more than the `Driver`: made here rather than
/// inside the `async` block (which would keep `stream` and `leftover` as
/// well), with the closing steps boxed.
pub fn run_holding<G: 'static>(
    shared: Rc<Shared>,
    stream: Stream,
    leftover: BytesMut,
    guard: G,
) -> impl Future<Output = ()> {
    let direct = matches!(stream, Stream::Plain(_)) && shared.role == Role::Server;
    let socket = Rc::new(Socket(RefCell::new(Some(stream))));
    if direct {
        shared.out.borrow_mut().write_directly_to(Some(socket.clone()));
    }
    let mut driver = Driver::new(socket, leftover, &shared);
    async move {
        let end = poll_fn(|cx| driver.poll(&shared, cx)).await;
        // From here on the task writes nothing more the program sends.
        shared.out.borrow_mut().write_directly_to(None);
        let (error, code, reason) = Box::pin(end_of(&shared, &mut driver, end)).await;
        drop(driver);
        shared.finish(error, code, reason);
        drop(guard);
    }
}

/// Works out how the connection ended and closes the socket accordingly.
async fn end_of(shared: &Shared, driver: &mut Driver, end: End) -> (Option<Error>, u16, String) {
    let peer_close = shared.peer_close.borrow_mut().take();
    // Once the peer's close arrived, how the socket went down is no error.
    if let (Some((code, reason)), false) = (&peer_close, matches!(end, End::Aborted)) {
        driver.shutdown().await;
        return (None, *code, reason.clone());
    }
    match end {
        End::Closed => {
            driver.shutdown().await;
            (None, 1006, "closed without a close frame".into())
        }
        End::Vanished => (
            Some(Error::new(Kind::Io, "the peer closed the connection without a closing handshake")),
            1006,
            String::new(),
        ),
        End::Violation(v) => {
            // Writes what is queued, with our close (the one already
            // queued, or one with the violation's code) last.
            driver.fail(shared, v.code).await;
            (Some(Error::new(v.kind, v.message)), v.code, String::new())
        }
        End::ReadFailed(e) | End::WriteFailed(e) => {
            (Some(Error::new(Kind::Io, e.to_string())), 1006, String::new())
        }
        End::CloseTimeout => {
            driver.shutdown().await;
            let why = if driver.idle_closed {
                "idle timeout: the peer was silent and did not answer the close"
            } else {
                "the closing handshake timed out"
            };
            (None, 1006, why.into())
        }
        End::Aborted => (None, 1006, "aborted".into()),
        End::Detached => (None, 1001, "the Lua state is gone".into()),
    }
}

/// An `Events` that writes down what it hears, for the engine's tests.
#[cfg(test)]
pub(crate) mod recorder {
    use std::cell::RefCell;

    use super::Events;
    use crate::engine::error::Error;

    /// Messages, pings and the end, in order, as short lines.
    #[derive(Default)]
    pub(crate) struct Recorder(pub RefCell<Vec<String>>);

    impl Events for Recorder {
        fn message(&self, data: &[u8], binary: bool) {
            self.0.borrow_mut().push(format!("message {} {binary}", String::from_utf8_lossy(data)));
        }
        fn ping(&self, data: &[u8]) {
            self.0.borrow_mut().push(format!("ping {}", String::from_utf8_lossy(data)));
        }
        fn pong(&self, _: &[u8]) {}
        fn drained(&self) {}
        fn closing(&self, code: u16, reason: &str) {
            self.0.borrow_mut().push(format!("closing {code} {reason}"));
        }
        fn finished(&self, error: Option<Error>, code: u16, reason: String) {
            let error = error.map_or("none".into(), |e| e.kind.name().to_owned());
            self.0.borrow_mut().push(format!("finished {code} {reason} error={error}"));
        }
        fn attached(&self) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection's task and state are its largest allocations
    /// after the kernel's socket: the task must stay the `Driver` plus a few
    /// pointers (it was 900 bytes when the closing steps and the upgrade
    /// were in it), the state without the limits only the task reads (400).
    #[tokio::test]
    async fn the_connection_task_and_state_stay_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let tcp =
            tokio::net::TcpStream::connect(listener.local_addr().expect("address")).await.expect("connect");
        let events = Rc::new(recorder::Recorder::default());
        let shared = Shared::new(Limits::default(), Role::Server, None, events);
        let task = run_holding(shared, Stream::Plain(tcp), BytesMut::new(), Rc::new(()));
        let state = std::mem::size_of::<Shared>();
        assert!(state <= 320, "Shared is {state} bytes");
        let driver = std::mem::size_of::<Driver>();
        assert!(driver <= 224, "Driver is {driver} bytes");
        assert!(
            std::mem::size_of_val(&task) <= driver + 48,
            "task is {} bytes",
            std::mem::size_of_val(&task)
        );
    }
}
