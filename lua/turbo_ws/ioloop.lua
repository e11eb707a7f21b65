-- Turbo's `turbo.ioloop`: one loop per process, reached through `instance()`.
-- A thin layer over turbo_ws.core; Turbo's method names and return values.
local core = require "turbo_ws.core"

local ioloop = {}

local IOLoop = {}
IOLoop.__index = IOLoop

local the_instance = setmetatable({}, IOLoop)

function ioloop.instance() return the_instance end

-- Turbo programs sometimes build their own loop object; there is only one.
ioloop.IOLoop = setmetatable({}, {
  __call = function() return the_instance end,
  __index = IOLoop,
})

function IOLoop:start() core.start(); return self end
function IOLoop:close() core.close() end
function IOLoop:running() return core.running() end

function IOLoop:add_callback(callback, arg)
  core.add_callback(callback, arg)
  return self
end

function IOLoop:add_timeout(timestamp, callback, arg)
  return core.add_timeout(timestamp, callback, arg)
end

function IOLoop:remove_timeout(ref) return core.remove_timeout(ref) end

function IOLoop:set_interval(msec, callback, arg)
  return core.set_interval(msec, callback, arg)
end

function IOLoop:clear_interval(ref) return core.clear_interval(ref) end

return ioloop
