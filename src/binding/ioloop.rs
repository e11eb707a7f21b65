//! The event loop: one tokio `current_thread` runtime and `LocalSet`, driven
//! from the thread that owns the Lua state.
//!
//! Every Lua callback runs on this thread, inside `start()` or `run()`.
//! Callbacks queued with `add_callback` run in FIFO order; timers fire in
//! deadline order (ties in the order they were added), from one heap driven
//! by one task, so 100,000 pending timers cost a heap entry each, not a task.
//!
//! The loop is created once per thread and deliberately leaked: dropping a
//! tokio runtime from a thread-local destructor at `exit()` crashes the
//! process, and Lua values held by pending tasks must never be released
//! after the Lua state is gone.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{Lua, RegistryKey, Value};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::LocalSet;

use crate::binding::callback;
use crate::binding::loop_wake::LoopWake;
use crate::binding::send_handles;
use crate::engine::signals::Signals;

/// What `start()`/`run()` wait for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Turbo's `start()`: until `close()`.
    UntilClosed,
    /// luvit-style `run()`: until `close()` or nothing is left to do.
    UntilIdle,
}

/// A Lua function and the one argument Turbo passes to it.
pub struct LuaCall {
    func: RegistryKey,
    arg: Option<RegistryKey>,
}

impl LuaCall {
    pub fn new(lua: &Lua, func: mlua::Function, arg: Value) -> mlua::Result<Self> {
        let arg = match arg {
            Value::Nil => None,
            v => Some(lua.create_registry_value(v)?),
        };
        Ok(LuaCall { func: lua.create_registry_value(func)?, arg })
    }

    /// Calls `func(arg)` (or `func()` without an argument) in a coroutine.
    pub fn invoke(&self, lp: &Loop, lua: &Lua, what: &str) {
        let func = match lua.registry_value::<mlua::Function>(&self.func) {
            Ok(f) => f,
            Err(e) => return callback::report(what, &e.to_string()),
        };
        match &self.arg {
            None => {
                callback::call(lp.trampolines(), lua, what, &func, ());
            }
            Some(key) => match lua.registry_value::<Value>(key) {
                Ok(arg) => {
                    callback::call(lp.trampolines(), lua, what, &func, arg);
                }
                Err(e) => callback::report(what, &e.to_string()),
            },
        }
    }
}

struct Timer {
    call: Rc<LuaCall>,
    /// `Some(period)` for intervals.
    period: Option<Duration>,
    /// Whether this timer keeps `run()` from returning.
    keeps_alive: bool,
}

pub struct Loop {
    /// Built on first use, so a program can fork worker processes before
    /// any socket or runtime exists (an epoll instance must not be shared).
    rt: std::cell::OnceCell<Runtime>,
    local: LocalSet,
    lua: mlua::WeakLua,
    /// The mode of the `start()`/`run()` on the stack, if any.
    running: Cell<Option<Mode>>,
    stopping: Cell<bool>,
    /// Woken whenever the running loop should re-check whether to return.
    wake: LoopWake,
    /// Handles (listeners, connections, pending connects) that keep `run()` going.
    handles: Cell<usize>,
    callbacks: RefCell<VecDeque<LuaCall>>,
    callbacks_scheduled: Cell<bool>,
    timers: RefCell<HashMap<u64, Timer>>,
    timers_keeping_alive: Cell<usize>,
    /// Deadlines by (instant, id); ids grow, so ties fire in insertion order.
    /// Removed timers stay here until popped and are then skipped.
    deadlines: RefCell<BinaryHeap<Reverse<(Instant, u64)>>>,
    /// Woken when a timer earlier than the driver's current sleep is added.
    timer_wake: Notify,
    timer_driver_started: Cell<bool>,
    next_id: Cell<u64>,
    trampolines: callback::Trampolines,
    /// The connections `fast_send` can reach, by handle.
    send_handles: RefCell<send_handles::Handles>,
    registry: crate::engine::registry::Registry,
    /// The pub/sub hubs of this thread and the memory backend's queue.
    pubsub: Rc<crate::engine::pubsub::Bus>,
    /// The program's signal handlers (`on_signal`), the signals listened
    /// for, and the worker role (`workers`).
    signals: Signals<Rc<RegistryKey>>,
    /// Another event loop brought into this one (`set_foreign_loop`).
    foreign: RefCell<Option<Foreign>>,
    /// Whether `foreign` is set, for tokio's park hooks: they run at every
    /// wait and wake-up, and without a foreign loop they then cost one load
    /// instead of finding the loop through a thread-local.
    has_foreign: Arc<AtomicBool>,
    /// A foreign hook is running: a nested park or idle check skips it.
    in_foreign_hook: Cell<bool>,
    /// What `before_block` last said of the foreign loop's liveness.
    foreign_was_alive: Cell<bool>,
    /// The message being handed to Lua by length (`message_copy`): its
    /// address and length, only while that call runs.
    offered_message: Cell<Option<(*const u8, usize)>>,
}

/// The Lua side of another event loop (libuv's, through luv) that runs
/// inside this one: its fds are watched with `watch_fd`; these hooks do
/// the rest.
struct Foreign {
    /// Called each time the loop is about to wait for events, so the other
    /// loop can run what is ready and say (by adding a timeout) when it next
    /// needs to run; returns whether it still has work.
    before_block: Option<RegistryKey>,
    /// Called each time the loop wakes from a wait, before anything else
    /// runs: libuv's loop time is brought up to date then, as libuv does at
    /// the start of each of its turns (its timers count from that time).
    after_block: Option<RegistryKey>,
    /// Whether the other loop still has work: keeps `run()` going.
    alive: Option<RegistryKey>,
}

// The one place the host context is found without being passed. Code
// that has a `Lua` (the `core` functions) gets the loop from `get` and
// passes it on; this is for what runs where nothing can be passed: tokio's
// park hook (`on_thread_park` wants a `Send + Sync` closure, which cannot
// hold the loop), and the engine's event traits implemented here
// (`connection::Events`, `server::Requests`, `pubsub::Events`), whose
// calls into Lua reach the trampolines through `callback`. One loop per
// thread makes this exact: `get` refuses a second Lua state on the
// thread. Add no other thread-local for host state: give it to `Loop`.
// A plain pointer: no destructor runs at thread exit.
thread_local! {
    static CURRENT: Cell<Option<&'static Loop>> = const { Cell::new(None) };
}

/// The loop of this thread, created on first use. One Lua state per
/// thread: the loop calls into the state that created it, so another state
/// loading the module on the same thread gets an error, not a loop that
/// would call into the wrong state.
pub fn get(lua: &Lua) -> mlua::Result<&'static Loop> {
    if let Some(lp) = CURRENT.with(|c| c.get()) {
        let same = lp.lua().is_some_and(|own| own.globals().to_pointer() == lua.globals().to_pointer());
        if !same {
            return Err(mlua::Error::runtime(
                "turbo_ws: another Lua state already uses turbo_ws on this thread (one Lua state per thread)",
            ));
        }
        return Ok(lp);
    }
    let lp: &'static Loop = Box::leak(Box::new(Loop {
        rt: std::cell::OnceCell::new(),
        local: LocalSet::new(),
        lua: lua.weak(),
        running: Cell::new(None),
        stopping: Cell::new(false),
        wake: LoopWake::default(),
        handles: Cell::new(0),
        callbacks: RefCell::new(VecDeque::new()),
        callbacks_scheduled: Cell::new(false),
        timers: RefCell::new(HashMap::new()),
        timers_keeping_alive: Cell::new(0),
        deadlines: RefCell::new(BinaryHeap::new()),
        timer_wake: Notify::new(),
        timer_driver_started: Cell::new(false),
        next_id: Cell::new(1),
        trampolines: callback::Trampolines::default(),
        send_handles: RefCell::default(),
        registry: crate::engine::registry::Registry::default(),
        pubsub: Rc::default(),
        signals: Signals::default(),
        foreign: RefCell::new(None),
        has_foreign: Arc::new(AtomicBool::new(false)),
        in_foreign_hook: Cell::new(false),
        foreign_was_alive: Cell::new(false),
        offered_message: Cell::new(None),
    }));
    CURRENT.with(|c| c.set(Some(lp)));
    Ok(lp)
}

/// The loop of this thread, if the module was loaded on it.
pub fn current() -> Option<&'static Loop> {
    CURRENT.with(|c| c.get())
}

/// Keeps `run()` from returning while it lives (a listener, a connection...).
pub struct KeepAlive(&'static Loop);

impl KeepAlive {
    pub fn new(lp: &'static Loop) -> Self {
        lp.handles.set(lp.handles.get() + 1);
        KeepAlive(lp)
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        let lp = self.0;
        lp.handles.set(lp.handles.get() - 1);
        lp.wake.notify_one();
    }
}

impl Loop {
    /// The Lua state, while it is open.
    pub fn lua(&self) -> Option<Lua> {
        self.lua.try_upgrade()
    }

    pub fn registry(&self) -> &crate::engine::registry::Registry {
        &self.registry
    }

    pub fn pubsub(&self) -> &Rc<crate::engine::pubsub::Bus> {
        &self.pubsub
    }

    pub fn signals(&self) -> &Signals<Rc<RegistryKey>> {
        &self.signals
    }

    /// The message `binding::message_copy` may copy from, if one is offered.
    pub fn offered_message(&self) -> &Cell<Option<(*const u8, usize)>> {
        &self.offered_message
    }

    pub fn trampolines(&self) -> &callback::Trampolines {
        &self.trampolines
    }

    pub fn send_handles(&self) -> &RefCell<send_handles::Handles> {
        &self.send_handles
    }

    pub fn is_running(&self) -> bool {
        self.running.get().is_some()
    }

    /// Spawns a task on the loop; it runs when the loop next runs.
    pub fn spawn<F: Future<Output = ()> + 'static>(&self, fut: F) -> tokio::task::JoinHandle<()> {
        self.local.spawn_local(fut)
    }

    /// Runs `f` with the runtime entered (needed to register sockets).
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> Result<R, String> {
        let _guard = self.runtime()?.enter();
        Ok(f())
    }

    fn runtime(&self) -> Result<&Runtime, String> {
        if let Some(rt) = self.rt.get() {
            return Ok(rt);
        }
        let (parking, unparking) = (self.has_foreign.clone(), self.has_foreign.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(move || {
                if parking.load(Ordering::Relaxed) {
                    if let Some(lp) = current() {
                        lp.before_block();
                    }
                }
            })
            .on_thread_unpark(move || {
                if unparking.load(Ordering::Relaxed) {
                    if let Some(lp) = current() {
                        lp.after_block();
                    }
                }
            })
            .build()
            .map_err(|e| format!("turbo_ws: cannot create the event loop: {e}"))?;
        Ok(self.rt.get_or_init(|| rt))
    }

    fn fresh_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Turbo's `start()`: blocks until `close()`.
    pub fn start(&'static self) -> Result<(), String> {
        self.drive(Mode::UntilClosed)
    }

    /// luvit's implicit loop: blocks until `close()` or nothing is pending.
    pub fn run(&'static self) -> Result<(), String> {
        self.drive(Mode::UntilIdle)
    }

    fn drive(&'static self, mode: Mode) -> Result<(), String> {
        if self.running.get().is_some() {
            return Err("the loop is already running (start() and run() cannot be nested)".into());
        }
        self.running.set(Some(mode));
        self.stopping.set(false);
        let rt = self.runtime()?;
        self.resume_callbacks();
        self.local.block_on(rt, async {
            while !self.should_return(mode) {
                self.wake.notified().await;
            }
        });
        self.running.set(None);
        self.stopping.set(false);
        Ok(())
    }

    fn should_return(&self, mode: Mode) -> bool {
        self.stopping.get() || (mode == Mode::UntilIdle && self.is_idle())
    }

    /// Nothing left that keeps `run()` going.
    pub fn is_idle(&self) -> bool {
        self.timers_keeping_alive.get() == 0
            && self.callbacks.borrow().is_empty()
            && self.handles_idle()
            && !self.foreign_alive()
    }

    /// No handle keeps `run()` going: none at all, or only connections
    /// whose reading is paused with nothing to write (`Closable::keeps_loop`;
    /// counted only when every handle could be one).
    fn handles_idle(&self) -> bool {
        let handles = self.handles.get();
        handles == 0
            || (handles <= self.registry.open_connections() && handles == self.registry.quiet_connections())
    }

    /// Makes a running `run()` look again at whether it should return.
    pub fn recheck_idle(&self) {
        if self.running.get() == Some(Mode::UntilIdle) {
            self.wake.notify_one();
        }
    }

    /// What keeps `run()` going, in words (for `workers()`'s refusal).
    pub fn pending_work(&self) -> Vec<&'static str> {
        let mut pending = Vec::new();
        if self.handles.get() > 0 {
            pending.push("a listener, connection, connect, HTTP request, watched fd, redis hub or undelivered pubsub message");
        }
        if self.timers_keeping_alive.get() > 0 {
            pending.push("a timer");
        }
        if !self.callbacks.borrow().is_empty() {
            pending.push("a queued callback (add_callback, or a published message not yet delivered)");
        }
        if self.foreign.borrow().is_some() && self.foreign_alive() {
            pending.push("libuv handles");
        }
        pending
    }

    /// Calls a foreign hook (`which` picks it); its result, or None when
    /// there is none, or it failed, or a hook is already running.
    fn call_foreign(&self, which: fn(&Foreign) -> &Option<RegistryKey>, what: &str) -> Option<bool> {
        if self.in_foreign_hook.get() {
            return None;
        }
        let lua = self.lua()?;
        let func = {
            let foreign = self.foreign.borrow();
            let key = which(foreign.as_ref()?).as_ref()?;
            lua.registry_value::<mlua::Function>(key).ok()?
        };
        self.in_foreign_hook.set(true);
        let result = func.call::<bool>(());
        self.in_foreign_hook.set(false);
        match result {
            Ok(b) => Some(b),
            Err(e) => {
                callback::report(what, &e.to_string());
                None
            }
        }
    }

    fn foreign_alive(&self) -> bool {
        let alive = self.foreign.borrow().is_some()
            && self.call_foreign(|f| &f.alive, "foreign loop alive()") == Some(true);
        // before_block wakes run() on a change from what run() last saw here.
        self.foreign_was_alive.set(alive);
        alive
    }

    /// The runtime is about to wait for events (tokio's park hook). When
    /// the foreign loop's work ran out (or began), `run()` must look again
    /// at whether to return.
    fn before_block(&self) {
        if self.foreign.borrow().is_none() {
            return;
        }
        if let Some(alive) = self.call_foreign(|f| &f.before_block, "foreign loop before_block()") {
            if self.foreign_was_alive.replace(alive) != alive {
                self.wake.notify_one();
            }
        }
    }

    /// The runtime woke from a wait (tokio's unpark hook).
    fn after_block(&self) {
        if self.foreign.borrow().is_some() {
            self.call_foreign(|f| &f.after_block, "foreign loop after_block()");
        }
    }

    /// Attaches (or, with None, detaches) another loop's hooks.
    fn set_foreign(&self, foreign: Option<Foreign>) {
        self.has_foreign.store(foreign.is_some(), Ordering::Relaxed);
        let old = std::mem::replace(&mut *self.foreign.borrow_mut(), foreign);
        drop(old);
        self.wake.notify_one();
    }

    /// Makes the running `start()`/`run()` return after the current callback.
    pub fn close(&self) {
        if self.running.get().is_some() {
            self.stopping.set(true);
            self.wake.notify_one();
        }
    }

    /// Queues `call` to run on the next iteration, after those already queued.
    pub fn add_callback(&'static self, call: LuaCall) {
        self.callbacks.borrow_mut().push_back(call);
        if !self.callbacks_scheduled.replace(true) {
            self.spawn(async move { self.run_callbacks() });
        }
    }

    /// Runs the callbacks queued so far; ones they add wait for the next turn.
    /// After `close()` the rest of the batch goes back to the front of the
    /// queue for the next `start()`/`run()`.
    fn run_callbacks(&'static self) {
        let mut batch = std::mem::take(&mut *self.callbacks.borrow_mut());
        // Cleared before running, so a callback that adds one schedules a new
        // turn (and a close() leaves the rest for the next start()).
        self.callbacks_scheduled.set(false);
        let Some(lua) = self.lua() else { return };
        while let Some(call) = batch.pop_front() {
            if self.stopping.get() {
                batch.push_front(call);
                self.requeue_front(batch);
                break;
            }
            call.invoke(self, &lua, "ioloop callback");
        }
        self.wake.notify_one();
    }

    /// Puts callbacks that a `close()` kept from running before those queued
    /// since; the next `start()`/`run()` schedules them.
    fn requeue_front(&self, mut rest: VecDeque<LuaCall>) {
        let mut queue = self.callbacks.borrow_mut();
        rest.append(&mut queue);
        *queue = rest;
    }

    /// Schedules a turn for callbacks left queued by a `close()`.
    fn resume_callbacks(&'static self) {
        if !self.callbacks.borrow().is_empty() && !self.callbacks_scheduled.replace(true) {
            self.spawn(async move { self.run_callbacks() });
        }
    }

    /// Adds a timer firing at `deadline`; returns its id.
    pub fn add_timer(
        &'static self,
        deadline: Instant,
        call: LuaCall,
        period: Option<Duration>,
        keeps_alive: bool,
    ) -> u64 {
        let id = self.fresh_id();
        self.timers.borrow_mut().insert(id, Timer { call: Rc::new(call), period, keeps_alive });
        if keeps_alive {
            self.timers_keeping_alive.set(self.timers_keeping_alive.get() + 1);
        }
        self.schedule(id, deadline);
        if !self.timer_driver_started.replace(true) {
            self.spawn(self.drive_timers());
        }
        id
    }

    fn schedule(&self, id: u64, deadline: Instant) {
        let mut heap = self.deadlines.borrow_mut();
        let earliest = heap.peek().map(|Reverse((t, _))| *t);
        heap.push(Reverse((deadline, id)));
        if earliest.is_none_or(|t| deadline < t) {
            self.timer_wake.notify_one();
        }
    }

    /// Cancels a timer or interval; false if it was not pending.
    pub fn remove_timer(&self, id: u64) -> bool {
        let removed = self.timers.borrow_mut().remove(&id);
        match removed {
            Some(timer) => {
                if timer.keeps_alive {
                    self.timers_keeping_alive.set(self.timers_keeping_alive.get() - 1);
                }
                self.compact_deadlines();
                self.wake.notify_one();
                true
            }
            None => false,
        }
    }

    /// Drops the heap entries of removed timers once they dominate the heap,
    /// so adding and removing far-future timers cannot grow it without bound.
    fn compact_deadlines(&self) {
        let live = self.timers.borrow().len();
        let mut heap = self.deadlines.borrow_mut();
        if heap.len() > 2 * live + 1024 {
            let timers = self.timers.borrow();
            heap.retain(|Reverse((_, id))| timers.contains_key(id));
        }
    }

    /// The one task that fires every timer of the loop.
    async fn drive_timers(&'static self) {
        loop {
            let next = self.deadlines.borrow().peek().map(|Reverse((t, _))| *t);
            match next {
                None => self.timer_wake.notified().await,
                Some(t) if t > Instant::now() => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        _ = self.timer_wake.notified() => {}
                    }
                }
                Some(_) => {
                    self.fire_due_timers();
                    // Let the rest of the loop run (and close() take effect)
                    // between rounds: an interval of 0 ms is always due again.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    fn fire_due_timers(&'static self) {
        // Turbo's loop runs the queued callbacks of a turn before its due
        // timeouts, whichever task tokio polls first.
        if !self.callbacks.borrow().is_empty() && !self.stopping.get() {
            self.run_callbacks();
        }
        let now = Instant::now();
        let Some(lua) = self.lua() else { return };
        // After close() the timers still due wait for the next start().
        while !self.stopping.get() {
            let due = {
                let mut heap = self.deadlines.borrow_mut();
                match heap.peek().copied() {
                    Some(Reverse((t, id))) if t <= now => {
                        heap.pop();
                        Some((t, id))
                    }
                    _ => None,
                }
            };
            let Some((deadline, id)) = due else { break };
            self.fire(&lua, id, deadline);
        }
        self.wake.notify_one();
    }

    fn fire(&'static self, lua: &Lua, id: u64, deadline: Instant) {
        // Not held across the call: the callback may add or remove timers.
        let timer = self.timers.borrow().get(&id).map(|t| (t.call.clone(), t.period));
        let Some((call, period)) = timer else { return };
        call.invoke(self, lua, if period.is_some() { "interval" } else { "timeout" });
        match period {
            // Unless the callback cleared it, keep the interval's phase, but
            // never queue a burst after a stall.
            Some(period) if self.timers.borrow().contains_key(&id) => {
                self.schedule(id, (deadline + period).max(Instant::now()));
            }
            Some(_) => {}
            None => {
                self.remove_timer(id);
            }
        }
    }
}

fn monotonic_precise_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only into `ts`; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as f64) * 1000.0 + (ts.tv_nsec as f64) / 1.0e6
}

/// Whole milliseconds on the monotonic clock (Turbo's `gettimemonotonic`).
pub fn monotonic_ms() -> f64 {
    monotonic_precise_ms().floor()
}

/// Milliseconds since the Unix epoch (Turbo's `gettimeofday`).
pub fn wallclock_ms() -> f64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    since.as_millis() as f64
}

/// The instant at which the monotonic clock reads `ms`. One fixed anchor
/// keeps the mapping exact, so timestamps keep their order even when they
/// are already past.
fn instant_at(ms: f64) -> Instant {
    static ANCHOR: std::sync::OnceLock<(Instant, f64)> = std::sync::OnceLock::new();
    let (at, anchor_ms) = *ANCHOR.get_or_init(|| (Instant::now(), monotonic_precise_ms()));
    let offset = Duration::from_secs_f64((ms - anchor_ms).abs().min(1.0e12) / 1000.0);
    if ms >= anchor_ms {
        at + offset
    } else {
        at.checked_sub(offset).unwrap_or(at)
    }
}

/// How long `shutdown` waits for the connections it aborted to report closed.
const ABORTED_GRACE: Duration = Duration::from_secs(1);

/// Stops every listener, closes every connection with 1001, waits for them
/// up to `timeout`, aborts the rest, then calls `on_done`.
pub fn shutdown(lp: &'static Loop, timeout: Duration, on_done: Option<LuaCall>) {
    lp.registry().stop_all();
    lp.spawn(async move {
        let registry = lp.registry();
        if tokio::time::timeout(timeout, registry.drained()).await.is_err() {
            registry.abort_all();
            // The aborted connections' on_close come before on_done; their
            // tasks finish on their next poll (bounded all the same).
            let _ = tokio::time::timeout(ABORTED_GRACE, registry.drained()).await;
        }
        if let (Some(call), Some(lua)) = (on_done, lp.lua()) {
            call.invoke(lp, &lua, "shutdown callback");
        }
    });
}

/// Registers the loop's functions in the `core` table.
pub fn register(lua: &Lua, core: &mlua::Table) -> mlua::Result<()> {
    use crate::binding::args;
    let lp = get(lua)?;

    core.set(
        "start",
        lua.create_function(move |_, ()| lp.start().map_err(|e| args::misuse("turbo_ws.start", e)))?,
    )?;
    core.set(
        "run",
        lua.create_function(move |_, ()| lp.run().map_err(|e| args::misuse("turbo_ws.run", e)))?,
    )?;
    core.set(
        "close",
        lua.create_function(move |_, ()| {
            lp.close();
            Ok(())
        })?,
    )?;
    core.set("running", lua.create_function(move |_, ()| Ok(lp.is_running()))?)?;

    core.set(
        "add_callback",
        lua.create_function(move |lua, (func, arg): (Value, Value)| {
            let func = args::function("turbo_ws.add_callback", 1, "callback", func)?;
            lp.add_callback(LuaCall::new(lua, func, arg)?);
            Ok(())
        })?,
    )?;

    core.set(
        "add_timeout",
        lua.create_function(move |lua, (ts, func, arg, keep): (Value, Value, Value, Value)| {
            const F: &str = "turbo_ws.add_timeout";
            let ts = args::number(F, 1, "timestamp", ts)?;
            let func = args::function(F, 2, "callback", func)?;
            let keeps_alive = args::opt_bool(F, 4, "keep_alive", keep)?.unwrap_or(true);
            Ok(lp.add_timer(instant_at(ts), LuaCall::new(lua, func, arg)?, None, keeps_alive))
        })?,
    )?;

    core.set(
        "set_interval",
        lua.create_function(move |lua, (ms, func, arg, keep): (Value, Value, Value, Value)| {
            const F: &str = "turbo_ws.set_interval";
            let ms = args::non_negative(F, 1, "msec", ms)?;
            let func = args::function(F, 2, "callback", func)?;
            let keeps_alive = args::opt_bool(F, 4, "keep_alive", keep)?.unwrap_or(true);
            // Clamped like add_timeout's: ~31 years is "never" here, and a
            // larger value would overflow the Duration.
            let period = Duration::from_secs_f64(ms.min(1.0e12) / 1000.0);
            let call = LuaCall::new(lua, func, arg)?;
            Ok(lp.add_timer(Instant::now() + period, call, Some(period), keeps_alive))
        })?,
    )?;

    let remove = lua.create_function(move |_, id: Value| {
        // Unknown or spent refs are not an error, as in Turbo.
        Ok(match id {
            Value::Integer(i) if i > 0 => lp.remove_timer(i as u64),
            Value::Number(x) if x > 0.0 && x.fract() == 0.0 => lp.remove_timer(x as u64),
            _ => false,
        })
    })?;
    core.set("remove_timeout", remove.clone())?;
    core.set("clear_interval", remove)?;

    // shutdown([timeout_seconds [, on_done]]): graceful stop of every server and connection.
    core.set(
        "shutdown",
        lua.create_function(move |lua, (timeout, on_done): (Value, Value)| {
            const F: &str = "turbo_ws.shutdown";
            let timeout = match timeout {
                Value::Nil => Duration::from_secs(5),
                t => Duration::from_secs_f64(args::non_negative(F, 1, "timeout", t)?.min(1.0e6)),
            };
            let on_done = match args::opt_function(F, 2, "on_done", on_done)? {
                Some(f) => Some(LuaCall::new(lua, f, Value::Nil)?),
                None => None,
            };
            shutdown(lp, timeout, on_done);
            Ok(())
        })?,
    )?;

    // set_foreign_loop{before_block = fn, after_block = fn, alive = fn} | nil: see `Foreign`.
    core.set(
        "set_foreign_loop",
        lua.create_function(move |lua, hooks: Value| {
            const F: &str = "turbo_ws.set_foreign_loop";
            let Some(hooks) = args::opt_table(F, 1, "hooks", hooks)? else {
                lp.set_foreign(None);
                return Ok(());
            };
            let key = |name: &str| -> mlua::Result<Option<RegistryKey>> {
                match hooks.get::<Value>(name)? {
                    Value::Nil => Ok(None),
                    Value::Function(f) => Ok(Some(lua.create_registry_value(f)?)),
                    other => Err(args::misuse(
                        F,
                        format!("bad option '{name}' (function expected, got {})", args::type_name(&other)),
                    )),
                }
            };
            let foreign = Foreign {
                before_block: key("before_block")?,
                after_block: key("after_block")?,
                alive: key("alive")?,
            };
            lp.set_foreign(Some(foreign));
            Ok(())
        })?,
    )?;

    // on_yield(fn | nil): fn(co, ...) gets every callback coroutine that
    // yields values (a bare yield leaves it to whoever resumes it).
    core.set(
        "on_yield",
        lua.create_function(move |_, handler: Value| {
            let handler = args::opt_function("turbo_ws.on_yield", 1, "handler", handler)?;
            lp.trampolines().set_yield_handler(handler);
            Ok(())
        })?,
    )?;

    // resume(co, ...): resumes a coroutine that yielded from a callback,
    // as the loop runs callbacks (see callback::resume).
    core.set(
        "resume",
        lua.create_function(move |_, (co, rest): (Value, mlua::MultiValue)| {
            let co = match co {
                Value::Thread(co) => co,
                other => return Err(args::bad("turbo_ws.resume", 1, "co", "coroutine", &other)),
            };
            if co.status() != mlua::thread::ThreadStatus::Resumable {
                return Err(args::misuse(
                    "turbo_ws.resume",
                    "bad argument #1 'co' (cannot resume a running or dead coroutine)",
                ));
            }
            Ok(callback::resume(lp.trampolines(), co, rest))
        })?,
    )?;

    core.set("gettimemonotonic", lua.create_function(|_, ()| Ok(monotonic_ms()))?)?;
    core.set("gettimeofday", lua.create_function(|_, ()| Ok(wallclock_ms()))?)?;
    Ok(())
}
