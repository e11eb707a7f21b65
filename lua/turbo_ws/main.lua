-- Builds the table `require "turbo_ws"` returns: a drop-in for `require "turbo"`.
-- Faces load on first use (`turbo_ws.websocket` requires "turbo_ws.websocket").
local core = require "turbo_ws.core"

local M = {
  core = core,
  run = core.run,
  shutdown = core.shutdown,
  workers = core.workers,
  worker_index = core.worker_index,
  on_signal = core.on_signal,
  VERSION = core.VERSION,
  -- The Turbo release whose API the Turbo face follows.
  MAJOR_VERSION = 2, MINOR_VERSION = 1, MICRO_VERSION = 5,
  VERSION_HEX = 0x020105,
}

-- A face exists when it is embedded (package.preload), already loaded, or,
-- in development mode (TURBO_WS_LUA_DIR), a file on package.path.
local function on_path(name)
  if package.searchpath then return package.searchpath(name, package.path) ~= nil end
  local file = name:gsub("%.", "/")  -- Lua 5.1 has no package.searchpath
  for template in package.path:gmatch("[^;]+") do
    local f = io.open((template:gsub("%?", file)), "r")
    if f then f:close(); return true end
  end
  return false
end

local function module_exists(name)
  if package.preload[name] ~= nil or package.loaded[name] ~= nil then return true end
  return on_path(name)
end

-- The public modules reached as fields (internal ones like turbo_ws.main
-- or turbo_ws.compat are only loaded by name).
local PUBLIC = {
  websocket = true, web = true, ioloop = true, util = true, escape = true,
  httputil = true, log = true, hash = true, coro_websocket = true,
  evlua = true, pubsub = true, async = true, signal = true, platform = true,
  structs = true,
}

setmetatable(M, {
  __index = function(_, key)
    if not PUBLIC[key] then return nil end
    local name = "turbo_ws." .. key
    local loaded = package.loaded[name]
    if loaded ~= nil then return loaded end
    if not module_exists(name) then return nil end
    -- Not cached in the table: package.loaded stays the one source of truth,
    -- so turbo.web and require "turbo.web" are the same table even if
    -- package.loaded is reset (busted does that between spec files).
    return require(name)
  end,
})

-- Turbo defines the global `class` (middleclass) and its helpers
-- (Object, instanceOf, subclassOf, includes) on load; programs use them.
if rawget(_G, "class") == nil then
  require("turbo_ws.class").install(_G)
end

return M
