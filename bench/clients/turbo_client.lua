-- Client bench: Turbo-face WebSocketClients, each keeping W messages in
-- flight against an echo server; prints {"rate":..., "cpu_us_per_msg":...}.
-- Usage: luajit turbo_client.lua URL CONNS INFLIGHT SECONDS
local turbo = require "turbo_ws"
turbo.log.disable_all()
local url, conns, inflight, seconds = arg[1], tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
local io_loop = turbo.ioloop.instance()
local payload = string.rep("a", 32)
local count, measuring = 0, false

for _ = 1, conns do
  io_loop:add_callback(function()
    turbo.websocket.WebSocketClient(url, {
      on_connect = function(self)
        for _ = 1, inflight do self:write_message(payload) end
      end,
      on_message = function(self, msg)
        if measuring then count = count + 1 end
        self:write_message(msg)
      end,
    })
  end)
end

local now = turbo.util.gettimemonotonic
local t0, c0
io_loop:add_timeout(now() + 1000, function()      -- one second of warm-up
  measuring, t0, c0 = true, now(), os.clock()
  io_loop:add_timeout(now() + seconds * 1000, function()
    local secs, cpu = (now() - t0) / 1000, os.clock() - c0
    print(string.format('{"rate":%.0f,"cpu_us_per_msg":%.3f}', count / secs, count > 0 and cpu * 1e6 / count or 0))
    io.stdout:flush()
    os.exit(0)
  end)
end)
io_loop:start()
