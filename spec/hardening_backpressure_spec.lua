-- Backpressure for coroutine programs: while the peer does not read, the
-- coro face's write() and evlua's send_msg wait for the queue to drain
-- (the core's on_drain) and lose nothing; the peer is a Python server that
-- reads nothing for a while (spec/support/slow_reader.py).
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"

local DELAY = 1.5
local MESSAGES, SIZE = 64, 65536

-- Starts the slow reader; returns its port and a function giving its report.
local function slow_reader()
  local p = assert(io.popen("python3 spec/support/slow_reader.py " .. DELAY, "r"))
  local port = tonumber(p:read("*l"):match("^port (%d+)$"))
  return port, function()
    local line = p:read("*l")
    p:close()
    return line
  end
end

local function seconds() return core.gettimemonotonic() / 1000 end

describe("backpressure", function()
  it("makes the coro face's write() wait for the peer, losing nothing", function()
    local port, report = slow_reader()
    local cws = require("turbo_ws").coro_websocket
    local results, waited, done = {}, nil, false
    coroutine.wrap(function()
      local res, read, write = cws.connect({ host = "127.0.0.1", port = port, pathname = "/",
                                             max_buffered = 256 * 1024 })
      assert(res, "connect failed")
      local started = seconds()
      local chunk = string.rep("c", SIZE)
      for i = 1, MESSAGES do results[i] = write({ opcode = 2, payload = chunk }) end
      waited = seconds() - started
      write()
      -- Until the closing handshake is over, so everything was sent.
      while read() do end
      done = true
    end)()
    L.run_until(function() return done end, 15000, "the writes")
    for i = 1, MESSAGES do assert.is_true(results[i], "write " .. i) end
    assert.is_true(waited > DELAY * 0.7, "write() did not wait (" .. waited .. " s)")
    assert.equal(("frames %d bytes %d"):format(MESSAGES, MESSAGES * SIZE), report())
  end)

  it("makes evlua's send_msg wait for the peer, losing nothing", function()
    local port, report = slow_reader()
    local ws = require "turbo_ws.evlua.web_socket"
    local ws_util = require "turbo_ws.evlua.ws_util"
    local conn = assert(ws.connect({ url = "http://127.0.0.1:" .. port .. "/", hdrs = {}, external = false }))
    local started = seconds()
    local chunk = string.rep("e", SIZE)
    for _ = 1, MESSAGES do ws_util.send_msg(conn, chunk) end
    local waited = seconds() - started
    ws_util.close(conn)
    assert.is_true(waited > DELAY * 0.7, "send_msg did not wait (" .. waited .. " s)")
    assert.equal(("frames %d bytes %d"):format(MESSAGES, MESSAGES * SIZE), report())
  end)

  it("tells a callback program through on_drain when a refused send may be retried", function()
    local port, report = slow_reader()
    local refused, drained, sent, closed = 0, 0, 0, false
    local chunk = string.rep("d", SIZE)
    core.connect("ws://127.0.0.1:" .. port .. "/", { max_buffered = 128 * 1024 }, function(conn)
      local function pump()
        while sent < MESSAGES do
          if not conn:send(chunk, true) then refused = refused + 1; return end
          sent = sent + 1
        end
        conn:close()
      end
      conn:set_callbacks{
        on_drain = function() drained = drained + 1; pump() end,
        on_close = function() closed = true end,
      }
      pump()
    end)
    L.run_until(function() return closed end, 15000, "the close")
    assert.equal(MESSAGES, sent)
    assert.is_true(refused > 0)
    assert.equal(refused, drained)
    assert.equal(("frames %d bytes %d"):format(MESSAGES, MESSAGES * SIZE), report())
  end)
end)
