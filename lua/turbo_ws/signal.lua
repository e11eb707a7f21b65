--- turbo_ws.signal -- Turbo's `turbo.signal`: Linux signal numbers, for
-- `IOLoop:add_signal_handler(signo, ...)`. Numbers only: Turbo's FFI
-- parts (`signal.signal`, `SIG_DFL`, `SIG_IGN`, `SIG_ERR`) are not here.

-- Linux's numbering on x86, x86-64, ARM, ARM64 and PowerPC.
local signal = {
  SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGILL = 4, SIGTRAP = 5,
  SIGABRT = 6, SIGIOT = 6, SIGBUS = 7, SIGFPE = 8, SIGKILL = 9,
  SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12, SIGPIPE = 13, SIGALRM = 14,
  SIGTERM = 15, SIGSTKFLT = 16, SIGCHLD = 17, SIGCLD = 17, SIGCONT = 18,
  SIGSTOP = 19, SIGTSTP = 20, SIGTTIN = 21, SIGTTOU = 22, SIGURG = 23,
  SIGXCPU = 24, SIGXFSZ = 25, SIGVTALRM = 26, SIGPROF = 27, SIGWINCH = 28,
  SIGIO = 29, SIGPOLL = 29, SIGPWR = 30, SIGSYS = 31, SIGUNUSED = 31,
  _NSIG = 65,
  -- sigprocmask(2)'s `how`
  SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2,
}

-- MIPS numbers several of them differently, and has no SIGSTKFLT.
local arch = rawget(_G, "jit") and jit.arch or ""
if arch == "mips" or arch == "mipsel" or arch == "mips64" or arch == "mips64el" then
  local mips = {
    SIGBUS = 10, SIGUSR1 = 16, SIGUSR2 = 17, SIGSYS = 12,
    SIGCHLD = 18, SIGCLD = 18, SIGPWR = 19, SIGWINCH = 20, SIGURG = 21,
    SIGIO = 22, SIGPOLL = 22, SIGSTOP = 23, SIGTSTP = 24, SIGCONT = 25,
    SIGTTIN = 26, SIGTTOU = 27, SIGVTALRM = 28, SIGPROF = 29, SIGXCPU = 30,
    SIGXFSZ = 31, _NSIG = 128,
    SIG_BLOCK = 1, SIG_UNBLOCK = 2, SIG_SETMASK = 3,
  }
  signal.SIGSTKFLT, signal.SIGUNUSED = nil, nil
  for name, number in pairs(mips) do signal[name] = number end
end

return signal
