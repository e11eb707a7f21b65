//! Signals as a host handles them, without Lua: the signals a program may
//! handle (by name), what one arrival means (the program's handler, a
//! worker's graceful stop, or the default action), and the record of
//! handlers and listeners that belongs to one host context.
//!
//! Signals reach the loop through tokio's signal streams, which run no
//! program code inside the OS signal handler; so this record needs no
//! process-wide static: the host context owns it (`binding::ioloop::Loop`
//! holds one, with Lua handlers as `H`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The signals `on_signal` accepts and the workers' supervisor forwards.
pub(crate) const HANDLED: &[(&str, libc::c_int)] = &[
    ("SIGINT", libc::SIGINT),
    ("SIGTERM", libc::SIGTERM),
    ("SIGHUP", libc::SIGHUP),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
];

/// A worker's default grace for its graceful stop, until `workers()` sets one.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

pub(crate) fn name(signo: libc::c_int) -> &'static str {
    HANDLED.iter().find(|(_, n)| *n == signo).map(|(name, _)| *name).unwrap_or("signal")
}

/// "SIGINT", "INT", "sigint" and "int" all name SIGINT.
pub(crate) fn parse(name: &str) -> Option<libc::c_int> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    HANDLED.iter().find(|(n, _)| *n == full).map(|(_, s)| *s)
}

/// What the signal would have done without a handler: end the process.
pub(crate) fn default_action(signo: libc::c_int) {
    // SAFETY: restoring the default disposition and raising the signal is
    // async-signal-safe and ends the process, as the unhandled signal would.
    unsafe {
        libc::signal(signo, libc::SIG_DFL);
        libc::raise(signo);
    }
}

/// Makes a write to a connection the peer has closed fail with EPIPE
/// instead of ending the process with SIGPIPE, unless the host program
/// set its own disposition for it. Plain `send`s carry MSG_NOSIGNAL, but
/// vectored writes (`writev`: large frames, and every TLS record rustls
/// writes) have no such flag: one TLS client that dropped its connection
/// killed the server. Turbo's IOLoop, luvit and Rust programs ignore
/// SIGPIPE the same way. (Ignored stays ignored across `exec`: a child the
/// program starts inherits it, as under those hosts.)
pub(crate) fn ignore_sigpipe() {
    // SAFETY: reading and setting one signal's disposition; `old` is a
    // plain C struct that sigaction fills.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
}

/// Gives SIGINT back its default action when the disposition is the Lua
/// interpreter's own (`luajit script.lua`, `lua script.lua`: lua.c's
/// handler, in the main executable, that raises "interrupted!" in
/// whatever Lua code runs next and then resets SIGINT). Under turbo_ws
/// that next code is a protected callback, so Ctrl-C printed an error and
/// the loop went on; and a handler registered later (`on_signal`, a
/// worker's graceful stop) still called it, which reset SIGINT under it.
/// Only when the process is such an interpreter (its executable named
/// `lua...`) and the handler is in it: a program that embeds Lua (nginx,
/// luvi) keeps its own.
pub(crate) fn reset_interpreter_sigint() {
    if !runs_in_lua_interpreter() {
        return;
    }
    // SAFETY: reads one signal's disposition, asks the dynamic linker which
    // loaded object holds two addresses (the handler, and the main
    // program's headers from the aux vector), and resets the disposition.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGINT, std::ptr::null(), &mut old) != 0
            || old.sa_sigaction == libc::SIG_DFL
            || old.sa_sigaction == libc::SIG_IGN
        {
            return;
        }
        let main_headers = libc::getauxval(libc::AT_PHDR) as *const libc::c_void;
        let mut handler_in: libc::Dl_info = std::mem::zeroed();
        let mut main_in: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(old.sa_sigaction as *const libc::c_void, &mut handler_in) != 0
            && libc::dladdr(main_headers, &mut main_in) != 0
            && handler_in.dli_fbase == main_in.dli_fbase
        {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }
}

/// Whether the process is a stand-alone Lua interpreter: `luajit`,
/// `luajit-2.1.0-beta3`, `lua5.1`, `lua`.
fn runs_in_lua_interpreter() -> bool {
    std::fs::read_link("/proc/self/exe")
        .ok()
        .and_then(|exe| exe.file_name().map(|name| name.to_string_lossy().starts_with("lua")))
        .unwrap_or(false)
}

/// A stream of one signal's arrivals, for a task on the loop. The tokio
/// runtime must be entered (it registers with the runtime's driver).
pub(crate) fn arrivals(signo: libc::c_int) -> Result<tokio::signal::unix::Signal, String> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(signo))
        .map_err(|e| format!("cannot handle {}: {e}", name(signo)))
}

/// What to do with a signal that arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action<H> {
    /// Call the program's handler.
    Call(H),
    /// A worker's first SIGINT/SIGTERM without a handler: stop gracefully,
    /// giving connections this long.
    Stop(Duration),
    /// A repeated stop signal while the graceful stop runs.
    Ignore,
    /// No handler: what the signal does by default (`default_action`).
    Default,
}

/// One host's signals: the program's handlers (of the host's kind `H`),
/// which signals have a listener task, and the worker role with its
/// graceful stop.
pub(crate) struct Signals<H> {
    handlers: RefCell<HashMap<libc::c_int, H>>,
    /// Signals that have a listener task (it stays for good: tokio cannot
    /// give a signal back to its default action).
    listening: RefCell<HashSet<libc::c_int>>,
    /// This process's worker index, when it is a worker.
    worker: Cell<Option<u32>>,
    grace: Cell<Duration>,
    stopping: Cell<bool>,
}

impl<H> Default for Signals<H> {
    fn default() -> Self {
        Signals {
            handlers: RefCell::new(HashMap::new()),
            listening: RefCell::new(HashSet::new()),
            worker: Cell::new(None),
            grace: Cell::new(DEFAULT_GRACE),
            stopping: Cell::new(false),
        }
    }
}

impl<H: Clone> Signals<H> {
    /// Sets (or with None removes) the program's handler for `signo`.
    pub(crate) fn set_handler(&self, signo: libc::c_int, handler: Option<H>) {
        let mut handlers = self.handlers.borrow_mut();
        match handler {
            Some(h) => handlers.insert(signo, h),
            None => handlers.remove(&signo),
        };
    }

    /// What an arrival of `signo` means now. A worker's graceful stop is
    /// started once; repeats are ignored.
    pub(crate) fn action(&self, signo: libc::c_int) -> Action<H> {
        if let Some(h) = self.handlers.borrow().get(&signo) {
            return Action::Call(h.clone());
        }
        let stop_signal = signo == libc::SIGINT || signo == libc::SIGTERM;
        match self.worker.get() {
            Some(_) if stop_signal && self.stopping.replace(true) => Action::Ignore,
            Some(_) if stop_signal => Action::Stop(self.grace.get()),
            _ => Action::Default,
        }
    }

    pub(crate) fn is_listening(&self, signo: libc::c_int) -> bool {
        self.listening.borrow().contains(&signo)
    }

    pub(crate) fn mark_listening(&self, signo: libc::c_int) {
        self.listening.borrow_mut().insert(signo);
    }

    /// This process is now worker `index`; its graceful stop allows `grace`.
    pub(crate) fn become_worker(&self, index: u32, grace: Duration) {
        self.worker.set(Some(index));
        self.grace.set(grace);
    }

    /// This process's worker index, or None outside workers.
    pub(crate) fn worker(&self) -> Option<u32> {
        self.worker.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_accepted_with_or_without_sig_in_any_case() {
        for given in ["SIGINT", "INT", "sigint", "int"] {
            assert_eq!(parse(given), Some(libc::SIGINT), "{given}");
        }
        assert_eq!(parse("SIGKILL"), None);
        assert_eq!(name(libc::SIGUSR2), "SIGUSR2");
    }

    #[test]
    fn a_handler_wins_and_without_one_a_plain_process_takes_the_default() {
        let signals: Signals<&str> = Signals::default();
        signals.set_handler(libc::SIGHUP, Some("reload"));
        assert_eq!(signals.action(libc::SIGHUP), Action::Call("reload"));
        assert_eq!(signals.action(libc::SIGINT), Action::Default);
        signals.set_handler(libc::SIGHUP, None);
        assert_eq!(signals.action(libc::SIGHUP), Action::Default);
    }

    #[test]
    fn a_worker_stops_gracefully_once_on_int_or_term() {
        let signals: Signals<&str> = Signals::default();
        signals.become_worker(3, Duration::from_secs(2));
        assert_eq!(signals.worker(), Some(3));
        assert_eq!(signals.action(libc::SIGUSR1), Action::Default);
        assert_eq!(signals.action(libc::SIGTERM), Action::Stop(Duration::from_secs(2)));
        assert_eq!(signals.action(libc::SIGINT), Action::Ignore);
        // The program's own handler still takes precedence.
        signals.set_handler(libc::SIGINT, Some("mine"));
        assert_eq!(signals.action(libc::SIGINT), Action::Call("mine"));
    }
}
