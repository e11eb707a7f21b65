-- The Turbo face's turbo.ioloop beyond timers and fd handlers (those are in
-- ioloop_spec.lua and ioloop_handlers_spec.lua): instance(func), wait(),
-- and signal handlers over core.on_signal (Turbo 2.1.5's ioloop.lua).
local turbo = require "turbo_ws"
local S = require "spec.turbo_support"
local L = require "spec.support.loop"
local P = require "spec.support.peer"

local ioloop = turbo.ioloop
local signal = turbo.signal
local loop = ioloop.instance()

-- Sends `name` (e.g. "USR1") to this process: the shell's parent is us.
local function kill_self(name) os.execute("kill -" .. name .. " $PPID") end

describe("turbo.ioloop", function()
  setup(S.quiet)
  teardown(S.loud)

  describe("instance(func)", function()
    it("schedules func(loop) on the loop and returns the loop", function()
      local got
      local returned = ioloop.instance(function(l) got = { l } end)
      assert.equal(loop, returned)
      assert.is_nil(got)
      L.run_bounded()
      assert.same({ loop }, got)
      assert.equal(loop, got[1])
    end)
  end)

  describe("a callback's error", function()
    -- Captures what is written on io.stderr while fn runs.
    local function stderr_of(fn)
      local saved, written = io.stderr, {}
      io.stderr = { write = function(self, ...)
        for i = 1, select("#", ...) do written[#written + 1] = tostring((select(i, ...))) end
        return self
      end, flush = function(self) return self end }
      local ok, err = pcall(fn)
      io.stderr = saved
      assert(ok, err)
      return table.concat(written)
    end

    local function fail_then_close()
      local after = false
      loop:add_callback(function() error("deliberate callback failure") end)
      loop:add_timeout(turbo.util.gettimemonotonic() + 1, function() error("deliberate timeout failure") end)
      loop:add_timeout(turbo.util.gettimemonotonic() + 20, function() after = true; loop:close() end)
      loop:wait(5)
      return after
    end

    it("goes to turbo.log as Turbo's does, and the loop goes on", function()
      turbo.log.categories.error = true
      local written = stderr_of(function() assert.is_true(fail_then_close()) end)
      turbo.log.categories.error = false
      assert.truthy(written:find("[ioloop.lua] Error in IOLoop callback", 1, true), written)
      assert.truthy(written:find("deliberate callback failure", 1, true), written)
      assert.truthy(written:find("deliberate timeout failure", 1, true), written)
    end)

    it("is silenced with the error log category", function()
      local written = stderr_of(function() assert.is_true(fail_then_close()) end)
      assert.are.equal("", written)
    end)
  end)

  describe("IOLoop:wait", function()
    it("runs the loop until close() and returns true", function()
      local ran = false
      loop:add_callback(function() ran = true; loop:close() end)
      assert.is_true(loop:wait(5))
      assert.is_true(ran)
      assert.is_false(loop:running())
      -- Without a timeout too.
      loop:add_timeout(turbo.util.gettimemonotonic() + 10, function() loop:close() end)
      assert.is_true(loop:wait())
    end)

    it("raises when the loop is not closed in time, or is already running", function()
      local t0 = turbo.util.gettimemonotonic()
      L.assert_error_with("Sync wait operation timed out.", function() loop:wait(0.05) end)
      assert.is_true(turbo.util.gettimemonotonic() - t0 < 2000)
      local nested
      loop:add_callback(function()
        nested = { pcall(loop.wait, loop, 1) }
        loop:close()
      end)
      loop:start()
      assert.is_false(nested[1])
      assert.truthy(tostring(nested[2]):find("Can not wait, already started", 1, true))
    end)
  end)

  describe("signal handlers", function()
    after_each(function()
      loop:remove_signal_handler(signal.SIGUSR1)
      loop:remove_signal_handler(signal.SIGUSR2)
    end)

    it("calls handler(arg, signo, siginfo), or handler(signo, siginfo) without arg", function()
      local with_arg, without
      assert.is_true(loop:add_signal_handler(signal.SIGUSR1, function(...)
        with_arg = { n = select("#", ...), ... }
      end, "ARG"))
      assert.is_true(loop:add_signal_handler(signal.SIGUSR2, function(...)
        without = { n = select("#", ...), ... }
      end))
      loop:add_callback(function() kill_self("USR1"); kill_self("USR2") end)
      L.run_until(function() return with_arg and without end, 5000, "both signal handlers")
      assert.same({ "ARG", signal.SIGUSR1 }, { with_arg[1], with_arg[2] })
      assert.same({ signo = signal.SIGUSR1 }, with_arg[3])
      assert.same({ signal.SIGUSR2, { signo = signal.SIGUSR2 } }, { without[1], without[2] })
    end)

    it("replaces the handler of a signal", function()
      local seen = {}
      loop:add_signal_handler(signal.SIGUSR1, function() seen[#seen + 1] = "first" end)
      loop:add_signal_handler(signal.SIGUSR1, function() seen[#seen + 1] = "second" end)
      loop:add_callback(function() kill_self("USR1") end)
      L.run_until(function() return #seen > 0 end, 5000, "the signal handler")
      assert.same({ "second" }, seen)
    end)

    it("checks its arguments, refuses SIGPIPE, and returns false for a signal it cannot handle", function()
      L.assert_error_with("bad argument #1 'signo' (number expected, got string)",
        function() loop:add_signal_handler("SIGUSR1", print) end)
      L.assert_error_with("bad argument #2 'handler' (function expected, got nil)",
        function() loop:add_signal_handler(signal.SIGUSR1) end)
      L.assert_error_with("Cannot add handler for SIGPIPE. Reserved by IOLoop.",
        function() loop:add_signal_handler(signal.SIGPIPE, print) end)
      assert.is_false(loop:add_signal_handler(signal.SIGCHLD, print))
      -- Removing a handler that is not there does nothing.
      assert.has_no_error(function() loop:remove_signal_handler(signal.SIGCHLD) end)
    end)

    it("does not call a handler again once it raised", function()
      local calls = 0
      loop:add_signal_handler(signal.SIGUSR1, function()
        calls = calls + 1
        error("deliberate failure")
      end)
      loop:add_callback(function() kill_self("USR1") end)
      L.run_until(function() return calls > 0 end, 5000, "the signal handler")
      local t0 = turbo.util.gettimemonotonic()
      loop:add_callback(function() kill_self("USR1") end)
      L.run_until(function() return turbo.util.gettimemonotonic() - t0 > 300 end, 5000)
      assert.equal(1, calls)
    end)

    it("gives the signal its default action back once removed, in a Turbo program", function()
      local status, out = P.run_luajit([[
        io.stdout:setvbuf("line")
        require "turbo_ws.compat"
        local turbo = require "turbo"
        local signal = require "turbo.signal"
        local loop = turbo.ioloop.instance()
        loop:add_signal_handler(signal.SIGUSR1, function(signo) print("handled " .. signo) end)
        loop:add_callback(function() os.execute("kill -USR1 $PPID") end)
        loop:add_timeout(turbo.util.gettimemonotonic() + 200, function()
          loop:remove_signal_handler(signal.SIGUSR1)
          os.execute("kill -USR1 $PPID")
        end)
        loop:add_timeout(turbo.util.gettimemonotonic() + 3000, function()
          print("still alive")
          loop:close()
        end)
        loop:start()
      ]])
      assert.truthy(out:find("handled " .. signal.SIGUSR1, 1, true), out)
      assert.is_nil(out:find("still alive", 1, true), out)
      assert.equal(128 + signal.SIGUSR1, status, out)
    end)
  end)
end)
