-- `require "turbo_ws.compat"` (or `luajit -l turbo_ws.compat app.lua`) lets an
-- unmodified program's `require` of an original module name resolve to the
-- matching turbo_ws face.
local turbo_ws = require "turbo_ws"

-- original module name -> turbo_ws module name
local aliases = {
  ["turbo"] = "turbo_ws",
  ["turbo.websocket"] = "turbo_ws.websocket",
  ["turbo.web"] = "turbo_ws.web",
  ["turbo.ioloop"] = "turbo_ws.ioloop",
  ["turbo.escape"] = "turbo_ws.escape",
  ["turbo.httputil"] = "turbo_ws.httputil",
  ["turbo.log"] = "turbo_ws.log",
  ["turbo.util"] = "turbo_ws.util",
  ["turbo.hash"] = "turbo_ws.hash",
  ["turbo.async"] = "turbo_ws.async",
  ["coro-websocket"] = "turbo_ws.coro_websocket",
  ["service_utils.WS.web_socket"] = "turbo_ws.evlua.web_socket",
  ["service_utils.WS.ws_util"] = "turbo_ws.evlua.ws_util",
  ["service_utils.WS.ws_const"] = "turbo_ws.evlua.ws_const",
}

for original, ours in pairs(aliases) do
  package.preload[original] = function() return require(ours) end
end

return turbo_ws
