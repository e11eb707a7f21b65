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
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{Function, IntoLuaMulti, LightUserData, Lua, Thread, Value};

/// Its address marks "the trampoline finished a call and is idle".
static IDLE_MARK: u8 = 0;

fn idle_mark() -> LightUserData {
    LightUserData(&IDLE_MARK as *const u8 as *mut c_void)
}

const TRAMPOLINE: &str = r#"
local idle = ...
local yield = coroutine.yield
local function run(f, ...)
  f(...)
  return run(yield(idle))
end
return function() return run(yield(idle)) end
"#;

/// The trampoline body and one idle coroutine running it. Owned by the
/// leaked loop, so these handles are never released after the state closes.
#[derive(Default)]
pub struct Trampolines {
    body: RefCell<Option<Function>>,
    idle: RefCell<Option<Thread>>,
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
                let body: Function =
                    lua.load(TRAMPOLINE).set_name("=turbo_ws.trampoline").call(idle_mark())?;
                *self.body.borrow_mut() = Some(body.clone());
                body
            }
        };
        let co = lua.create_thread(body)?;
        // Runs to the first yield, so the next resume passes the function.
        co.resume::<()>(())?;
        Ok(co)
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
pub fn call(lua: &Lua, what: &str, func: &Function, args: impl IntoLuaMulti) -> bool {
    let result = catch_unwind(AssertUnwindSafe(|| resume_in_coroutine(lua, func, args)));
    match result {
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

fn resume_in_coroutine(lua: &Lua, func: &Function, args: impl IntoLuaMulti) -> mlua::Result<()> {
    let Some(lp) = crate::ioloop::current() else {
        return func.call::<()>(args);
    };
    let trampolines = lp.trampolines();
    let co = trampolines.take_idle(lua)?;
    let result: Value = co.resume((func, args))?;
    if let Value::LightUserData(mark) = result {
        if mark == idle_mark() {
            trampolines.put_back(co);
        }
    }
    Ok(())
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
