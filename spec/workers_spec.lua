-- turbo_ws.core.workers and on_signal: argument checks and refusals in this
-- process; forking, SO_REUSEPORT sharing, signal forwarding, graceful stop
-- and respawn in child luajit processes (each bounded by `timeout`).
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local ffi = require "ffi"
local L = require "spec.support.loop"
local free_port = L.free_port
local assert_error_with = L.assert_error_with

pcall(ffi.cdef, "int getpid(void);")

local P = require "spec.support.peer"
local sh = P.output

local function write_file(code)
  local path = os.tmpname()
  P.write_file(path, code)
  return path
end

-- Starts `code` in a fresh luajit (at most `limit` seconds); returns a
-- handle whose lines() reads its output (stdout and stderr) line by line
-- and whose finish() reads the rest and returns (exit status, all output).
local function spawn(code, limit)
  local path = write_file(code)
  local p = assert(io.popen(string.format(
    "LUA_CPATH='./build/?.so;;' timeout -s KILL %d luajit %s 2>&1; echo \"exit=$?\"", limit or 20, path)))
  local seen = {}
  local h = {}
  function h.line()
    local l = p:read("*l")
    if l then seen[#seen + 1] = l end
    return l
  end
  -- Reads lines until one matches `pattern`; returns its captures.
  function h.expect(pattern)
    while true do
      local l = h.line()
      if not l then error("no line matching " .. pattern .. " in:\n" .. table.concat(seen, "\n")) end
      local caps = { l:match(pattern) }
      if #caps > 0 then return unpack(caps) end
    end
  end
  function h.finish()
    while h.line() do end
    p:close()
    os.remove(path)
    local out = table.concat(seen, "\n")
    return tonumber(out:match("exit=(%d+)")), out
  end
  return h
end

-- The program each worker test runs: workers(n), a server on `port` with
-- reuse_port that greets every WebSocket with its worker index and pid.
local function server_program(n, port, extra)
  return string.format([[
    io.stdout:setvbuf("line")
    local ffi = require "ffi"
    ffi.cdef "int getpid(void);"
    local turbo_ws = require "turbo_ws"
    local core = turbo_ws.core
    print("supervisor " .. ffi.C.getpid())
    local id = core.workers(%d, { grace = 1 %s })
    local server = core.listen({ host = "127.0.0.1", port = %d, reuse_port = true }, function(req)
      local conn = req:upgrade()
      if conn then conn:send("worker " .. id .. " " .. ffi.C.getpid()) end
    end)
    %s
    print("ready " .. id .. " " .. ffi.C.getpid() .. " " .. tostring(core.worker_index()))
    turbo_ws.run()
    print("stopped " .. id)
  ]], n, extra and extra.options or "", port, extra and extra.body or "")
end

local function alive(pid)
  return sh("kill -0 " .. pid .. " && echo yes"):find("yes") ~= nil
end

-- Connects to 127.0.0.1:port and returns the greeting ("worker N PID").
local function greeting(port)
  local got, err
  core.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 3 }, function(conn, res, msg)
    if not conn then err = res .. " " .. tostring(msg); return end
    conn:set_callbacks{ on_message = function(m) got = m; conn:close() end }
  end)
  local guard = core.set_interval(5000, function() core.close() end, nil, false)
  turbo_ws.run()
  core.clear_interval(guard)
  return got, err
end

describe("turbo_ws.core.workers", function()
  it("checks its arguments before anything else", function()
    assert_error_with("turbo_ws.workers: bad argument #1 'n' (whole number from 1 to 1024 expected, got number)",
      function() core.workers(0) end)
    assert_error_with("bad argument #1 'n' (whole number from 1 to 1024 expected, got number)",
      function() core.workers(2.5) end)
    assert_error_with("bad argument #1 'n' (finite number expected, got string)", function() core.workers("2") end)
    assert_error_with("bad argument #2 'options' (table expected, got number)", function() core.workers(2, 1) end)
    assert_error_with("bad option 'grace' (number of seconds expected, got string)",
      function() core.workers(2, { grace = "x" }) end)
    assert_error_with("bad option 'respawn' (boolean expected, got number)",
      function() core.workers(2, { respawn = 1 }) end)
  end)

  it("refuses to fork once a listener exists", function()
    local s = core.listen({ host = "127.0.0.1", port = 0 }, function() end)
    assert_error_with("turbo_ws.workers: call workers() first", function() core.workers(2) end)
    s:close()
    local guard = core.set_interval(2000, function() core.close() end, nil, false)
    turbo_ws.run()
    core.clear_interval(guard)
    -- The loop now exists in this process: still refused.
    assert_error_with("the event loop already exists", function() core.workers(2) end)
  end)

  it("refuses inside a running loop", function()
    local err
    core.add_callback(function() err = select(2, pcall(core.workers, 2)) end)
    turbo_ws.run()
    assert.truthy(tostring(err):find("the loop is running", 1, true), tostring(err))
  end)

  it("is not a worker outside workers()", function()
    assert.is_nil(core.worker_index())
  end)

  it("forks n workers sharing one port; SIGTERM to the supervisor stops them all cleanly", function()
    local port = free_port()
    local p = spawn(server_program(2, port), 20)
    local sup = tonumber(p.expect("^supervisor (%d+)"))
    local pids = {}
    for _ = 1, 2 do
      local id, pid, index = p.expect("^ready (%d+) (%d+) (%S+)")
      assert.are.equal(id, index)
      pids[tonumber(id)] = tonumber(pid)
    end
    assert.truthy(pids[1] and pids[2], "workers 1 and 2 did not both start")
    assert.are_not.equal(pids[1], pids[2])
    -- Connections spread over both workers (SO_REUSEPORT).
    local by = {}
    for _ = 1, 40 do
      local g, err = greeting(port)
      assert.truthy(g, err)
      local id = g:match("^worker (%d+)")
      by[id] = (by[id] or 0) + 1
      if by["1"] and by["2"] then break end
    end
    assert.truthy(by["1"] and by["2"], "every connection reached the same worker")
    sh("kill -TERM " .. sup)
    local status, out = p.finish()
    assert.are.equal(0, status, out)
    assert.truthy(out:find("stopped 1", 1, true), out)
    assert.truthy(out:find("stopped 2", 1, true), out)
    assert.is_false(alive(pids[1]))
    assert.is_false(alive(pids[2]))
  end)

  it("stops a worker gracefully: open WebSockets get close 1001", function()
    local port = free_port()
    local p = spawn(server_program(1, port), 20)
    local sup = tonumber(p.expect("^supervisor (%d+)"))
    p.expect("^ready 1")
    local code, greeted
    core.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 3 }, function(conn)
      assert.truthy(conn)
      conn:set_callbacks{
        on_message = function(m)
          greeted = m
          sh("kill -TERM " .. sup)
        end,
        on_close = function(c) code = c end,
      }
    end)
    local guard = core.set_interval(8000, function() core.close() end, nil, false)
    turbo_ws.run()
    core.clear_interval(guard)
    assert.truthy(greeted)
    assert.are.equal(1001, code)
    local status, out = p.finish()
    assert.are.equal(0, status, out)
  end)

  it("forwards SIGHUP and lets a program handle SIGTERM itself", function()
    local port = free_port()
    local p = spawn(server_program(2, port, { body = [[
      core.on_signal("SIGHUP", function(name) print("got " .. name .. " in " .. id) end)
      core.on_signal("SIGTERM", function(name)
        print("custom " .. name .. " in " .. id)
        turbo_ws.shutdown(1, function() core.close() end)
      end)
    ]] }), 20)
    local sup = tonumber(p.expect("^supervisor (%d+)"))
    p.expect("^ready"); p.expect("^ready")
    sh("kill -HUP " .. sup)
    p.expect("^got SIGHUP"); p.expect("^got SIGHUP")
    sh("kill -TERM " .. sup)
    local status, out = p.finish()
    assert.are.equal(0, status, out)
    assert.truthy(out:find("custom SIGTERM in 1", 1, true), out)
    assert.truthy(out:find("custom SIGTERM in 2", 1, true), out)
  end)

  it("kills workers that do not stop when asked twice", function()
    local port = free_port()
    local p = spawn(server_program(2, port, { body = [[
      core.on_signal("SIGTERM", function() print("ignoring") end)
    ]] }), 20)
    local sup = tonumber(p.expect("^supervisor (%d+)"))
    p.expect("^ready"); p.expect("^ready")
    sh("kill -TERM " .. sup)
    p.expect("^ignoring"); p.expect("^ignoring")
    local t0 = os.time()
    sh("kill -TERM " .. sup)
    local status, out = p.finish()
    assert.are.equal(1, status, out)
    assert.truthy(out:find("SIGTERM again; killing the workers", 1, true), out)
    assert.truthy(os.time() - t0 <= 3, "took too long")
  end)

  it("exits with a failed worker's status, and respawns it when asked", function()
    local marker = os.tmpname()
    os.remove(marker)
    local port = free_port()
    -- Worker 2 exits with status 3 the first time only.
    local p = spawn(server_program(2, port, {
      options = ", respawn = true",
      body = string.format([[
        if id == 2 and not io.open(%q) then
          io.open(%q, "w"):close()
          print("worker 2 failing")
          os.exit(3)
        end
      ]], marker, marker),
    }), 20)
    local sup = tonumber(p.expect("^supervisor (%d+)"))
    p.expect("^worker 2 failing")
    p.expect("worker 2 %(pid %d+%) exited with status 3")
    p.expect("worker 2 restarted")
    -- The respawned worker is worker 2 again.
    local id = p.expect("^ready (2) ")
    assert.are.equal("2", id)
    sh("kill -TERM " .. sup)
    local status, out = p.finish()
    os.remove(marker)
    -- A worker failed during the run: the supervisor says so in its status.
    assert.are.equal(3, status, out)
  end)

  it("ends when every worker has ended on its own, with status 0", function()
    local p = spawn([[
      io.stdout:setvbuf("line")
      local core = require("turbo_ws").core
      local id = core.workers(3)
      print("worker " .. id .. " done")
    ]], 10)
    local status, out = p.finish()
    assert.are.equal(0, status, out)
    for i = 1, 3 do assert.truthy(out:find("worker " .. i .. " done", 1, true), out) end
  end)
end)

describe("turbo_ws.core.on_signal", function()
  it("checks its arguments", function()
    assert_error_with("turbo_ws.on_signal: bad argument #1 'signal' (one of SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2 expected, got \"SIGKILL\")",
      function() core.on_signal("SIGKILL", print) end)
    assert_error_with("bad argument #1 'signal' (string expected, got number)", function() core.on_signal(15, print) end)
    assert_error_with("bad argument #2 'handler' (function expected, got string)",
      function() core.on_signal("SIGUSR1", "x") end)
  end)

  it("calls the handler on the loop thread, in a coroutine, with the signal's name", function()
    local got, co
    core.on_signal("usr1", function(name) got = name; co = coroutine.running() end)
    core.add_callback(function() sh("kill -USR1 " .. ffi.C.getpid()) end)
    local guard = core.set_interval(3000, function() core.close() end, nil, false)
    local poll = core.set_interval(10, function() if got then core.close() end end, nil, false)
    core.start()
    core.clear_interval(guard); core.clear_interval(poll)
    assert.are.equal("SIGUSR1", got)
    assert.truthy(co)
    core.on_signal("SIGUSR1", nil)
  end)

  it("does not keep run() going", function()
    core.on_signal("SIGUSR2", function() end)
    local t0 = core.gettimemonotonic()
    turbo_ws.run()
    assert.truthy(core.gettimemonotonic() - t0 < 1000)
    core.on_signal("SIGUSR2", nil)
  end)

  it("takes the default action again once the handler is removed", function()
    local p = spawn([[
      io.stdout:setvbuf("line")
      local ffi = require "ffi"
      ffi.cdef "int getpid(void);"
      local turbo_ws = require "turbo_ws"
      local core = turbo_ws.core
      core.on_signal("SIGUSR1", function() print("handled") end)
      core.add_callback(function() os.execute("kill -USR1 " .. ffi.C.getpid()) end)
      core.set_interval(100, function()
        core.on_signal("SIGUSR1", nil)
        os.execute("kill -USR1 " .. ffi.C.getpid())
      end)
      core.set_interval(3000, function() print("still alive"); os.exit(0) end)
      turbo_ws.run()
    ]], 10)
    local status, out = p.finish()
    assert.truthy(out:find("handled", 1, true), out)
    assert.is_nil(out:find("still alive", 1, true), out)
    assert.are.equal(128 + 10, status, out) -- killed by SIGUSR1
  end)
end)
