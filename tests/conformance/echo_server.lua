-- Echo server for Autobahn's fuzzingclient: every message is echoed by a
-- Lua on_message handler. Usage: luajit echo_server.lua PORT
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local port = tonumber(arg[1]) or 9001
core.listen({ host = "127.0.0.1", port = port }, function(req, info)
  if not info.websocket then
    return req:respond(404, nil, "websocket only\n")
  end
  local conn = req:upgrade()
  if not conn then return end
  conn:set_callbacks{
    on_message = function(msg, binary) conn:send(msg, binary) end,
  }
end)
print("echo server on 127.0.0.1:" .. port)
io.stdout:flush()
turbo_ws.run()
