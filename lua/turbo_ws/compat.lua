-- `require "turbo_ws.compat"` (or `luajit -l turbo_ws.compat app.lua`) lets an
-- unmodified program's `require` of an original module name resolve to the
-- matching turbo_ws face. It loads no face itself: `require "turbo"`
-- loads the Turbo face (and Turbo's globals), `require "coro-websocket"`
-- only the coro face.

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
  ["turbo.signal"] = "turbo_ws.signal",
  ["turbo.platform"] = "turbo_ws.platform",
  ["coro-websocket"] = "turbo_ws.coro_websocket",
  ["service_utils.WS.web_socket"] = "turbo_ws.evlua.web_socket",
  ["service_utils.WS.ws_util"] = "turbo_ws.evlua.ws_util",
  ["service_utils.WS.ws_const"] = "turbo_ws.evlua.ws_const",
}

for original, ours in pairs(aliases) do
  package.preload[original] = function() return require(ours) end
end
-- Turbo's classes that are modules of their own there.
package.preload["turbo.structs.deque"] = function() return require("turbo_ws.structs").deque end

-- The `turbo_ws` table, read through: loaded (with Turbo's globals) only
-- when a field is first used.
return setmetatable({}, {
  __index = function(_, key) return require("turbo_ws")[key] end,
})
