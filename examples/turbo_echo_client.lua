--- A WebSocket client written against Turbo.lua's API: sends a few
-- messages to an echo server, prints the replies, closes and exits.
--
-- With turbo_ws:   luajit examples/turbo_echo_client.lua [ws://127.0.0.1:8888/ws]
-- Unchanged Turbo program style: replace "turbo_ws" below by "turbo" and
-- run it with `luajit -l turbo_ws.compat` (or on Turbo.lua itself).
_G.TURBO_SSL = true
local turbo = require "turbo_ws"

local address = arg and arg[1] or "ws://127.0.0.1:8888/ws"
local messages = {"Hello", "World", {json = "too"}}
local exit_code = 0
local io_loop = turbo.ioloop.instance()

-- Turbo's client must be created inside a coroutine: add_callback gives one.
io_loop:add_callback(function()
    turbo.websocket.WebSocketClient(address, {
        modify_headers = function(self, headers)
            headers:add("X-Example", "turbo_echo_client")
        end,
        on_headers = function(self, headers)
            print("upgraded: " .. tostring(headers:get_status_code()))
        end,
        on_connect = function(self)
            for _, msg in ipairs(messages) do
                self:write_message(msg) -- a table is sent as JSON
            end
        end,
        on_message = function(self, msg)
            print("received: " .. msg)
            -- Close once the last message we sent has come back.
            local last = messages[#messages]
            if msg == turbo.escape.json_encode(last) then
                self:close()
            end
        end,
        on_close = function(self)
            print("closed")
            io_loop:close()
        end,
        on_error = function(self, code, reason)
            print("error " .. tostring(code) .. ": " .. tostring(reason))
            exit_code = 1
            io_loop:close()
        end,
    })
end)

-- Give up after 10 seconds rather than hang.
io_loop:add_timeout(turbo.util.gettimemonotonic() + 10000, function()
    print("timed out")
    exit_code = 1
    io_loop:close()
end)

io_loop:start()
os.exit(exit_code)
