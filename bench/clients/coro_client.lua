-- Client bench: coro-websocket connections, one coroutine each, keeping W
-- messages in flight; prints {"rate":..., "cpu_us_per_msg":...}.
-- Usage: luajit coro_client.lua URL CONNS INFLIGHT SECONDS [luv]
-- With "luv", the program is luvit-style: luv is loaded and uv.run() is
-- its loop (turbo_ws then runs inside it, see turbo_ws.luv).
local uv = arg[5] == "luv" and require "luv" or nil
local turbo_ws = require "turbo_ws"
local websocket = turbo_ws.coro_websocket
local core = turbo_ws.core
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

local now = core.gettimemonotonic
local t0, c0
core.add_timeout(now() + 1000, function()
  measuring, t0, c0 = true, now(), os.clock()
  core.add_timeout(now() + seconds * 1000, function()
    local secs, cpu = (now() - t0) / 1000, os.clock() - c0
    print(string.format('{"rate":%.0f,"cpu_us_per_msg":%.3f}', count / secs, count > 0 and cpu * 1e6 / count or 0))
    io.stdout:flush()
    os.exit(0)
  end)
end)
if uv then uv.run() else turbo_ws.run() end
