-- Idle under OWNER (luv or turbo_ws): a listener, one open connection and a
-- 1 s libuv timer; prints the CPU ticks used over 3 seconds of idling.
package.path = "spec/support/luv/?.lua;" .. package.path
local owner = arg[1]
local turbo_ws = require "turbo_ws"
local uv = require "luv"
local common = require "common"
local server = common.echo_server()
local beats = uv.new_timer()
beats:start(1000, 1000, function() end)
coroutine.wrap(function()
  local res, read, write = turbo_ws.coro_websocket.connect({ host = "127.0.0.1", port = server:port(), pathname = "/" })
  assert(res, read)
  local co = coroutine.running()
  local t = uv.new_timer()
  t:start(300, 0, function() coroutine.resume(co) end) -- settle
  coroutine.yield()
  local before = common.cpu_ticks()
  t:start(3000, 0, function() coroutine.resume(co) end)
  coroutine.yield()
  print("idle ticks " .. (common.cpu_ticks() - before))
  t:close(); beats:close(); write(); server:close()
end)()
if owner == "luv" then uv.run() else turbo_ws.run() end
