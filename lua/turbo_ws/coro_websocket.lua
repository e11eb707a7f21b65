-- turbo_ws.coro_websocket: luvit's `coro-websocket` API ({connect, wrapIo,
-- parseUrl}) so that programs written for it run unchanged.
--
-- connect() rides on turbo_ws.core: Rust does the sockets, TLS, handshake,
-- framing and RFC 6455 checks; this file only turns the core's callbacks into
-- coroutine-style read()/write(). wrapIo() works over functions the program
-- supplies, so it cannot use the core: it frames and checks in Lua, with the
-- same rules as the core. Deliberate differences from the original are listed
-- in docs/coro-websocket.md.
local core = require("turbo_ws").core

local byte, char, sub, find, lower = string.byte, string.char, string.sub, string.find, string.lower
local concat = table.concat
local floor = math.floor
local unpack = rawget(table, "unpack") or unpack

local M = {}

-- Largest incoming message/frame wrapIo accepts (the core's defaults).
local MAX_MESSAGE_SIZE = 64 * 1024 * 1024
local MAX_FRAME_SIZE = 16 * 1024 * 1024
-- The original's handshake timeout, which it never applied (ms).
local DEFAULT_TIMEOUT = 10000
local SHUTDOWN = "already shutdown" -- the original's text for writes after close

---------------------------------------------------------------------------
-- Argument checks: misuse raises, naming the function (like the core).
---------------------------------------------------------------------------

local function fail_arg(fname, what, expected, got, level)
  error(("turbo_ws.coro_websocket.%s: bad %s (%s expected, got %s)")
    :format(fname, what, expected, got), level + 1)
end

local function check_type(fname, what, value, expected, level, optional)
  if value == nil and optional then return end
  if type(value) ~= expected then
    fail_arg(fname, what, expected, type(value), level + 1)
  end
end

-- A positive number of milliseconds (timeout, heartbeat) or nil.
local function check_ms(fname, name, value, level)
  if value == nil then return end
  if type(value) ~= "number" or value <= 0 or value ~= value then
    fail_arg(fname, "option '" .. name .. "'", "positive number of milliseconds",
      type(value) == "number" and tostring(value) or type(value), level + 1)
  end
end

---------------------------------------------------------------------------
-- Coroutines: the face blocks by yielding the caller's coroutine and is
-- resumed from a core callback.
---------------------------------------------------------------------------

-- The running coroutine; raises in the main thread, where nothing could
-- resume us (LuaJIT/5.1 return nil there, 5.2+ return main, true).
local function need_coroutine(fname, level)
  local co, is_main = coroutine.running()
  if co == nil or is_main then
    error("turbo_ws.coro_websocket." .. fname .. ": must be called inside a coroutine"
      .. " (wrap the code in coroutine.wrap(function() ... end)())", level + 1)
  end
  return co
end

-- Resumes a waiting coroutine. An error in it is the program's: report it
-- with its traceback and go on, so other connections are not affected.
local function resume(co, ...)
  if coroutine.status(co) ~= "suspended" then return end
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    io.stderr:write("turbo_ws.coro_websocket: uncaught error in coroutine: ",
      debug.traceback(co, tostring(err)), "\n")
  end
end

---------------------------------------------------------------------------
-- Bytes: XOR (LuaJIT `bit`, 5.1 `bit32`/`bit`, 5.3+ operator), UTF-8, masks.
---------------------------------------------------------------------------

-- XOR of two bytes with plain arithmetic, for PUC Lua 5.1 (no bit library).
local function xor_byte(a, b)
  local r, p = 0, 1
  for _ = 1, 8 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end

local bxor
do
  local ok, bit = pcall(require, "bit")
  if not ok then ok, bit = pcall(require, "bit32") end
  if ok and type(bit) == "table" and bit.bxor then
    bxor = bit.bxor
  else
    -- Lua 5.3+ has the operator, but it does not parse under 5.1: compile late.
    local op = (loadstring or load)("return function(a, b) return a ~ b end")
    bxor = op and op() or xor_byte
  end
end

-- Checks that s is UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF).
-- With `partial`, a character cut off at the end is allowed (the next
-- fragment completes it). Returns ok, index where the unfinished tail starts.
local function utf8_scan(s, partial)
  local n = #s
  local i = find(s, "[\128-\255]")
  while i do
    local c = byte(s, i)
    local need, lo, hi
    if c >= 0xC2 and c <= 0xDF then need, lo, hi = 1, 0x80, 0xBF
    elseif c == 0xE0 then need, lo, hi = 2, 0xA0, 0xBF
    elseif (c >= 0xE1 and c <= 0xEC) or c == 0xEE or c == 0xEF then need, lo, hi = 2, 0x80, 0xBF
    elseif c == 0xED then need, lo, hi = 2, 0x80, 0x9F
    elseif c == 0xF0 then need, lo, hi = 3, 0x90, 0xBF
    elseif c >= 0xF1 and c <= 0xF3 then need, lo, hi = 3, 0x80, 0xBF
    elseif c == 0xF4 then need, lo, hi = 3, 0x80, 0x8F
    else return false end
    for k = 1, need do
      local d = byte(s, i + k)
      if d == nil then
        if partial then return true, i end
        return false
      end
      if k == 1 and (d < lo or d > hi) then return false end
      if k > 1 and (d < 0x80 or d > 0xBF) then return false end
    end
    i = find(s, "[\128-\255]", i + need + 1)
  end
  return true, n + 1
end

-- XORs data with the 4-byte key, in slices small enough for unpack().
local function apply_mask(data, key)
  local k = { byte(key, 1, 4) }
  local out, n = {}, #data
  for start = 1, n, 4096 do
    local bytes = { byte(data, start, start + 4095 < n and start + 4095 or n) }
    for i = 1, #bytes do
      bytes[i] = bxor(bytes[i], k[(i - 1) % 4 + 1])
    end
    out[#out + 1] = char(unpack(bytes))
  end
  return concat(out)
end

-- Masking keys must be unpredictable (RFC 6455 §5.3): take them from the
-- kernel; fall back to math.random only where /dev/urandom is missing.
local urandom = io.open("/dev/urandom", "rb")
local function mask_key()
  local key = urandom and urandom:read(4)
  if key and #key == 4 then return key end
  return char(math.random(0, 255), math.random(0, 255), math.random(0, 255), math.random(0, 255))
end

local function be16(n) return char(floor(n / 256) % 256, n % 256) end

---------------------------------------------------------------------------
-- RFC 6455 frames in Lua (for wrapIo). A frame is the table the original's
-- websocket-codec uses: {fin, rsv1, rsv2, rsv3, opcode, mask, len, payload}.
---------------------------------------------------------------------------

local function is_control(opcode) return opcode >= 8 end
local function is_known(opcode) return opcode <= 2 or (opcode >= 8 and opcode <= 10) end

-- Close codes a peer may send: the core's rule (RFC 6455 §7.4 and IANA).
local valid_close_code = core.valid_close_code

-- nil if a close payload is valid, else the code and reason to fail with.
local function check_close_payload(payload)
  if #payload == 0 then return nil end
  if #payload == 1 then return 1002, "close frame with a 1-byte payload" end
  local code = byte(payload, 1) * 256 + byte(payload, 2)
  if not valid_close_code(code) then return 1002, "invalid close code " .. code end
  if not utf8_scan(sub(payload, 3)) then return 1007, "close reason is not valid UTF-8" end
  return nil
end

-- Frame table -> wire bytes (minimal length encoding; masked with a fresh key).
function M.encode(frame)
  local payload = frame.payload
  local len = #payload
  local b1 = (frame.fin and 128 or 0) + (frame.rsv1 and 64 or 0) + (frame.rsv2 and 32 or 0)
    + (frame.rsv3 and 16 or 0) + frame.opcode
  local m = frame.mask and 128 or 0
  local head
  if len < 126 then
    head = char(b1, m + len)
  elseif len < 65536 then
    head = char(b1, m + 126) .. be16(len)
  else
    local hi, lo = floor(len / 4294967296), len % 4294967296
    head = char(b1, m + 127) .. be16(floor(hi / 65536)) .. be16(hi % 65536)
      .. be16(floor(lo / 65536)) .. be16(lo % 65536)
  end
  if frame.mask then
    local key = mask_key()
    return head .. key .. apply_mask(payload, key)
  end
  return head .. payload
end

-- A reader of frames from a byte stream: `pull()` returns the next chunk
-- (string) or nil at the end. Returns next_frame() -> frame | nil (end of
-- stream, also mid-frame) | false, code, reason (a frame we must refuse).
-- Bytes are kept as one string + position, so many small frames in one big
-- chunk and one big frame over many chunks both cost O(n).
local function frame_reader(pull, max_frame_size)
  local buf, pos = "", 1

  local function fill(n)
    local have = #buf - pos + 1
    if have >= n then return true end
    local parts = { sub(buf, pos) }
    while have < n do
      local chunk = pull()
      if chunk == nil then
        buf, pos = concat(parts), 1
        return false
      end
      if type(chunk) ~= "string" then
        error("turbo_ws.coro_websocket.wrapIo: rawRead returned a " .. type(chunk)
          .. " in the middle of a byte stream", 0)
      end
      parts[#parts + 1] = chunk
      have = have + #chunk
    end
    buf, pos = concat(parts), 1
    return true
  end

  local function header_length(b2)
    local len, size = b2 % 128, 2
    if len == 126 then size = 4 elseif len == 127 then size = 10 end
    if b2 >= 128 then size = size + 4 end
    return size
  end

  local function payload_length(b2)
    local len = b2 % 128
    if len == 126 then return byte(buf, pos + 2) * 256 + byte(buf, pos + 3) end
    if len < 126 then return len end
    if byte(buf, pos + 2) >= 128 then return nil end -- RFC 6455: the top bit must be 0
    len = 0
    for k = 2, 9 do len = len * 256 + byte(buf, pos + k) end
    return len
  end

  return function()
    if not fill(2) then return nil end
    local b1, b2 = byte(buf, pos, pos + 1)
    local size = header_length(b2)
    if not fill(size) then return nil end
    local len = payload_length(b2)
    if not len then return false, 1002, "64-bit frame length with the top bit set" end
    if len > max_frame_size then return false, 1009, "frame of " .. len .. " bytes is too big" end
    local masked = b2 >= 128
    local key = masked and sub(buf, pos + size - 4, pos + size - 1)
    pos = pos + size
    if not fill(len) then return nil end
    local payload = sub(buf, pos, pos + len - 1)
    pos = pos + len
    if masked then payload = apply_mask(payload, key) end
    return {
      fin = b1 >= 128, rsv1 = b1 % 128 >= 64, rsv2 = b1 % 64 >= 32, rsv3 = b1 % 32 >= 16,
      opcode = b1 % 16, mask = masked, len = len, payload = payload,
    }
  end
end

-- Decodes one frame from the start of `chunk` (websocket-codec's decode
-- signature): frame, rest | nil (incomplete) | false, code, reason.
function M.decode(chunk)
  local done = false
  local next_frame = frame_reader(function()
    if done then return nil end
    done = true
    return chunk
  end, MAX_FRAME_SIZE)
  local frame, code, reason = next_frame()
  if frame == false then return false, code, reason end
  if not frame then return nil end
  -- Header size from the header itself: senders may use a longer length
  -- form than needed (the original's codec does for 16..125 bytes).
  local len7 = byte(chunk, 2) % 128
  local used = 2 + (len7 == 127 and 8 or len7 == 126 and 2 or 0)
    + (frame.mask and 4 or 0) + frame.len
  return frame, sub(chunk, used + 1)
end

-- The message table the program reads.
local function message(opcode, payload, fin, masked)
  return {
    fin = fin ~= false, rsv1 = false, rsv2 = false, rsv3 = false,
    opcode = opcode, mask = masked or false, len = #payload, payload = payload,
  }
end

-- Checks incoming frames in order and joins fragments, with the core's rules.
-- `expect_masked`: true on the server side (clients must mask), false on the
-- client side, nil to not check. feed(frame) returns
--   "message", msg | "control", frame | "more" | "fail", code, reason.
local function assembler(expect_masked, max_message_size)
  local frag -- the message being reassembled: {opcode, parts, size, tail}

  local function check_frame(f)
    if f.rsv1 or f.rsv2 or f.rsv3 then return 1002, "RSV bits set without an extension" end
    if not is_known(f.opcode) then return 1002, "reserved opcode " .. f.opcode end
    if expect_masked ~= nil and type(f.mask) == "boolean" and f.mask ~= expect_masked then
      return 1002, expect_masked and "unmasked frame from a client" or "masked frame from a server"
    end
    if is_control(f.opcode) then
      if not f.fin then return 1002, "fragmented control frame" end
      if #f.payload > 125 then return 1002, "control frame over 125 bytes" end
      if f.opcode == 8 then return check_close_payload(f.payload) end
    elseif f.opcode == 0 and not frag then
      return 1002, "continuation frame without a message to continue"
    elseif f.opcode ~= 0 and frag then
      return 1002, "new message inside a fragmented one"
    end
    return nil
  end

  -- Adds a data frame's payload; checks size and (text) UTF-8 so far.
  local function add(f)
    local m = frag
    m.size = m.size + #f.payload
    if m.size > max_message_size then return 1009, "message over " .. max_message_size .. " bytes" end
    m.parts[#m.parts + 1] = f.payload
    if m.opcode == 1 then
      local text = m.tail .. f.payload
      local ok, tail_at = utf8_scan(text, not f.fin)
      if not ok then return 1007, "invalid UTF-8 in a text message" end
      m.tail = sub(text, tail_at)
    end
    return nil
  end

  return function(f)
    local code, reason = check_frame(f)
    if code then return "fail", code, reason end
    if is_control(f.opcode) then return "control", f end
    if f.opcode ~= 0 then frag = { opcode = f.opcode, parts = {}, size = 0, tail = "", mask = f.mask } end
    code, reason = add(f)
    if code then return "fail", code, reason end
    if not f.fin then return "more" end
    local m = frag
    frag = nil
    return "message", message(m.opcode, concat(m.parts), true, m.mask)
  end
end

---------------------------------------------------------------------------
-- parseUrl
---------------------------------------------------------------------------

local URL_ERROR = "Sorry, only ws:// or wss:// protocols supported"

-- Splits what follows "scheme://" into host, port digits and the rest.
-- IPv6 literals are bracketed ("[::1]:8080"); the host is returned bare.
local function split_authority(rest)
  if sub(rest, 1, 1) == "[" then
    local host, after = rest:match("^%[([%x:%.]+)%](.*)$")
    if not host or not find(host, ":", 1, true) then return nil end
    local port, tail = after:match("^:?(%d*)(.*)$")
    if after ~= "" and not after:match("^[:/?#]") then return nil end
    return host, port, tail
  end
  return rest:match("^([^:/?#]+):?(%d*)(.*)$")
end

-- "ws://host:port/path?query" -> {host, port, tls, pathname}, as the
-- original: ws/wss only (case-sensitive), default ports 80/443, pathname
-- without query or fragment ("" when the URL has no path). Unlike the
-- original, IPv6 literals work, and a URL whose port or path cannot be
-- right (ws://h:abc/, ws://h:99999/) is refused instead of mis-parsed.
function M.parseUrl(url)
  check_type("parseUrl", "argument #1 'url'", url, "string", 2)
  local scheme, rest = url:match("^(wss?)://(.*)$")
  -- What the original refused (other schemes, no host) keeps its message.
  if not scheme or rest == "" or rest:match("^[:/?#]") then return nil, URL_ERROR end
  local host, port, tail = split_authority(rest)
  if not host then return nil, "invalid WebSocket URL: " .. url end
  local pathname = tail:match("^[^#?]*")
  if pathname ~= "" and sub(pathname, 1, 1) ~= "/" then return nil, "invalid WebSocket URL: " .. url end
  local tls = scheme == "wss"
  port = tonumber(port) or (tls and 443 or 80)
  if port < 1 or port > 65535 then return nil, "invalid port in WebSocket URL: " .. url end
  return { host = host, port = port, tls = tls, pathname = pathname }
end

---------------------------------------------------------------------------
-- Outgoing message tables (shared by wrapIo and connect)
---------------------------------------------------------------------------

-- Checks a message given to write() and fills in the original's defaults
-- (opcode 2, fin true). Wrong types and frames RFC 6455 forbids raise.
local function outgoing(message, level)
  if type(message) ~= "table" then
    fail_arg("write", "argument #1 'message'", "table or nil", type(message), level + 1)
  end
  local opcode = message.opcode
  if opcode == nil then opcode = 2 end
  if type(opcode) ~= "number" or opcode % 1 ~= 0 or not is_known(opcode) then
    fail_arg("write", "field 'opcode'", "0, 1, 2, 8, 9 or 10", tostring(opcode), level + 1)
  end
  local payload = message.payload
  if payload == nil then payload = "" end
  check_type("write", "field 'payload'", payload, "string", level + 1)
  local fin = message.fin ~= false
  if message.rsv1 or message.rsv2 or message.rsv3 then
    error("turbo_ws.coro_websocket.write: RSV bits need a negotiated extension", level + 1)
  end
  if is_control(opcode) and (#payload > 125 or not fin) then
    error("turbo_ws.coro_websocket.write: control frames must be whole and at most 125 bytes", level + 1)
  end
  if opcode == 8 and #payload == 1 then
    error("turbo_ws.coro_websocket.write: a close payload is empty or starts with a 2-byte code", level + 1)
  end
  return { fin = fin, rsv1 = false, rsv2 = false, rsv3 = false, opcode = opcode, payload = payload }
end

---------------------------------------------------------------------------
-- wrapIo
---------------------------------------------------------------------------

-- Starts the heartbeat: an empty unsolicited pong every `ms`, as the
-- original. The timer does not keep the loop alive. Returns a stop function.
local function start_heartbeat(ms, beat)
  local ref
  local function stop()
    if ref then core.clear_interval(ref); ref = nil end
  end
  ref = core.set_interval(ms, function()
    -- In its own coroutine, as the original: the write may yield.
    coroutine.wrap(function()
      local ok, err = beat()
      if not ok then
        stop()
        print(err)
      end
    end)()
  end, nil, false)
  return stop
end

-- A frame table from rawRead, checked and with websocket-codec's defaults
-- (fin true, no RSV bits); the program's table is not changed.
local function table_frame(f)
  if f == nil then return nil end
  if type(f) ~= "table" or type(f.opcode) ~= "number" or type(f.payload) ~= "string" then
    error("turbo_ws.coro_websocket.wrapIo: rawRead must return frame tables"
      .. " {opcode = number, payload = string, ...} or byte strings, got " .. type(f), 0)
  end
  return {
    fin = f.fin ~= false, rsv1 = f.rsv1 and true or false, rsv2 = f.rsv2 and true or false,
    rsv3 = f.rsv3 and true or false, opcode = f.opcode, mask = f.mask,
    len = #f.payload, payload = f.payload,
  }
end

-- wrapIo(rawRead, rawWrite, options) -> read, write
-- rawRead() returns decoded frame tables (the original's contract: a
-- websocket-codec decoder over a coro-channel) or byte strings, decoded here;
-- nil at the end. rawWrite(frame) gets frame tables, or bytes with
-- options.raw; rawWrite() ends the stream. options: mask (we are the client:
-- mask what we send, expect unmasked frames), heartbeat (ms), raw,
-- max_message_size, max_frame_size.
function M.wrapIo(rawRead, rawWrite, options)
  check_type("wrapIo", "argument #1 'rawRead'", rawRead, "function", 2)
  check_type("wrapIo", "argument #2 'rawWrite'", rawWrite, "function", 2)
  check_type("wrapIo", "argument #3 'options'", options, "table", 2, true)
  options = options or {}
  check_ms("wrapIo", "heartbeat", options.heartbeat, 2)
  local masking = options.mask and true or false
  local raw = options.raw and true or false
  local max_message_size = options.max_message_size or MAX_MESSAGE_SIZE
  check_type("wrapIo", "option 'max_message_size'", max_message_size, "number", 2)
  local max_frame_size = options.max_frame_size or math.min(MAX_FRAME_SIZE, max_message_size)
  check_type("wrapIo", "option 'max_frame_size'", max_frame_size, "number", 2)

  local close_sent, shut, ended, failure = false, false, false, nil
  local stop_heartbeat = function() end
  local feed = assembler(not masking, max_message_size)

  -- Frames come as tables, or as bytes we decode (decided per stream by
  -- what rawRead returns first).
  local next_frame
  local function first_frame()
    local item = rawRead()
    if type(item) == "string" then
      local pending = item
      next_frame = frame_reader(function()
        if pending then local p = pending; pending = nil; return p end
        return rawRead()
      end, max_frame_size)
      return next_frame()
    end
    next_frame = function() return table_frame(rawRead()) end
    return table_frame(item)
  end
  next_frame = first_frame

  local function send(frame)
    frame.mask = masking
    frame.len = #frame.payload
    return rawWrite(raw and M.encode(frame) or frame)
  end

  -- Sends a close frame, then ends our side of the stream, as the original.
  local function send_close(payload)
    close_sent = true
    stop_heartbeat()
    send({ fin = true, opcode = 8, payload = payload })
    shut = true
    return rawWrite()
  end

  -- The stream is over: every later read() returns nil at once.
  local function finish()
    ended = true
    stop_heartbeat()
    return nil, failure
  end

  -- The peer broke the protocol: tell it why (if we still may), end.
  local function fail(code, reason)
    failure = "protocol: " .. reason
    if not close_sent then send_close(be16(code)) end
    return finish()
  end

  local function write(msg)
    if msg == nil then
      if close_sent then return false, SHUTDOWN end
      return send_close("")
    end
    local frame = outgoing(msg, 2)
    if shut then return false, SHUTDOWN end
    if frame.opcode == 8 then
      if close_sent then return false, SHUTDOWN end
      local code = check_close_payload(frame.payload)
      if code then error("turbo_ws.coro_websocket.write: invalid close code or reason", 2) end
      return send_close(frame.payload)
    end
    return send(frame)
  end

  -- A control frame: answer it as the original does, and say whether the
  -- program sees it. Control frames after our close are not shown.
  local function control(frame)
    if frame.opcode == 8 then
      if close_sent then -- the reply to our close: the stream is over
        finish()
        return false
      end
      send_close(frame.payload)
      ended = true
      return true
    end
    if close_sent then return false end
    if frame.opcode == 9 then send({ fin = true, opcode = 10, payload = frame.payload }) end
    return true
  end

  local function read()
    if ended then return nil, failure end
    while true do
      local frame, code, reason = next_frame()
      if frame == false then return fail(code, reason) end
      if frame == nil then return finish() end
      local kind, a, b = feed(frame)
      if kind == "fail" then return fail(a, b) end
      if kind == "message" then return a end
      if kind == "control" then
        local shown = control(a)
        if shown then return message(a.opcode, a.payload, true, a.mask) end
        if ended then return nil, failure end
      end
    end
  end

  if options.heartbeat then
    stop_heartbeat = start_heartbeat(options.heartbeat, function()
      return write({ opcode = 10, payload = "" })
    end)
  end
  return read, write
end

---------------------------------------------------------------------------
-- connect: option checks
---------------------------------------------------------------------------

-- host, port from the options, as coro-net: host defaults to 127.0.0.1 when
-- only a port is given. Returns nil, message for what we cannot do (pipes).
local function target(options)
  local host, port = options.host, options.port
  if host == nil and port == nil then
    if options.path ~= nil then
      return nil, "unix pipe connections (options.path) are not supported by turbo_ws"
    end
    error("turbo_ws.coro_websocket.connect: must set either options.path or options.port", 3)
  end
  host = host or "127.0.0.1"
  if type(host) ~= "string" or host == "" then
    fail_arg("connect", "option 'host'", "non-empty string", type(host), 3)
  end
  if port == nil then
    error("turbo_ws.coro_websocket.connect: options.port is required for tcp connections", 3)
  end
  local n = tonumber(port)
  if not n or n % 1 ~= 0 or n < 1 or n > 65535 then
    fail_arg("connect", "option 'port'", "whole number from 1 to 65535", tostring(port), 3)
  end
  return host, n
end

-- ws(s)://host:port with IPv6 literals bracketed.
local function base_url(host, port, tls)
  if find(host, ":", 1, true) and sub(host, 1, 1) ~= "[" then host = "[" .. host .. "]" end
  return (tls and "wss://" or "ws://") .. host .. ":" .. port
end

-- The request target: sent as given; "" means "/"; a target that does not
-- start with "/" (e.g. "?v=6") gets one, since HTTP requires it.
local function request_path(pathname)
  if pathname == nil or pathname == "" then return "/" end
  check_type("connect", "option 'pathname'", pathname, "string", 4)
  if sub(pathname, 1, 1) ~= "/" then return "/" .. pathname end
  return pathname
end

local function request_headers(headers)
  if headers == nil then return nil end
  check_type("connect", "option 'headers'", headers, "table", 4)
  local out = {}
  for i = 1, #headers do
    local h = headers[i]
    if type(h) ~= "table" or type(h[1]) ~= "string"
      or (type(h[2]) ~= "string" and type(h[2]) ~= "number") then
      fail_arg("connect", "header #" .. i, "{name, value} of strings", type(h), 4)
    end
    out[i] = { h[1], tostring(h[2]) }
  end
  return out
end

-- luvit's secure-socket names (ca, cert, key, insecure) and the core's
-- (verify, ca_file, ca_path, cert_file, key_file) -> core tls options.
-- Verification stays on unless asked off (the original also turned it off
-- whenever a client key was given; we do not).
local function tls_options(tls)
  if tls == true then return {} end
  check_type("connect", "option 'tls'", tls, "table", 4)
  local out = {
    verify = tls.verify, ca_file = tls.ca_file, ca_path = tls.ca_path,
    cert_file = tls.cert_file or tls.cert, key_file = tls.key_file or tls.key,
  }
  local ca = tls.ca
  if type(ca) == "table" then ca = concat(ca, "\n") end
  if ca ~= nil then
    check_type("connect", "tls option 'ca'", ca, "string", 4)
    out.ca_file = out.ca_file or ca
  end
  if tls.insecure then out.verify = false end
  return out
end

-- The core's options for one connect.
local function core_options(options)
  local timeout = options.timeout or DEFAULT_TIMEOUT
  check_type("connect", "option 'subprotocol'", options.subprotocol, "string", 3, true)
  local opts = {
    path = request_path(options.pathname),
    headers = request_headers(options.headers),
    protocols = options.subprotocol,
    timeout = timeout / 1000,
  }
  if options.tls then opts.tls = tls_options(options.tls) end
  -- turbo_ws extensions: the core's size limits and compression, when given.
  for _, k in ipairs({ "max_message_size", "max_frame_size", "max_buffered", "permessage_deflate" }) do
    opts[k] = options[k]
  end
  return opts
end

-- The core's failure -> the message the original would give where it had
-- one (programs compare against "ECONNREFUSED" and "timeout").
local function failure_message(kind, msg, response)
  if kind == "refused" then return "ECONNREFUSED" end
  if kind == "connect_timeout" or kind == "handshake_timeout" then return "timeout" end
  if kind == "bad_status" and response then
    return ("response must be code 101 (got %s %s)"):format(response.status, response.reason or "")
  end
  return tostring(kind) .. ": " .. tostring(msg)
end

-- The original's Response: {code, reason, version, keepAlive, [i] = {name,
-- value}}; header names come lower-cased from the core.
local function response_table(response)
  local version = tonumber((response.version or ""):match("(%d+%.%d+)")) or 1.1
  local res = { code = response.status, reason = response.reason, version = version, keepAlive = version > 1.0 }
  for i, h in ipairs(response.headers or {}) do
    res[i] = { h[1], h[2] }
    if lower(h[1]) == "connection" then res.keepAlive = lower(h[2]) == "keep-alive" end
  end
  return res
end

-- Yields until core.connect reports; returns what on_done got.
local function await_connect(co, url, opts)
  local result, waiting
  core.connect(url, opts, function(...)
    result = { n = select("#", ...), ... }
    if waiting then resume(co) end
  end)
  while not result do
    waiting = true
    coroutine.yield()
    waiting = false
  end
  return unpack(result, 1, result.n)
end

---------------------------------------------------------------------------
-- connect: one open connection
---------------------------------------------------------------------------

-- State of one connection and the read/write/socket the program gets.
local function open_link(conn, heartbeat)
  local inbox, head, tail = {}, 1, 0 -- messages not read yet (a queue)
  local readers = {}              -- coroutines waiting in read(), FIFO
  local done = false              -- no more messages will come
  local close_sent = false        -- we closed (or the close was echoed)
  local failure                   -- "kind: message" if the connection failed
  local stop_heartbeat = function() end
  local on_closed = {}            -- socket:shutdown/close callbacks
  local senders = {}              -- coroutines waiting in write() for room

  local function wake_one()
    local co = table.remove(readers, 1)
    if co then resume(co) end
  end

  local function push(msg)
    tail = tail + 1
    inbox[tail] = msg
    wake_one()
  end

  local function closing()
    close_sent = true
    stop_heartbeat()
  end

  local function wake_senders()
    local waiting = senders
    senders = {}
    for _, co in ipairs(waiting) do resume(co) end
  end

  local callbacks = {
    on_message = function(data, binary) push(message(binary and 2 or 1, data)) end,
    -- The core has already answered the ping; the original shows it too.
    on_ping = function(data) if not close_sent then push(message(9, data)) end end,
    on_pong = function(data) if not close_sent then push(message(10, data)) end end,
    on_error = function(kind, msg) failure = failure or (tostring(kind) .. ": " .. tostring(msg)) end,
    on_close = function(code, reason)
      -- The peer's close is shown once the core has echoed it and the TCP
      -- connection is gone; a failure or a drop ends the stream with nil.
      if not close_sent and not failure and code ~= 1006 then
        push(message(8, code == 1005 and "" or be16(code) .. (reason or "")))
      end
      closing()
      done = true
      local waiting = readers
      readers = {}
      for _, co in ipairs(waiting) do resume(co) end
      wake_senders()
      for _, fn in ipairs(on_closed) do fn() end
    end,
    on_drain = wake_senders,
  }
  conn:set_callbacks(callbacks)

  local function read()
    local co = need_coroutine("read", 2)
    while true do
      local msg = inbox[head]
      if msg then
        inbox[head] = nil
        head = head + 1
        return msg
      end
      if done then return nil, failure end
      readers[#readers + 1] = co
      coroutine.yield()
      for i = #readers, 1, -1 do -- resumed by someone else: stop waiting
        if readers[i] == co then table.remove(readers, i) end
      end
    end
  end

  -- The core's answer -> true | false, message. (close() returns nothing.)
  local function result(ok, kind, msg)
    if ok or (ok == nil and kind == nil) then return true end
    if kind == "closed" then return false, SHUTDOWN end
    return false, tostring(kind) .. ": " .. tostring(msg)
  end

  -- Calls a core send-like method; its misuse errors (e.g. invalid UTF-8
  -- in a text message, a close code that may not be sent) become write()'s.
  local function call(level, method, ...)
    local ok, a, b, c = pcall(conn[method], conn, ...)
    if not ok then error("turbo_ws.coro_websocket.write: " .. tostring(a), level + 1) end
    return result(a, b, c)
  end

  -- Marks the connection closed only once the core took the close (it
  -- raises for a code that may not be sent, and then nothing changed).
  local function send_close(payload)
    if close_sent or done then return false, SHUTDOWN end
    local ok, err
    if payload == "" then
      ok, err = call(3, "close", false) -- an empty close frame, as the original
    else
      ok, err = call(3, "close", byte(payload, 1) * 256 + byte(payload, 2), sub(payload, 3))
    end
    closing()
    return ok, err
  end

  -- One whole message. While the peer does not read (the core refuses
  -- past max_buffered), the writing coroutine waits for the queue to drain,
  -- as the original's write waits for libuv: backpressure, nothing lost.
  local function send_message(payload, binary)
    while true do
      local ok, a, kind, msg = pcall(conn.send, conn, payload, binary)
      if not ok then error("turbo_ws.coro_websocket.write: " .. tostring(a), 4) end
      local co, main = coroutine.running()
      if kind ~= "too_big" or not co or main or close_sent or done or conn:state() ~= "open" then
        return result(a, kind, msg)
      end
      senders[#senders + 1] = co
      coroutine.yield()
      for i = #senders, 1, -1 do -- resumed by someone else: stop waiting
        if senders[i] == co then table.remove(senders, i) end
      end
    end
  end

  -- fin = false frames are collected and sent as one message when the last
  -- one comes (the core sends whole messages; the peer sees the same data).
  local fragments
  local function send_data(frame)
    if frame.opcode == 0 and not fragments then
      error("turbo_ws.coro_websocket.write: continuation frame without a started message", 3)
    elseif frame.opcode ~= 0 and fragments then
      error("turbo_ws.coro_websocket.write: new message while a fragmented one is unfinished", 3)
    end
    if frame.opcode ~= 0 then fragments = { opcode = frame.opcode } end
    fragments[#fragments + 1] = frame.payload
    if not frame.fin then return true end
    local whole = fragments
    fragments = nil
    return send_message(concat(whole), whole.opcode == 2)
  end

  local function write(msg)
    if msg == nil then return send_close("") end
    local frame = outgoing(msg, 2)
    if frame.opcode == 8 then return send_close(frame.payload) end
    if close_sent or done then return false, SHUTDOWN end
    if frame.opcode == 9 then return call(2, "ping", frame.payload) end
    if frame.opcode == 10 then return call(2, "pong", frame.payload) end
    return send_data(frame)
  end

  -- Stands in for the original's uv_tcp_t (res.socket).
  local socket = {}
  local function when_closed(cb)
    if type(cb) ~= "function" then return end
    if done then core.add_callback(cb) else on_closed[#on_closed + 1] = cb end
  end
  -- Ends the connection cleanly: a close frame (1000); read() then returns nil.
  function socket.shutdown(_, cb)
    if not close_sent and not done then closing(); conn:close() end
    when_closed(cb)
    return true
  end
  -- Drops the TCP connection at once; pending read()s return nil.
  function socket.close(_, cb)
    closing()
    if not done then conn:abort() end
    when_closed(cb)
  end
  function socket.is_closing() return close_sent or done end
  -- turbo_ws extension: bytes queued for sending, not yet on the socket.
  function socket.buffered_amount() return conn:buffered_amount() end
  -- The peer's address; nil until the core has it (from the first loop
  -- turn after connect returned).
  function socket.getpeername()
    local ip, port = conn:remote_address()
    if not ip then return nil end
    return { ip = ip, port = port, family = find(ip, ":", 1, true) and "inet6" or "inet" }
  end

  if heartbeat then
    stop_heartbeat = start_heartbeat(heartbeat, function()
      if close_sent or done then return false, SHUTDOWN end
      return result(conn:pong(""))
    end)
  end
  return read, write, socket
end

---------------------------------------------------------------------------
-- connect
---------------------------------------------------------------------------

-- connect(options) -> res, read, write | nil, message, kind
-- Must run in a coroutine; yields until the handshake is done.
function M.connect(options)
  check_type("connect", "argument #1 'options'", options, "table", 2)
  check_ms("connect", "timeout", options.timeout, 2)
  check_ms("connect", "heartbeat", options.heartbeat, 2)
  local host, port = target(options)
  if not host then return nil, port end
  local url = base_url(host, port, options.tls)
  local opts = core_options(options)
  local co = need_coroutine("connect", 2)

  local conn, kind, msg, response = await_connect(co, url, opts)
  if not conn then return nil, failure_message(kind, msg, response), kind end
  local res = response_table(kind)
  local read, write, socket = open_link(conn, options.heartbeat)
  res.socket = socket
  -- Return at once, inside on_done: frames that came with the 101 are then
  -- handed to the program (which may answer them) in order, before the core
  -- goes on with whatever follows them.
  return res, read, write
end

--- turbo_ws extension: graceful stop of every connection (close 1001) and
-- server, then on_done(); see docs/core.md.
M.shutdown = core.shutdown

return M
