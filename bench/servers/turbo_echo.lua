-- Bench server: a Turbo-style WebSocketHandler whose on_message echoes.
local turbo = require "turbo_ws"

local Echo = class("Echo", turbo.websocket.WebSocketHandler)
function Echo:on_message(msg, binary) self:write_message(msg, binary) end

turbo.log.disable_all()
turbo.web.Application({ { "^/.*$", Echo } }):listen(tonumber(arg[1]), "127.0.0.1")
turbo.ioloop.instance():start()
