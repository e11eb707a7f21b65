-- The event loop (turbo_ws.ioloop, turbo_ws.run): ordering, timers,
-- intervals, errors in callbacks, close/restart, running until idle.
local turbo = require "turbo_ws"
local ioloop = turbo.ioloop
local util = turbo.util
local L = require "spec.support.loop"
local P = require "spec.support.peer"
local assert_error_with = L.assert_error_with
local run_bounded = L.run_bounded

local io_loop = ioloop.instance()
local now = util.gettimemonotonic

local run_program = P.run_luajit

describe("turbo_ws.ioloop", function()
  it("has one instance", function()
    assert.are.equal(ioloop.instance(), ioloop.instance())
  end)

  it("runs callbacks in the order they were added, each with its argument", function()
    local seen = {}
    for i = 1, 5 do io_loop:add_callback(function(arg) seen[#seen + 1] = arg end, i) end
    run_bounded()
    assert.are.same({ 1, 2, 3, 4, 5 }, seen)
  end)

  it("runs a callback added by a callback on a later turn", function()
    local seen = {}
    io_loop:add_callback(function()
      seen[#seen + 1] = "a"
      io_loop:add_callback(function() seen[#seen + 1] = "c" end)
    end)
    io_loop:add_callback(function() seen[#seen + 1] = "b" end)
    run_bounded()
    assert.are.same({ "a", "b", "c" }, seen)
  end)

  it("gives the loop a method a program adds to the IOLoop class", function()
    function ioloop.IOLoop:spec_hello(x) return self, x end -- luacheck: ignore
    local loop, x = ioloop.instance():spec_hello(7)
    assert.are.equal(ioloop.instance(), loop)
    assert.are.equal(7, x)
  end)

  it("returns itself from add_callback, as Turbo does", function()
    assert.are.equal(io_loop, io_loop:add_callback(function() end))
    run_bounded()
  end)

  it("fires timeouts in deadline order, ties in the order added", function()
    local seen = {}
    local t = now()
    io_loop:add_timeout(t + 30, function(a) seen[#seen + 1] = a end, "30")
    io_loop:add_timeout(t + 10, function(a) seen[#seen + 1] = a end, "10a")
    io_loop:add_timeout(t + 10, function(a) seen[#seen + 1] = a end, "10b")
    io_loop:add_timeout(t - 5, function(a) seen[#seen + 1] = a end, "past")
    run_bounded()
    assert.are.same({ "past", "10a", "10b", "30" }, seen)
  end)

  it("does not fire a timeout before its time", function()
    local t0 = now()
    local fired_at
    io_loop:add_timeout(t0 + 50, function() fired_at = now() end)
    run_bounded()
    assert.is_true(fired_at - t0 >= 49)
  end)

  it("removes a pending timeout", function()
    local fired = false
    local ref = io_loop:add_timeout(now() + 10, function() fired = true end)
    assert.is_true(io_loop:remove_timeout(ref))
    assert.is_false(io_loop:remove_timeout(ref))
    run_bounded()
    assert.is_false(fired)
  end)

  it("lets a timeout remove another one due at the same time", function()
    local seen = {}
    local t = now() + 5
    local second
    io_loop:add_timeout(t, function() seen[#seen + 1] = 1; io_loop:remove_timeout(second) end)
    second = io_loop:add_timeout(t, function() seen[#seen + 1] = 2 end)
    run_bounded()
    assert.are.same({ 1 }, seen)
  end)

  it("repeats an interval until cleared, even from its own callback", function()
    local count = 0
    local ref
    ref = io_loop:set_interval(5, function(arg)
      assert.are.equal("x", arg)
      count = count + 1
      if count == 4 then io_loop:clear_interval(ref) end
    end, "x")
    run_bounded()
    assert.are.equal(4, count)
  end)

  it("clears an interval from elsewhere", function()
    local count = 0
    local ref = io_loop:set_interval(5, function() count = count + 1 end)
    io_loop:add_timeout(now() + 28, function() io_loop:clear_interval(ref) end)
    run_bounded()
    assert.is_true(count >= 3 and count <= 6, "count " .. count)
  end)

  it("logs an error in a callback and goes on", function()
    local after = false
    io_loop:add_callback(function() error("deliberate failure") end)
    io_loop:add_callback(function() after = true end)
    io_loop:add_timeout(now() + 1, function() error({ code = 42 }) end)
    run_bounded()
    assert.is_true(after)
  end)

  it("prints the traceback of an error in a callback", function()
    local status, out = run_program([[
      local t = require "turbo_ws"
      t.ioloop.instance():add_callback(function() local function inner() error("boom!") end inner() end)
      t.run()
      print("still running")
    ]])
    assert.are.equal(0, status)
    assert.truthy(out:find("boom!", 1, true))
    assert.truthy(out:find("stack traceback", 1, true))
    assert.truthy(out:find("still running", 1, true))
  end)

  it("lets a callback yield, like Turbo's coroutine callbacks", function()
    local resumed = false
    io_loop:add_callback(function()
      local co = coroutine.running()
      io_loop:add_timeout(now() + 5, function() coroutine.resume(co, "v") end)
      local v = coroutine.yield()
      resumed = (v == "v")
    end)
    run_bounded()
    assert.is_true(resumed)
  end)

  -- A 0 ms interval is always due: the loop must still run the rest and
  -- stop when asked (a child process, bounded: a regression would hang).
  it("stops at close() while a 0 ms interval runs", function()
    local path = os.tmpname()
    P.write_file(path, [[
      local core = require("turbo_ws").core
      local n = 0
      core.set_interval(0, function() n = n + 1 end)
      core.add_timeout(core.gettimemonotonic() + 50, function() core.close() end)
      core.start()
      print("stopped after", n > 0)
    ]])
    local status, out = P.run("LUA_CPATH='./build/?.so;;' timeout 10 luajit " .. path)
    os.remove(path)
    assert.are.equal(0, status, out)
    assert.truthy(out:find("stopped after\ttrue", 1, true), out)
  end)

  -- Turbo programs yield tasks and functions without requiring turbo.async
  -- first (it is loaded with turbo); a fresh process, so nothing loaded it.
  it("resumes a callback that yields a function before turbo.async was ever touched", function()
    local status, out = run_program([[
      local t = require "turbo_ws"
      local io = t.ioloop.instance()
      io:add_callback(function()
        print("async loaded before:", package.loaded["turbo_ws.async"] ~= nil)
        print("resumed with", coroutine.yield(function() return 5 end))
        io:close()
      end)
      io:add_timeout(t.util.gettimemonotonic() + 3000, function() print("timed out"); io:close() end)
      io:start()
    ]])
    assert.are.equal(0, status, out)
    assert.truthy(out:find("async loaded before:\tfalse", 1, true), out)
    assert.truthy(out:find("resumed with\t5", 1, true), out)
    assert.falsy(out:find("timed out", 1, true), out)
  end)

  it("start() returns after close() from a callback, and a later start() resumes pending work", function()
    local seen = {}
    local t = now()
    io_loop:add_timeout(t + 5, function() seen[#seen + 1] = "first"; io_loop:close() end)
    io_loop:add_timeout(t + 20, function() seen[#seen + 1] = "second"; io_loop:close() end)
    io_loop:start()
    assert.are.same({ "first" }, seen)
    io_loop:start()
    assert.are.same({ "first", "second" }, seen)
  end)

  it("runs the turn's queued callbacks before its due timeouts, as Turbo", function()
    local seen = {}
    local interval = io_loop:set_interval(50, function() end)
    io_loop:add_callback(function() seen[#seen + 1] = "callback" end)
    io_loop:add_timeout(now() - 1, function() seen[#seen + 1] = "timeout" end)
    io_loop:add_timeout(now() + 20, function() io_loop:close() end)
    io_loop:start()
    io_loop:clear_interval(interval)
    assert.are.same({ "callback", "timeout" }, seen)
  end)

  it("close() from a callback leaves the rest of its turn for the next start()", function()
    local seen = {}
    local due = now() - 1
    io_loop:add_callback(function() seen[#seen + 1] = "a"; io_loop:close() end)
    io_loop:add_callback(function() seen[#seen + 1] = "b" end)
    io_loop:start()
    assert.are.same({ "a" }, seen)
    io_loop:add_callback(function() seen[#seen + 1] = "c"; io_loop:close() end)
    io_loop:start()
    assert.are.same({ "a", "b", "c" }, seen)
    io_loop:add_timeout(due, function() seen[#seen + 1] = "t1"; io_loop:close() end)
    io_loop:add_timeout(due, function() seen[#seen + 1] = "t2"; io_loop:close() end)
    io_loop:start()
    assert.are.same({ "a", "b", "c", "t1" }, seen)
    io_loop:start()
    assert.are.same({ "a", "b", "c", "t1", "t2" }, seen)
  end)

  it("refuses a nested start() with a clear error", function()
    local err
    io_loop:add_callback(function()
      local ok, e = pcall(io_loop.start, io_loop)
      err = e
      io_loop:close()
    end)
    io_loop:start()
    assert.truthy(tostring(err):find("already running", 1, true))
  end)

  it("reports running()", function()
    local inside
    io_loop:add_callback(function() inside = io_loop:running(); io_loop:close() end)
    assert.is_false(io_loop:running())
    io_loop:start()
    assert.is_true(inside)
  end)

  it("run() returns at once when nothing is pending", function()
    local t0 = now()
    turbo.run()
    assert.is_true(now() - t0 < 1000)
  end)

  it("run() is not kept alive by an unref'd interval", function()
    local ref = turbo.core.set_interval(1, function() end, nil, false)
    turbo.run()
    io_loop:clear_interval(ref)
  end)

  it("holds 100,000 pending timers and fires them all in order", function()
    local n, last, in_order = 0, -1, true
    local t = now() + 20
    for i = 1, 100000 do
      io_loop:add_timeout(t + (i % 50), function(k)
        n = n + 1
        local slot = k % 50
        if slot < last then in_order = false end
        last = slot
      end, i)
    end
    run_bounded(20000)
    assert.are.equal(100000, n)
    assert.is_true(in_order)
  end)

  it("removes 100,000 timers", function()
    local refs, fired = {}, 0
    for i = 1, 100000 do refs[i] = io_loop:add_timeout(now() + 60000, function() fired = fired + 1 end) end
    for i = 1, 100000 do assert(io_loop:remove_timeout(refs[i])) end
    run_bounded()
    assert.are.equal(0, fired)
  end)

  describe("argument checks", function()
    it("names the function and the argument", function()
      assert_error_with("turbo_ws.add_timeout: bad argument #1 'timestamp' (finite number expected, got string)",
        function() io_loop:add_timeout("soon", print) end)
      assert_error_with("turbo_ws.add_callback: bad argument #1 'callback' (function expected, got number)",
        function() io_loop:add_callback(42) end)
      assert_error_with("turbo_ws.set_interval: bad argument #1 'msec' (non-negative number expected, got number)",
        function() io_loop:set_interval(-1, print) end)
      assert_error_with("turbo_ws.set_interval: bad argument #2 'callback' (function expected, got nil)",
        function() io_loop:set_interval(10, nil) end)
    end)

    it("treats unknown refs as not pending", function()
      assert.is_false(io_loop:remove_timeout(123456789))
      assert.is_false(io_loop:remove_timeout("x"))
      assert.is_false(io_loop:clear_interval(nil))
    end)
  end)

  describe("process exit", function()
    it("exits 0 when the program returns after the loop", function()
      local status = run_program([[
        local t = require "turbo_ws"
        local io = t.ioloop.instance()
        io:add_timeout(t.util.gettimemonotonic() + 5, function() io:close() end)
        io:start()
      ]])
      assert.are.equal(0, status)
    end)

    it("exits with the status given to os.exit from inside a callback", function()
      local status = run_program([[
        local t = require "turbo_ws"
        t.ioloop.instance():add_callback(function() os.exit(3) end)
        t.ioloop.instance():start()
      ]])
      assert.are.equal(3, status)
    end)

    it("exits 0 with os.exit(0, true) (closing the state) while connections and timers are pending", function()
      local status = run_program([[
        local t = require "turbo_ws"
        local srv = t.core.listen({host = "127.0.0.1", port = 0}, function() end)
        t.ioloop.instance():add_timeout(t.util.gettimemonotonic() + 60000, function() end)
        t.ioloop.instance():add_callback(function() os.exit(0, true) end)
        t.ioloop.instance():start()
      ]])
      assert.are.equal(0, status)
    end)

    it("exits 0 when the program returns with work still pending", function()
      local status = run_program([[
        local t = require "turbo_ws"
        t.core.listen({host = "127.0.0.1", port = 0}, function() end)
        t.ioloop.instance():add_timeout(t.util.gettimemonotonic() + 60000, function() end)
      ]])
      assert.are.equal(0, status)
    end)
  end)

  describe("util", function()
    it("gives monotonic and wall-clock milliseconds", function()
      local a = util.gettimemonotonic()
      local b = util.gettimemonotonic()
      assert.is_true(b >= a)
      assert.is_true(math.abs(util.gettimeofday() - os.time() * 1000) < 2000)
    end)
  end)
end)
