--- A WebSocket echo server written against Turbo.lua's API.
--
-- With turbo_ws:   luajit examples/turbo_echo_server.lua [port]
-- Unchanged Turbo program style: replace "turbo_ws" below by "turbo" and
-- run it with `luajit -l turbo_ws.compat` (or on Turbo.lua itself).
--
-- Routes:
--   /ws            echoes every message (text stays text, binary stays binary)
--   /ws/(name)     the same, greeting `name` first (a route capture)
--   /              a plain HTTP page saying where to connect
-- Port 0 picks a free port; the chosen one is printed.
_G.TURBO_SSL = true -- Turbo needs it for WebSocket; turbo_ws accepts it
local turbo = require "turbo_ws"

local port = tonumber(arg and arg[1]) or 8888

local EchoHandler = class("EchoHandler", turbo.websocket.WebSocketHandler)

-- Called with the route's captures once the connection is open.
function EchoHandler:open(name)
    if name and name ~= self.request.path then
        self:write_message("hello " .. name)
    end
end

-- `binary` is a turbo_ws extension; Turbo programs simply ignore it.
function EchoHandler:on_message(msg, binary)
    self:write_message(msg, binary)
end

function EchoHandler:on_close()
    turbo.log.notice("connection closed: " .. self.request.remote_ip)
end

local IndexHandler = class("IndexHandler", turbo.web.RequestHandler)

function IndexHandler:get()
    self:set_header("Content-Type", "text/plain; charset=UTF-8")
    self:write("WebSocket echo at ws://" .. tostring(self.request.host) .. "/ws\n")
end

local app = turbo.web.Application({
    {"^/ws$", EchoHandler},
    {"^/ws/(%w+)$", EchoHandler},
    {"^/$", IndexHandler},
})

-- turbo_ws's listen returns the server, so port 0 can be reported.
local server = app:listen(port, "127.0.0.1")
if server and server.port then port = server:port() end
print("listening on " .. port)
io.stdout:flush()

turbo.ioloop.instance():start()
