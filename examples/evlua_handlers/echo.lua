-- An evlua WebSocket handler module, unchanged from what evlua runs: the
-- server loads it for connections upgraded on the URL path
-- /evlua_handlers/echo, and calls it for every incoming message.
local ffi = require('ffi')
local ws_util = require('service_utils.WS.ws_util')
local ws_const = require('service_utils.WS.ws_const')

local echo = {}

-- Called by ws.accept before the upgrade is answered: return false and a
-- message to refuse it (the client gets 400 and the message as X-msg).
function echo.init(request, response, uc)
  if request:get_hdr_field("X-Refuse") ~= "" then
    return false, "refused on request"
  end
  response:set_hdr_field("X-Handler", "echo") -- goes out with the 101
  return true
end

-- Every text or binary message, whole: send it back the same way.
function echo.handle_message(msg)
  local data = ffi.string(msg.buf, msg.payload_len)
  local opts = nil
  if msg.op_code == ws_const.FRAME_OP_TEXT then opts = { msg_type = "TEXT" } end
  ws_util.send_msg({ _ss = msg._ss }, data, opts)
end

-- PINGs are answered by the server; this only notes them.
function echo.handle_ping(msg)
  print("ping from " .. tostring(msg._ss) .. ": " .. ffi.string(msg.buf))
end

return echo
