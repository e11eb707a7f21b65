-- An evlua client script, written as for evlua (like evpoco's websocket
-- samples): top-level code that connects, sends, receives and closes.
-- turbo_ws.compat makes service_utils.WS.* resolve to the evlua face.
--
--   luajit -l turbo_ws.compat examples/evlua_client.lua [url]
local ws = require('service_utils.WS.web_socket')
local ws_util = require('service_utils.WS.ws_util')
local ws_const = require('service_utils.WS.ws_const')
local ffi = require('ffi')

local url = arg and arg[1] or "http://127.0.0.1:8080/evlua_handlers/echo"

local conn, status, hdrs = ws.connect({ url = url, hdrs = {}, external = false, timeout = 10 })
if conn == nil then
  print("refused: " .. tostring(status))
  os.exit(1)
end
print("connected: " .. status .. ", handler " .. tostring(hdrs["X-Handler"]))

ws_util.send_msg(conn, "hello from evlua", { msg_type = "TEXT" })
local msg = ws_util.recv_frame(conn)
print("echo: " .. ffi.string(msg.buf))

ws_util.send_msg(conn, "bin\0ary")
msg = ws_util.recv_frame(conn)
print("binary echo of " .. msg.payload_len .. " bytes, opcode " .. msg.op_code)

ws_util.ping(conn, "KEEP ALIVE")
msg = ws_util.recv_frame(conn)
print("pong: " .. tostring(msg.op_code == ws_const.FRAME_OP_PONG) .. " " .. ffi.string(msg.buf))

ws_util.close(conn)
print("closed")
