-- A luvit-style program: luv's uv.run() is the loop; coro-websocket
-- through turbo_ws.compat; a libuv timer runs beside it.
package.path = "spec/support/luv/?.lua;" .. package.path
local uv = require "luv"
require "turbo_ws.compat"
local websocket = require "coro-websocket"
local common = require "common"

local server = common.echo_server()
local ticks = 0
local timer = uv.new_timer()
timer:start(5, 5, function() ticks = ticks + 1 end)

local function session(n)
  local res, read, write = websocket.connect({ host = "127.0.0.1", port = server:port(), pathname = "/" })
  assert(res, read)
  assert(write({ opcode = 1, payload = "hello " .. n }))
  local msg = read()
  assert(msg.payload == "hello " .. n, msg.payload)
  write()
  return res.code
end

coroutine.wrap(function()
  print("code " .. session(0))
  -- Many connections at once, each in its own coroutine.
  local done = 0
  for i = 1, 20 do
    coroutine.wrap(function() session(i); done = done + 1 end)()
  end
  -- A luv timer wakes this coroutine: waiting on libuv from turbo_ws's side.
  local co = coroutine.running()
  local waiter = uv.new_timer()
  waiter:start(200, 0, function() waiter:close(); coroutine.resume(co) end)
  coroutine.yield()
  print("sessions " .. done)
  print("timer ticked " .. tostring(ticks > 5))
  -- Heartbeat: the coro face's heartbeat option sends pings on turbo_ws timers.
  local res, read, write = websocket.connect({ host = "127.0.0.1", port = server:port(), pathname = "/", heartbeat = 50 })
  assert(res)
  local waiter2 = uv.new_timer()
  waiter2:start(200, 0, function() waiter2:close(); coroutine.resume(co) end)
  coroutine.yield()
  write()
  print("heartbeat ok")
  -- Errors come back as nil, message.
  local none, err = websocket.connect({ host = "127.0.0.1", port = 1, pathname = "/" })
  print("refused " .. tostring(none == nil and err ~= nil))
  timer:close()
  server:close()
end)()

uv.run()
print("uv.run returned")
