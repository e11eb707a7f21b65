-- A chat room served by several worker processes on one port, shared
-- through Redis, so clients on any worker (or any machine running this
-- program against the same Redis) see each other's messages.
--
--   luajit examples/scale_out_chat.lua [PORT [WORKERS [REDIS_URL]]]
--   luajit examples/scale_out_chat.lua 8080 4 memory   -- one process, no Redis
--
-- Then connect WebSocket clients to ws://127.0.0.1:PORT/ and type. Ctrl-C
-- (or SIGTERM to the first process) stops every worker cleanly.
-- docs/scale-out.md explains workers(), reuse_port and turbo_ws.pubsub.
io.stdout:setvbuf("line")
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local port = tonumber(arg[1]) or 8080
local workers = tonumber(arg[2]) or 2
local url = arg[3] or "redis://127.0.0.1:6379"
local memory = url == "memory"

-- First, before anything creates the event loop: fork the workers. The
-- memory backend cannot cross processes, so it runs in one process.
local id = 0
if not memory then id = core.workers(workers) end

local hub = turbo_ws.pubsub.new{
  backend = memory and "memory" or "redis",
  url = not memory and url or nil,
  on_error = function(kind, message) print(("worker %d: redis %s: %s"):format(id, kind, message)) end,
  on_connect = function() print(("worker %d: subscribed on %s"):format(id, url)) end,
}
if memory then
  -- No supervisor to forward Ctrl-C: stop cleanly ourselves.
  core.on_signal("SIGINT", function()
    turbo_ws.shutdown(2, function() hub:close(); core.close() end)
  end)
end

-- This process's clients; every room message goes to each of them.
local clients = {}
hub:subscribe("chat:lobby", function(message)
  for conn in pairs(clients) do conn:send(message) end
end)

core.listen({ port = port, reuse_port = true }, function(req, info)
  if not info.websocket then
    return req:respond(200, { ["Content-Type"] = "text/plain" }, "WebSocket chat: connect to ws://host:" .. port .. "/\n")
  end
  local conn = req:upgrade()
  if not conn then return end
  local who = ("%s:%d"):format(info.remote_ip, info.remote_port)
  clients[conn] = true
  conn:set_callbacks{
    on_message = function(text)
      -- A table is sent as JSON; subscribers get the JSON text.
      local ok, kind, err = hub:publish("chat:lobby", { from = who, worker = id, text = text })
      if not ok then conn:send(("(not sent: %s: %s)"):format(kind, err)) end
    end,
    on_close = function() clients[conn] = nil end,
  }
  conn:send(("welcome %s, you are on worker %d"):format(who, id))
end)

print(("worker %d: listening on port %d"):format(id, port))
turbo_ws.run()
print(("worker %d: stopped"):format(id))
