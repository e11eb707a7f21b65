-- Turbo's `turbo.ioloop`: one loop per process, reached through `instance()`.
-- A thin layer over turbo_ws.core; Turbo's method names and return values.
local core = require "turbo_ws.core"
local log = require "turbo_ws.log"
local toolkit = require "turbo_ws.toolkit"  -- (xpcall with arguments on Lua 5.1 too)

local ioloop = {}

-- Turbo runs every callback in a coroutine that may yield a task or a
-- function, whether or not the program required turbo.async. Until
-- turbo_ws.async (which handles such yields) is loaded, the first yield
-- loads it; it then registers its own handler. Not required here:
-- turbo_ws.async requires this module.
if not package.loaded["turbo_ws.async"] then
  core.on_yield(function(co, value)
    require("turbo_ws.async")._on_yield(co, value)
  end)
end

local IOLoop = {}
IOLoop.__index = IOLoop

local the_instance = setmetatable({}, IOLoop)

--- The loop. With a function, also schedules `func(loop)` on the loop's
-- next turn (add_callback), as Turbo.
function ioloop.instance(func)
  if func then the_instance:add_callback(func, the_instance) end
  return the_instance
end

-- Turbo programs sometimes build their own loop object; there is only one.
ioloop.IOLoop = setmetatable({}, {
  __call = function() return the_instance end,
  __index = IOLoop,
  -- A method a program adds to the class (as to Turbo's) reaches the loop.
  __newindex = IOLoop,
})

-- Turbo logs an error in a callback through turbo.log (so the program's
-- log settings apply) and goes on. Where xpcall cannot be yielded across
-- (Lua 5.1) the callback is handed over as it is, so that it may still
-- yield a task; the core then reports its error on stderr.
local YIELDABLE_XPCALL = rawget(_G, "jit") ~= nil or _VERSION ~= "Lua 5.1"

local function callback_failed(err)
  log.error(("[ioloop.lua] Error in IOLoop callback, %s is dead.\n%s")
    :format(tostring(coroutine.running()), debug.traceback(toolkit.describe(err), 2)))
end

-- (Anything but a function goes to the core as it is: its misuse errors.)
local function logged(callback)
  if not YIELDABLE_XPCALL or type(callback) ~= "function" then return callback end
  return function(arg) toolkit.xpcall(callback, callback_failed, arg) end
end

function IOLoop:start() core.start(); return self end
function IOLoop:close() core.close() end
function IOLoop:running() return core.running() end

function IOLoop:add_callback(callback, arg)
  core.add_callback(logged(callback), arg)
  return self
end

function IOLoop:add_timeout(timestamp, callback, arg)
  return core.add_timeout(timestamp, logged(callback), arg)
end

function IOLoop:remove_timeout(ref) return core.remove_timeout(ref) end

function IOLoop:set_interval(msec, callback, arg)
  return core.set_interval(msec, logged(callback), arg)
end

function IOLoop:clear_interval(ref) return core.clear_interval(ref) end

--- Runs the loop until `close()`, as start() does, and returns true;
-- with `timeout` (seconds), raises if it has not been closed by then
-- (Turbo's tests' helper). Raises when the loop is already running.
function IOLoop:wait(timeout)
  if core.running() then error("Can not wait, already started", 2) end
  local timed_out, ref = false, nil
  if timeout then
    ref = core.add_timeout(core.gettimemonotonic() + timeout * 1000, function()
      timed_out = true
      core.close()
    end)
  end
  core.start()
  if timed_out then error("Sync wait operation timed out.", 2) end
  if ref then core.remove_timeout(ref) end
  return true
end

-- Watching file descriptors (Turbo's epoll values; level-triggered).
ioloop.READ = core.READ
ioloop.WRITE = core.WRITE
ioloop.PRI = 0x002 -- accepted, never reported (no urgent data on the core's reactor)
ioloop.ERROR = core.ERROR

local handlers = {} -- fd -> core watcher

local function handler_failed(err)
  log.error("[ioloop.lua] Error in IOLoop handler.\n" .. debug.traceback(tostring(err), 2))
end

--- Calls handler(arg, fd, events) (or handler(fd, events) without an
-- arg) while fd is ready for `events`; ERROR is always included. A handler
-- that raises is logged and removed. Returns true, or false (logged) when
-- the fd cannot be watched or already is.
function IOLoop:add_handler(fd, events, handler, arg)
  if type(fd) ~= "number" then error("IOLoop:add_handler: bad argument #1 'fd' (number expected, got " .. type(fd) .. ")", 2) end
  if type(events) ~= "number" then error("IOLoop:add_handler: bad argument #2 'events' (number expected, got " .. type(events) .. ")", 2) end
  if type(handler) ~= "function" then error("IOLoop:add_handler: bad argument #3 'handler' (function expected, got " .. type(handler) .. ")", 2) end
  if handlers[fd] then
    log.notice("[ioloop.lua] register() in add_handler() failed: fd " .. fd .. " already has a handler")
    return false
  end
  local watcher, err = core.watch_fd(fd, events, function(ready)
    local ok
    if arg then ok = toolkit.xpcall(handler, handler_failed, arg, fd, ready)
    else ok = toolkit.xpcall(handler, handler_failed, fd, ready) end
    if not ok then self:remove_handler(fd) end
  end)
  if not watcher then
    log.notice("[ioloop.lua] register() in add_handler() failed: " .. tostring(err))
    return false
  end
  handlers[fd] = watcher
  return true
end

--- Changes the events watched on fd; false (logged) without a handler.
function IOLoop:update_handler(fd, events)
  if type(events) ~= "number" then error("IOLoop:update_handler: bad argument #2 'events' (number expected, got " .. type(events) .. ")", 2) end
  local watcher = handlers[fd]
  if not watcher then
    log.notice("[ioloop.lua] modify() in update_handler() failed: no handler for fd " .. tostring(fd))
    return false
  end
  return watcher:update(events)
end

--- Stops watching fd (also from inside its handler); nil when it had no
-- handler, else true. Remove the handler before closing the fd.
function IOLoop:remove_handler(fd)
  local watcher = handlers[fd]
  if not watcher then return nil end
  handlers[fd] = nil
  watcher:close()
  return true
end

-- Signals, over core.on_signal (which knows the signals below).
local signal = require "turbo_ws.signal"

local SIGNAL_NAMES = {}  -- number -> core.on_signal name
for _, name in ipairs({ "SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2" }) do
  SIGNAL_NAMES[signal[name]] = name
end

local signal_handlers = {}  -- signo -> { handler, arg } (or false: it raised)

--- Calls handler(arg, signo, siginfo) (or handler(signo, siginfo) without
-- an arg, as Turbo) on the loop each time the process gets signal `signo`
-- (a `turbo.signal` number: SIGHUP, SIGINT, SIGTERM, SIGUSR1 or SIGUSR2);
-- siginfo is { signo = signo }. Replaces the signal's handler; returns
-- true, or false (logged) for a signal the core cannot handle. A handler
-- that raises is logged and not called again (the signal is then ignored).
function IOLoop:add_signal_handler(signo, handler, arg)
  if type(signo) ~= "number" then error("IOLoop:add_signal_handler: bad argument #1 'signo' (number expected, got " .. type(signo) .. ")", 2) end
  if type(handler) ~= "function" then error("IOLoop:add_signal_handler: bad argument #2 'handler' (function expected, got " .. type(handler) .. ")", 2) end
  if signo == signal.SIGPIPE then error("Cannot add handler for SIGPIPE. Reserved by IOLoop.", 2) end
  local name = SIGNAL_NAMES[signo]
  if not name then
    log.warning("[ioloop.lua] add_signal_handler(): signal " .. signo .. " cannot be handled (only SIGHUP, SIGINT, SIGTERM, SIGUSR1 and SIGUSR2)")
    return false
  end
  signal_handlers[signo] = { handler, arg }
  core.on_signal(name, function()
    local entry = signal_handlers[signo]
    if not entry then return end
    local siginfo = { signo = signo }
    local ok
    if entry[2] then ok = toolkit.xpcall(entry[1], handler_failed, entry[2], signo, siginfo)
    else ok = toolkit.xpcall(entry[1], handler_failed, signo, siginfo) end
    if not ok and signal_handlers[signo] == entry then signal_handlers[signo] = false end
  end)
  return true
end

--- Removes the handler of signal `signo`: the signal takes its default
-- action again (ending the process, or a worker's graceful stop).
function IOLoop:remove_signal_handler(signo)
  if signal_handlers[signo] == nil then return end
  signal_handlers[signo] = nil
  core.on_signal(SIGNAL_NAMES[signo], nil)
end

return ioloop
