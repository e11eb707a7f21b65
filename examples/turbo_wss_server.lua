-- A wss:// echo server (Turbo face) with a self-signed certificate that it
-- generates on start (with the openssl command-line tool).
--
--   luajit examples/turbo_wss_server.lua [port]        (default 8443)
--
-- Try it with the coro client, trusting the generated certificate:
--   luajit -e 'local cw = require("turbo_ws").coro_websocket
--     coroutine.wrap(function()
--       local res, read, write = cw.connect{host = "127.0.0.1", port = 8443,
--         tls = {ca_file = "/tmp/turbo_ws_example/cert.pem"}}
--       write{opcode = 1, payload = "hi"}; print(read().payload); res.socket:shutdown()
--     end)(); require("turbo_ws").run()'
local turbo = require "turbo_ws"

local port = tonumber(arg and arg[1]) or 8443
local dir = os.getenv("TMPDIR") or "/tmp"
dir = dir .. "/turbo_ws_example"
local cert, key = dir .. "/cert.pem", dir .. "/key.pem"

-- A P-256 key and a certificate for localhost / 127.0.0.1, valid 30 days.
local function make_certificate()
  local cmd = table.concat({
    "mkdir -p " .. dir .. " &&",
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30",
    "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext basicConstraints=critical,CA:FALSE",
    "-keyout " .. key .. " -out " .. cert .. " 2>/dev/null",
  }, " ")
  local ok = os.execute(cmd)
  if ok ~= true and ok ~= 0 then error("could not run openssl to make a certificate") end
end

local Echo = class("Echo", turbo.websocket.WebSocketHandler)
function Echo:on_message(msg, binary) self:write_message(msg, binary) end

make_certificate()
turbo.web.Application({ { "^/.*$", Echo } }):listen(port, "127.0.0.1", {
  ssl_options = { cert_file = cert, key_file = key },
})
print(("wss echo server on wss://127.0.0.1:%d/ (certificate: %s)"):format(port, cert))
turbo.ioloop.instance():start()
