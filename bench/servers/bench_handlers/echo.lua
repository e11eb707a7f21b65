-- evlua handler module for the benchmark: echo every message as it came.
local ffi = require "ffi"
local ws_util = require "service_utils.WS.ws_util"
local ws_const = require "service_utils.WS.ws_const"

local echo = {}
local TEXT = { msg_type = "TEXT" }

function echo.init() return true end

function echo.handle_message(msg)
  local opts = msg.op_code == ws_const.FRAME_OP_TEXT and TEXT or nil
  ws_util.send_msg({ _ss = msg._ss }, ffi.string(msg.buf, msg.payload_len), opts)
end

return echo
