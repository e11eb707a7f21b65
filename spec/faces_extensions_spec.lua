-- The turbo_ws extensions every face exposes: the send-buffer size
-- (backpressure) and graceful shutdown.
local turbo = require "turbo_ws"
local core = turbo.core
local L = require "spec.support.loop"
local run_until = L.run_until

-- A core echo server; returns it and the list of its connections.
local function server()
  local conns = {}
  local srv = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
    local conn = req:upgrade()
    if conn then
      conns[#conns + 1] = conn
      conn:set_callbacks{ on_message = function(m, b) conn:send(m, b) end }
    end
  end)
  return srv, conns
end

describe("face extensions", function()
  it("Turbo: WebSocketClient:buffered_amount() and turbo.shutdown()", function()
    local srv = server()
    local client, amount_after_write, closed_code
    local done = false
    turbo.ioloop.instance():add_callback(function()
      client = turbo.websocket.WebSocketClient("ws://127.0.0.1:" .. srv:port() .. "/", {
        on_connect = function(self)
          self:write_message(string.rep("z", 1000))
          amount_after_write = self:buffered_amount()
          turbo.shutdown(2, function() done = true end)
        end,
        on_close = function(self) closed_code = true end,
      })
    end)
    run_until(function() return done and closed_code end)
    assert.are.equal(1000, amount_after_write)
  end)

  it("coro-websocket: res.socket:buffered_amount() and shutdown()", function()
    local srv = server()
    local cw = turbo.coro_websocket
    local amount, last, finished
    coroutine.wrap(function()
      local res, read, write = cw.connect({ host = "127.0.0.1", port = srv:port(), pathname = "/" })
      assert(res, read)
      write({ opcode = 2, payload = string.rep("q", 500) })
      amount = res.socket:buffered_amount()
      cw.shutdown(2)
      for msg in read do last = msg end
      finished = true
    end)()
    run_until(function() return finished end)
    assert.are.equal(500, amount)
    assert.are.equal(8, last.opcode)
  end)

  it("evlua: ws_util.buffered_amount(conn) and evlua.shutdown()", function()
    local srv, conns = server()
    local evlua = turbo.evlua
    local amount, done
    coroutine.wrap(function()
      local conn = evlua.web_socket.connect({ url = "http://127.0.0.1:" .. srv:port() .. "/x", hdrs = {}, external = false })
      assert(type(conn) == "table", tostring(conn))
      evlua.ws_util.send_msg(conn, string.rep("e", 300))
      amount = evlua.ws_util.buffered_amount(conn)
      evlua.shutdown(2, function() done = true end)
    end)()
    run_until(function() return done end)
    assert.is_number(amount)
    assert.is_true(#conns == 1 and conns[1]:closed())
  end)
end)
