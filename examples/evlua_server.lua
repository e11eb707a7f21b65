-- An evlua WebSocket server: the turbo_ws server entry (evlua.serve) in
-- front of evlua code. handle_request decides, as evlua's controller does,
-- whether a request is an upgrade, and lets ws.accept find the handler
-- module from the URL path (/evlua_handlers/echo -> evlua_handlers.echo).
--
--   luajit examples/evlua_server.lua [port]      (default 8080; 0 = any)
--   luajit -l turbo_ws.compat examples/evlua_client.lua \
--          http://127.0.0.1:8080/evlua_handlers/echo
local turbo_ws = require "turbo_ws"
require "turbo_ws.compat" -- service_utils.WS.* for the handler modules

-- Handler modules live next to this script.
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local evlua = turbo_ws.evlua
local ws = evlua.web_socket

local function is_upgrade(request)
  return request:get_hdr_field("Connection"):lower():find("upgrade", 1, true)
     and request:get_hdr_field("Upgrade"):lower() == "websocket"
end

local server = evlua.serve{
  host = "127.0.0.1",
  port = tonumber(arg and arg[1]) or 8080,
  handle_request = function(request, response)
    if is_upgrade(request) then
      ws.accept(request, response, {}) -- answers 101 or 400 itself
      return
    end
    response:set_status(200)
    response:set_content_type("text/plain")
    response:send()
    response:write("connect a WebSocket to /evlua_handlers/echo\n")
  end,
}

print(("evlua echo server on ws://127.0.0.1:%d/evlua_handlers/echo"):format(server:port()))
io.stdout:flush()
turbo_ws.run()
