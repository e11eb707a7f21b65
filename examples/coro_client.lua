-- A luvit-style coro-websocket client, as in the coro-websocket docs: it
-- sends one message to an echo server, prints what comes back and closes.
--
--   luajit examples/coro_client.lua [ws://127.0.0.1:9001/]
--   bin/turbo_ws-run examples/coro_client.lua [URL]   (unchanged luvit program)
--
-- With luvit, `require "coro-websocket"` is the original; here
-- turbo_ws.compat makes the same name load turbo_ws's face.
require "turbo_ws" -- (first, so that the line below also works in development mode)
require "turbo_ws.compat"
local websocket = require "coro-websocket"

local url = arg and arg[1] or "ws://127.0.0.1:9001/"

coroutine.wrap(function()
  local options, url_err = websocket.parseUrl(url)
  if not options then
    print("Error in URL: " .. url_err); return
  end
  options.timeout = 5000 -- ms, for the connect and the handshake

  local res, read, write = websocket.connect(options)
  if not res then
    print("Error establishing connection!\n" .. read); return
  end
  print(("Connected to %s:%d (HTTP %d %s)"):format(options.host, options.port, res.code, res.reason))

  write({ opcode = 1, payload = "Hello There!" })

  -- read() yields until the next message; nil once the connection is over.
  for msg in read do
    if msg.opcode == 1 or msg.opcode == 2 then
      print("Host responded with " .. msg.payload)
      res.socket:shutdown() -- a clean close; the loop ends when it is done
    elseif msg.opcode == 8 then
      print("Host closed the connection")
    end
  end
  print("Connection closed!")
end)()

-- luvit runs its loop after the main chunk; plain luajit needs this line
-- (it returns at once when bin/turbo_ws-run already ran the loop).
require("turbo_ws").run()
