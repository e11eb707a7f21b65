--- turbo_ws.evlua.msg -- the `msg` table evlua hands a handler for each
-- message or control frame, and the NUL-terminated byte copies (`buf`)
-- evlua's tables carry.

local ffi = require "ffi"
local bit = require "bit"
local C = require "turbo_ws.evlua.ws_const"
local message_copy = require "turbo_ws.message_copy"

local setmetatable, rawset, ipairs = setmetatable, rawset, ipairs
local bor = bit.bor
local FIN = C.FRAME_FLAG_FIN

-- Parsed once: a type given as a string is parsed again on every
-- interpreted ffi.new.
local UCHAR_VLA = ffi.typeof("unsigned char[?]")
local MASK = ffi.typeof("unsigned char[4]")

local M = {}

-- A copy of `payload` in an `unsigned char[n+1]` whose last byte is NUL,
-- so that `ffi.string(buf)` works on text as evlua programs expect.
function M.cbuf(payload)
  local n = #payload
  local buf = ffi.new(UCHAR_VLA, n + 1) -- zero-filled
  ffi.copy(buf, payload, n)
  return buf
end

--- Whether incoming messages can be copied straight into a `buf`
-- (turbo_ws.message_copy): then sockets take them with
-- `_on_message_length`, else as strings with `on_message`.
M.copies_messages = message_copy ~= false

--- The message being handed over (`_on_message_length(n, ...)`, called
-- now) in a new `unsigned char[n+1]` with its NUL: one copy, from the
-- core's buffer, no Lua string made on the way (for large messages that
-- string was the most expensive part: bytes hashed, compared with an
-- equal string, or one more object for the collector). Raises if the
-- core has no such message (not during that call).
function M.received(n)
  local buf = ffi.new(UCHAR_VLA, n + 1) -- zero-filled: the NUL
  if message_copy(buf, n) ~= 0 then
    error("turbo_ws.evlua: the incoming message could not be copied", 2)
  end
  return buf
end

-- A msg holds the four fields handlers read (`payload_len`, `op_code`,
-- `buf`, `_ss`); the ones fixed by the socket's role and the opcode come
-- from its metatable when read: `flags` (FIN + opcode: messages arrive
-- whole), `use_mask` (server sockets receive masked frames) and, on a
-- server, `mask`. The core unmasks frames and does not keep the key, so
-- `mask` is a zeroed 4-byte array, made when first read and then kept in
-- the msg (each msg its own). Every message allocated a table with room
-- for seven fields and a cdata mask; the collector's work grows with the
-- bytes allocated. `pairs` lists the four (and a mask once read).
local function msg_meta(server, op)
  local flags = bor(FIN, op)
  return {
    __index = function(msg, key)
      if key == "flags" then return flags end
      if key == "use_mask" then return server end
      if key == "mask" and server then
        local mask = ffi.new(MASK)
        rawset(msg, "mask", mask)
        return mask
      end
      return nil
    end,
  }
end

-- By role, then opcode: made once here (a closure made per message would
-- also keep the JIT from compiling make_msg).
local MSG_META = { server = {}, client = {} }
for _, op in ipairs{ C.FRAME_OP_TEXT, C.FRAME_OP_BINARY, C.FRAME_OP_CLOSE,
                     C.FRAME_OP_PING, C.FRAME_OP_PONG } do
  MSG_META.server[op] = msg_meta(true, op)
  MSG_META.client[op] = msg_meta(false, op)
end

--- A new msg for a frame of opcode `op` whose `n` bytes of payload are in
-- `buf` (made for this frame: M.cbuf or M.received), received by a socket
-- of `role` ("server" or "client") whose handle is `ss`. Every one is new,
-- with its own `buf` and `mask`: the handler may keep them.
function M.new(role, op, buf, n, ss)
  return setmetatable({
    payload_len = n,
    op_code = op,
    buf = buf,
    _ss = ss,
  }, MSG_META[role][op])
end

return M
