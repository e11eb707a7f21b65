--- turbo_ws.evlua.ws_util -- evlua's `service_utils.WS.ws_util`: sending
-- and receiving frames on a connection table (any table with `_ss`), and
-- a named pool of sockets.
--
-- Masking follows the socket's role (client sockets mask, server sockets
-- do not), whatever `use_mask` a caller passes. Calls that wait yield
-- inside a coroutine, or run the loop on the main thread.
local ffi = require "ffi"
local bit = require "bit"
local C = require "turbo_ws.evlua.ws_const"
local socket = require "turbo_ws.evlua.socket"

local band = bit.band
local istype = ffi.istype

-- The byte buffers send_frame hands to the core without a string:
-- variable-length unsigned char arrays, as `msg.buf` and
-- `ffi.new("unsigned char[?]", n)`, and pointers to unsigned bytes. Other
-- cdata (fixed-size arrays included) take the string path, whose
-- conversions (and errors) stay those of ffi.string.
local BYTE_ARRAY = ffi.typeof("unsigned char[?]")
local BYTE_POINTER = ffi.typeof("const unsigned char *")

local function is_byte_buffer(buf)
  return istype(BYTE_ARRAY, buf) or istype(BYTE_POINTER, buf)
end

-- How many bytes `buf` holds when its C type says so (arrays, including
-- msg.buf's, and structs); nil for a pointer, whose extent only the
-- caller knows (as in C). Reading `size` bytes past it would send the
-- process's memory, or crash it.
local function known_extent(buf)
  if istype(BYTE_ARRAY, buf) then return ffi.sizeof(buf) end
  local ctype = tostring(ffi.typeof(buf))
  if ctype:find("[*&]") then return nil end
  return ffi.sizeof(buf)
end

local ws_util = {}

local socket_of_handle = socket.of
local FRAME_TEXT, FRAME_BINARY = C.FRAME_TEXT, C.FRAME_BINARY

-- The Socket of a connection table; raises for anything else.
local function socket_of(conn, what)
  if type(conn) ~= "table" then
    error(what .. ": connection (table) expected, got " .. type(conn), 3)
  end
  local sock = socket_of_handle(conn._ss)
  if not sock then error(what .. ": the connection has no websocket (_ss)", 3) end
  return sock
end

local function timeout_of(conn, field)
  return tonumber(conn[field]) or socket.DEFAULT_TIMEOUT
end

-- Bytes of the frame header evlua would write for this payload.
local function header_length(size, masked)
  local n = 2
  if size >= 0x10000 then n = n + 8 elseif size >= 126 then n = n + 2 end
  if masked then n = n + 4 end
  return n
end

-- What evlua's senders return: the description of a frame of `size`
-- bytes sent on `sock`, written into `d` (its `buf` is the caller's).
local function describe(d, sock, flags, size)
  local masked = sock.role == "client"
  d.size, d.flags, d.use_mask = size, flags, masked
  d.hdr_len = header_length(size, masked)
  d.total_len = d.hdr_len + size
  return d
end

-- A description made here keeps the message as `payload` (the Lua string
-- sent) and makes its `buf` when first read: most callers never look at
-- it, and a copy of every message sent is garbage the collector pays for.
-- It is the same copy of the payload, made later (the string is
-- immutable); until then `buf` is not a raw field (pairs does not list
-- it). The payload is a field, not kept aside in a weak table: the
-- collector's cost of a weak-keyed entry per message was more than the
-- copy (a send of 32 B took twice as long).
local Described = {
  __index = function(d, key)
    if key ~= "buf" then return nil end
    local payload = rawget(d, "payload")
    if type(payload) ~= "string" then return nil end
    local buf = socket.cbuf(payload)
    rawset(d, "buf", buf)
    return buf
  end,
  -- Assigning `buf` before reading it replaces the one to be made: the
  -- table becomes a plain one.
  __newindex = function(d, key, value)
    if key == "buf" then setmetatable(d, nil) end
    rawset(d, key, value)
  end,
}

-- A new description of a whole frame `payload` sent on `sock`.
local function new_descriptor(sock, flags, payload)
  local size, masked = #payload, sock.role == "client"
  local hdr_len = header_length(size, masked)
  return setmetatable({
    size = size, flags = flags, use_mask = masked,
    hdr_len = hdr_len, total_len = hdr_len + size, payload = payload,
  }, Described)
end

--- `send_msg(conn, str [, {msg_type = "TEXT"}])`: sends `str` (every byte)
-- as one text message when msg_type is "TEXT", else binary. Returns the
-- frame's description. Raises if the connection is closed.
function ws_util.send_msg(conn, msg, opts)
  local sock = socket_of(conn, "ws_util.send_msg")
  if type(msg) ~= "string" then
    error("ws_util.send_msg: message (string) expected, got " .. type(msg), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("ws_util.send_msg: options (table) expected, got " .. type(opts), 2)
  end
  local text = opts ~= nil and opts.msg_type == "TEXT"
  -- send_message raises check_alive's error on a closed connection.
  local timeout = timeout_of(conn, "_send_timeout")
  sock:send_message("ws_util.send_msg", msg, not text, timeout)
  sock:flush_outside_loop("ws_util.send_msg", timeout)
  return new_descriptor(sock, text and FRAME_TEXT or FRAME_BINARY, msg)
end

--- `recv_frame(conn) -> msg`: the next incoming frame of a connection
-- without a message handler (any kind; PINGs were already answered, a
-- CLOSE already echoed). Raises on timeout (`conn._recv_timeout`, closing
-- the connection), when closed, and after a CLOSE was returned.
function ws_util.recv_frame(conn)
  local sock = socket_of(conn, "ws_util.recv_frame")
  if conn.msg_handler ~= nil or sock.handler then
    error("Cannot invoke ws_util.recv_frame when message_handler is set for the websocket", 2)
  end
  return sock:recv("ws_util.recv_frame", timeout_of(conn, "_recv_timeout"))
end

local function is_whole(n) return type(n) == "number" and n >= 0 and n % 1 == 0 end

--- `send_frame{ss, size, flags, buf [, use_mask] [, conn]}`: sends one frame.
-- `flags` is byte 0 (FIN, RSV, opcode); 0 means FIN|BINARY. Control
-- opcodes always get FIN. Returns the same table, described.
function ws_util.send_frame(inp)
  if type(inp) ~= "table" then
    error("ws_util.send_frame: frame description (table) expected, got " .. type(inp), 2)
  end
  local sock = socket.of(inp.ss) or (type(inp.conn) == "table" and socket.of(inp.conn._ss))
  if not sock then error("ws_util.send_frame: 'ss' (a websocket's _ss) expected", 2) end
  -- The conn's _send_timeout when the frame names its conn, as send_msg.
  local timeout = type(inp.conn) == "table" and timeout_of(inp.conn, "_send_timeout") or socket.DEFAULT_TIMEOUT
  if not is_whole(inp.size) then error("ws_util.send_frame: 'size' (integer) expected", 2) end
  if not is_whole(inp.flags) then error("ws_util.send_frame: 'flags' (integer) expected", 2) end
  if inp.size > 0 and type(inp.buf) ~= "cdata" then
    error("ws_util.send_frame: 'buf' (cdata) expected", 2)
  end
  local extent = inp.size > 0 and known_extent(inp.buf)
  if extent and inp.size > extent then
    error(("ws_util.send_frame: 'size' (%d) is more than 'buf' holds (%d bytes)"):format(inp.size, extent), 2)
  end
  local flags = band(inp.flags, 0xFF)
  if flags == 0 then flags = C.FRAME_BINARY end
  local op = band(flags, C.FRAME_OP_BITMASK)
  -- A whole message from a byte buffer: sent from the buffer itself.
  if (op == C.FRAME_OP_TEXT or op == C.FRAME_OP_BINARY) and band(flags, C.FRAME_FLAG_FIN) ~= 0
     and ((inp.size == 0 and inp.buf == nil) or is_byte_buffer(inp.buf))
     and sock:try_send_bytes(inp.buf, inp.size, op == C.FRAME_OP_BINARY) then
    sock:flush_outside_loop("ws_util.send_frame", timeout)
    inp.buf = inp.buf or socket.cbuf("")
    return describe(inp, sock, flags, inp.size)
  end
  local payload = inp.size > 0 and ffi.string(inp.buf, inp.size) or ""
  if op >= C.FRAME_OP_CLOSE and op <= C.FRAME_OP_PONG then
    flags = bit.bor(flags, C.FRAME_FLAG_FIN)
    sock:send_control("ws_util.send_frame", op, payload)
  elseif op <= C.FRAME_OP_BINARY then
    sock:send_data_frame("ws_util.send_frame", op, band(flags, C.FRAME_FLAG_FIN) ~= 0,
                         payload, timeout)
  else
    error(("ws_util.send_frame: reserved opcode 0x%X"):format(op), 2)
  end
  sock:flush_outside_loop("ws_util.send_frame", timeout)
  inp.buf = inp.buf or socket.cbuf(payload)
  return describe(inp, sock, flags, #payload)
end

--- `ping(conn [, payload])`: sends a PING (payload at most 125 bytes,
-- default "PING"). The PONG comes back as a frame like any other.
function ws_util.ping(conn, payload)
  local sock = socket_of(conn, "ws_util.ping")
  if payload == nil then payload = "PING" end
  if type(payload) ~= "string" then
    error("ws_util.ping: payload (string) expected, got " .. type(payload), 2)
  end
  sock:send_control("ws_util.ping", C.FRAME_OP_PING, payload)
  sock:flush_outside_loop("ws_util.ping", timeout_of(conn, "_send_timeout"))
  return new_descriptor(sock, bit.bor(C.FRAME_FLAG_FIN, C.FRAME_OP_PING), payload)
end

--- `close(conn)`: sends CLOSE with code 1000 and waits until the
-- connection is closed. Later sends raise.
function ws_util.close(conn)
  local sock = socket_of(conn, "ws_util.close")
  sock:close("ws_util.close", C.WS_NORMAL_CLOSE)
  return new_descriptor(sock, bit.bor(C.FRAME_FLAG_FIN, C.FRAME_OP_CLOSE), "\3\232")
end

--- `add_ws_to_pool(conn, name)`: remembers the connection's socket under
-- `name` for the whole process, after those already there; a connection
-- taken from the pool (shared) is not added again.
function ws_util.add_ws_to_pool(conn, name)
  local sock = socket_of(conn, "ws_util.add_ws_to_pool")
  if type(name) ~= "string" then
    error("ws_util.add_ws_to_pool: name (string) expected, got " .. type(name), 2)
  end
  if conn.shared then return end
  socket.pool_add(name, sock)
end

--- `get_ws_from_pool(name) -> {_ss, shared = true} | nil`: the next live
-- socket pooled as `name`, in turn.
function ws_util.get_ws_from_pool(name)
  if type(name) ~= "string" then
    error("ws_util.get_ws_from_pool: name (string) expected, got " .. type(name), 2)
  end
  local sock = socket.pool_get(name)
  if not sock then return nil end
  return { _ss = sock.proxy, shared = true }
end


--- turbo_ws extension: bytes queued for sending on the connection and not
-- yet handed to the socket (send_msg waits while it is over max_buffered).
function ws_util.buffered_amount(conn)
  return socket_of(conn, "ws_util.buffered_amount").conn:buffered_amount()
end

return ws_util
