-- Limits and lifecycle of the native core: max_connections (503),
-- ping_interval / idle_timeout, max_buffered, graceful shutdown.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"
local P = require "spec.support.peer"
local run_until = L.run_until

local function echo_server(options)
  options = options or {}
  options.host, options.port = "127.0.0.1", 0
  local server_conns = {}
  local server = core.listen(options, function(req)
    local conn = req:upgrade()
    if conn then
      server_conns[#server_conns + 1] = conn
      conn:set_callbacks{ on_message = function(m, b) conn:send(m, b) end }
    end
  end)
  return server, server_conns
end

local function client(port, callbacks)
  local state = { events = {} }
  core.connect("ws://127.0.0.1:" .. port .. "/", nil, function(conn, kind, msg, res)
    state.conn, state.kind, state.res = conn, not conn and kind or nil, res
    state.done = true
    if conn then
      conn:set_callbacks{
        on_message = callbacks and callbacks.on_message,
        on_ping = function(d) state.events[#state.events + 1] = "ping" end,
        on_close = function(code, reason) state.closed = code; state.reason = reason end,
      }
    end
  end)
  return state
end

describe("max_connections", function()
  it("answers 503 past the limit and accepts again once one closes", function()
    local server = echo_server({ max_connections = 2 })
    local a, b = client(server:port()), client(server:port())
    run_until(function() return a.done and b.done end)
    assert.is_not_nil(a.conn)
    assert.is_not_nil(b.conn)
    local c = client(server:port())
    run_until(function() return c.done end)
    assert.are.equal("bad_status", c.kind)
    assert.are.equal(503, c.res.status)
    a.conn:close()
    run_until(function() return a.closed ~= nil end)
    local d = client(server:port())
    run_until(function() return d.done end)
    assert.is_not_nil(d.conn, d.kind)
    b.conn:close(); d.conn:close()
    run_until(function() return b.closed and d.closed end)
    server:close()
  end)
end)

describe("ping_interval and idle_timeout", function()
  it("pings a quiet peer", function()
    local server = echo_server({ ping_interval = 0.05 })
    local a = client(server:port())
    run_until(function() return #a.events >= 2 end)
    a.conn:close()
    run_until(function() return a.closed end)
    server:close()
  end)

  it("closes a quiet peer with 1001", function()
    local server = echo_server({ idle_timeout = 0.1 })
    local a = client(server:port())
    run_until(function() return a.closed end)
    assert.are.equal(1001, a.closed)
    assert.are.equal("idle timeout", a.reason)
    server:close()
  end)

  -- The time from the peer's last message to the server's close (or
  -- ping), the message sent just after the connection opened.
  local function quiet_after_message(options, until_event)
    local server = echo_server(options)
    local a = client(server:port(), { on_message = function() end })
    run_until(function() return a.done end)
    a.conn:send("one")
    local sent = core.gettimemonotonic()
    run_until(function() return until_event(a) end)
    local quiet = (core.gettimemonotonic() - sent) / 1000
    if not a.closed then a.conn:close(); run_until(function() return a.closed end) end
    server:close()
    return quiet
  end

  it("closes idle_timeout after the peer was last heard, not up to twice that", function()
    -- Checked once per idle_timeout, the close came at the second check
    -- after the message: ~2 s here.
    local quiet = quiet_after_message({ idle_timeout = 1 }, function(a) return a.closed end)
    assert.is_true(quiet >= 0.95 and quiet < 1.5, "closed after " .. quiet .. " s")
  end)

  it("pings ping_interval after the peer was last heard", function()
    local quiet = quiet_after_message({ ping_interval = 0.6 }, function(a) return #a.events >= 1 end)
    assert.is_true(quiet >= 0.55 and quiet < 0.9, "pinged after " .. quiet .. " s")
  end)

  it("says so when a peer it closed for idleness does not answer the close either", function()
    local reason
    local server = core.listen({ host = "127.0.0.1", port = 0, idle_timeout = 0.1, close_timeout = 0.2 },
      function(req)
        local conn = req:upgrade()
        if conn then conn:set_callbacks{ on_close = function(code, why) reason = code .. " " .. why end } end
      end)
    local a = client(server:port())
    run_until(function() return a.done end)
    a.conn:pause_reading() -- reads nothing more: the close goes unanswered
    run_until(function() return reason ~= nil end)
    assert.are.equal("1006 idle timeout: the peer was silent and did not answer the close", reason)
    a.conn:abort()
    server:close()
  end)

  it("keeps a peer that answers pings", function()
    local server = echo_server({ ping_interval = 0.05, idle_timeout = 0.2 })
    local a = client(server:port())
    local waited = false
    core.add_timeout(core.gettimemonotonic() + 500, function() waited = true end)
    run_until(function() return waited end)
    assert.is_nil(a.closed)
    a.conn:close()
    run_until(function() return a.closed end)
    server:close()
  end)
end)

describe("frame size", function()
  -- Every sender here (browsers, Turbo, turbo_ws) sends a message as one
  -- frame: by default a frame may be as large as a message.
  -- Sends one message of `size` bytes to an echo server with `options`;
  -- returns the size echoed (nil if none) and the close code.
  local function echo_of(options, size)
    options.permessage_deflate = false
    local got, closed
    local server = echo_server(options)
    local c = client(server:port())
    run_until(function() return c.done end)
    c.conn:set_callbacks{
      on_message = function(m) got = #m end,
      on_close = function(code) closed = code end,
    }
    c.conn:send(string.rep("\1", size), true)
    run_until(function() return got or closed end, 20000)
    c.conn:close()
    run_until(function() return closed end)
    server:close()
    -- The 20 MiB strings are garbage now: leave the heap as it was for the
    -- specs after (some measure it).
    collectgarbage()
    return got, closed
  end

  it("takes a 20 MiB message in one frame by default", function()
    assert.are.equal(20 * 1024 * 1024, (echo_of({}, 20 * 1024 * 1024)))
  end)

  it("follows max_message_size unless given", function()
    local got, closed = echo_of({ max_message_size = 1000 }, 2000)
    assert.is_nil(got)
    assert.are.equal(1009, closed)
    got, closed = echo_of({ max_frame_size = 1000 }, 2000)
    assert.is_nil(got)
    assert.are.equal(1009, closed)
    assert.are.equal(999, (echo_of({ max_message_size = 1000 }, 999)))
  end)
end)

describe("send buffer", function()
  it("counts queued bytes and refuses sends past max_buffered", function()
    local server = echo_server()
    local opened
    core.connect("ws://127.0.0.1:" .. server:port() .. "/", { max_buffered = 1000 }, function(conn)
      opened = conn
    end)
    run_until(function() return opened end)
    -- Queued without giving the loop a chance to write them.
    assert.is_true(opened:send(string.rep("x", 600)))
    assert.are.equal(600, opened:buffered_amount())
    local ok, kind, msg = opened:send(string.rep("y", 600))
    assert.is_nil(ok)
    assert.are.equal("too_big", kind)
    assert.truthy(msg:find("max_buffered", 1, true))
    local echoed
    opened:set_callbacks{ on_message = function(m) echoed = m end, on_close = function() end }
    run_until(function() return echoed end)
    assert.are.equal(0, opened:buffered_amount())
    opened:close()
    server:close()
  end)

  it("refuses to send after close with 'closed'", function()
    local server = echo_server()
    local a = client(server:port())
    run_until(function() return a.done end)
    a.conn:close()
    local ok, kind = a.conn:send("late")
    assert.is_nil(ok)
    assert.are.equal("closed", kind)
    assert.are.equal("closing", a.conn:state())
    run_until(function() return a.closed end)
    assert.are.equal("closed", a.conn:state())
    assert.is_true(a.conn:closed())
    server:close()
  end)
end)

describe("shutdown", function()
  it("closes every connection with 1001, stops listening, then calls on_done", function()
    local server = echo_server()
    local clients = { client(server:port()), client(server:port()), client(server:port()) }
    run_until(function() return clients[1].done and clients[2].done and clients[3].done end)
    local done = false
    turbo_ws.shutdown(2, function() done = true end)
    turbo_ws.run()
    assert.is_true(done)
    for _, c in ipairs(clients) do assert.are.equal(1001, c.closed) end
    local late = client(server:port())
    run_until(function() return late.done end)
    assert.are.equal("refused", late.kind)
  end)

  it("calls on_done after the on_close of a connection it had to abort", function()
    local order, upgraded = {}, false
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
      req:upgrade():set_callbacks{ on_close = function() order[#order + 1] = "on_close" end }
      upgraded = true
    end)
    -- A client that completes the handshake, then never reads (so never
    -- answers the 1001), until its stdin is closed.
    local peer = io.popen(("python3 -c '%s' %d"):format(table.concat({
      "import socket, sys",
      "s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))",
      "s.sendall(b\"GET / HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
        .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n\")",
      "sys.stdin.read()",
    }, "\n"), server:port()), "w")
    run_until(function() return upgraded end, 5000, "the upgrade")
    turbo_ws.shutdown(0.2, function() order[#order + 1] = "on_done" end)
    run_until(function() return #order == 2 end)
    peer:close()
    assert.are.same({ "on_close", "on_done" }, order)
  end)

  it("reaches connections not yet upgraded: a request held, an idle keep-alive one, a slow head", function()
    local held
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
      if info.path == "/held" then held = req return end -- never answered
      req:respond(200, nil, "ok")
    end)
    local out = os.tmpname()
    local script = table.concat({
      "import socket, sys",
      "def conn(data):",
      "    s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1])))",
      "    s.settimeout(30); s.sendall(data); return s",
      "a = conn(b\"GET /held HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\")",
      "b = conn(b\"GET /ok HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n\"); b.recv(4096)",
      "c = conn(b\"GET /slow HTTP/1.1\\r\\nHost:\")",
      "print(\"ready\", flush=True)",
      "for s in (a, b, c):",
      "    try:",
      "        while s.recv(4096): pass",
      "        print(\"closed\", flush=True)",
      "    except Exception as e: print(\"error\", e, flush=True)",
    }, "\n")
    os.execute(("python3 -c '%s' %d > %s 2>&1 &"):format(script, server:port(), out))
    local function peer_output()
      local f = io.open(out)
      local text = f and f:read("*a") or ""
      if f then f:close() end
      return text
    end
    run_until(function() return held ~= nil and peer_output():find("ready") end, 5000, "the peer's requests")
    local done = false
    turbo_ws.shutdown(0.3, function() done = true end)
    local t0 = core.gettimemonotonic()
    turbo_ws.run()
    -- Without the shutdown reaching them, run() waited for the held
    -- request and the slow head (handshake_timeout, 10 s) or the peer.
    assert.is_true(done)
    assert.is_true(core.gettimemonotonic() - t0 < 5000, "run() took " .. (core.gettimemonotonic() - t0) .. " ms")
    local deadline = core.gettimemonotonic() + 5000
    while select(2, peer_output():gsub("closed", "")) < 3 and core.gettimemonotonic() < deadline do
      os.execute("sleep 0.05")
    end
    local seen = peer_output()
    os.remove(out)
    -- Each of the three saw its connection closed (not reset, no timeout).
    assert.are.equal("ready\nclosed\nclosed\nclosed\n", seen)
  end)

  it("checks its arguments", function()
    assert.has_error(function() turbo_ws.shutdown(-1) end)
    assert.has_error(function() turbo_ws.shutdown(1, 42) end)
  end)
end)

describe("run()", function()
  -- The memory trim scheduled a second after an upgrade (src/engine/trim.rs)
  -- runs in the background: a loop with nothing else to do stops at once.
  -- A fresh process: in this one a trim may already be pending.
  it("returns once the last connection closed, right after its upgrade", function()
    local status, out = P.run_luajit([[
      local turbo_ws = require "turbo_ws"
      local core = turbo_ws.core
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req) req:upgrade() end)
      core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(conn)
        print("opened", conn ~= nil)
        server:close()
        if conn then conn:close(1000) end
      end)
      local t0 = core.gettimemonotonic()
      turbo_ws.run()
      print("ms", core.gettimemonotonic() - t0)
    ]])
    assert.are.equal(0, status, out)
    assert.truthy(out:find("opened\ttrue", 1, true), out)
    local ms = tonumber(out:match("ms\t(%d+)"))
    assert.is_true(ms ~= nil and ms < 900, out)
  end)
end)
