//! Watching a file descriptor the program owns on the loop's reactor:
//! Turbo's `IOLoop:add_handler`, and the way another library's loop (libuv's
//! backend fd) is brought into turbo_ws's.
//!
//! `core.watch_fd(fd, events, callback [, keep_alive = true]) -> watcher | nil, message`
//! calls `callback(events)` while the fd is ready for any of `events`:
//! `READ` (1), `WRITE` (4), plus `ERROR` (0x18, error or hang-up), which is
//! always reported — the values and the level-triggered behaviour of
//! Turbo's epoll loop. `watcher:update(events)` changes what is watched,
//! `watcher:close()` stops (also from inside the callback).
//!
//! The watch holds a duplicate of the fd, so a program that closes its fd
//! first cannot make the reactor deregister whatever reuses the number; the
//! open file stays open until the watcher is closed (close the watcher,
//! then the fd, as Turbo's IOStream does). An fd epoll cannot watch (a
//! regular file) gives `nil, message`.

use std::cell::Cell;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use mlua::{AnyUserData, Function, Lua, RegistryKey, Table, UserData, UserDataMethods, Value};
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::Notify;

use crate::binding::args;
use crate::binding::callback;
use crate::binding::ioloop::{self, KeepAlive, Loop};
use crate::binding::userdata::{self, Object};

pub const READ: u32 = 0x001;
pub const WRITE: u32 = 0x004;
pub const ERROR: u32 = 0x008 | 0x010;

/// Our own duplicate of the program's fd (close-on-exec).
fn duplicate(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) makes a new descriptor or fails; the
    // new one is ours alone, so OwnedFd may close it.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh, open descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// What the watcher's task and its Lua handle share.
struct Watch {
    /// READ and/or WRITE: what the callback hears of (ERROR always).
    events: Cell<u32>,
    closed: Cell<bool>,
    /// Woken by `update` and `close`.
    changed: Notify,
}

/// The Lua handle.
struct Watcher(Rc<Watch>);

fn tokio_interest(events: u32) -> Interest {
    match (events & READ != 0, events & WRITE != 0) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (false, true) => Interest::WRITABLE,
        // Only ERROR asked for: readable readiness carries hang-ups too.
        _ => Interest::READABLE,
    }
}

/// Readiness in Turbo's (epoll's) bits, limited to what is asked for.
fn mask_of(ready: Ready, events: u32) -> u32 {
    let mut mask = 0;
    if ready.is_readable() && events & READ != 0 {
        mask |= READ;
    }
    if ready.is_writable() && events & WRITE != 0 {
        mask |= WRITE;
    }
    if ready.is_error() || (ready.is_read_closed() && ready.is_write_closed()) {
        mask |= ERROR;
    }
    mask
}

/// Whether the fd is still ready for `events` (epoll is level-triggered for
/// Turbo programs; tokio's registration is edge-triggered, so we ask).
fn still_ready(fd: RawFd, events: u32) -> bool {
    let mut wanted = 0;
    if events & READ != 0 {
        wanted |= libc::POLLIN;
    }
    if events & WRITE != 0 {
        wanted |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd { fd, events: wanted, revents: 0 };
    // SAFETY: one pollfd we own, no waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (wanted | libc::POLLERR | libc::POLLHUP) != 0
}

/// Delivers readiness to `callback` until the watcher is closed.
async fn watch(fd: AsyncFd<OwnedFd>, w: Rc<Watch>, callback: RegistryKey, alive: Option<KeepAlive>) {
    let raw = fd.get_ref().as_raw_fd();
    while !w.closed.get() {
        let events = w.events.get();
        let mut guard = tokio::select! {
            ready = fd.ready(tokio_interest(events) | Interest::ERROR) => match ready {
                Ok(guard) => guard,
                Err(_) => break,
            },
            _ = w.changed.notified() => continue,
        };
        let mask = mask_of(guard.ready(), events);
        if mask != 0 {
            let Some(lp) = ioloop::current() else { break };
            let Some(lua) = lp.lua() else { break };
            match lua.registry_value::<Function>(&callback) {
                Ok(func) => {
                    callback::call(lp.trampolines(), &lua, "fd handler", &func, mask);
                }
                Err(e) => callback::report("fd handler", &e.to_string()),
            }
        }
        if w.closed.get() {
            break;
        }
        if still_ready(raw, w.events.get()) {
            drop(guard);
            // Ready again at once: let others run first.
            tokio::task::yield_now().await;
        } else {
            guard.clear_ready();
        }
    }
    w.closed.set(true);
    drop(fd);
    drop(alive);
}

fn events_arg(func: &str, n: usize, v: Value) -> mlua::Result<u32> {
    let events = args::count(func, n, "events", v, u64::from(u32::MAX))? as u32;
    if events & !(READ | WRITE | ERROR | 0x002) != 0 {
        return Err(args::misuse(
            func,
            format!(
                "bad argument #{n} 'events' ({events:#x} has bits other than READ, WRITE, PRI and ERROR)"
            ),
        ));
    }
    Ok(events)
}

fn watch_fd(
    lua: &Lua,
    lp: &'static Loop,
    (fd, events, func, keep_alive): (Value, Value, Value, Value),
) -> mlua::Result<(Option<AnyUserData>, Option<String>)> {
    const F: &str = "turbo_ws.watch_fd";
    let fd = args::count(F, 1, "fd", fd, i32::MAX as u64)? as RawFd;
    let events = events_arg(F, 2, events)?;
    let func = args::function(F, 3, "callback", func)?;
    let keep_alive = args::opt_bool(F, 4, "keep_alive", keep_alive)?.unwrap_or(true);
    let own = match duplicate(fd) {
        Ok(own) => own,
        Err(e) => return Ok((None, Some(format!("cannot watch fd {fd}: {e}")))),
    };
    // Registered for both directions once; `events` filters what is reported,
    // so update() never has to register again.
    // SAFETY: `own` is our open descriptor and stays open (and the same)
    // for as long as the AsyncFd owns it.
    let registered =
        lp.enter(|| unsafe { AsyncFd::register_with_interest(own, Interest::READABLE | Interest::WRITABLE) });
    let fd = match registered.map_err(|e| args::misuse(F, e))? {
        Ok(registered) => registered,
        Err(e) => return Ok((None, Some(format!("cannot watch fd {fd}: {e}")))),
    };
    let w = Rc::new(Watch { events: Cell::new(events), closed: Cell::new(false), changed: Notify::new() });
    let alive = keep_alive.then(|| KeepAlive::new(lp));
    lp.spawn(watch(fd, w.clone(), lua.create_registry_value(func)?, alive));
    Ok((Some(userdata::create(lua, Watcher(w))?), None))
}

impl Object for Watcher {
    const NAME: &'static CStr = c"turbo_ws watcher";
}

impl UserData for Watcher {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("update", |_, this, events: Value| {
            let events = events_arg("turbo_ws watcher:update", 1, events)?;
            if this.0.closed.get() {
                return Ok(false);
            }
            this.0.events.set(events);
            this.0.changed.notify_one();
            Ok(true)
        });
        methods.add_method("close", |_, this, ()| {
            let was_open = !this.0.closed.replace(true);
            this.0.changed.notify_one();
            Ok(was_open)
        });
        methods.add_method("closed", |_, this, ()| Ok(this.0.closed.get()));
    }
}

/// Registers `watch_fd` and the event bits in the `core` table.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("watch_fd", lua.create_function(move |lua, a| watch_fd(lua, lp, a))?)?;
    core.set("READ", READ)?;
    core.set("WRITE", WRITE)?;
    core.set("ERROR", ERROR)?;
    Ok(())
}
