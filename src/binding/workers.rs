//! `core.workers(n [, options])`, `core.worker_index()` and
//! `core.on_signal(name, fn)` over `engine::workers` (fork and supervision)
//! and `engine::signals` (what a signal means), with the host context's
//! signal record (`Loop::signals`) holding the Lua handlers.
//!
//! `workers(n)` forks `n` copies of the program at the point of the call:
//! each child returns its index (1..n) and goes on running the Lua program
//! (typically `listen{reuse_port = true}` on a shared port, then `run()`);
//! the parent never returns (it supervises, see engine/workers.rs).
//!
//! In a worker, SIGINT and SIGTERM start a graceful stop unless the program
//! set its own handler with `on_signal`: `shutdown(grace)` (listeners stop,
//! connections get close 1001), then every pubsub hub is closed and the
//! loop is told to return, so the program's `run()`/`start()` returns and
//! the process ends normally.

use std::rc::Rc;
use std::time::Duration;

use mlua::{Function, Lua, Table, Value};

use crate::binding::args;
use crate::binding::callback;
use crate::binding::ioloop::{self, Loop, LuaCall};
use crate::binding::opts::Opts;
use crate::engine::signals::{self, Action};
use crate::engine::workers::{self as engine_workers, MAX_WORKERS};

/// Makes sure a loop task receives `signo` (this creates the runtime).
fn listen_for(lp: &'static Loop, signo: libc::c_int) -> Result<(), String> {
    if lp.signals().is_listening(signo) {
        return Ok(());
    }
    let mut arrivals = lp.enter(|| signals::arrivals(signo))??;
    lp.signals().mark_listening(signo);
    lp.spawn(async move {
        while arrivals.recv().await.is_some() {
            dispatch(lp, signo);
        }
    });
    Ok(())
}

/// A signal arrived (on the loop thread).
fn dispatch(lp: &'static Loop, signo: libc::c_int) {
    let Some(lua) = lp.lua() else { return };
    match lp.signals().action(signo) {
        Action::Call(key) => match lua.registry_value::<Function>(&key) {
            Ok(f) => {
                callback::call(lp.trampolines(), &lua, "signal handler", &f, signals::name(signo));
            }
            Err(e) => callback::report("signal handler", &e.to_string()),
        },
        Action::Stop(grace) => graceful_stop(&lua, lp, grace),
        Action::Ignore => {}
        Action::Default => signals::default_action(signo),
    }
}

/// A worker's default answer to SIGINT/SIGTERM.
fn graceful_stop(lua: &Lua, lp: &'static Loop, grace: Duration) {
    let done = lua.create_function(move |_, ()| {
        lp.pubsub().close_all();
        lp.close();
        Ok(())
    });
    let call = match done.and_then(|f| LuaCall::new(lua, f, Value::Nil)) {
        Ok(call) => call,
        Err(e) => return callback::report("worker shutdown", &e.to_string()),
    };
    ioloop::shutdown(lp, grace, Some(call));
}

/// `on_signal(name, fn | nil)`
fn on_signal(lua: &Lua, lp: &'static Loop, (name, func): (Value, Value)) -> mlua::Result<()> {
    const F: &str = "turbo_ws.on_signal";
    let given = args::string(F, 1, "signal", name)?;
    let given = given.to_str()?.to_owned();
    let Some(signo) = signals::parse(&given) else {
        let names: Vec<&str> = signals::HANDLED.iter().map(|(n, _)| *n).collect();
        return Err(args::misuse(
            F,
            format!("bad argument #1 'signal' (one of {} expected, got \"{given}\")", names.join(", ")),
        ));
    };
    let handler = match args::opt_function(F, 2, "handler", func)? {
        Some(f) => {
            listen_for(lp, signo).map_err(|e| args::misuse(F, e))?;
            Some(Rc::new(lua.create_registry_value(f)?))
        }
        None => None,
    };
    lp.signals().set_handler(signo, handler);
    Ok(())
}

/// Why forking now would be unsafe for this loop, if it would (the
/// process-wide checks are `engine::workers::start`'s).
fn loop_hazard(lp: &'static Loop) -> Option<String> {
    if lp.signals().worker().is_some() {
        return Some("this process is already a worker (call workers() once, in the main program)".into());
    }
    if lp.is_running() {
        return Some(
            "the loop is running: call workers() at the top of the program, before run()/start()".into(),
        );
    }
    if !lp.is_idle() || lp.registry().open_connections() > 0 {
        let mut pending = lp.pending_work();
        if pending.is_empty() {
            pending.push("a connection");
        }
        return Some(format!(
            "call workers() first, before listen, connect, timers, callbacks or a redis pubsub hub (pending now: {})",
            pending.join("; ")
        ));
    }
    None
}

/// `workers([n [, options]]) -> index` (in each worker; never returns in the parent).
fn workers(lp: &'static Loop, (n, options): (Value, Value)) -> mlua::Result<u32> {
    const F: &str = "turbo_ws.workers";
    let n = match n {
        Value::Nil => std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
        v => {
            let got = v.clone();
            let x = args::number(F, 1, "n", v)?;
            if x.fract() != 0.0 || !(1.0..=MAX_WORKERS as f64).contains(&x) {
                return Err(args::bad(F, 1, "n", &format!("whole number from 1 to {MAX_WORKERS}"), &got));
            }
            x as u64
        }
    }
    .min(MAX_WORKERS) as u32;
    let opts = Opts::new(F, args::opt_table(F, 2, "options", options)?);
    let options = engine_workers::Options {
        grace: opts.seconds("grace")?.unwrap_or(Duration::from_secs(5)),
        respawn: opts.bool("respawn")?.unwrap_or(false),
    };
    if let Some(why) = loop_hazard(lp) {
        return Err(args::misuse(F, why));
    }
    let worker = engine_workers::start(n, &options).map_err(|e| args::misuse(F, e))?;
    lp.signals().become_worker(worker.index, options.grace);
    // The handlers go in while the signals are still blocked: one that
    // arrived since the fork is then handled, not fatal.
    let listening = listen_for(lp, libc::SIGINT).and_then(|()| listen_for(lp, libc::SIGTERM));
    let unblocked = worker.unblock_signals();
    listening.and(unblocked).map_err(|e| args::misuse(F, e))?;
    Ok(worker.index)
}

/// Registers `core.workers`, `core.worker_index` and `core.on_signal`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("workers", lua.create_function(move |_, a: (Value, Value)| workers(lp, a))?)?;
    core.set("worker_index", lua.create_function(move |_, ()| Ok(lp.signals().worker()))?)?;
    core.set("on_signal", lua.create_function(move |lua, a: (Value, Value)| on_signal(lua, lp, a))?)?;
    Ok(())
}
