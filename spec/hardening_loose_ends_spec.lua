-- Loose ends of the second hardening pass: timers that cannot overflow, a
-- refusal body that never comes, hubs released when collected.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"

describe("set_interval", function()
  it("takes a huge interval without failing (clamped like add_timeout)", function()
    for _, ms in ipairs({ 1e22, 1e300 }) do
      local ref = core.set_interval(ms, function() error("must not fire") end)
      assert.is_number(ref)
      assert.is_true(core.clear_interval(ref))
    end
  end)

  it("refuses an infinite interval with an error naming it", function()
    L.assert_error_with("set_interval: bad argument #1 'msec'", function()
      core.set_interval(math.huge, function() end)
    end)
  end)
end)

describe("a refusal whose body never arrives", function()
  it("is reported within the body time limit, with what arrived", function()
    local p = assert(io.popen([[python3 -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.recv(65536)
c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100\r\n\r\n0123456789")
time.sleep(7)
']], "r"))
    local port = tonumber(p:read("*l"))
    local kind, answer
    local started = core.gettimemonotonic()
    core.connect("ws://127.0.0.1:" .. port .. "/", { timeout = 0 }, function(conn, k, _, res)
      kind, answer = k, res
    end)
    L.run_until(function() return kind ~= nil end, 10000, "the refusal")
    local took = core.gettimemonotonic() - started
    assert.equal("bad_status", kind)
    assert.equal(400, answer.status)
    assert.equal("0123456789", answer.body)
    assert.is_true(took >= 4000 and took < 8000, "took " .. took .. " ms")
    p:close()
  end)
end)

describe("a pub/sub hub", function()
  it("is closed when its handle is collected: its subscribers hear nothing more", function()
    local heard = 0
    local hub = turbo_ws.pubsub.new()
    hub:subscribe("news", function() heard = heard + 1 end)
    local other = turbo_ws.pubsub.new()
    other:publish("news", "one")
    L.run_bounded(2000)
    assert.equal(1, heard)
    hub = nil -- luacheck: ignore
    collectgarbage(); collectgarbage()
    other:publish("news", "two")
    L.run_bounded(2000)
    assert.equal(1, heard)
    other:close()
  end)
end)

describe("a listener out of file descriptors", function()
  it("says so on stderr at most every 10 s, keeps retrying, and still serves", function()
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local server = io.open(dir .. "/server.lua", "w")
    server:write([[
      local core = require("turbo_ws").core
      local s = core.listen({ host = "127.0.0.1", port = 0 }, function(req) req:respond(200, nil, "ok") end)
      io.stdout:write(s:port(), "\n"); io.stdout:flush()
      core.add_timeout(core.gettimemonotonic() + 1500, function() core.close() end)
      core.start()
    ]])
    server:close()
    -- 20 connections where only a few descriptors are left; then the
    -- first one asks for a page.
    local client = io.open(dir .. "/client.py", "w")
    client:write(table.concat({
      "import socket, sys, time",
      "port = int(sys.stdin.readline())",
      "socks = [socket.create_connection((\"127.0.0.1\", port)) for _ in range(20)]",
      "time.sleep(0.3)",
      "socks[0].settimeout(2); socks[0].sendall(b\"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\")",
      "print(socks[0].recv(15).decode())",
    }, "\n"))
    client:close()
    -- (The build's path made absolute: the processes run in `dir`.)
    local cpath = os.getenv("PWD") .. "/build/?.so;;"
    local env = os.getenv("TURBO_WS_LUA_DIR") and ("TURBO_WS_LUA_DIR='" .. os.getenv("TURBO_WS_LUA_DIR") .. "' ") or ""
    local answer = io.popen(("cd %s && (ulimit -n 14; %sLUA_CPATH='%s' exec timeout 10 luajit server.lua 2>stderr.txt)"
      .. " | python3 client.py"):format(dir, env, cpath)):read("*a")
    local stderr = io.open(dir .. "/stderr.txt"):read("*a")
    os.execute("rm -rf " .. dir)
    assert.equal("HTTP/1.1 200 OK\n", answer)
    local _, said = stderr:gsub("turbo_ws: a listener cannot accept connections: Too many open files", "")
    assert.equal(1, said, stderr)
  end)
end)
