-- turbo_ws.coro_websocket: luvit's `coro-websocket` API ({connect, wrapIo,
-- parseUrl}) so that programs written for it run unchanged.
--
-- connect() rides on turbo_ws.core: Rust does the sockets (TCP or a Unix
-- socket), TLS, handshake, framing and RFC 6455 checks; this file only turns
-- the core's callbacks into coroutine-style read()/write(). wrapIo() works
-- over functions the program supplies, with the original's semantics: the
-- frames are the program's decoder's, so it hands them on unchecked.
-- Deliberate differences from the original are listed in docs/coro-websocket.md.
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local fast_send = require "turbo_ws.fast_send"

local sub, find, lower = string.sub, string.find, string.lower
local concat = table.concat
local unpack = rawget(table, "unpack") or unpack

local M = {}

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

-- A positive number of milliseconds (timeout, heartbeat) or nil; at most
-- 1e12 (the core's bound, 1e9 seconds).
local function check_ms(fname, name, value, level)
  if value == nil then return end
  if type(value) ~= "number" or value <= 0 or value ~= value or value > 1e12 then
    fail_arg(fname, "option '" .. name .. "'", "positive number of milliseconds up to 1e12",
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

-- Resumes a waiting coroutine; an error in it is reported, and the other
-- connections go on.
local function resume(co) toolkit.wake("turbo_ws.coro_websocket", co) end

-- Waits in `list` (of readers or senders) until resumed, then leaves it:
-- whoever resumed it may not have taken it out.
local function wait_in(list, co)
  list[#list + 1] = co
  coroutine.yield()
  for i = #list, 1, -1 do
    if list[i] == co then table.remove(list, i) end
  end
end

-- Resumes every coroutine waiting in `list`. From a copy: each one
-- resumed takes itself out of `list` (wait_in), which would make a loop
-- over `list` itself skip the next.
local function wake_all(list)
  local waiting = {}
  for i = 1, #list do waiting[i] = list[i] end
  for i = 1, #waiting do resume(waiting[i]) end
end

---------------------------------------------------------------------------
-- Message tables
---------------------------------------------------------------------------

local function is_control(opcode) return opcode >= 8 end
local function is_known(opcode) return opcode <= 2 or (opcode >= 8 and opcode <= 10) end

-- The message table the program reads (websocket-codec's shape; servers
-- do not mask, and the core hands over whole messages).
local function message(opcode, payload)
  return {
    fin = true, rsv1 = false, rsv2 = false, rsv3 = false,
    opcode = opcode, mask = false, len = #payload, payload = payload,
  }
end

---------------------------------------------------------------------------
-- parseUrl
---------------------------------------------------------------------------

local URL_ERROR = "Sorry, only ws:// or wss:// protocols supported"

-- "ws://host:port/path?query" -> {host, port, tls, pathname}, as the
-- original: ws/wss only (case-sensitive), default ports 80/443, pathname
-- without query or fragment ("" when the URL has no path). The core
-- splits the URL; unlike the original, IPv6 literals work, and a URL
-- whose port or path cannot be right (ws://h:abc/, ws://h:99999/) is
-- refused instead of mis-parsed.
function M.parseUrl(url)
  check_type("parseUrl", "argument #1 'url'", url, "string", 2)
  local parts = core.split_url(url)
  if not parts then return nil, "invalid WebSocket URL: " .. url end
  -- What the original refused (other schemes, no host) keeps its message.
  local scheme, host = parts.scheme, parts.host
  if (scheme ~= "ws" and scheme ~= "wss") or not host or host == "" then return nil, URL_ERROR end
  local tls = scheme == "wss"
  local port = tonumber(parts.port) or (tls and 443 or 80)
  if port == 0 then return nil, "invalid port in WebSocket URL: " .. url end
  return { host = host, port = port, tls = tls, pathname = parts.path }
end

---------------------------------------------------------------------------
-- Outgoing message tables (connect)
---------------------------------------------------------------------------

-- Checks a message given to write() and fills in the original's defaults
-- (opcode 2, fin true). Wrong types and frames RFC 6455 forbids raise.
-- Returns opcode, payload, fin (values, not a table: this runs for every
-- message written).
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
  return opcode, payload, fin
end

---------------------------------------------------------------------------
-- Heartbeat (connect and wrapIo)
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

---------------------------------------------------------------------------
-- wrapIo
---------------------------------------------------------------------------

-- wrapIo(rawRead, rawWrite [, options]) -> read, write, with the original's
-- semantics. rawRead() returns frame tables from the program's own decoder
-- (nil or false at the end); they are handed on as they are, unchecked: the
-- wire is the program's, and so are RFC 6455's rules on it. rawWrite(frame)
-- gets the frames we send, with `mask = options.mask`; rawWrite() ends the
-- stream. options: mask, heartbeat (ms).
function M.wrapIo(rawRead, rawWrite, options)
  check_type("wrapIo", "argument #1 'rawRead'", rawRead, "function", 2)
  check_type("wrapIo", "argument #2 'rawWrite'", rawWrite, "function", 2)
  check_type("wrapIo", "argument #3 'options'", options, "table", 2, true)
  options = options or {}
  check_ms("wrapIo", "heartbeat", options.heartbeat, 2)

  local close_sent, ended = false, false
  local stop_heartbeat = function() end

  -- The program's table goes to rawWrite itself, its `mask` overwritten,
  -- as the original. A close also ends our side of the stream.
  local function write(msg)
    if msg == nil then
      if not close_sent then return write({ opcode = 8, payload = "" }) end
      return rawWrite()
    end
    if type(msg) ~= "table" then
      fail_arg("write", "argument #1 'message'", "table or nil", type(msg), 2)
    end
    msg.mask = options.mask
    if msg.opcode == 8 then
      close_sent = true
      rawWrite(msg)
      stop_heartbeat()
      return rawWrite()
    end
    return rawWrite(msg)
  end

  -- Data frames (opcode < 8) are returned as rawRead gives them. A control
  -- frame before our close is answered (close: echoed, which ends our side;
  -- ping: a pong) and returned; after our close control frames are not
  -- shown, while data frames still are, until rawRead ends.
  local function read()
    if ended then return nil end
    while true do
      local frame = rawRead()
      if not frame then
        ended = true
        stop_heartbeat()
        return nil
      end
      if type(frame) ~= "table" or type(frame.opcode) ~= "number" then
        error("turbo_ws.coro_websocket.read: rawRead must return frame tables"
          .. " ({opcode = number, payload = string, ...}) or nil, got " .. type(frame), 2)
      end
      if frame.opcode < 8 then return frame end
      if not close_sent then
        if frame.opcode == 8 then
          write({ opcode = 8, payload = frame.payload })
        elseif frame.opcode == 9 then
          write({ opcode = 10, payload = frame.payload })
        end
        return frame
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

-- ws(s)://host:port with IPv6 literals bracketed.
local function base_url(host, port, tls)
  return (tls and "wss://" or "ws://") .. toolkit.url_host(host) .. ":" .. port
end

-- A pipe, as coro-net: options.path when neither host nor port is given.
-- Returns the core's URL (it only names the request) and the socket path.
local function pipe_target(options)
  local path = options.path
  if path == nil then
    error("turbo_ws.coro_websocket.connect: must set either options.path or options.port", 4)
  end
  if type(path) ~= "string" or path == "" then
    fail_arg("connect", "option 'path'", "non-empty string", path == "" and "an empty one" or type(path), 4)
  end
  if options.tls then
    error("turbo_ws.coro_websocket.connect: option 'tls' cannot be used with option 'path'"
      .. " (turbo_ws has no TLS over a Unix socket)", 4)
  end
  return "ws://localhost", path
end

-- Where to connect, as coro-net decides: TCP when host or port is given
-- (host defaults to 127.0.0.1 when only a port is), else the Unix socket
-- at options.path. Returns the core's URL and the socket path (pipes only).
local function target(options)
  local host, port = options.host, options.port
  if host == nil and port == nil then
    -- Not a tail call: its errors name connect's caller at a fixed level.
    local url, socket_path = pipe_target(options)
    return url, socket_path
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
  return base_url(host, n, options.tls)
end

-- The value of header `name` (lower-case) in a {{name, value}, ...} list,
-- whatever its spelling there.
local function header_value(list, name)
  for _, h in ipairs(list or {}) do
    if lower(h[1]) == name then return h[2] end
  end
  return nil
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

-- The core's options for one connect (socket_path: a pipe's).
local function core_options(options, socket_path)
  local timeout = options.timeout or DEFAULT_TIMEOUT
  check_type("connect", "option 'subprotocol'", options.subprotocol, "string", 3, true)
  -- Written into the request head: one RFC 6455 token, nothing else.
  if options.subprotocol and not core.valid_token(options.subprotocol) then
    fail_arg("connect", "option 'subprotocol'", "a subprotocol name (a token)",
      ("%q"):format(options.subprotocol), 3)
  end
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
  if socket_path then
    opts.unix_socket = socket_path
    -- The original sends no Host to a pipe, which has no host name; HTTP/1.1
    -- wants one, empty when the target has no authority (RFC 9112 3.2).
    if not header_value(opts.headers, "host") then
      opts.headers = opts.headers or {}
      opts.headers[#opts.headers + 1] = { "Host", "" }
    end
  end
  return opts
end

-- The original's Response: {code, reason, version, keepAlive, [i] = {name,
-- value}}, headers in the server's order and spelling (as from the core).
local function response_table(response)
  local version = tonumber((response.version or ""):match("(%d+%.%d+)")) or 1.1
  local res = { code = response.status, reason = response.reason, version = version, keepAlive = version > 1.0 }
  for i, h in ipairs(response.headers or {}) do
    res[i] = { h[1], h[2] }
    if lower(h[1]) == "connection" then res.keepAlive = lower(h[2]) == "keep-alive" end
  end
  return res
end

-- What follows "Invalid request: " for a 400, as the original reads it
-- (http-codec): the body; "" for a body known to be empty; the reason
-- phrase when the body runs to the end of the stream and none came.
local function refusal_text(response)
  local body = response.body or ""
  if body ~= "" then return body end
  local headers = response.headers
  if header_value(headers, "content-length") or header_value(headers, "transfer-encoding")
    or response_table(response).keepAlive then
    return ""
  end
  return response.reason or ""
end

-- The original's texts for the 101 checks it makes, by the core's detail.
local HANDSHAKE_MESSAGES = {
  connection = "Invalid or missing connection upgrade header in response",
  upgrade = "Invalid or missing connection upgrade header in response",
  accept = "challenge key missing or mismatched",
  protocol = "protocol missing or mistmatched", -- sic, as the original
}

-- The core's failure -> the original's message for it (programs compare
-- against them), else "<kind>: <core message>". luv names a refusal by
-- its error name alone, as it does for every callback error.
local function failure_message(kind, msg, response, detail)
  if kind == "refused" then return "ECONNREFUSED" end
  if kind == "bad_handshake" and HANDSHAKE_MESSAGES[detail] then return HANDSHAKE_MESSAGES[detail] end
  if kind == "connect_timeout" or kind == "handshake_timeout" then return "timeout" end
  if kind == "no_response" then return "Missing server response" end
  if kind == "bad_status" and response then
    if response.status == 400 then return "Invalid request: " .. refusal_text(response) end
    return "response must be code 101"
  end
  return tostring(kind) .. ": " .. tostring(msg)
end

-- Why the last connect() of each coroutine failed: {kind, message, response}.
local failures = setmetatable({}, { __mode = "k" })

--- turbo_ws extension: why the calling coroutine's last connect() failed:
-- the core's error kind, its message and the server's response table (when
-- it answered); nil if that connect succeeded or none was made.
function M.last_error()
  local failure = failures[coroutine.running() or false]
  if not failure then return nil end
  return failure.kind, failure.message, failure.response
end

-- Yields until core.connect reports; returns what on_done got.
local function await_connect(co, url, opts)
  local result, waiting
  local ok, err = pcall(core.connect, url, opts, function(...)
    result = { n = select("#", ...), ... }
    if waiting then resume(co) end
  end)
  if not ok then
    -- The core's misuse error (a bad header), in the words of this call.
    error("turbo_ws.coro_websocket.connect: " .. toolkit.core_refusal(err, "connect"), 3)
  end
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
local function open_link(conn, heartbeat, socket_path)
  local inbox = toolkit.queue(conn) -- messages not read yet
  local readers = {}              -- coroutines waiting in read(), FIFO
  local done = false              -- no more messages will come
  local close_sent = false        -- we closed (or the close was echoed)
  local close_written = false     -- write() sent a close (the original's closeSent)
  local failure                   -- "kind: message" if the connection failed
  local stop_heartbeat = function() end
  local on_closed = {}            -- socket:shutdown/close callbacks
  local senders = {}              -- coroutines waiting in write() for room

  local function wake_one()
    local co = table.remove(readers, 1)
    if co then resume(co) end
  end

  -- As luvit's coro-channel, which stops reading the socket while a
  -- message waits with no reader (toolkit.queue's hold_back).
  local function push(msg)
    inbox:push(msg)
    wake_one()
    inbox:hold_back()
  end

  local function closing()
    close_sent = true
    stop_heartbeat()
  end

  local function wake_senders() wake_all(senders) end

  local callbacks = {
    on_message = function(data, binary) push(message(binary and 2 or 1, data)) end,
    -- The core has already answered the ping; the original shows it too.
    on_ping = function(data) if not close_sent then push(message(9, data)) end end,
    on_pong = function(data) if not close_sent then push(message(10, data)) end end,
    on_error = function(kind, msg)
      if not failure then failure = tostring(kind) .. ": " .. tostring(msg) end
    end,
    -- The peer's close frame, returned as it arrives (the core has queued
    -- our echo), as the original reads it off the socket: a server that
    -- holds TCP open afterwards delays only the end of the stream.
    on_closing = function(code, reason)
      if not close_sent then push(message(8, toolkit.close_payload(code, reason))) end
      closing()
    end,
    on_close = function()
      -- A failure or a drop ends the stream with nil.
      closing()
      done = true
      wake_all(readers)
      wake_senders()
      for _, fn in ipairs(on_closed) do fn() end
    end,
    on_drain = wake_senders,
  }
  conn:set_callbacks(callbacks)

  -- After write() closed, the original reads on but swallows control
  -- frames: also those that came before and wait unread here (pushing
  -- filters only those that come later).
  local function swallowed(msg)
    return close_written and is_control(msg.opcode)
  end

  local function read()
    local co = need_coroutine("read", 2)
    while true do
      local msg = inbox:pop()
      if msg then
        if not swallowed(msg) then return msg end
      elseif done then
        return nil, failure
      else
        wait_in(readers, co)
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
    if not ok then error("turbo_ws.coro_websocket.write: " .. toolkit.core_reason(a), level + 1) end
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
      ok, err = call(3, "close", toolkit.split_close_payload(payload))
    end
    close_written = true
    closing()
    return ok, err
  end

  -- One whole message. While the peer does not read (the core refuses
  -- past max_buffered), the writing coroutine waits for the queue to drain,
  -- as the original's write waits for libuv: backpressure, nothing lost.
  local send_handle = fast_send and conn:_send_handle()
  local function send_message(payload, binary)
    -- The common case, queued at once (see turbo_ws.fast_send).
    if send_handle and type(payload) == "string"
       and fast_send(send_handle, payload, #payload, binary and 1 or 0) == 0 then
      return true
    end
    while true do
      local ok, a, kind, msg = pcall(conn.send, conn, payload, binary)
      if not ok then error("turbo_ws.coro_websocket.write: " .. toolkit.core_reason(a), 4) end
      local co, main = coroutine.running()
      if kind ~= "too_big" or not co or main or close_sent or done or conn:state() ~= "open" then
        return result(a, kind, msg)
      end
      wait_in(senders, co)
    end
  end

  -- fin = false frames are collected and sent as one message when the last
  -- one comes (the core sends whole messages; the peer sees the same data).
  -- A whole message (the common case) is sent as it is, with no table.
  local fragments
  local function send_data(opcode, payload, fin)
    if opcode == 0 and not fragments then
      error("turbo_ws.coro_websocket.write: continuation frame without a started message", 3)
    elseif opcode ~= 0 and fragments then
      error("turbo_ws.coro_websocket.write: new message while a fragmented one is unfinished", 3)
    end
    if fin and opcode ~= 0 then return send_message(payload, opcode == 2) end
    if opcode ~= 0 then fragments = { opcode = opcode } end
    fragments[#fragments + 1] = payload
    if not fin then return true end
    local whole = fragments
    fragments = nil
    return send_message(concat(whole), whole.opcode == 2)
  end

  local function write(msg)
    if msg == nil then return send_close("") end
    local opcode, payload, fin = outgoing(msg, 2)
    if opcode == 8 then return send_close(payload) end
    if close_sent or done then return false, SHUTDOWN end
    if opcode == 9 then return call(2, "ping", payload) end
    if opcode == 10 then return call(2, "pong", payload) end
    return send_data(opcode, payload, fin)
  end

  -- Stands in for the original's uv_tcp_t (res.socket).
  local socket = {}
  -- As luv's: the callback is optional, anything else is misuse.
  local function check_callback(fname, cb)
    check_type("socket:" .. fname, "argument #1 'callback'", cb, "function", 2, true)
  end
  local function when_closed(cb)
    if cb == nil then return end
    if done then core.add_callback(cb) else on_closed[#on_closed + 1] = cb end
  end
  -- Ends the connection cleanly: a close frame (1000); read() then returns nil.
  function socket.shutdown(_, cb)
    check_callback("shutdown", cb)
    if not close_sent and not done then closing(); conn:close() end
    when_closed(cb)
    return true
  end
  -- Drops the TCP connection at once; pending read()s return nil.
  function socket.close(_, cb)
    check_callback("close", cb)
    closing()
    if not done then conn:abort() end
    when_closed(cb)
  end
  function socket.is_closing() return close_sent or done end
  -- turbo_ws extension: bytes queued for sending, not yet on the socket.
  function socket.buffered_amount() return conn:buffered_amount() end
  -- The peer's address; nil until the core has it (from the first loop
  -- turn after connect returned). For a pipe, its path (as luv's
  -- pipe:getpeername()).
  function socket.getpeername()
    if socket_path then return socket_path end
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

-- connect(options) -> res, read, write | nil, message (the original's
-- two values; M.last_error() tells the kind). Must run in a coroutine;
-- yields until the handshake is done.
function M.connect(options)
  check_type("connect", "argument #1 'options'", options, "table", 2)
  check_ms("connect", "timeout", options.timeout, 2)
  check_ms("connect", "heartbeat", options.heartbeat, 2)
  local url, socket_path = target(options)
  local opts = core_options(options, socket_path)
  local co = need_coroutine("connect", 2)

  failures[co] = nil
  local conn, kind, msg, response, detail = await_connect(co, url, opts)
  if not conn then
    failures[co] = { kind = kind, message = msg, response = response }
    return nil, failure_message(kind, msg, response, detail)
  end
  local res = response_table(kind)
  local read, write, socket = open_link(conn, options.heartbeat, socket_path)
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
