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
use mlua::{ffi, Function, IntoLuaMulti, LightUserData, Lua, MultiValue, RegistryKey, Thread, Value};

/// Its address marks "the trampoline finished a call and is idle".
static IDLE_MARK: u8 = 0;

fn idle_mark() -> LightUserData {
    LightUserData(&IDLE_MARK as *const u8 as *mut c_void)
}

/// Resumed with (f, args...) it calls f(args...); resumed with (bytes, f,
/// address, length, flag [, context]) it calls f(string, flag), or
/// f(context, string, flag) with a context, the string made here,
/// inside the coroutine, with LuaJIT's ffi.string: an allocation failure is
/// then an ordinary error of the call, so no protected call around the
/// string is needed on the Rust side (the most expensive part of handing a
/// message to Lua). `bytes` is a private table only the binding holds (in
/// the registry): a Lua program that kept this coroutine and resumes it
/// cannot forge an address call (a boolean or a value Lua can see would let
/// it read any address). The address is a number and `deliver` takes fixed
/// arguments, so LuaJIT compiles that path with the handler (a light
/// userdata argument or `...` kept it interpreted, with ffi.string's
/// conversions done by the interpreter on every message). The string is
/// stored in `held` while the handler runs: after a store LuaJIT takes a
/// snapshot, so a guard that fails in the compiled handler resumes after
/// the string was made; without it, it resumed before and made it again
/// (a handler closure per connection did that on every message: a second
/// 16 KiB string, found by comparing all its bytes). Also returns whether
/// that is available (not under PUC Lua).
const TRAMPOLINE: &str = r#"
local idle, bytes = ...
local ok, ffi = pcall(require, "ffi")
local tostr = ok and ffi.string or nil
local cast = ok and ffi.cast or nil
local CHARP = ok and ffi.typeof("const char *") or nil
local yield = coroutine.yield
local held
local function deliver(g, p, n, flag, context)
  local s = tostr(cast(CHARP, p), n)
  held = s
  if context == nil then g(s, flag) else g(context, s, flag) end
  held = nil
end
local function run(f, ...)
  if f == bytes then deliver(...) else f(...) end
  return run(yield(idle))
end
return function() return run(yield(idle)) end, tostr ~= nil
"#;

/// A message's address as the trampoline takes it: a Lua number, exact
/// for any address below 2^53 (all of them on today's 64-bit systems);
/// None otherwise, and the caller makes the string itself.
fn address_number(data: &[u8]) -> Option<ffi::lua_Number> {
    let address = data.as_ptr() as usize as u64;
    (address < 1 << 53).then_some(address as ffi::lua_Number)
}

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
    /// The trampoline's private mark of a bytes call (see TRAMPOLINE).
    bytes_mark: RefCell<Option<RegistryKey>>,
}

impl Trampolines {
    /// The idle coroutine, or a new one. A Lua program may have kept the
    /// idle one (`coroutine.running` in a callback) and resumed it itself,
    /// into an error or a call still running: one not idle is dropped.
    fn take_idle(&self, lua: &Lua) -> mlua::Result<Thread> {
        let kept = self.idle.borrow_mut().take();
        if let Some(co) = kept.filter(is_idle) {
            return Ok(co);
        }
        let body = self.body.borrow().clone();
        let body = match body {
            Some(body) => body,
            None => {
                let mark = lua.create_table()?;
                let (body, makes_strings): (Function, bool) =
                    lua.load(TRAMPOLINE).set_name("=turbo_ws.trampoline").call((idle_mark(), &mark))?;
                *self.bytes_mark.borrow_mut() = Some(lua.create_registry_value(mark)?);
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

    /// The bytes mark's registry reference (set with the trampoline).
    fn bytes_mark_id(&self) -> mlua::Result<c_int> {
        let mark = self.bytes_mark.borrow();
        mark.as_ref()
            .map(RegistryKey::id)
            .ok_or_else(|| mlua::Error::runtime("internal error: no trampoline"))
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
        let address = address_number(data).filter(|_| trampolines.makes_strings.get());
        let Some(address) = address else {
            return run_in(trampolines, co, (func, lua.create_string(data)?, flag));
        };
        // The address is read at once by the trampoline, before anything
        // could yield, while `data` is still borrowed here.
        let mark: Value = lua.registry_value(
            trampolines
                .bytes_mark
                .borrow()
                .as_ref()
                .ok_or_else(|| mlua::Error::runtime("internal error: no trampoline"))?,
        )?;
        run_in(trampolines, co, (mark, func, address, data.len(), flag))
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
    let address = address_number(data)?;
    Some(guarded(what, || {
        // As in call_with_bytes: the address is read at once by the
        // trampoline, before anything could yield.
        resume_with(trampolines, lua, 6, |state, mark| {
            // SAFETY: resume_with checked the room for six values.
            unsafe {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, mark as _);
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, key as _);
                ffi::lua_pushnumber(state, address);
                ffi::lua_pushnumber(state, data.len() as ffi::lua_Number);
                ffi::lua_pushboolean(state, c_int::from(flag));
                5 + push_context(state, context)
            }
        })
    }))
}

/// Resumes an idle trampoline coroutine with the `nargs` values pushed
/// onto its stack, with `lua_resume` itself rather than mlua's
/// `Thread::resume`: its checks, stack guards and result conversion cost
/// more than the resume on every message, and none of them is needed
/// when the coroutine is known to be idle and the common answer is the
/// idle mark. `lua_resume` is protected (an error in the coroutine is
/// its status, never a jump out of here). Any other outcome is handed to
/// mlua as the values or error its own resume would have produced.
fn resume_pushed(trampolines: &Trampolines, lua: &Lua, co: Thread, nargs: c_int) -> mlua::Result<()> {
    let state = co.state();
    let mut nresults: c_int = 0;
    // SAFETY: `co` is a suspended coroutine of this state (checked by
    // resume_with) with `nargs` values on its stack.
    let status = unsafe { ffi::lua_resume(state, std::ptr::null_mut(), nargs, &mut nresults) };
    match status {
        // SAFETY: reading and popping the coroutine's own stack.
        ffi::LUA_YIELD if unsafe { yielded_idle_mark(state, nresults) } => {
            trampolines.put_back(co);
            Ok(())
        }
        ffi::LUA_YIELD | ffi::LUA_OK => {
            let results = take_results(lua, state, nresults)?;
            after_resume(trampolines, co, results)
        }
        _ => Err(resume_error(lua, state, status)),
    }
}

/// Whether the coroutine yielded just the idle mark; if so the mark is
/// popped, leaving it idle with an empty stack.
unsafe fn yielded_idle_mark(state: *mut ffi::lua_State, nresults: c_int) -> bool {
    if nresults != 1 || ffi::lua_gettop(state) != 1 || ffi::lua_touserdata(state, -1) != idle_mark().0 {
        return false;
    }
    ffi::lua_settop(state, 0);
    true
}

/// The `n` values a coroutine yielded or returned, moved off its stack.
fn take_results(lua: &Lua, co: *mut ffi::lua_State, n: c_int) -> mlua::Result<MultiValue> {
    // SAFETY: protected by exec_raw; moves values between two threads of
    // one state, after making room for them.
    unsafe {
        lua.exec_raw::<MultiValue>((), |state| {
            ffi::luaL_checkstack(state, n, std::ptr::null());
            ffi::lua_xmove(co, state, n);
        })
    }
}

/// The error a coroutine died with, as mlua's `Thread::resume` reports
/// it: a Rust error or panic raised through Lua comes back as itself (a
/// panic resumes unwinding, which `guarded` catches); any other value is
/// a runtime error whose message ends with the coroutine's traceback.
fn resume_error(lua: &Lua, co: *mut ffi::lua_State, status: c_int) -> mlua::Error {
    // SAFETY: protected by exec_raw; the error value is the top of the
    // dead coroutine's stack. Leaves [error, traceback or nothing].
    let described = unsafe {
        lua.exec_raw::<(Value, Value)>((), |state| {
            ffi::luaL_checkstack(state, 2 + ffi::LUA_TRACEBACK_STACK, std::ptr::null());
            ffi::lua_xmove(co, state, 1);
            // A memory error is its message alone, as mlua has it.
            if status != ffi::LUA_ERRMEM {
                let message = ffi::luaL_tolstring(state, -1, std::ptr::null_mut());
                ffi::luaL_traceback(state, co, message, 0);
                ffi::lua_remove(state, -2);
            }
        })
    };
    match described {
        // mlua's wrapped error (a wrapped panic resumed unwinding above).
        Ok((Value::Error(e), _)) => *e,
        Ok((Value::String(s), Value::Nil)) if status == ffi::LUA_ERRMEM => {
            mlua::Error::MemoryError(s.to_string_lossy())
        }
        Ok((_, Value::String(traceback))) => mlua::Error::RuntimeError(traceback.to_string_lossy()),
        Ok((other, _)) => mlua::Error::RuntimeError(format!("{other:?}")),
        Err(e) => e,
    }
}

/// Calls the function registered under `key` with (length, flag) (after
/// the value registered under `context`, if any), pushed straight onto the
/// idle coroutine as [`call_registered_with_bytes`] does: for callbacks
/// that copy the message themselves during the call
/// (binding::message_copy). False when the call failed.
pub fn call_registered_with_length(
    trampolines: &Trampolines,
    lua: &Lua,
    what: &str,
    key: c_int,
    context: Option<c_int>,
    len: usize,
    flag: bool,
) -> bool {
    guarded(what, || {
        resume_with(trampolines, lua, 4, |state, _| {
            // SAFETY: resume_with checked the room for four values.
            unsafe {
                ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, key as _);
                let pushed = push_context(state, context);
                ffi::lua_pushnumber(state, len as ffi::lua_Number);
                ffi::lua_pushboolean(state, c_int::from(flag));
                3 + pushed
            }
        })
    })
}

/// Takes the idle trampoline coroutine, has `push` put a call onto its
/// stack (given the bytes mark's registry reference; it returns how many
/// values it pushed, at most `room`) and resumes it with them.
fn resume_with(
    trampolines: &Trampolines,
    lua: &Lua,
    room: c_int,
    push: impl FnOnce(*mut ffi::lua_State, c_int) -> c_int,
) -> mlua::Result<()> {
    let co = trampolines.take_idle(lua)?;
    let mark = trampolines.bytes_mark_id()?;
    let state = co.state();
    // SAFETY: `co` is a coroutine of this state that nothing runs.
    if unsafe { ffi::lua_checkstack(state, room) } == 0 {
        return Err(mlua::Error::runtime("internal error: the idle coroutine cannot take a call"));
    }
    let nargs = push(state, mark);
    resume_pushed(trampolines, lua, co, nargs)
}

/// Whether a trampoline coroutine is idle: yielded, with an empty stack.
fn is_idle(co: &Thread) -> bool {
    let state = co.state();
    // SAFETY: reads the status and stack height of a coroutine of this state.
    unsafe { ffi::lua_status(state) == ffi::LUA_YIELD && ffi::lua_gettop(state) == 0 }
}

/// Pushes the value registered under `context`, if any; how many (0 or 1).
unsafe fn push_context(state: *mut ffi::lua_State, context: Option<c_int>) -> c_int {
    match context {
        Some(context) => {
            ffi::lua_rawgeti(state, ffi::LUA_REGISTRYINDEX, context as _);
            1
        }
        None => 0,
    }
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

/// Reports an error that no Lua code caught. The loop goes on. mlua's
/// "runtime error: " before a Lua error's text is left out: the text is
/// what the program raised.
pub fn report(what: &str, message: &str) {
    let message = message.strip_prefix("runtime error: ").unwrap_or(message);
    eprintln!("turbo_ws: uncaught error in {what}: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_address_survives_the_trip_through_a_lua_number() {
        let data = vec![1u8, 2, 3];
        let number = address_number(&data).expect("a 64-bit user-space address is below 2^53");
        assert_eq!(number as u64 as usize, data.as_ptr() as usize);
    }
}
