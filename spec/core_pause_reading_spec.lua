-- conn:pause_reading() / conn:resume_reading(): the flow control the faces
-- use (Turbo's on_message suspended, a luvit reader not reading). While
-- paused nothing is read or delivered, pings included, and the peer is held
-- back by TCP; writing goes on; resuming delivers what waited, in order.
local core = require("turbo_ws").core
local L = require "spec.support.loop"
local run_until, connected = L.run_until, L.connected

-- Runs the loop for `ms`.
local function wait(ms)
  local deadline = core.gettimemonotonic() + ms
  run_until(function() return core.gettimemonotonic() >= deadline end, ms + 1000)
end

describe("conn:pause_reading", function()
  it("stops delivery after the current message until resume_reading, then goes on in order", function()
    local got, server_conn = {}, {}
    local client, server = connected({
      on_message = function(data)
        got[#got + 1] = data
        if data == "1" then server_conn[1]:pause_reading() end
      end,
    }, nil, server_conn)
    local pongs = {}
    client:set_callbacks({ on_pong = function(data) pongs[#pongs + 1] = data end })
    client:send("1"); client:send("2"); client:send("3")
    client:ping("p")
    wait(200)
    assert.are.same({ "1" }, got)
    assert.are.same({}, pongs) -- the ping waits too: it is not read
    server_conn[1]:send("still writing")
    server_conn[1]:resume_reading()
    run_until(function() return #got == 3 and #pongs == 1 end)
    assert.are.same({ "1", "2", "3" }, got)
    assert.are.same({ "p" }, pongs)
    server_conn[1]:resume_reading() -- not paused: nothing happens
    client:close()
    server:close()
  end)

  it("lets the connection write while paused, and close", function()
    local got, server_conn = {}, {}
    local client, server = connected({ on_message = function() end }, nil, server_conn)
    client:set_callbacks({ on_message = function(data) got[#got + 1] = data end })
    server_conn[1]:pause_reading()
    server_conn[1]:send("out")
    run_until(function() return #got == 1 end)
    assert.are.same({ "out" }, got)
    -- Closing reads on, paused or not: the handshake needs the peer's close.
    local closed
    client:set_callbacks({ on_close = function(code) closed = code end })
    server_conn[1]:close(4001)
    run_until(function() return closed end)
    assert.are.equal(4001, closed)
    server:close()
  end)

  it("no longer keeps run() going once nothing is left to write, as a libuv stream that stopped reading", function()
    local server_conn = {}
    local client, server = connected({ on_message = function() end }, nil, server_conn)
    server:close()
    local timed_out = false
    local guard = core.add_timeout(core.gettimemonotonic() + 3000, function()
      timed_out = true
      core.close()
    end, nil, false)
    -- Both ends open, both paused: run() returns at once.
    client:pause_reading()
    server_conn[1]:pause_reading()
    core.run()
    assert.is_false(timed_out)
    assert.are.equal("open", client:state())
    -- One end reading again keeps it going until the close is done.
    local closed
    client:set_callbacks({ on_close = function(code) closed = code end })
    client:resume_reading()
    server_conn[1]:close(4002)
    core.run()
    core.remove_timeout(guard)
    assert.is_false(timed_out)
    assert.are.equal(4002, closed)
  end)
end)
