-- Echo server for Autobahn's fuzzingclient written with the evlua face:
-- `evlua.serve` and `ws.accept`, messages going to the handler module the
-- URL path names; the fuzzingclient asks for /bench_handlers/echo, the
-- benchmark's handler (bench/servers/bench_handlers/echo.lua), which
-- echoes each message with ws_util.send_msg as it came.
-- Usage: luajit evlua_echo_server.lua PORT
local turbo_ws = require "turbo_ws"
require "turbo_ws.compat"  -- the service_utils.WS.* module names
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/../../bench/servers/?.lua;" .. package.path

local evlua = turbo_ws.evlua
evlua.serve{
  host = "127.0.0.1",
  port = tonumber(arg[1]) or 9001,
  handle_request = function(request, response)
    evlua.web_socket.accept(request, response, {})
  end,
}
turbo_ws.run()
