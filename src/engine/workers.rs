//! Worker processes, without Lua: fork `n` copies of the program, pre-fork
//! style, and supervise them.
//!
//! `start` forks; in each child it returns a `Worker` (its index, 1..n),
//! which goes on running the program. The parent never returns: it becomes
//! a supervisor that only waits for its children, forwards signals to
//! them, restarts them if asked, and exits when all of them have exited.
//! It runs no program code and no tokio after the fork.
//!
//! Forking is only safe before the event loop exists (an epoll instance and
//! its sockets must not be shared between processes) and while the process
//! has one thread, so `start` refuses otherwise. The supervisor waits for
//! signals with `sigtimedwait` on a blocked set, so no OS signal handler
//! (and no static for one to reach) is involved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::engine::{random, signals};

pub(crate) const MAX_WORKERS: u64 = 1024;
/// How long after the stop signal (beyond `grace`) the supervisor waits
/// before it kills the workers that are still running.
const KILL_MARGIN: Duration = Duration::from_secs(5);
/// A worker that dies sooner than this after its start is respawned only
/// after this delay, so a crash at startup cannot become a fork storm.
const RESPAWN_THROTTLE: Duration = Duration::from_secs(1);

pub(crate) struct Options {
    /// How long a worker's graceful stop may take.
    pub grace: Duration,
    /// Start a worker again when it ends other than cleanly.
    pub respawn: bool,
}

/// A freshly forked worker. Its stop signals are still blocked, so that
/// one arriving before the program handles them is not fatal: the caller
/// sets up its handling, then calls `unblock_signals`.
pub(crate) struct Worker {
    pub index: u32,
    old_mask: libc::sigset_t,
}

impl Worker {
    /// Restores the signal mask the program had before `start`.
    pub(crate) fn unblock_signals(&self) -> Result<(), String> {
        // SAFETY: restores a mask saved by `start` itself.
        os_result(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) })
            .map_err(|e| format!("cannot restore the signal mask in worker {}: {e}", self.index))
    }
}

/// Why forking now would be unsafe for the process, if it would.
pub(crate) fn hazard() -> Option<String> {
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
struct Supervisor<'a> {
    /// Signals blocked for the supervisor's sigtimedwait, and the mask before.
    waited: libc::sigset_t,
    old_mask: libc::sigset_t,
    old_sigchld: libc::sigaction,
    parent: libc::pid_t,
    options: &'a Options,
}

/// In a freshly forked child: becomes worker `index`.
fn become_worker(sup: &Supervisor, index: u32) -> Result<Worker, String> {
    // SAFETY: plain syscalls on this (single-threaded) child process.
    unsafe {
        os_result(libc::sigaction(libc::SIGCHLD, &sup.old_sigchld, std::ptr::null_mut()))
            .map_err(|e| format!("cannot restore SIGCHLD in worker {index}: {e}"))?;
        #[cfg(target_os = "linux")]
        {
            // Stop too if the supervisor dies without forwarding anything.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            if libc::getppid() != sup.parent {
                libc::_exit(1);
            }
        }
    }
    // Random bytes pooled in the parent would repeat in every worker.
    random::discard();
    Ok(Worker { index, old_mask: sup.old_mask })
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
    // SAFETY: plain syscalls with values saved by `start` itself.
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

/// Forks `n` workers. Returns in each of them (and in a respawned one);
/// the parent supervises them and ends the process when none is left.
/// An error means no worker is running and nothing was changed.
pub(crate) fn start(n: u32, options: &Options) -> Result<Worker, String> {
    if let Some(why) = hazard() {
        return Err(why);
    }
    let mut stop_and_waited: Vec<libc::c_int> = signals::HANDLED.iter().map(|(_, s)| *s).collect();
    stop_and_waited.push(libc::SIGCHLD);
    let waited = sigset(&stop_and_waited);
    // SAFETY: plain syscalls; every out-pointer is a local we own.
    let (old_mask, old_sigchld) = unsafe {
        let mut old_mask: libc::sigset_t = std::mem::zeroed();
        os_result(libc::sigprocmask(libc::SIG_BLOCK, &waited, &mut old_mask))
            .map_err(|e| format!("cannot block signals: {e}"))?;
        // SIGCHLD at its default, so children are not reaped behind our back.
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        let mut old_sigchld: libc::sigaction = std::mem::zeroed();
        if let Err(e) = os_result(libc::sigaction(libc::SIGCHLD, &dfl, &mut old_sigchld)) {
            let _ = os_result(libc::sigprocmask(libc::SIG_SETMASK, &old_mask, std::ptr::null_mut()));
            return Err(format!("cannot reset SIGCHLD: {e}"));
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
            Ok(0) => return become_worker(&sup, index),
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
                return Err(format!("cannot fork worker {index}: {e}{restored}"));
            }
        }
    }
    supervise(&sup, children)
}

/// The parent after the forks: waits, forwards, respawns if asked, and
/// exits when no worker is left. Returns only in a respawned child.
fn supervise(sup: &Supervisor, mut children: HashMap<libc::pid_t, (u32, Instant)>) -> Result<Worker, String> {
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
                Ok(0) => return become_worker(sup, index),
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
                    "{} worker(s) still running {:.0} s after the stop signal; killing them",
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
                    say(format!("{} again; killing the workers", signals::name(sig)));
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

/// What can be checked without forking: the safety checks and the words
/// the supervisor uses. Forking itself is pinned by spec/workers_spec.lua
/// (the test harness has threads, so `start` rightly refuses here).
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_with_threads_or_an_event_loop_may_not_fork() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::spawn(move || rx.recv());
        assert!(thread_count() >= 2);
        let why = start(1, &Options { grace: Duration::ZERO, respawn: false }).err().expect("refused");
        // Tests running alongside may have made a tokio runtime (an epoll
        // instance), which is checked first.
        let expected = ["threads; fork is only safe with one", "the event loop already exists"];
        assert!(expected.iter().any(|e| why.contains(e)), "{why}");
        drop(tx);
        let _ = other.join();
    }

    #[test]
    fn a_worker_end_is_described_by_exit_status_or_signal() {
        // Wait statuses as waitpid encodes them on Linux.
        assert_eq!(describe_status(3 << 8), "exited with status 3");
        assert!(describe_status(libc::SIGKILL).starts_with("was killed by signal 9 ("));
    }
}
