//! Worker processes (`core.workers(n [, options])`) and signal handlers
//! (`core.on_signal(name, fn)`).
//!
//! `workers(n)` forks `n` copies of the program at the point of the call,
//! pre-fork style: each child returns its index (1..n) and goes on running
//! the Lua program (typically `listen{reuse_port = true}` on a shared port,
//! then `run()`). The parent never returns: it becomes a supervisor that
//! only waits for its children, forwards signals to them, and exits when
//! all of them have exited. It runs no Lua and no tokio after the fork.
//!
//! Forking is only safe before the event loop exists (an epoll instance and
//! its sockets must not be shared between processes) and while the process
//! has one thread, so `workers()` refuses otherwise.
//!
//! In a worker, SIGINT and SIGTERM start a graceful stop unless the program
//! set its own handler with `on_signal`: `shutdown(grace)` (listeners stop,
//! connections get close 1001), then every pubsub hub is closed and the
//! loop is told to return, so the program's `run()`/`start()` returns and
//! the process ends normally.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use mlua::{Function, Lua, RegistryKey, Table, Value};

use crate::binding::args;
use crate::binding::callback;
use crate::binding::ioloop::{self, Loop, LuaCall};
use crate::binding::opts::Opts;

/// The signals `on_signal` accepts and the supervisor forwards.
const SIGNALS: &[(&str, libc::c_int)] = &[
    ("SIGINT", libc::SIGINT),
    ("SIGTERM", libc::SIGTERM),
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
];

const MAX_WORKERS: u64 = 1024;
/// How long after the stop signal (beyond `grace`) the supervisor waits
/// before it kills the workers that are still running.
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// A worker that dies sooner than this after its start is respawned only
/// after this delay, so a crash at startup cannot become a fork storm.
const RESPAWN_THROTTLE: Duration = Duration::from_secs(1);

fn signal_name(signo: libc::c_int) -> &'static str {
    SIGNALS.iter().find(|(_, n)| *n == signo).map(|(name, _)| *name).unwrap_or("signal")
}

/// "SIGINT", "INT", "sigint" and "int" all name SIGINT.
fn parse_signal(name: &str) -> Option<libc::c_int> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    SIGNALS.iter().find(|(n, _)| *n == full).map(|(_, s)| *s)
}

/// Per-process signal state, leaked like the loop.
struct Signals {
    handlers: RefCell<HashMap<libc::c_int, RegistryKey>>,
    /// Signals that have a tokio listener task (it stays for good: tokio
    /// cannot give a signal back to its default action).
    listening: RefCell<HashSet<libc::c_int>>,
    /// This process's worker index, when it is a worker.
    worker: Cell<Option<u32>>,
    grace: Cell<Duration>,
    stopping: Cell<bool>,
}

thread_local! {
    static SIGNALS_STATE: Cell<Option<&'static Signals>> = const { Cell::new(None) };
}

fn signals() -> &'static Signals {
    if let Some(s) = SIGNALS_STATE.with(|c| c.get()) {
        return s;
    }
    let s: &'static Signals = Box::leak(Box::new(Signals {
        handlers: RefCell::new(HashMap::new()),
        listening: RefCell::new(HashSet::new()),
        worker: Cell::new(None),
        grace: Cell::new(Duration::from_secs(5)),
        stopping: Cell::new(false),
    }));
    SIGNALS_STATE.with(|c| c.set(Some(s)));
    s
}

/// Makes sure a loop task receives `signo` (this creates the runtime).
fn listen_for(lp: &'static Loop, signo: libc::c_int) -> Result<(), String> {
    let st = signals();
    if st.listening.borrow().contains(&signo) {
        return Ok(());
    }
    let kind = tokio::signal::unix::SignalKind::from_raw(signo);
    let mut stream = lp
        .enter(|| tokio::signal::unix::signal(kind))?
        .map_err(|e| format!("cannot handle {}: {e}", signal_name(signo)))?;
    st.listening.borrow_mut().insert(signo);
    lp.spawn(async move {
        while stream.recv().await.is_some() {
            dispatch(lp, signo);
        }
    });
    Ok(())
}

/// A signal arrived (on the loop thread).
fn dispatch(lp: &'static Loop, signo: libc::c_int) {
    let st = signals();
    let Some(lua) = lp.lua() else { return };
    let handler = st.handlers.borrow().get(&signo).map(|key| lua.registry_value::<Function>(key));
    match handler {
        Some(Ok(f)) => {
            callback::call(&lua, "signal handler", &f, signal_name(signo));
        }
        Some(Err(e)) => callback::report("signal handler", &e.to_string()),
        None if st.worker.get().is_some() && (signo == libc::SIGINT || signo == libc::SIGTERM) => {
            graceful_stop(&lua, lp)
        }
        None => default_action(signo),
    }
}

/// What the signal would have done without a handler: end the process.
fn default_action(signo: libc::c_int) {
    // SAFETY: restoring the default disposition and raising the signal is
    // async-signal-safe and ends the process, as the unhandled signal would.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        libc::raise(signo);
    }
}

/// A worker's default answer to SIGINT/SIGTERM; repeats are ignored.
fn graceful_stop(lua: &Lua, lp: &'static Loop) {
    let st = signals();
    if st.stopping.replace(true) {
        return;
    }
    let done = lua.create_function(move |_, ()| {
        crate::binding::pubsub::close_all();
        lp.close();
        Ok(())
    });
    let call = match done.and_then(|f| LuaCall::new(lua, f, Value::Nil)) {
        Ok(call) => call,
        Err(e) => return callback::report("worker shutdown", &e.to_string()),
    };
    crate::binding::ioloop::shutdown(lp, st.grace.get(), Some(call));
}

/// `on_signal(name, fn | nil)`
fn on_signal(lua: &Lua, lp: &'static Loop, (name, func): (Value, Value)) -> mlua::Result<()> {
    const F: &str = "turbo_ws.on_signal";
    let given = args::string(F, 1, "signal", name)?;
    let given = given.to_str()?.to_owned();
    let Some(signo) = parse_signal(&given) else {
        let names: Vec<&str> = SIGNALS.iter().map(|(n, _)| *n).collect();
        return Err(args::misuse(
            F,
            format!("bad argument #1 'signal' (one of {} expected, got \"{given}\")", names.join(", ")),
        ));
    };
    let func = args::opt_function(F, 2, "handler", func)?;
    let st = signals();
    match func {
        Some(f) => {
            listen_for(lp, signo).map_err(|e| args::misuse(F, e))?;
            st.handlers.borrow_mut().insert(signo, lua.create_registry_value(f)?);
        }
        None => {
            st.handlers.borrow_mut().remove(&signo);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- fork

struct WorkerOptions {
    grace: Duration,
    respawn: bool,
}

/// Why forking now would be unsafe, if it would.
fn fork_hazard(lp: &'static Loop) -> Option<String> {
    if signals().worker.get().is_some() {
        return Some("this process is already a worker (call workers() once, in the main program)".into());
    }
    if lp.is_running() {
        return Some(
            "the loop is running: call workers() at the top of the program, before run()/start()".into(),
        );
    }
    if !lp.is_idle() || lp.registry().open_connections() > 0 {
        return Some(
            "call workers() first, before listen, connect, timers, callbacks or a redis pubsub hub".into(),
        );
    }
    if event_loop_exists() {
        return Some(
            "the event loop already exists in this process (a listener, connection, timer or signal \
             handler was created earlier): call workers() first"
                .into(),
        );
    }
    let threads = thread_count();
    if threads > 1 {
        return Some(format!("the process has {threads} threads; fork is only safe with one"));
    }
    None
}

/// Whether this process holds an epoll instance (the tokio runtime has one).
fn event_loop_exists() -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return false };
    dir.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|target| target.to_string_lossy().contains("[eventpoll]"))
    })
}

fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1)
}

fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// What the supervisor keeps across forks.
struct Supervisor {
    /// Signals blocked for the supervisor's sigtimedwait, and the mask before.
    waited: libc::sigset_t,
    old_mask: libc::sigset_t,
    old_sigchld: libc::sigaction,
    parent: libc::pid_t,
    options: WorkerOptions,
}

/// In a freshly forked child: becomes worker `index` and returns it to Lua.
fn become_worker(lp: &'static Loop, sup: &Supervisor, index: u32) -> mlua::Result<u32> {
    const F: &str = "turbo_ws.workers";
    let st = signals();
    st.worker.set(Some(index));
    st.grace.set(sup.options.grace);
    // SAFETY: plain syscalls on this (single-threaded) child process.
    unsafe {
        os_result(libc::sigaction(libc::SIGCHLD, &sup.old_sigchld, std::ptr::null_mut()))
            .map_err(|e| args::misuse(F, format!("cannot restore SIGCHLD in worker {index}: {e}")))?;
        #[cfg(target_os = "linux")]
        {
            // Stop too if the supervisor dies without forwarding anything.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != sup.parent {
                libc::_exit(1);
            }
        }
    }
    // The handlers go in while the signals are still blocked: one that
    // arrived since the fork is then handled, not fatal.
    let result = listen_for(lp, libc::SIGINT).and_then(|()| listen_for(lp, libc::SIGTERM));
    // SAFETY: restores the mask the program had before workers().
    let restored =
        os_result(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &sup.old_mask, std::ptr::null_mut()) });
    result.map_err(|e| args::misuse(F, e))?;
    restored
        .map_err(|e| args::misuse(F, format!("cannot restore the signal mask in worker {index}: {e}")))?;
    Ok(index)
}

/// A libc call's 0-or-errno result as an `io::Result`.
fn os_result(rc: libc::c_int) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts back the signal mask and SIGCHLD disposition the program had.
fn restore_signals(sup_mask: &libc::sigset_t, sup_sigchld: &libc::sigaction) -> std::io::Result<()> {
    // SAFETY: plain syscalls with values saved by `workers` itself.
    unsafe {
        os_result(libc::sigaction(libc::SIGCHLD, sup_sigchld, std::ptr::null_mut()))?;
        os_result(libc::sigprocmask(libc::SIG_SETMASK, sup_mask, std::ptr::null_mut()))
    }
}

/// fork(): `Ok(0)` in the child, `Ok(pid)` of the child in the parent.
fn fork_one() -> std::io::Result<libc::pid_t> {
    // SAFETY: the process is single-threaded (checked), so the child may go on
    // running arbitrary code; stdio buffers were flushed before the first fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(pid)
    }
}

fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: strsignal returns a static string for any number.
        let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) };
        format!("was killed by signal {sig} ({})", name.to_string_lossy())
    } else {
        format!("ended with wait status {status}")
    }
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
    let options = WorkerOptions {
        grace: opts.seconds("grace")?.unwrap_or(Duration::from_secs(5)),
        respawn: opts.bool("respawn")?.unwrap_or(false),
    };
    if let Some(why) = fork_hazard(lp) {
        return Err(args::misuse(F, why));
    }

    let waited =
        sigset(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGCHLD]);
    // SAFETY: plain syscalls; every out-pointer is a local we own.
    let (old_mask, old_sigchld) = unsafe {
        let mut old_mask: libc::sigset_t = std::mem::zeroed();
        os_result(libc::sigprocmask(libc::SIG_BLOCK, &waited, &mut old_mask))
            .map_err(|e| args::misuse(F, format!("cannot block signals: {e}")))?;
        // SIGCHLD at its default, so children are not reaped behind our back.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        let mut old_sigchld: libc::sigaction = std::mem::zeroed();
        if let Err(e) = os_result(libc::sigaction(libc::SIGCHLD, &dfl, &mut old_sigchld)) {
            let _ = os_result(libc::sigprocmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()));
            return Err(args::misuse(F, format!("cannot reset SIGCHLD: {e}")));
        }
        // Buffered output would otherwise be written once per process.
        libc::fflush(std::ptr::null_mut());
        (old_mask, old_sigchld)
    };
    // SAFETY: getpid cannot fail.
    let parent = unsafe { libc::getpid() };
    let sup = Supervisor { waited, old_mask, old_sigchld, parent, options };

    let mut children: HashMap<libc::pid_t, (u32, Instant)> = HashMap::new();
    for index in 1..=n {
        match fork_one() {
            Ok(0) => return become_worker(lp, &sup, index),
            Ok(pid) => {
                children.insert(pid, (index, Instant::now()));
            }
            Err(e) => {
                // Undo: stop the workers already started, then report.
                for pid in children.keys() {
                    // SAFETY: signalling and reaping our own children.
                    unsafe { libc::kill(*pid, libc::SIGTERM) };
                }
                for pid in children.keys() {
                    let mut status = 0;
                    // SAFETY: as above.
                    unsafe { libc::waitpid(*pid, &mut status, 0) };
                }
                let restored = match restore_signals(&sup.old_mask, &sup.old_sigchld) {
                    Ok(()) => String::new(),
                    Err(r) => format!(" (and the signal setup could not be restored: {r})"),
                };
                return Err(args::misuse(F, format!("cannot fork worker {index}: {e}{restored}")));
            }
        }
    }
    supervise(lp, &sup, children)
}

/// The parent after the forks: waits, forwards, respawns if asked, and
/// exits when no worker is left. Returns only in a respawned child.
fn supervise(
    lp: &'static Loop,
    sup: &Supervisor,
    mut children: HashMap<libc::pid_t, (u32, Instant)>,
) -> mlua::Result<u32> {
    let mut exit_status = 0;
    // (signal, when to kill the workers that are still running)
    let mut stopping: Option<(libc::c_int, Instant)> = None;
    let mut killed = false;
    let mut respawns: Vec<(u32, Instant)> = Vec::new();
    loop {
        // Reap every worker that has ended.
        loop {
            let mut status = 0;
            // SAFETY: reaping our own children without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let Some((index, started)) = children.remove(&pid) else { continue };
            let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            let stopped_by_us = matches!(stopping, Some((sig, _)) if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == sig);
            if !clean && !stopped_by_us && !killed {
                say(format!("worker {index} (pid {pid}) {}", describe_status(status)));
                if exit_status == 0 {
                    exit_status = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
                }
                if sup.options.respawn && stopping.is_none() {
                    let delay =
                        if started.elapsed() < RESPAWN_THROTTLE { RESPAWN_THROTTLE } else { Duration::ZERO };
                    respawns.push((index, Instant::now() + delay));
                }
            }
        }
        let now = Instant::now();
        // Respawns that are due.
        let (due, later): (Vec<_>, Vec<_>) = respawns.drain(..).partition(|(_, at)| *at <= now);
        respawns = later;
        for (index, _) in due {
            match fork_one() {
                Ok(0) => return become_worker(lp, sup, index),
                Ok(pid) => {
                    say(format!("worker {index} restarted (pid {pid})"));
                    children.insert(pid, (index, Instant::now()));
                }
                Err(e) => {
                    say(format!("cannot restart worker {index}: {e}"));
                    respawns.push((index, now + RESPAWN_THROTTLE));
                }
            }
        }
        if children.is_empty() && respawns.is_empty() {
            // SAFETY: ends the supervisor; nothing else runs in this process.
            unsafe {
                libc::fflush(std::ptr::null_mut());
                libc::_exit(exit_status);
            }
        }
        if let Some((_, deadline)) = stopping {
            if !killed && now >= deadline {
                say(format!(
                    "turbo_ws.workers: {} worker(s) still running {:.0} s after the stop signal; killing them",
                    children.len(),
                    (sup.options.grace + KILL_MARGIN).as_secs_f64()
                ));
                kill_all(&children, libc::SIGKILL);
                killed = true;
                exit_status = 1;
            }
        }
        // Wait for a signal, at most until the next deadline (and 1 s, to
        // reap even if a SIGCHLD was somehow missed).
        let mut wait = Duration::from_secs(1);
        if let Some((_, deadline)) = stopping {
            if !killed {
                wait = wait.min(deadline.saturating_duration_since(now));
            }
        }
        for (_, at) in &respawns {
            wait = wait.min(at.saturating_duration_since(now));
        }
        let ts = libc::timespec { tv_sec: wait.as_secs() as _, tv_nsec: wait.subsec_nanos() as _ };
        // SAFETY: waits for one of the blocked signals; info is ours.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigtimedwait(&sup.waited, &mut info, &ts)
        };
        match sig {
            libc::SIGINT | libc::SIGTERM => {
                if stopping.is_none() {
                    stopping = Some((sig, Instant::now() + sup.options.grace + KILL_MARGIN));
                    respawns.clear();
                    kill_all(&children, sig);
                } else if !killed {
                    // Asked twice: stop waiting for a graceful end.
                    say(format!("{} again; killing the workers", signal_name(sig)));
                    kill_all(&children, libc::SIGKILL);
                    killed = true;
                    exit_status = 1;
                }
            }
            libc::SIGHUP | libc::SIGUSR1 | libc::SIGUSR2 => kill_all(&children, sig),
            // SIGCHLD, a timeout or EINTR: reap at the top of the loop.
            _ => {}
        }
    }
}

/// One line on stderr in one write, so it does not interleave with the
/// workers' output.
fn say(message: String) {
    use std::io::Write;
    let line = format!("turbo_ws.workers: {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn kill_all(children: &HashMap<libc::pid_t, (u32, Instant)>, sig: libc::c_int) {
    for pid in children.keys() {
        // SAFETY: signalling our own children.
        unsafe { libc::kill(*pid, sig) };
    }
}

/// This process's worker index, or nil outside workers.
fn worker_index() -> Option<u32> {
    signals().worker.get()
}

/// Registers `core.workers`, `core.worker_index` and `core.on_signal`.
pub fn register(lua: &Lua, core: &Table) -> mlua::Result<()> {
    let lp = ioloop::get(lua)?;
    core.set("workers", lua.create_function(move |_, a: (Value, Value)| workers(lp, a))?)?;
    core.set("worker_index", lua.create_function(|_, ()| Ok(worker_index()))?)?;
    core.set("on_signal", lua.create_function(move |lua, a: (Value, Value)| on_signal(lua, lp, a))?)?;
    Ok(())
}
