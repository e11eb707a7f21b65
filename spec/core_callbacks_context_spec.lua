-- conn:set_callbacks(callbacks, context): every callback is called with
-- the context first, on the message path (made from the bytes in the
-- trampoline) and on the others (pong, error, close); without one, or
-- after callbacks set again without one, they are called as before. The
-- Turbo face's WebSocketHandler shares one callbacks table this way.
local core = require("turbo_ws").core
local L = require "spec.support.loop"
local run_until, connected = L.run_until, L.connected

describe("conn:set_callbacks with a context", function()
  it("passes the context first to on_message, on_pong and on_close", function()
    local seen, context, server_conn = {}, { name = "ctx" }, {}
    local client, server = connected({
      on_message = function(...) seen[#seen + 1] = { "message", ... } end,
      on_pong = function(...) seen[#seen + 1] = { "pong", ... } end,
      on_close = function(...) seen[#seen + 1] = { "close", ... } end,
    }, context, server_conn)
    client:send("hi")
    client:send("\1\2", true)
    run_until(function() return #seen == 2 end)
    server_conn[1]:ping("p")
    run_until(function() return #seen == 3 end)
    client:close(4000, "bye")
    run_until(function() return #seen == 4 end)
    server:close()
    assert.are.same({
      { "message", context, "hi", false },
      { "message", context, "\1\2", true },
      { "pong", context, "p" },
      { "close", context, 4000, "bye" },
    }, seen)
    assert.are.equal(context, seen[1][2])
  end)

  it("passes it to on_closing, called as the peer's close arrives, before on_close", function()
    local seen, server_conn = {}, {}
    local client, server = connected({
      on_closing = function(...) seen[#seen + 1] = { "closing", ... } end,
      on_close = function(...) seen[#seen + 1] = { "close", ... } end,
    }, "ctx", server_conn)
    run_until(function() return server_conn[1] end)
    server_conn[1]:close(4001, "server bye")
    run_until(function() return #seen == 2 end)
    server:close()
    assert.are.same({ { "closing", "ctx", 4001, "server bye" }, { "close", "ctx", 4001, "server bye" } }, seen)
    assert.are.equal("closed", client:state())
  end)

  it("passes it to on_error too", function()
    local seen, server_conn = {}, {}
    local client, server = connected({
      on_error = function(...) seen[#seen + 1] = { "error", ... } end,
      on_close = function(...) seen[#seen + 1] = { "close", ... } end,
    }, "the context", server_conn)
    client:abort()
    run_until(function() return #seen == 2 end)
    server:close()
    assert.are.equal("error", seen[1][1])
    assert.are.equal("the context", seen[1][2])
    assert.are.equal("string", type(seen[1][3]))
    assert.are.same({ "close", "the context", 1006, "" }, seen[2])
  end)

  it("shares the table's functions among connections, as they are when each is set", function()
    local seen = {}
    local t = { on_message = function(ctx, m) seen[#seen + 1] = ctx .. " old " .. m end }
    local conns = {}
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
      local conn = req:upgrade()
      if conn then
        conns[#conns + 1] = conn
        conn:set_callbacks(t, "c" .. #conns)
        if #conns == 2 then t.on_message = function(ctx, m) seen[#seen + 1] = ctx .. " new " .. m end end
      end
    end)
    local clients = {}
    for _ = 1, 3 do
      core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(c) clients[#clients + 1] = c end)
      local n = #clients
      run_until(function() return #clients == n + 1 and #conns == n + 1 end)
    end
    for i, c in ipairs(clients) do c:send("m" .. i) end
    run_until(function() return #seen == 3 end)
    for _, c in ipairs(clients) do c:close() end
    server:close()
    table.sort(seen)
    assert.are.same({ "c1 old m1", "c2 old m2", "c3 new m3" }, seen)
  end)

  it("is dropped when callbacks are set again without one", function()
    local seen, server_conn = {}, {}
    local client, server = connected({
      on_message = function(...) seen[#seen + 1] = { ... } end,
    }, "old", server_conn)
    client:send("a")
    run_until(function() return #seen == 1 end)
    server_conn[1]:set_callbacks{ on_message = function(...) seen[#seen + 1] = { ... } end }
    client:send("b")
    run_until(function() return #seen == 2 end)
    client:close()
    server:close()
    assert.are.same({ { "old", "a", false }, { "b", false } }, seen)
  end)

  it("reads each callback as t[name] (through __index) and names a bad one", function()
    local seen, server_conn = {}, {}
    local inherited = setmetatable({}, { __index = { on_message = function(m) seen[#seen + 1] = m end } })
    local client, server = connected(inherited, nil, server_conn)
    client:send("via __index")
    run_until(function() return #seen == 1 end)
    L.assert_error_with("turbo_ws connection:set_callbacks: bad option 'on_close' (function expected, got number)",
      function() server_conn[1]:set_callbacks({ on_message = print, on_close = 5 }) end)
    L.assert_error_with("bad option 'on_drain' (function expected, got string)",
      function() server_conn[1]:set_callbacks({ on_drain = "x" }, {}) end)
    -- A refused table changes nothing: the first callbacks still run.
    client:send("still")
    run_until(function() return #seen == 2 end)
    client:close()
    server:close()
    assert.are.same({ "via __index", "still" }, seen)
  end)
end)
