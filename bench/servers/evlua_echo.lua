-- Bench server: the evlua face; messages go to the handler module
-- bench_handlers.echo (the URL path /bench_handlers/echo), which echoes.
local turbo_ws = require "turbo_ws"
require "turbo_ws.compat"
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local evlua = turbo_ws.evlua
evlua.serve{
  host = "127.0.0.1",
  port = tonumber(arg[1]),
  handle_request = function(request, response)
    evlua.web_socket.accept(request, response, {})
  end,
}
turbo_ws.run()
