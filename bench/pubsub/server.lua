-- Pub/sub bench server: `luajit server.lua PORT BACKEND WORKERS [REDIS_URL]`.
-- /sub WebSockets are subscribers (greeted with "worker N"); every message
-- a /pub WebSocket sends is published to channel "bench", and every message
-- of "bench" is sent to this process's subscribers.
io.stdout:setvbuf("line")
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local port, backend, workers, url = tonumber(arg[1]), arg[2], tonumber(arg[3]), arg[4]

local id = 0
if workers > 0 then id = core.workers(workers, { grace = 1 }) end
local hub = turbo_ws.pubsub.new{ backend = backend, url = url }
local subscribers, count = {}, 0
hub:subscribe("bench", function(message)
  for conn in pairs(subscribers) do conn:send(message) end
end)
core.listen({ host = "127.0.0.1", port = port, reuse_port = true }, function(req, info)
  local conn = req:upgrade()
  if not conn then return end
  if info.path == "/sub" then
    subscribers[conn] = true
    count = count + 1
    conn:set_callbacks{ on_close = function() subscribers[conn] = nil end }
    conn:send("worker " .. id)
  else
    conn:set_callbacks{ on_message = function(m)
      local ok, kind, err = hub:publish("bench", m)
      if not ok then io.stderr:write("publish: ", kind, " ", err, "\n") end
    end }
  end
end)
if workers == 0 then
  core.on_signal("SIGTERM", function() hub:close(); turbo_ws.shutdown(1, function() core.close() end) end)
end
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
print("ready " .. id .. " " .. ffi.C.getpid())
turbo_ws.run()
