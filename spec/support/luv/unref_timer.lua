-- An unref'd libuv timer (a heartbeat: it must not keep the process
-- alive by itself) fires while turbo_ws's work keeps the loop going, as
-- it does under luvit while a socket does; and uv.run() still returns once
-- only the unref'd timer is left.
package.path = "spec/support/luv/?.lua;" .. package.path
local uv = require "luv"
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local fired = 0
local beat = uv.new_timer()
beat:start(50, 50, function() fired = fired + 1 end)
beat:unref()
-- 500 ms of turbo_ws work only: about 10 beats.
core.add_timeout(core.gettimemonotonic() + 500, function() print("work over") end)
local started = uv.hrtime()
uv.run()
print(("unref'd timer fired %d times in %d ms"):format(fired, (uv.hrtime() - started) / 1e6))
print("loop alive " .. tostring(uv.loop_alive()))
