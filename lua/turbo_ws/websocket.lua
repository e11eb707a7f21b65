--- turbo_ws.websocket -- Turbo.lua's turbo.websocket on turbo_ws.core.
--
--   WebSocketStream   mixin: write_message, ping, pong, close, closed
--   WebSocketHandler  a web.RequestHandler that upgrades: open(...),
--                     on_message(msg, binary), on_close(code, reason),
--                     on_error(msg), prepare(), subprotocol(protocols);
--                     self.stream is a WebSocketIOStream
--                     (turbo_ws.websocket_stream)
--   WebSocketClient   WebSocketClient(address, kwargs) with Turbo's kwargs
--                     and callbacks (each receiving the instance first)
--   errors, opcode, MAGIC
--
-- The core does the bytes (framing, masking, UTF-8, close handshake, TLS);
-- this file maps Turbo's classes and callbacks onto it. Unlike Turbo, the
-- client constructor never yields: it returns at once and everything,
-- modify_headers included, happens on the loop. Messages written before
-- the connection is open are queued and sent right after on_connect, which
-- is when they would have gone out in Turbo (whose constructor returned
-- only once connected). Deliberate differences: docs/turbo-differences.md.

local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local class = require "turbo_ws.class"
local web = require "turbo_ws.web"
local httputil = require "turbo_ws.httputil"
local escape = require "turbo_ws.escape"
local log = require "turbo_ws.log"
local util = require "turbo_ws.util"
local clientutil = require "turbo_ws.clientutil"
local WebSocketIOStream = require "turbo_ws.websocket_stream"
local fast_send = require "turbo_ws.fast_send"

local type, tostring, error, ipairs, pairs, select, rawget, rawset, getmetatable, setmetatable =
      type, tostring, error, ipairs, pairs, select, rawget, rawset, getmetatable, setmetatable
local sformat, slower, sfind = string.format, string.lower, string.find
local concat = table.concat
local unpack = unpack or table.unpack
local caught, txpcall = toolkit.caught, toolkit.xpcall

local websocket = {}

websocket.MAGIC = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

websocket.opcode = {
  CONTINUE = 0x0,
  TEXT = 0x1,
  BINARY = 0x2,
  CLOSE = 0x8,
  PING = 0x9,
  PONG = 0xA,
}

--- Codes passed as the first argument of the client's on_error (Turbo's
-- values; the same table as async.errors, from turbo_ws.clientutil).
websocket.errors = clientutil.errors
local errors = websocket.errors
local error_code = clientutil.error_code
websocket._error_code = error_code

--------------------------------------------------------------------------
-- Calling user code

-- Calls fn(...); returns true, or false and {message, trace}.
local function try(fn, ...) return txpcall(fn, caught, ...) end

-- Closes a core connection unless it is already closing.
local function close_conn(conn, code, reason)
  if conn and conn:state() ~= "closing" and conn:state() ~= "closed" then
    conn:close(code, reason)
  end
end

-- Messages are handled one after another per connection, as in Turbo,
-- which read the next frame only once on_message had returned. `running`
-- is the stream whose on_message call has not returned yet: when the core
-- delivers anything while it is set, that call was suspended (it yielded),
-- so its stream stops reading (conn:pause_reading: the peer is held back
-- by TCP, as Turbo held it) and gets a list in `suspended` for what was
-- already on its way; once the call returns, the list is delivered and the
-- stream reads again. The common case, a call that returns with no call
-- suspended anywhere, costs two variables (a lookup keyed by a table is a
-- C call for LuaJIT's interpreter). Weak keys: a call suspended for good
-- does not keep its stream (nor is it counted off: `n_suspended` then only
-- costs that lookup).
local suspended = setmetatable({}, { __mode = "k" })
local n_suspended = 0
local running = nil

local function note_suspended()
  local stream = running
  running = nil
  if suspended[stream] == nil then
    suspended[stream] = {}
    n_suspended = n_suspended + 1
    local conn = stream._conn
    if conn then conn:pause_reading() end
  end
end

-- A message for a stream whose earlier call is suspended: it waits.
local function hold(self, data, binary)
  local held = suspended[self]
  held[#held + 1] = { data, binary }
end

-- After a call of deliver(self, ...) that was suspended and has now
-- returned: the messages held meanwhile, in order (one whose call is
-- suspended again holds up the rest, reading still paused), then reading.
local function deliver_held(self, deliver)
  local held = suspended[self]
  if not held then return end
  local i = 1
  while held[i] do
    -- Another stream's call may be suspended in `running` (it yielded
    -- while this one was): noted before it is overwritten.
    if running ~= nil and running ~= self then note_suspended() end
    running = self
    deliver(self, held[i][1], held[i][2])
    if running == self then running = nil end
    i = i + 1
  end
  suspended[self] = nil
  n_suspended = n_suspended - 1
  local conn = self._conn
  if conn then conn:resume_reading() end
end

-- (Each on_message callback below inlines the common case, a call that
-- returns: `running` set around it.)

--------------------------------------------------------------------------
-- WebSocketStream mixin. Both classes keep the core connection in
-- self._conn (nil until open) and self._closed once close() was called or
-- the connection ended.

websocket.WebSocketStream = {}
local Stream = websocket.WebSocketStream

-- A ping's or pong's payload, checked at the call in every state (the
-- core would refuse it too once open, naming its own method).
local function check_control(op, data)
  if type(data) ~= "string" then
    error(op .. ": bad argument #1 'data' (string expected, got " .. type(data) .. ")", 3)
  elseif #data > 125 then
    error(op .. ": bad argument #1 'data' (control frame payload is " .. #data
      .. " bytes, at most 125 allowed)", 3)
  end
end

-- Runs conn:<op>(...) now, or queues it until the connection opens. The
-- queue takes what the connection's send buffer would (the face's
-- max_buffered; a message into an empty queue always), and refuses the
-- rest the same way: nil, "too_big", message.
function Stream:_send(op, ...)
  local conn = self._conn
  if conn then return conn[op](conn, ...) end
  local queue = self._queue
  if not queue then queue = { bytes = 0 }; self._queue = queue end
  local data = ...
  local size = type(data) == "string" and #data or 0
  if #queue > 0 and queue.bytes + size > web._MAX_BUFFERED then
    return nil, "too_big", sformat("send buffer full (%d bytes queued before the connection opened, "
      .. "limit max_buffered = %d)", queue.bytes, web._MAX_BUFFERED)
  end
  queue.bytes = queue.bytes + size
  queue[#queue + 1] = { op, select("#", ...), ... }
  return true
end

-- Sends what was written before the connection opened. What the
-- connection refuses (a smaller max_buffered than the face's) is
-- reported as a refused write_message, not dropped silently.
function Stream:_flush_queue()
  local queue, conn = self._queue, self._conn
  if not queue then return end  -- (see NOTE on nil fields in web.lua)
  self._queue = nil
  if not conn then return end
  for i, item in ipairs(queue) do
    local ok, kind, message = conn[item[1]](conn, unpack(item, 3, 2 + item[2]))
    if ok == nil and kind == "too_big" then
      return self:_send_refused(sformat("%d of the messages written before the connection opened "
        .. "were not sent: %s", #queue - i + 1, tostring(message)))
    end
  end
end

--- Sends a text message, or a binary one when `binary` is true. A table is
-- sent as JSON. Raises once the stream is closed. Returns the core's
-- result: true, or nil, "too_big", message when the send buffer is full.
local CLOSED_WRITE = "WebSocket connection has been closed. Can not write message."

function Stream:write_message(msg, binary)
  if rawget(self, "_closed") and not self:_dropped() then error(CLOSED_WRITE, 2) end
  if type(msg) == "table" then msg = escape.json_encode(msg) end
  if type(msg) ~= "string" then
    error("write_message: string or table expected, got " .. type(msg), 2)
  end
  -- The common case, queued at once (see turbo_ws.fast_send); anything
  -- else takes conn:send below, which says why.
  local handle = self._send_handle
  if handle and fast_send(handle, msg, #msg, binary and 1 or 0) == 0 then
    return true, nil, nil
  end
  -- What the core would refuse, in this method's words: after fast_send
  -- refused, and for a message queued before the connection opens
  -- (instead of failing when the queue is sent). Not where conn:send is
  -- the only path (no fast_send: Lua 5.1/5.4), which checks it anyway.
  if not binary and (handle or not self._conn) and not core.valid_utf8(msg) then
    error("write_message: a text message must be valid UTF-8 (send it as binary)", 2)
  end
  -- The core refuses sends once the connection is closing; asking it is
  -- cheaper than asking for its state before every message.
  local ok, kind, message = self:_send("send", msg, binary and true or false)
  if ok == nil then
    if kind == "closed" then
      -- After self.stream:close() writes are dropped silently, as in Turbo.
      if not self:_dropped() then error(CLOSED_WRITE, 2) end
    else
      -- Refused for a peer that does not read: never dropped silently.
      self:_send_refused(message)
    end
  end
  return ok, kind, message
end


--- Sends a ping. The next pong calls callback(callback_arg, data) when an
-- argument was given, else callback(data); a later ping replaces the
-- callback. Does nothing once closed.
function Stream:ping(data, callback, callback_arg)
  -- Checked here, in every state: else the pong would run it and fail the
  -- connection (1011) far from the mistake. false counts as none, as in Turbo.
  if callback and type(callback) ~= "function" then
    error("ping: bad argument #2 'callback' (function expected, got " .. type(callback) .. ")", 2)
  end
  data = data or ""
  check_control("ping", data)
  if self:closed() then return end
  self._ping_callback = callback
  self._ping_callback_arg = callback_arg
  return self:_send("ping", data)
end

--- Sends an unsolicited pong. Does nothing once closed.
function Stream:pong(data)
  data = data or ""
  check_control("pong", data)
  if self:closed() then return end
  return self:_send("pong", data)
end

--- Starts the closing handshake (code 1000 unless given; `code` and
-- `reason` are turbo_ws extensions). Closing twice is harmless.
function Stream:close(code, reason)
  if self._closed then return end
  -- Checked first: a code that may not be sent raises and leaves the stream open.
  if code ~= nil and type(code) ~= "number" then
    error("close: bad argument #1 'code' (number expected, got " .. type(code) .. ")", 2)
  end
  if code ~= nil and not core.valid_close_code(code) then
    error("close: bad argument #1 'code' (" .. tostring(code) .. " is not a close code an endpoint may send)", 2)
  end
  if reason ~= nil and (type(reason) ~= "string" or #reason > 123) then
    error("close: bad argument #2 'reason' (a string of at most 123 bytes expected)", 2)
  end
  -- Also checked by the core, but only once connected: before, a close()
  -- cancels the connect and sends nothing, and the same call must raise too.
  if reason ~= nil and not core.valid_utf8(reason) then
    error("close: bad argument #2 'reason' (invalid UTF-8)", 2)
  end
  -- The core checks the rest before anything changes here: a refused close
  -- leaves the stream open and usable.
  -- Messages written before the connection opened go first (a close in
  -- on_connect comes before the queue is sent), as the core sends queued
  -- messages before its close frame.
  if self._conn then self:_flush_queue() end
  local ok, err = pcall(close_conn, self._conn, code or 1000, reason)
  if not ok then error("close: " .. toolkit.core_reason(err), 2) end
  self._closed = true
  self._queue = nil
end

--- turbo_ws extension: bytes queued for sending and not yet handed to the
-- socket (the backpressure signal; `write_message` returns nil, "too_big"
-- past the listener's or client's `max_buffered`).
function Stream:buffered_amount()
  local conn = self._conn
  if conn then return conn:buffered_amount() end
  local queue = self._queue
  return queue and queue.bytes or 0
end

-- Did the program drop the TCP connection (self.stream:close())? Then, as
-- in Turbo, later writes are dropped silently and on_error is not called.
function Stream:_dropped()
  local stream = rawget(self, "stream")
  return stream ~= nil and stream._dropped == true
end

--- True once close() was called or the connection is closing or closed;
-- nil before, as Turbo's ("true if closed, otherwise nil").
function Stream:closed()
  if self._closed then return true end
  local conn = self._conn
  if conn == nil then return nil end
  local state = conn:state()
  if state == "closing" or state == "closed" then return true end
  return nil
end

-- A pong arrived: the pending ping callback (taken: it runs once), as a
-- function calling it as Turbo does, `callback(arg, data)` when the
-- argument is truthy, else `callback(data)` alone (false is left out).
function Stream:_take_ping_callback(data)
  local callback, arg = self._ping_callback, self._ping_callback_arg
  if not callback then return nil end
  self._ping_callback, self._ping_callback_arg = nil, nil
  if arg then return function() return callback(arg, data) end end
  return function() return callback(data) end
end

--------------------------------------------------------------------------
-- WebSocketHandler

--- The class of a WebSocketHandler's `self.stream` (Turbo's IOStream, the
-- methods that make sense on an upgraded connection).
websocket.WebSocketIOStream = WebSocketIOStream

websocket.WebSocketHandler = class("WebSocketHandler", web.RequestHandler)
local Handler = websocket.WebSocketHandler
Handler:include(Stream)

-- Lazy fields. A handler lives as long as its connection, and most never
-- read these, so they are made on first read (each a function of the
-- handler giving the value, or nil to leave the field unset):
--   stream     `self.stream` (turbo_ws.websocket_stream), as in Turbo
--              there from the start: made when first read, before or
--              after the upgrade;
--   headers    the response headers, dead once the 101 went out: when they
--              held only the default `Server` field they are dropped at
--              the upgrade and made again, with that field, when read;
--   _url_args  the route's captures, dropped at the upgrade (open() gets
--              them all the same) and found again, by the same route,
--              when read;
--   origin     the request's Origin header, read from the request.
-- The only visible difference: pairs() lists a field once read (origin:
-- never). With `class` read from the class (see allocate below) an idle
-- handler holds 4 fields (application, request, _conn, _send_handle):
-- one 4-slot hash part.
local LAZY = {}

function LAZY.origin(self)
  local request = rawget(self, "request")
  if type(request) ~= "table" then return nil end
  return (request:_header("Origin"))
end

function LAZY.stream(self)
  local stream = WebSocketIOStream(self)
  rawset(self, "stream", stream)
  return stream
end

-- The `Server` field a handler's headers start with (RequestHandler:clear).
local function server_name(self)
  return web._server_name(rawget(self, "application"))
end

function LAZY.headers(self)
  -- Only once the upgrade dropped them (see Handler:_drop_dead_headers).
  if rawget(self, "_conn") == nil then return nil end
  local headers = httputil.HTTPHeaders()
  headers:add("Server", server_name(self))
  rawset(self, "headers", headers)
  return headers
end

-- The captures of the route that chose this handler, nil if none did.
local function route_captures(self)
  local app = rawget(self, "application")
  local find = type(app) == "table" and app._get_request_handlers
  if type(find) ~= "function" then return nil end
  local handler_class, captures = find(app, self.request)
  if handler_class ~= self.class then return nil end
  return captures
end

function LAZY._url_args(self)
  if rawget(self, "_conn") == nil then return nil end
  local captures = route_captures(self)
  if captures ~= nil then rawset(self, "_url_args", captures) end
  return captures
end

-- Instances look methods up in their class (`dict`, whose metatables
-- lead to the parents' methods), then lazy fields, then the class's own
-- `__index` if the program gave it one (a function or a table, as
-- class.lua lets it). Every WebSocketHandler class gets its own (see
-- allocate below).
local function lazy_index(dict, own)
  local own_is_function = type(own) == "function"
  return function(self, key)
    local value = dict[key]
    if value == nil then
      local build = LAZY[key]
      if build ~= nil then value = build(self) end
      if value == nil and own ~= nil then
        if own_is_function then return (own(self, key)) end
        return own[key]
      end
    end
    return value
  end
end

-- The lookup this module installed in each class, so a program's own
-- `__index`, set before or after the first instance, is noticed.
local installed = setmetatable({}, { __mode = "k" })

-- A handler's class is a field of its class's methods, not of the
-- instance (class.lua's isInstanceOf looks there too). Set up when the
-- class makes its first instance, whatever hooks subclasses define, and
-- again when the program replaced `__index` since.
local function lazy_class(klass)
  local dict = klass.__instanceDict
  local own = rawget(dict, "__index")
  if own == dict then own = nil end
  local index = lazy_index(dict, own)
  installed[dict] = index
  dict.__index = index
  rawset(dict, "class", klass)
end

function Handler.static:allocate()
  local dict = self.__instanceDict
  if rawget(dict, "class") ~= self or rawget(dict, "__index") ~= installed[dict] then lazy_class(self) end
  return setmetatable({}, dict)
end

-- At the upgrade: the response headers (when they held only the default
-- field) and the route's captures (when the route still gives the same)
-- are dropped, to be made again when read (LAZY above). Setting them to
-- nil frees the objects; their hash slots are taken again by _conn and
-- _send_handle.
local function same_list(a, b)
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return false end
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

function Handler:_drop_dead_headers()
  local headers = rawget(self, "headers")
  local fields = type(headers) == "table" and rawget(headers, "_fields")
  if getmetatable(headers) == httputil.HTTPHeaders.__instanceDict and type(fields) == "table"
     and #fields == 1 and fields[1][1] == "Server" and fields[1][2] == server_name(self) then
    self.headers = nil
  end
end

function Handler:_drop_dead_url_args()
  local args = rawget(self, "_url_args")
  if args ~= nil and same_list(args, route_captures(self)) then self._url_args = nil end
end

-- Hooks a subclass redefines.
function Handler:open() end
function Handler:on_message(msg) end -- luacheck: ignore
function Handler:on_close() end
function Handler:on_error(msg) end -- luacheck: ignore
function Handler:prepare() end
function Handler:subprotocol(protocols) end -- luacheck: ignore

-- The request lives as long as the connection: the Application builds its
-- headers, host, arguments and connection fields on first access (see
-- web.lua). The handshake checks below read the headers without building
-- them (request:_header).
Handler._lazy_request = true

-- Response headers the core owns in a 101 answer; the handler's own
-- headers (set_header, add_header, cookies) go along with the others.
local HANDSHAKE_HEADERS = {
  ["upgrade"] = true, ["connection"] = true, ["content-length"] = true,
  ["content-type"] = true, ["transfer-encoding"] = true, ["date"] = true,
}

-- The subprotocol names in a Sec-WebSocket-Protocol value, added to
-- `into`: its comma-separated entries, trimmed, empty ones left out.
local function protocol_names(value, into)
  for _, p in ipairs(util.strsplit(value, ",")) do
    p = escape.trim(p)
    if p ~= "" then into[#into + 1] = p end
  end
  return into
end

-- The protocols a client offers: the names in every Sec-WebSocket-Protocol
-- header.
local function offered_protocols(request)
  local value = request:_header("Sec-WebSocket-Protocol")
  if value == nil then return {} end
  if type(value) == "table" then value = concat(value, ",") end
  return protocol_names(value, {})
end

-- Does header `name` hold `token` (case-insensitively)? A loose check:
-- the core checks the exact token lists at upgrade().
local function header_has(request, name, token)
  local value = request:_header(name)
  if type(value) == "table" then value = concat(value, ",") end
  return type(value) == "string" and sfind(slower(value), token, 1, true) ~= nil
end

-- Is this request a WebSocket handshake at all (RFC 6455 4.2.1 items a
-- user hook should never see: method, Upgrade, Connection, version, key)?
-- These checks are looser than the core's, never stricter: anything they
-- let through that is still wrong, the core answers itself at upgrade().
local function is_handshake(request)
  if request.method ~= "GET" then return false end
  if not header_has(request, "Upgrade", "websocket") or
     not header_has(request, "Connection", "upgrade") then
    return false
  end
  if request:_header("Sec-WebSocket-Version") ~= "13" then return false end
  local key = request:_header("Sec-WebSocket-Key")
  return type(key) == "string" and #escape.base64_decode(key) == 16
end

--- Called by the Application: checks the handshake, asks subprotocol()
-- and prepare(), upgrades, then calls open() with the route's captures.
function Handler:_serve()
  local request = self.request
  if not is_handshake(request) then
    -- Let the core give the exact RFC answer (405, 400 or 426).
    local conn, status = request._req:upgrade()
    request._req = nil
    if conn then conn:abort() end  -- cannot happen: the core is stricter
    web._log_request(request, status or 400)
    return
  end
  local ok, err = web._protected(self._negotiate, self)
  if not ok then web._fail_request(request, err, rawget(self, "application")) end
end

-- Subprotocol, Origin, prepare(), then the upgrade itself.
function Handler:_negotiate()
  local request = self.request
  local offered = offered_protocols(request)
  local chosen
  if #offered > 0 then
    chosen = self:subprotocol(offered)
    if chosen == nil then
      log.warning("[websocket.lua] No acceptable subprotocols for WebSocket were found.")
      error(web.HTTPError(400, "Invalid subprotocol."))
    end
    if not util.is_in(chosen, offered) then
      error(web.HTTPError(500, "subprotocol() returned a protocol the client did not offer."))
    end
    -- Turbo leaves the choice in the instance field, shadowing the method.
    self.subprotocol = chosen
  end
  self:prepare()
  if self._finished then return end  -- prepare() answered with finish()/redirect()
  if self._closed then error(web.HTTPError(403)) end  -- prepare() called close()
  local conn, status, message = request._req:upgrade({
    protocol = chosen, headers = self:_upgrade_headers(),
  })
  request._req = nil
  if not conn then
    log.warning(sformat("[websocket.lua] upgrade refused: %s %s", tostring(status), tostring(message)))
    return
  end
  local url_args = self._url_args
  self:_drop_dead_headers()
  self:_drop_dead_url_args()
  self:_attach(conn, url_args)
end

-- Headers the handler set, for the 101 answer (Turbo dropped them).
function Handler:_upgrade_headers()
  local list = {}
  for _, field in ipairs(self.headers:to_list()) do
    local name = slower(field[1])
    if not HANDSHAKE_HEADERS[name] and not sfind(name, "^sec%-websocket%-") then
      list[#list + 1] = field
    end
  end
  return self:_add_cookie_headers(list)
end

-- Calls hook `name` of the handler. A failing hook is logged; unless it
-- was on_close or on_error, the connection is closed with 1011 and
-- on_error(message) is called.
function Handler:_call_hook(name, ...)
  local ok, err = try(self[name], self, ...)
  if not ok then self:_hook_failed(name, err) end
  return ok
end

function Handler:_hook_failed(name, err)
  log.error(sformat("[websocket.lua] Error in WebSocketHandler:%s: %s", name, err.trace))
  if name == "on_close" or name == "on_error" then return end
  -- on_close comes last: a call that ran on after it (an on_message that
  -- yielded) failing is only logged.
  if rawget(self, "_close_reported") then return end
  -- Closed as by close(): nothing more is delivered to the handler.
  self._closed = true
  close_conn(self._conn, 1011, "internal error")
  self:_call_hook("on_error", err.message)
end

-- The core connection's callbacks, shared by every handler: the core
-- passes the handler first (set_callbacks' context), so an open
-- connection keeps no closures of its own.
local function handler_deliver(self, data, binary)
  -- As in Turbo, nothing more is delivered after close(). (rawget: the
  -- field is the instance's own; a miss would run lazy_index.)
  if rawget(self, "_closed") then return end
  local ok, err = try(self.on_message, self, data, binary)
  if not ok then self:_hook_failed("on_message", err) end
end

local function handler_message(self, data, binary)
  if running ~= nil then note_suspended() end
  if n_suspended > 0 and suspended[self] then return hold(self, data, binary) end
  running = self
  handler_deliver(self, data, binary)
  if running == self then running = nil else deliver_held(self, handler_deliver) end
end

local function handler_pong(self, data)
  if self._ping_callback then self:_call_hook("_run_ping_callback", data) end
end

local function handler_error(self, kind, message)
  self._closed = true
  -- Messages lost because the program dropped the connection itself.
  if self:_dropped() then return end
  -- A peer that just went away is common; a broken protocol is not.
  local report = kind == "io" and log.warning or log.error
  report("[websocket.lua] " .. tostring(message))
  self:_call_hook("on_error", message)
end

local function handler_close(self, code, reason)
  self._closed = true
  local request = self.request
  if request then
    log.success(sformat("[websocket.lua] WebSocket closed %s (%s) %dms",
      tostring(request.uri), tostring(request.remote_ip), request:request_time()))
  end
  local stream = rawget(self, "stream")
  if stream then stream:_closed_now() end
  self._close_reported = true
  self:_call_hook("on_close", code, reason)
end

local NO_ARGS = {}

local HANDLER_CALLBACKS = {
  on_message = handler_message, on_pong = handler_pong,
  on_error = handler_error, on_close = handler_close,
}

-- write_message was refused (the peer does not read): logged, and the
-- handler's on_error(message) hook hears of it.
function Handler:_send_refused(message)
  log.warning("[websocket.lua] write_message refused: " .. tostring(message))
  self:_call_hook("on_error", message)
end

-- Wires the core connection to the handler's hooks and opens with the
-- route's captures.
function Handler:_attach(conn, url_args)
  self._conn = conn
  if fast_send then self._send_handle = conn:_send_handle() end
  local request = self.request
  conn:set_callbacks(HANDLER_CALLBACKS, self)
  log.success(sformat("[websocket.lua] WebSocket opened %s (%s)",
    tostring(request.uri), tostring(request.remote_ip)))
  self:_flush_queue()
  self:_call_hook("open", unpack(url_args or NO_ARGS))
end

function Handler:_run_ping_callback(data)
  local run = self:_take_ping_callback(data)
  if run then run() end
end

--------------------------------------------------------------------------
-- WebSocketClient

websocket.WebSocketClient = class("WebSocketClient")
local Client = websocket.WebSocketClient
Client:include(Stream)

local DEFAULT_USER_AGENT = "Turbo Client v2.1.5"

-- Request headers the core writes itself. (Sec-WebSocket-Key is made
-- here, so that modify_headers sees it as in Turbo; the core sends it and
-- checks the server's Sec-WebSocket-Accept against it.)
local CORE_REQUEST_HEADERS = {
  ["upgrade"] = true, ["connection"] = true,
  ["sec-websocket-version"] = true, ["sec-websocket-extensions"] = true,
}

-- The schemes a WebSocketClient accepts: Turbo connected http(s)://
-- addresses too; they mean ws(s)://.
local SCHEMES = { ws = "ws", wss = "wss", http = "ws", https = "wss" }

local function parse_target(address, params)
  return clientutil.parse_target(address, params, SCHEMES)
end

-- Raises on kwargs of the wrong type: misuse is an error at the call, as
-- everywhere in turbo_ws (Turbo failed later or not at all).
local KWARG_TYPES = {
  request_timeout = "number", connect_timeout = "number", max_redirects = "number",
  max_buffer_size = "number", user_agent = "string", auth_username = "string",
  auth_password = "string", ssl_options = "table", params = "table",
  modify_headers = "function", on_headers = "function", on_connect = "function",
  on_message = "function", on_close = "function", on_error = "function", on_ping = "function",
}

-- What the core's connect refuses (docs/core.md, "Client"), checked here
-- so that misuse raises at the call, naming the kwarg, instead of coming
-- back later as a failed connect: a header name is an HTTP token, a value
-- has no control byte but tab, a subprotocol name is a token; message
-- sizes are whole bytes up to 2^40.
local CONTROL_BYTE = "[%z\1-\8\10-\31\127]"
local MAX_SIZE = 2 ^ 40

-- The first name in `names` that is not a subprotocol name, or nil.
local function bad_protocol(names)
  for _, p in ipairs(names) do
    if not core.valid_token(p) then return p end
  end
end

-- Why the request header `name: value` cannot be sent, or nil.
local function header_problem(name, value)
  if not core.valid_token(name) then return sformat("%q is not a valid header name", name) end
  if sfind(value, CONTROL_BYTE) then
    return sformat("header '%s' has a control byte in its value (only tab is allowed)", name)
  end
end

-- `level` is error()'s as seen from the caller, as in clientutil.check_kwargs.
local function kwarg_error(message, level)
  error("WebSocketClient: kwarg " .. message, level + 1)
end

-- (Timeouts and max_redirects: clientutil.check_kwargs, for both clients.)
local function check_ranges(kwargs, level)
  local size = kwargs.max_buffer_size
  if size ~= nil and not (size >= 1 and size <= MAX_SIZE and size % 1 == 0) then
    kwarg_error("'max_buffer_size' must be a whole number of bytes from 1 to 1099511627776, got "
      .. tostring(size), level + 1)
  end
end

-- "WebSocketClient: kwarg 'ssl_options.ca_path'", for clientutil.check_tls.
local function tls_kwarg(name, in_ssl)
  return sformat("WebSocketClient: kwarg '%s%s'", in_ssl and "ssl_options." or "", name)
end

local function check_header_value(name, value, level)
  if sfind(value, CONTROL_BYTE) then
    kwarg_error(sformat("'%s' must be a valid header value (no control byte but tab)", name), level + 1)
  end
end

-- websocket_protocol as the Sec-WebSocket-Protocol value: a string, or a
-- list joined with ", ".
local function protocol_header(proto, level)
  if type(proto) == "string" then return proto end
  if type(proto) ~= "table" then error("Invalid type of \"websocket_protocol\" value", level + 1) end
  for i = 1, #proto do
    -- What table.concat takes (numbers too, as in Turbo).
    if type(proto[i]) ~= "string" and type(proto[i]) ~= "number" then
      kwarg_error(sformat("'websocket_protocol' must be a string or a list of strings, got a %s at [%d]",
        type(proto[i]), i), level + 1)
    end
  end
  return concat(proto, ", ")
end

-- The kwargs that become request headers (auth_* are base64, always valid).
local function check_header_kwargs(kwargs, level)
  if kwargs.user_agent then check_header_value("user_agent", kwargs.user_agent, level + 1) end
  if kwargs.cookie then check_header_value("cookie", clientutil.cookie_header(kwargs.cookie), level + 1) end
  local proto = kwargs.websocket_protocol
  if proto == nil then return end
  local value = protocol_header(proto, level + 1)
  check_header_value("websocket_protocol", value, level + 1)
  local bad = bad_protocol(protocol_names(value, {}))
  if bad then
    kwarg_error(sformat("'websocket_protocol' must name subprotocols (RFC 6455 tokens), got %q", bad), level + 1)
  end
end

local function check_kwargs(kwargs)
  clientutil.check_kwargs("WebSocketClient", kwargs, KWARG_TYPES, 4)
  check_ranges(kwargs, 4)
  clientutil.check_tls(kwargs.ssl_options, kwargs, tls_kwarg, 4)
  check_header_kwargs(kwargs, 4)
end

--- WebSocketClient(address, kwargs): starts connecting on the loop and
-- returns at once (callable at top level or from any coroutine).
function Client:initialize(address, kwargs)
  if kwargs ~= nil and type(kwargs) ~= "table" then
    error("WebSocketClient: kwargs must be a table", 3)
  end
  self.address = address
  self.kwargs = kwargs or {}
  check_kwargs(self.kwargs)
  self._connect_time = util.gettimemonotonic()
  local target, code, message = parse_target(address, self.kwargs.params)
  self._target = target
  if target then self._request_headers = self:_build_request_headers(target) end
  core.add_callback(function()
    if target then self:_start() else self:_failed(code, message) end
  end)
end

-- The handshake request as Turbo showed it to modify_headers.
function Client:_build_request_headers(target)
  local kwargs = self.kwargs
  local headers = httputil.HTTPHeaders()
  headers:set_method("GET")
  headers:set_uri(target.target)
  headers:set_version("HTTP/1.1")
  headers:add("Host", target.host_header)
  headers:add("User-Agent", kwargs.user_agent or DEFAULT_USER_AGENT)
  headers:add("Upgrade", "websocket")
  headers:add("Connection", "Upgrade")
  headers:add("Sec-WebSocket-Key", core.websocket_key())
  headers:add("Sec-WebSocket-Version", "13")
  local proto = kwargs.websocket_protocol
  if proto then headers:add("Sec-WebSocket-Protocol", protocol_header(proto)) end
  if kwargs.cookie then headers:add("Cookie", clientutil.cookie_header(kwargs.cookie)) end
  local auth = clientutil.basic_auth(kwargs.auth_username, kwargs.auth_password)
  if auth then headers:add("Authorization", auth) end
  return headers
end

-- Why the core would refuse the headers or subprotocols in `options`, or nil.
local function request_problem(options)
  for _, field in ipairs(options.headers) do
    local problem = header_problem(field[1], field[2])
    if problem then return problem end
  end
  local bad = options.protocols and bad_protocol(options.protocols)
  if bad then return sformat("%q is not a subprotocol name (RFC 6455 wants a token)", bad) end
end

-- Runs on the loop: checks the body, lets modify_headers edit the request,
-- then asks the core to connect.
function Client:_start()
  if self._closed then return end
  local body = self.kwargs.body
  if body ~= nil and type(body) ~= "string" then
    return self:_failed(errors.INVALID_BODY, "Request body is not a string.")
  end
  local headers = self._request_headers
  if not self:_callback("modify_headers", headers) then return end
  if self._closed then return end
  local options = self:_connect_options(headers)
  -- The constructor checked the kwargs: only modify_headers can have made
  -- the request unsendable. Its mistake, reported as one (nothing is sent).
  local problem = request_problem(options)
  if problem then
    return self:_failed(errors.CALLBACK_ERROR, 'WebSocketClient error in callback "modify_headers": ' .. problem)
  end
  local ok, err = pcall(core.connect, self._target.url, options, function(conn, res, msg, response)
    self:_connected(conn, res, msg, response)
  end)
  if not ok then self:_failed(errors.COULD_NOT_CONNECT, toolkit.core_reason(err)) end
end

-- Core options from the (possibly edited) request headers and kwargs.
function Client:_connect_options(headers)
  local kwargs = self.kwargs
  local extra, protocols = {}, nil
  for _, field in ipairs(headers:to_list()) do
    local name = slower(field[1])
    if name == "sec-websocket-protocol" then
      protocols = protocol_names(field[2], protocols or {})
    elseif name == "host" and field[2] == self._target.host_header then
      -- Unchanged: the core writes it (and rewrites it on redirects).
    elseif not CORE_REQUEST_HEADERS[name] then
      extra[#extra + 1] = field
    end
  end
  local connect_timeout, timeout, max_redirects = clientutil.request_limits(kwargs)
  return {
    headers = extra,
    protocols = protocols,
    -- Turbo's client took a 101 that picks none of them (RFC 6455 allows it).
    require_protocol = false,
    connect_timeout = connect_timeout,
    timeout = timeout,
    max_redirects = max_redirects,
    tls = clientutil.tls_options(kwargs.ssl_options, kwargs),
    max_message_size = kwargs.max_buffer_size,
    max_buffered = web._MAX_BUFFERED,
  }
end

-- The core's answer to connect().
function Client:_connected(conn, res, msg, response)
  if not conn then
    local kind = res
    if kind == "bad_status" and response then
      msg = sformat("Expected 101, was %s, can not upgrade.", tostring(response.status))
    end
    return self:_failed(error_code(kind), msg)
  end
  self._conn = conn
  if fast_send then self._send_handle = conn:_send_handle() end
  self:_wire(conn)
  if self._closed then return close_conn(conn, 1000) end
  self.response = res
  if not self:_callback("on_headers", self:_response_headers(res)) then return end
  if self:closed() then return end  -- self:close() in on_headers drops it
  log.success(sformat("[websocket.lua] WebSocketClient connection open %s", tostring(self.address)))
  if not self:_callback("on_connect") then return end
  self:_flush_queue()
end

-- The 101 response as an HTTPParser, like Turbo's on_headers argument.
function Client:_response_headers(res)
  local source = { status_code = res.status, version = res.version }
  for i, pair in ipairs(res.headers or {}) do source[i] = pair end
  local headers = httputil.HTTPParser(source)
  headers.reason = res.reason
  return headers
end

function Client:_wire(conn)
  local on_message = self.kwargs.on_message or self.on_message
  local function deliver(_, data, binary)
    -- As in Turbo, nothing more is delivered after close().
    if not on_message or self._closed then return end
    local ok, err = try(on_message, self, data, binary)
    if not ok then self:_callback_failed("on_message", err) end
  end
  conn:set_callbacks({
    on_message = function(data, binary)
      if running ~= nil then note_suspended() end
      if n_suspended > 0 and suspended[self] then return hold(self, data, binary) end
      running = self
      deliver(self, data, binary)
      if running == self then running = nil else deliver_held(self, deliver) end
    end,
    on_ping = function(data) self:_callback("on_ping", data) end,
    on_pong = function(data)
      local run = self:_take_ping_callback(data)
      if run then
        local ok, err = try(run)
        if not ok then self:_callback_failed("ping callback", err) end
      end
    end,
    on_error = function(kind, message)
      self._closed = true
      self:_report(error_code(kind), message)
    end,
    on_close = function(code, reason)
      self._closed = true
      log.success(sformat("[websocket.lua] WebSocketClient closed %s %dms",
        tostring(self.address), util.gettimemonotonic() - self._connect_time))
      self._close_reported = true
      self:_callback("on_close", code, reason)
    end,
  })
end

-- Calls user callback `name` (kwargs first, else a method of a subclass)
-- with the instance first. Returns false when it raised; that closes the
-- connection (1011) and becomes on_error(CALLBACK_ERROR, message).
function Client:_callback(name, ...)
  local fn = self.kwargs[name]
  if fn == nil then fn = self[name] end
  if type(fn) ~= "function" then return true end
  local ok, err = try(fn, self, ...)
  if ok then return true end
  self:_callback_failed(name, err)
  return false
end

function Client:_callback_failed(name, err)
  log.error(err.trace)
  -- on_close comes last (docs/turbo-differences.md): its own error, and
  -- that of a call that ran on after it (an on_message that yielded), is
  -- only logged, as the handler's.
  if name == "on_close" or rawget(self, "_close_reported") then return end
  self._closed = true
  self._queue = nil
  close_conn(self._conn, 1011, "callback error")
  self:_report(errors.CALLBACK_ERROR, sformat(
    "WebSocketClient unhandled error in callback \"%s\":\n%s", name, err.message))
end

-- write_message was refused (the peer does not read): on_error(BUSY).
function Client:_send_refused(message)
  self:_report(errors.BUSY, "write_message refused: " .. tostring(message))
end

-- The connection could not be made: no on_close follows.
function Client:_failed(code, message)
  self._closed = true
  self._queue = nil
  self:_report(code, message)
end

-- Logs and calls on_error(self, code, message); a failing on_error is
-- only logged.
function Client:_report(code, message)
  log.error("[websocket.lua] " .. tostring(message))
  local fn = self.kwargs.on_error or self.on_error
  if type(fn) ~= "function" then return end
  local ok, err = try(fn, self, code, message)
  if not ok then log.error("[websocket.lua] Error in on_error: " .. err.trace) end
end

return websocket
