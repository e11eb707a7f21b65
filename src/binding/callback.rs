//! Calling into Lua safely.
//!
//! Every call from the loop into Lua goes through [`call`]: it runs the
//! function in a coroutine (as Turbo does, so callbacks may yield), catches
//! Rust panics so none crosses back into the loop, and reports an uncaught
//! Lua error with its traceback instead of stopping the loop.
//!
//! Creating a coroutine per call would cost more than the call itself, so a
//! finished coroutine is kept and reused: it runs a small Lua trampoline that
//! calls the function it is resumed with, then yields a private marker. If a
//! callback yields instead, its coroutine now belongs to whoever resumes it,
//! and the next call gets a fresh one.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::thread::ThreadStatus;
use mlua::{ffi, Function, IntoLuaMulti, LightUserData, Lua, MultiValue, Thread, Value};

/// Its address marks "the trampoline finished a call and is idle".
static IDLE_MARK: u8 = 0;
/// Its address marks a call whose first argument is bytes to make a string of.
static BYTES_MARK: u8 = 0;

fn idle_mark() -> LightUserData {
    LightUserData(&IDLE_MARK as *const u8 as *mut c_void)
}

fn bytes_mark() -> LightUserData {
    LightUserData(&BYTES_MARK as *const u8 as *mut c_void)
}

/// Resumed with (f, args...) it calls f(args...); resumed with (bytes, f,
/// pointer, length, flag [, context]) it calls f(string, flag), or
/// f(context, string, flag) with a context, the string made here,
/// inside the coroutine, with LuaJIT's ffi.string: an allocation failure is
/// then an ordinary error of the call, so no protected call around the
/// string is needed on the Rust side (the most expensive part of handing a
/// message to Lua). Also returns whether that is available (not under PUC Lua).
const TRAMPOLINE: &str = r#"
local idle, bytes = ...
local ok, ffi = pcall(require, "ffi")
local tostr = ok and ffi.string or nil
local yield = coroutine.yield
local function run(f, ...)
  if f == bytes then
    local g, p, n, flag, context = ...
    if context == nil then g(tostr(p, n), flag) else g(context, tostr(p, n), flag) end
  else
    f(...)
  end
  return run(yield(idle))
end
return function() return run(yield(idle)) end, tostr ~= nil
"#;

/// The trampoline body and one idle coroutine running it. Owned by the
/// loop (the host context), which hands them to every call; leaked with
/// it, so these handles are never released after the state closes.
#[derive(Default)]
pub struct Trampolines {
    body: RefCell<Option<Function>>,
    /// The trampoline can make strings from bytes (LuaJIT's ffi).
    makes_strings: std::cell::Cell<bool>,
    idle: RefCell<Option<Thread>>,
    /// Called with a callback's coroutine and the values it yielded.
    on_yield: RefCell<Option<Function>>,
}

impl Trampolines {
    fn take_idle(&self, lua: &Lua) -> mlua::Result<Thread> {
        if let Some(co) = self.idle.borrow_mut().take() {
            return Ok(co);
        }
        let body = self.body.borrow().clone();
        let body = match body {
            Some(body) => body,
            None => {
                let (body, makes_strings): (Function, bool) = lua
                    .load(TRAMPOLINE)
                    .set_name("=turbo_ws.trampoline")
                    .call((idle_mark(), bytes_mark()))?;
                *self.body.borrow_mut() = Some(body.clone());
                self.makes_strings.set(makes_strings);
                body
            }
        };
        let co = lua.create_thread(body)?;
        // Runs to the first yield, so the next resume passes the function.
        co.resume::<()>(())?;
        Ok(co)
    }

    /// Sets (or, with None, removes) the yield handler.
    pub fn set_yield_handler(&self, handler: Option<Function>) {
        *self.on_yield.borrow_mut() = handler;
    }

    /// Hands a coroutine that yielded values to the yield handler, if any.
    fn yielded(&self, co: Thread, values: MultiValue) -> mlua::Result<()> {
        let handler = self.on_yield.borrow().clone();
        match handler {
            Some(handler) if !values.is_empty() && co.status() == ThreadStatus::Resumable => {
                let mut args = values;
                args.push_front(Value::Thread(co));
                handler.call::<()>(args)
            }
            _ => Ok(()),
        }
    }

    fn put_back(&self, co: Thread) {
        let mut idle = self.idle.borrow_mut();
        if idle.is_none() {
            *idle = Some(co);
        }
    }
}

/// Calls `func(args...)` in a coroutine; errors and panics are reported.
/// Returns false when the call failed (the caller may clean up after it).
pub fn call(
    trampolines: &Trampolines,
    lua: &Lua,
    what: &str,
    func: &Function,
    args: impl IntoLuaMulti,
) -> bool {
    guarded(what, || resume_in_coroutine(trampolines, lua, func, args))
}

/// Runs `f`, reporting its error or panic (none crosses into the loop);
/// false when it failed.
fn guarded(what: &str, f: impl FnOnce() -> mlua::Result<()>) -> bool {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            report(what, &e.to_string());
            false
        }
        Err(panic) => {
            report(what, &format!("internal error (panic): {}", panic_message(&panic)));
            false
        }
    }
}

/// Calls `func(data as a string, flag)` like [`call`], the hot path of every
/// message: where it can, the string is made inside the coroutine.
pub fn call_with_bytes(
    trampolines: &Trampolines,
    lua: &Lua,
    what: &str,
    func: &Function,
    data: &[u8],
    flag: bool,
) -> bool {
    guarded(what, || {
        let co = trampolines.take_idle(lua)?;
        if !trampolines.makes_strings.get() {
            return run_in(trampolines, co, (func, lua.create_string(data)?, flag));
        }
        // The pointer is read at once by the trampoline, before anything
        // could yield, while `data` is still borrowed here.
        let ptr = LightUserData(data.as_ptr() as *mut c_void);
        run_in(trampolines, co, (bytes_mark(), func, ptr, data.len(), flag))
    })
}

/// [`call_with_bytes`] for the function registered under `key` (a
/// registry reference; with `context`, the value registered under it is
/// passed first), the hot path of every message: the function and
/// the arguments are pushed straight onto the idle coroutine's stack
/// (where its next resume takes them from), with no function handle made
/// and no argument conversion. None when this path is not available
/// (no loop, or no ffi to make strings with): then the caller uses
/// `call_with_bytes`.
pub fn call_registered_with_bytes(
    trampolines: &Trampolines,
    lua: &Lua,
    what: &str,
    key: c_int,
    context: Option<c_int>,
    data: &[u8],
    flag: bool,
) -> Option<bool> {
    if !trampolines.makes_strings.get() {
        return None;
    }
    Some(guarded(what, || {
        let co = trampolines.take_idle(lua)?;
        // As in call_with_bytes: the pointer is read at once by the
        // trampoline, before anything could yield.
        let ptr = data.as_ptr() as *mut c_void;
        // SAFETY: `co` is a coroutine of this state that nothing runs.
        if !unsafe { push_bytes_call(co.state(), key, context, ptr, data.len(), flag) } {
            return Err(mlua::Error::runtime("internal error: the idle coroutine cannot take a call"));
        }
        run_in(trampolines, co, ())
    }))
}

/// Pushes (bytes mark, registry[key], pointer, length, flag [,
/// registry[context]]) onto an idle trampoline coroutine (yielded, empty
/// stack): the values mlua's next resume of it passes on. False, pushing
/// nothing, if it is not idle.
unsafe fn push_bytes_call(
    state: *mut ffi::lua_State,
    key: c_int,
    context: Option<c_int>,
    ptr: *mut c_void,
    len: usize,
    flag: bool,
) -> bool {
    if ffi::lua_status(state) != ffi::LUA_YIELD
        || ffi::lua_gettop(state) != 0
        || ffi::lua_checkstack(state, 6) == 0
    {
        return false;
    }
    ffi::lua_pushlightuserdata(state, bytes_mark().0);
    ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, key as _);
    ffi::lua_pushlightuserdata(state, ptr);
    ffi::lua_pushnumber(state, len as ffi::lua_Number);
    ffi::lua_pushboolean(state, c_int::from(flag));
    if let Some(context) = context {
        ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, context as _);
    }
    true
}

fn resume_in_coroutine(
    trampolines: &Trampolines,
    lua: &Lua,
    func: &Function,
    args: impl IntoLuaMulti,
) -> mlua::Result<()> {
    let co = trampolines.take_idle(lua)?;
    run_in(trampolines, co, (func, args))
}

/// Resumes a trampoline coroutine with a call, then settles it. Without a
/// yield handler only the first value matters (the idle mark, or not), so
/// no list of results is built: that is the common path of every message.
fn run_in(trampolines: &Trampolines, co: Thread, args: impl IntoLuaMulti) -> mlua::Result<()> {
    if trampolines.on_yield.borrow().is_some() {
        let results: MultiValue = co.resume(args)?;
        return after_resume(trampolines, co, results);
    }
    match co.resume::<Value>(args)? {
        Value::LightUserData(mark) if mark == idle_mark() => trampolines.put_back(co),
        // It yielded: the coroutine belongs to whoever resumes it.
        _ => {}
    }
    Ok(())
}

/// A coroutine stopped: back to the pool if its callback returned, else to
/// the yield handler.
fn after_resume(trampolines: &Trampolines, co: Thread, results: MultiValue) -> mlua::Result<()> {
    if let Some(Value::LightUserData(mark)) = results.front() {
        if *mark == idle_mark() {
            trampolines.put_back(co);
            return Ok(());
        }
    }
    trampolines.yielded(co, results)
}

/// Resumes a coroutine that yielded from a callback, the way the loop runs
/// callbacks: when it yields values again the yield handler gets it, when
/// its callback returns it is reused, an error is reported. False when it
/// raised.
pub fn resume(trampolines: &Trampolines, co: Thread, args: MultiValue) -> bool {
    guarded("resumed coroutine", || {
        let results: MultiValue = co.resume(args)?;
        after_resume(trampolines, co, results)
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".into()
    }
}

/// Reports an error that no Lua code caught. The loop goes on.
pub fn report(what: &str, message: &str) {
    eprintln!("turbo_ws: uncaught error in {what}: {message}");
}
