-- uv.stop() makes uv.run() return, as under luv, though work is left:
-- called from a libuv callback, and from a turbo_ws one while a server
-- listens. uv.run() then returns whether libuv still has work (luv's
-- value); a second uv.run() carries on with what is left.
package.path = "spec/support/luv/?.lua;" .. package.path
local uv = require "luv"
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local common = require "common"

-- Only a repeating libuv timer: stopped from its own callback.
local ticks = 0
local ticker = uv.new_timer()
ticker:start(20, 20, function()
  ticks = ticks + 1
  if ticks == 3 then uv.stop() end
end)
print("first uv.run returned " .. tostring(uv.run()) .. ", ticks " .. ticks)

-- A listening server keeps turbo_ws's loop going: stopped from a
-- turbo_ws timeout.
local server = common.echo_server()
core.add_timeout(core.gettimemonotonic() + 50, function() uv.stop() end)
print("second uv.run returned " .. tostring(uv.run()))

-- What is left still runs, until nothing is.
core.add_timeout(core.gettimemonotonic() + 50, function()
  server:close()
  ticker:close()
end)
print("third uv.run returned " .. tostring(uv.run()))
