-- Misuse of the core API raises a plain string naming the function and the
-- argument (docs/core.md, "Conventions"), from functions and methods alike:
-- a program's `pcall` gets a string it can match, not mlua's error object.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"

local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function assert_plain(err, expected)
  assert.are.equal("string", type(err))
  assert.are.equal(expected, err)
end

describe("core misuse errors", function()
  it("are strings naming the function and the argument", function()
    assert_plain(raised(core.split_url, {}),
      "turbo_ws.split_url: bad argument #1 'url' (string expected, got table)")
    assert_plain(raised(core.listen, "x"),
      "turbo_ws.listen: bad argument #1 'options' (table expected, got string)")
    assert_plain(raised(core.connect, "ws://127.0.0.1:1/", nil, nil),
      "turbo_ws.connect: bad argument #3 'on_done' (function expected, got nil)")
    assert_plain(raised(core.listen, { port = 70000 }, function() end),
      "turbo_ws.listen: bad option 'port' (whole number from 0 to 65535 expected, got number)")
  end)

  it("can be matched like any Lua error string", function()
    local err = raised(core.valid_utf8)
    assert.truthy(err:match("^turbo_ws%.valid_utf8: bad argument #1 's'"))
    assert.is_nil(err:find("runtime error", 1, true))
    assert.is_nil(err:find("traceback", 1, true))
  end)

  it("are strings from methods, and from a method called on something else", function()
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function() end)
    assert_plain(raised(server.close, "not a server"),
      "turbo_ws server:close: bad argument #1 'self' (server expected, got string; call it with ':')")
    assert_plain(raised(server.port),
      "turbo_ws server:port: bad argument #1 'self' (server expected, got no value; call it with ':')")

    local hub = core.pubsub({})
    assert_plain(raised(hub.subscribe, hub, 5),
      "turbo_ws.pubsub hub:subscribe: bad argument #1 'channel' (string expected, got number)")
    -- Another of turbo_ws's objects: not the '.' mistake, so no hint.
    assert_plain(raised(server.close, hub),
      "turbo_ws server:close: bad argument #1 'self' (server expected, got userdata)")
    assert_plain(raised(hub.publish, "news", "x"),
      "turbo_ws.pubsub hub:publish: bad argument #1 'self' (hub expected, got string; call it with ':')")
    server:close()
    hub:close()
  end)

  it("are strings from a connection's methods", function()
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req) req:upgrade() end)
    local conn
    core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(c) conn = c end)
    L.run_until(function() return conn end)
    local err = raised(conn.close, conn, 999)
    assert.are.equal("string", type(err))
    assert.truthy(err:match("^turbo_ws connection:close: bad argument #1 'code'"), err)
    err = raised(conn.send, conn, {})
    assert.are.equal("string", type(err))
    assert_plain(raised(conn.send, "hello"),
      "turbo_ws connection:send: bad argument #1 'self' (connection expected, got string; call it with ':')")
    assert_plain(raised(conn.close, nil, 1000),
      "turbo_ws connection:close: bad argument #1 'self' (connection expected, got nil; call it with ':')")
    conn:close()
    server:close()
  end)

  it("leave a successful call's results as they were", function()
    local parts = core.split_url("wss://example.com:8443/a?b")
    assert.are.equal("example.com", parts.host)
    assert.are.equal("8443", parts.port)
    assert.is_true(core.valid_utf8("é"))
  end)
end)

describe("core.connect's protocols", function()
  it("must be tokens: nothing else can be written into the request's head", function()
    local err = raised(core.connect, "ws://127.0.0.1:1/", { protocols = { "chat", "a\r\nX-Injected: yes" } },
      function() end)
    assert.are.equal("string", type(err))
    assert.truthy(err:match("^turbo_ws%.connect: bad option 'protocols'"), err)
    assert.truthy(raised(core.connect, "ws://127.0.0.1:1/", { protocols = "a b" }, function() end))
  end)

  it("are offered when they are tokens", function()
    local offered
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
      for _, h in ipairs(info.headers) do
        if h[1]:lower() == "sec-websocket-protocol" then offered = h[2] end
      end
      req:upgrade({ protocol = "v2.chat" })
    end)
    local conn
    core.connect("ws://127.0.0.1:" .. server:port() .. "/", { protocols = { "v1.chat", "v2.chat" } },
      function(c) conn = c end)
    L.run_until(function() return conn end)
    assert.are.equal("v1.chat, v2.chat", offered)
    assert.are.equal("v2.chat", conn:protocol())
    conn:close()
    server:close()
  end)
end)
