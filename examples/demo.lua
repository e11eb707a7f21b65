-- make demo: a real WebSocket server and three clients talking through it.
-- The server is a tiny chat room (every message goes to everyone); each
-- client says hello, reads what the others say, and leaves.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local members = {}

local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
  if not info.websocket then
    return req:respond(200, { ["Content-Type"] = "text/plain" }, "turbo_ws demo: connect with WebSocket\n")
  end
  local conn = req:upgrade()
  if not conn then return end
  members[conn] = true
  conn:set_callbacks{
    on_message = function(msg)
      for member in pairs(members) do member:send(msg) end
    end,
    on_close = function() members[conn] = nil end,
  }
end)

local url = "ws://127.0.0.1:" .. server:port() .. "/chat"
print("server listening on " .. url)

local names = { "ada", "grace", "linus" }
local left = #names
for _, name in ipairs(names) do
  core.connect(url, nil, function(conn, res, err)
    if not conn then
      print(name .. ": cannot connect: " .. tostring(err))
      os.exit(1)
    end
    local heard = 0
    conn:set_callbacks{
      on_message = function(msg)
        heard = heard + 1
        print(string.format("%-6s heard: %s", name, msg))
        if heard == #names then conn:close(1000, name .. " says bye") end
      end,
      on_close = function(code, reason)
        print(string.format("%-6s closed (%d %s)", name, code, reason))
        left = left - 1
        if left == 0 then server:close() end
      end,
    }
    -- Speak once everyone is in, so that everybody hears everybody.
    core.add_timeout(core.gettimemonotonic() + 100, function()
      conn:send("hello from " .. name)
    end)
  end)
end

turbo_ws.run()
print("demo finished: the server and " .. #names .. " clients exchanged " .. #names * #names .. " messages")
