-- Client bench: coro-websocket connections, one coroutine each, keeping W
-- messages in flight; prints {"rate":..., "cpu_us_per_msg":...}.
-- Usage: luajit coro_client.lua URL CONNS INFLIGHT SECONDS [luv]
-- With "luv", the program is luvit-style: luv is loaded and uv.run() is
-- its loop (turbo_ws then runs inside it, see turbo_ws.luv).
local uv = arg[5] == "luv" and require "luv" or nil
local turbo_ws = require "turbo_ws"
local websocket = turbo_ws.coro_websocket
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local window = require "bench_window"
local url, conns, inflight, seconds = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local frame = { opcode = 1, payload = string.rep("a", 32) }
local count, measuring = 0, false

for _ = 1, conns do
  coroutine.wrap(function()
    local options = assert(websocket.parseUrl(url))
    local res, read, write = websocket.connect(options)
    assert(res, read)
    for _ = 1, inflight do write(frame) end
    for msg in read do
      if msg.opcode == 1 then
        if measuring then count = count + 1 end
        write(frame)
      end
    end
  end)()
end

window(seconds, function() measuring = true end, function() return count end)

if uv then uv.run() else turbo_ws.run() end
