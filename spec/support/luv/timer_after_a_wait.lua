-- A luv timer started after the program waited on turbo_ws alone (libuv
-- had nothing alive, so its loop did not run) counts from when it is
-- started: libuv's loop time is updated each time turbo_ws's loop wakes.
package.path = "spec/support/luv/?.lua;" .. package.path
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local uv = require "luv"

local function uv_sleep(ms)
  local co = coroutine.running()
  local timer = uv.new_timer()
  timer:start(ms, 0, function() timer:close(); assert(coroutine.resume(co)) end)
  coroutine.yield()
end

local function core_sleep(ms)
  local co = coroutine.running()
  core.add_timeout(core.gettimemonotonic() + ms, function() assert(coroutine.resume(co)) end)
  coroutine.yield()
end

coroutine.wrap(function()
  uv_sleep(10)     -- libuv used once, then idle
  core_sleep(600)  -- only turbo_ws has work: libuv's loop does not run
  local before = uv.hrtime()
  uv_sleep(300)
  print(("uv timer of 300 ms took %d ms"):format((uv.hrtime() - before) / 1e6))
end)()
uv.run()
