-- Echo server for Autobahn's fuzzingclient written with the Turbo face:
-- a WebSocketHandler whose on_message echoes (binary stays binary).
-- Usage: luajit turbo_echo_server.lua PORT
local turbo = require "turbo_ws"

local Echo = class("Echo", turbo.websocket.WebSocketHandler)
function Echo:on_message(msg, binary) self:write_message(msg, binary) end

turbo.log.disable_all()
turbo.web.Application({ { "^/.*$", Echo } }):listen(tonumber(arg[1]) or 9001, "127.0.0.1", { max_message_size = 64 * 1024 * 1024 })
turbo.ioloop.instance():start()
