-- Builds the table `require "turbo_ws"` returns: a drop-in for `require "turbo"`.
-- Faces load on first use (`turbo_ws.websocket` requires "turbo_ws.websocket").
local core = require "turbo_ws.core"

local M = {
  core = core,
  run = core.run,
  VERSION = core.VERSION,
  -- The Turbo release whose API the Turbo face follows.
  MAJOR_VERSION = 2, MINOR_VERSION = 1, MICRO_VERSION = 5,
}

setmetatable(M, {
  __index = function(t, key)
    if type(key) ~= "string" then return nil end
    local name = "turbo_ws." .. key
    if package.preload[name] == nil and package.loaded[name] == nil then return nil end
    local mod = require(name)
    rawset(t, key, mod)
    return mod
  end,
})

-- Turbo defines the global `class` (middleclass) and its helpers
-- (Object, instanceOf, subclassOf, includes) on load; programs use them.
if rawget(_G, "class") == nil then
  require("turbo_ws.class").install(_G)
end

return M
