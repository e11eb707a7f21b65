-- Client bench: Turbo-face WebSocketClients, each keeping W messages in
-- flight against an echo server; prints {"rate":..., "cpu_us_per_msg":...}.
-- Usage: luajit turbo_client.lua URL CONNS INFLIGHT SECONDS
local turbo = require "turbo_ws"
turbo.log.disable_all()
package.path = (arg[0]:match("^(.*)/") or ".") .. "/?.lua;" .. package.path
local window = require "bench_window"
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

window(seconds, function() measuring = true end, function() return count end)

io_loop:start()
