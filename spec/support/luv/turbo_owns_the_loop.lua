-- turbo_ws.run() is the loop; the program also uses luv (timers, fs).
package.path = "spec/support/luv/?.lua;" .. package.path
local turbo_ws = require "turbo_ws"
local uv = require "luv"
local websocket = turbo_ws.coro_websocket
local common = require "common"

local server = common.echo_server()
local fired, stat_size = 0, nil
local timer = uv.new_timer()
timer:start(10, 10, function()
  fired = fired + 1
  if fired == 5 then timer:close() end
end)
uv.fs_stat("/etc/hostname", function(err, st) stat_size = st and st.size end)

coroutine.wrap(function()
  local res, read, write = websocket.connect({ host = "127.0.0.1", port = server:port(), pathname = "/" })
  assert(res, read)
  write({ opcode = 1, payload = "x" })
  print("echo " .. read().payload)
  write()
  server:close()
end)()

turbo_ws.run()
print("timer fired " .. fired)
print("fs_stat " .. tostring(stat_size ~= nil))
