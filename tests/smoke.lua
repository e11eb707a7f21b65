-- Loads turbo_ws in whichever interpreter runs this file and does one
-- WebSocket echo round trip, a timer and a clean close. Exits non-zero on failure.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local got, closed = nil, nil
local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
  local conn = assert(req:upgrade())
  conn:set_callbacks{ on_message = function(msg, binary) conn:send(msg, binary) end }
end)

core.connect("ws://127.0.0.1:" .. server:port() .. "/smoke", nil, function(conn, res, msg)
  assert(conn, msg)
  conn:set_callbacks{
    on_message = function(msg) got = msg; conn:close(1000, "bye") end,
    on_close = function(code) closed = code; server:close() end,
  }
  conn:send("ping from " .. _VERSION)
end)

local fired = false
core.add_timeout(core.gettimemonotonic() + 10, function() fired = true end)
-- A guard so that a broken build fails instead of hanging.
core.set_interval(5000, function() print("smoke: timed out"); os.exit(1) end, nil, false)
turbo_ws.run()

assert(got == "ping from " .. _VERSION, "echo: " .. tostring(got))
assert(closed == 1000, "close code: " .. tostring(closed))
assert(fired, "timer did not fire")
print("smoke ok: " .. _VERSION .. (jit and (" " .. jit.version) or ""))
