-- turbo_ws.fast_send: the faces' FFI way to send (LuaJIT). It queues
-- exactly what conn:send would, and where conn:send would refuse or raise
-- it answers 1 and changes nothing, so that conn:send, called next, still
-- answers as it always did.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"
local run_until = L.run_until

local fast_send = require "turbo_ws.fast_send"

-- A server that records what it receives; a client connected to it with
-- `options`. Returns the client connection and the received list.
local function connected(options)
  local received = {}
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
    local conn = req:upgrade()
    if conn then
      conn:set_callbacks{ on_message = function(m, b) received[#received + 1] = { m, b } end }
    end
  end)
  local client
  core.connect("ws://127.0.0.1:" .. server:port() .. "/", options, function(conn) client = conn end)
  run_until(function() return client end)
  return client, received, server
end

local function send(conn, msg, binary)
  return fast_send(conn:_send_handle(), msg, #msg, binary and 1 or 0)
end

describe("fast_send", function()
  it("is there under LuaJIT, with a number for a handle", function()
    assert.are.equal("cdata", type(fast_send))
    local conn, _, server = connected()
    assert.are.equal("number", type(conn:_send_handle()))
    conn:close()
    server:close()
  end)

  it("queues text and binary messages as conn:send does", function()
    local conn, received, server = connected()
    assert.are.equal(0, send(conn, "héllo", false))
    assert.are.equal(0, send(conn, "\255\0\1", true))
    assert.are.equal(0, send(conn, "", false))
    assert.are.equal(3 + #"héllo", conn:buffered_amount())
    run_until(function() return #received == 3 end)
    assert.are.same({ { "héllo", false }, { "\255\0\1", true }, { "", false } }, received)
    conn:close()
    server:close()
  end)

  it("refuses text that is not UTF-8, queueing nothing; conn:send then raises", function()
    local conn, _, server = connected()
    assert.are.equal(1, send(conn, "\255", false))
    assert.are.equal(0, conn:buffered_amount())
    local ok, err = pcall(conn.send, conn, "\255")
    assert.is_false(ok)
    assert.truthy(tostring(err):find("valid UTF-8", 1, true))
    conn:close()
    server:close()
  end)

  it("refuses past max_buffered without closing a slow reader; conn:send then does", function()
    local conn, _, server = connected({ max_buffered = 1000, close_slow_readers = true })
    assert.are.equal(0, send(conn, string.rep("x", 600), false))
    assert.are.equal(1, send(conn, string.rep("y", 600), false))
    -- Nothing happened: still open, nothing more queued.
    assert.are.equal("open", conn:state())
    assert.are.equal(600, conn:buffered_amount())
    local ok, kind, msg = conn:send(string.rep("y", 600))
    assert.is_nil(ok)
    assert.are.equal("too_big", kind)
    assert.truthy(msg:find("1008", 1, true))
    assert.are.equal("closing", conn:state())
    server:close()
  end)

  it("is what conn:send uses; its answers and errors are mlua's method's (conn:_send)", function()
    local conn, received, server = connected({ max_buffered = 1000 })
    assert.are_not.equal(conn.send, conn._send)
    assert.is_true(conn:send("one"))
    assert.is_true(conn:send("two", false))
    assert.are.equal(3, select("#", conn:send("three")))
    local function failure(method, ...)
      local ok, err = pcall(method, ...)
      assert.is_false(ok)
      return tostring(err)
    end
    local misuses = { { conn, 123 }, { conn, "x", 1 }, { conn, "\255" }, { nil, "x" }, { {}, "x" } }
    for _, args in ipairs(misuses) do
      assert.are.equal(failure(conn._send, unpack(args, 1, 3)), failure(conn.send, unpack(args, 1, 3)))
    end
    assert.are.same({ conn:_send(string.rep("x", 2000)) }, { conn:send(string.rep("x", 2000)) })
    -- Both refused the same way (queue full): three arrive.
    run_until(function() return #received == 3 end)
    conn:close()
    server:close()
  end)

  it("takes a connection's handle for conn:send at its first send, not for every connection", function()
    local conn, received, server = connected()
    -- The weak table (connection -> handle) of the Lua `send` method.
    local send, handles = debug.getmetatable(conn).__index.send, nil
    for i = 1, math.huge do
      local name, value = debug.getupvalue(send, i)
      if name == nil then break end
      if name == "handles" then handles = value end
    end
    assert.is_table(handles)
    assert.is_nil(handles[conn])
    assert.is_true(conn:send("first"))
    assert.are.equal(conn:_send_handle(), handles[conn])
    assert.is_true(conn:send("second"))
    run_until(function() return #received == 2 end)
    assert.are.same({ { "first", false }, { "second", false } }, received)
    conn:close()
    server:close()
  end)

  it("refuses a handle it does not know, or one whose connection was collected", function()
    assert.are.equal(1, fast_send(0, "x", 1, 0))
    assert.are.equal(1, fast_send(123456789, "x", 1, 0))
    local received, server_conn, closed = {}, nil, false
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
      server_conn = req:upgrade()
      server_conn:set_callbacks{
        on_message = function(m) received[#received + 1] = m end,
        on_close = function() closed = true end,
      }
    end)
    local handle
    core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(conn)
      handle = conn:_send_handle()
      assert.are.equal(0, fast_send(handle, "first", 5, 0))
    end)
    run_until(function() return #received == 1 end)
    -- The client connection's userdata is garbage now (still open: the
    -- core keeps the connection itself until it ends).
    collectgarbage()
    collectgarbage()
    assert.are.equal(1, fast_send(handle, "second", 6, 0))
    server_conn:close()
    run_until(function() return closed end)
    server:close()
  end)

  it("refuses once the connection is closing; conn:send then says closed", function()
    local conn, _, server = connected()
    conn:close()
    assert.are.equal(1, send(conn, "late", false))
    local ok, kind = conn:send("late")
    assert.is_nil(ok)
    assert.are.equal("closed", kind)
    server:close()
  end)
end)
