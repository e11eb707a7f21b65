--- turbo_ws.evlua.web_socket -- evlua's `service_utils.WS.web_socket`:
-- `accept` (server side of the upgrade), `connect` (client side) and
-- `handle_msg` (what the loop runs for every incoming frame).
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local C = require "turbo_ws.evlua.ws_const"
local headers = require "turbo_ws.evlua.headers"
local http = require "turbo_ws.evlua.http"
local socket = require "turbo_ws.evlua.socket"
local wait = require "turbo_ws.evlua.wait"

local ws = {}

ws.WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ws.WEBSOCKET_VERSION = "13"

-- Without surrounding whitespace; linear on a long run of spaces (a
-- peer's header value), unlike gsub("%s+$").
local function trim(s)
  local first = s:find("%S")
  if not first then return "" end
  local _, last = s:find(".*%S", first)
  return s:sub(first, last)
end

------------------------------------------------------------------------
-- accept

-- evlua's failed-handshake answer: 400 with {"error_message": msg} as the
-- X-msg field and as the body.
local function reject(response, msg, version_header)
  local json = headers.error_json(msg)
  response:set_status(400)
  -- RFC 6455 §4.2.2 (evlua answered without it): the versions we speak.
  if version_header then response:set_hdr_field("Sec-WebSocket-Version", ws.WEBSOCKET_VERSION) end
  response:set_chunked_trfencoding(true)
  response:set_content_type("application/json")
  response:set_hdr_field("X-msg", json)
  response:send()
  response:write(json)
  return false
end

--- The handler module named by the URL path: "/a/b/c?x" -> "a.b.c" (with
-- the server's app_base_path in front). nil, why when there is none.
-- Segments may hold only letters, digits, "_" and "-", so a request names
-- a module, never a file path ("..", "%2e"). Without app_base_path that
-- is any module on package.path, as in evlua.
local function handler_name(request)
  local path = request:get_uri():match("^[^?#]*")
  local parts = {}
  for segment in path:gmatch("[^/]+") do
    if not segment:match("^[%w_%-]+$") then
      return nil, "Invalid path: Unable to deduce message handler"
    end
    parts[#parts + 1] = segment
  end
  if #parts == 0 then return nil, "Path empty: Unable to deduce message handler" end
  local base = http.base_path(request)
  if base and base ~= "" then table.insert(parts, 1, base) end
  return table.concat(parts, ".")
end

--- require(name), raising as evlua did (serve answers 500) but without
-- package.path's list of places searched: a client would read the
-- server's directories in the answer.
local function load_handler(name)
  local ok, module = pcall(require, name)
  if ok then return module end
  if tostring(module):find("module '" .. name .. "' not found", 1, true) then
    error(("ws.accept: handler module '%s' not found"):format(name), 3)
  end
  error(module, 0)
end

--- `ws.accept(request, response, uc) -> boolean`: checks the upgrade
-- request, asks the handler module's `init`, and answers 101 (true) or
-- 400 with evlua's error document (false). Raises if the handler module
-- cannot be loaded (serve answers 500).
function ws.accept(request, response, uc)
  assert(http.is_request(request), "ws.accept: request (httpsreq) expected")
  assert(http.is_response(response), "ws.accept: response (httpsresp) expected")
  assert(type(uc) == "table", "ws.accept: uc (table) expected")

  local fields = request:get_hdr_fields()
  local version = fields["Sec-WebSocket-Version"]
  if version == nil then
    return reject(response, "Missing Sec-WebSocket-Version in handshake request", true)
  end
  if trim(version) ~= ws.WEBSOCKET_VERSION then
    return reject(response, "Unsupported WebSocket version requested", true)
  end
  local key = fields["Sec-WebSocket-Key"]
  if key == nil or trim(key) == "" then
    return reject(response, "Missing Sec-WebSocket-Key in handshake request")
  end
  local name, why = handler_name(request)
  if not name then return reject(response, why) end

  local handler = load_handler(name)
  if type(handler) ~= "table" or type(handler.init) ~= "function" then
    error(("ws.accept: handler module '%s' has no init function"):format(name), 2)
  end
  local ok, msg = handler.init(request, response, uc)
  if not ok then return reject(response, msg) end

  response:set_status(101)
  response:set_content_length(0)
  response:send()
  -- The core writes Upgrade, Connection and Sec-WebSocket-Accept.
  return (http.upgrade(request, response, name, handler))
end

------------------------------------------------------------------------
-- handle_msg

-- The handler module for a socket, loaded once (a server socket's is the
-- one ws.accept loaded).
local function handler_of(sock)
  if not sock.handler_module then sock.handler_module = require(sock.handler) end
  return sock.handler_module
end

local OP_TEXT, OP_BINARY = C.FRAME_OP_TEXT, C.FRAME_OP_BINARY

-- What ws.handle_msg does with the frame being dispatched.
local function handle_frame(frame)
  local msg, handler = frame.msg, handler_of(frame.socket)
  local op = msg.op_code
  if op == OP_TEXT or op == OP_BINARY then
    if type(handler.handle_message) ~= "function" then
      error(("handler module '%s' has no handle_message function"):format(frame.socket.handler))
    end
    return handler.handle_message(msg)
  elseif op == C.FRAME_OP_PING then
    if handler.handle_ping then return handler.handle_ping(msg) end
  elseif op == C.FRAME_OP_PONG then
    if handler.handle_pong then return handler.handle_pong(msg) end
  elseif op ~= C.FRAME_OP_CLOSE then
    error("Invalid OP_CODE " .. string.format("%0X", op))
  end
end

--- `ws.handle_msg(request, response)`: dispatches the frame the loop is
-- handling on this coroutine to the connection's handler module:
-- TEXT/BINARY -> handle_message(msg); PING -> handle_ping(msg) if defined
-- (the PONG is sent in any case); PONG -> handle_pong(msg) if defined.
function ws.handle_msg(request, response) -- luacheck: ignore request response
  local frame = socket.current_frame()
  if not frame then
    error("ws.handle_msg: no incoming frame to handle on this coroutine", 2)
  end
  return handle_frame(frame)
end

local handle_msg = ws.handle_msg

-- The loop runs whatever ws.handle_msg is at the time (it may be wrapped:
-- then it looks the frame up by coroutine). Unwrapped, the frame the loop
-- passes along is the one handle_msg would look up. No tail calls: a
-- function xpcall calls that returns from a tail-called one is a trace
-- LuaJIT aborts ("return to lower frame").
local function wrapped() return ws.handle_msg ~= handle_msg end

socket.set_dispatcher(function(request, response, frame)
  if ws.handle_msg == handle_msg then
    handle_frame(frame)
  else
    ws.handle_msg(request, response)
  end
end, wrapped)

------------------------------------------------------------------------
-- connect

local DEFAULT_PORT = { http = 80, ws = 80, https = 443, wss = 443 }

--- "http://h:9982/a/b?x" -> "h", 9982, "/a/b?x" (the core splits it).
-- The scheme gives the default port only: TLS is `secure`'s choice, as
-- in evlua. Credentials are not sent.
local function parse_url(url)
  local parts, _, message = core.split_url(url)
  if not parts then error("ws.connect: " .. message, 3) end
  local default = parts.scheme and DEFAULT_PORT[parts.scheme:lower()]
  if not default then error("ws.connect: unsupported URL '" .. url .. "'", 3) end
  if not parts.host or parts.host == "" then error("ws.connect: no host in URL '" .. url .. "'", 3) end
  local path = parts.path == "" and "/" or parts.path
  if parts.query then path = path .. "?" .. parts.query end
  return toolkit.url_host(parts.host), tonumber(parts.port) or default, path
end

-- Request fields the core writes itself, and evlua's `method` entry.
local OWN_FIELDS = {
  method = true, connection = true, upgrade = true,
  ["sec-websocket-key"] = true, ["sec-websocket-version"] = true,
}

local function request_headers(hdrs)
  local list = {}
  for name, value in pairs(hdrs) do
    if type(name) == "string" and not OWN_FIELDS[name:lower()] then
      list[#list + 1] = { name, tostring(value) }
    end
  end
  return list
end

local NO_CONNECTION = "No Connection: Upgrade header in handshake response"
local NO_UPGRADE = "No Upgrade: websocket header in handshake response"
local BAD_ACCEPT = "Invalid or missing Sec-WebSocket-Accept header in handshake response"

local function is_token(value, token)
  return value ~= nil and trim(value):lower() == token
end

-- evlua's checks of a 2xx answer, in its order. A 2xx other than 101 is
-- never a WebSocket, so it fails at the latest on the accept check.
local function check_answer(fields)
  if not is_token(fields["Connection"], "upgrade") then return NO_CONNECTION end
  if not is_token(fields["Upgrade"], "websocket") then return NO_UPGRADE end
  return BAD_ACCEPT
end

-- A 101 the core refused, by the check that failed (the core's `detail`);
-- checks evlua does not make keep the core's message.
local HANDSHAKE_MESSAGES = { connection = NO_CONNECTION, upgrade = NO_UPGRADE, accept = BAD_ACCEPT }

local function check_inputs(inp)
  assert(type(inp) == "table", "ws.connect: inputs (table) expected")
  assert(type(inp.url) == "string", "ws.connect: url (string) expected")
  assert(inp.credentials == nil or type(inp.credentials) == "table",
         "ws.connect: credentials must be a table")
  assert(inp.msg_handler == nil or type(inp.msg_handler) == "string",
         "ws.connect: msg_handler must be a string")
  assert(type(inp.hdrs) == "table", "ws.connect: hdrs (table) expected")
  assert(type(inp.external) == "boolean", "ws.connect: external (boolean) expected")
  assert(inp.secure == nil or type(inp.secure) == "boolean",
         "ws.connect: secure must be a boolean")
  assert(inp.timeout == nil or type(inp.timeout) == "number",
         "ws.connect: timeout must be a number")
  assert(inp.tls == nil or type(inp.tls) == "table", "ws.connect: tls must be a table")
end

-- The second result of a failed connect. An answer evlua checks gets its
-- exact message; any other failure (refused, DNS, TLS, a timeout, no or no
-- HTTP answer, ...) the core's message and its kind. Returned, not raised:
-- evlua's documentation says "in case of any error connection will be
-- returned as nil and the second return value will have the message"
-- (its code raises; the project follows the documentation).
local function failure_message(kind, message, answer, detail)
  if kind == "bad_status" then
    local fields = headers.table(answer.headers)
    if answer.status >= 200 and answer.status < 300 then return check_answer(fields) end
    return fields["X-msg"]
  elseif kind == "bad_handshake" then
    return HANDSHAKE_MESSAGES[detail] or message
  end
  return ("ws.connect: %s (%s)"):format(message, kind)
end

--- `ws.connect{url, hdrs, external [, secure] [, timeout] [, msg_handler]
-- [, credentials] [, conn] [, tls]}` -> conn, 101, response fields; or
-- nil, message when it fails: the server refused, the answer is not a
-- WebSocket's, or the network failed (refused, DNS, TLS, timeout). Waits
-- (yields in a coroutine). Only misuse raises: inputs of the wrong type
-- (evlua's assertions) or a URL that cannot be used.
function ws.connect(inp)
  check_inputs(inp)
  if inp.secure == nil then inp.secure = false end
  if inp.timeout == nil then inp.timeout = socket.DEFAULT_TIMEOUT end
  local host, port, path = parse_url(inp.url)
  local hdrs = inp.hdrs
  local target = ("%s://%s:%d%s"):format(inp.secure and "wss" or "ws", host, port, path)
  -- As evlua: a 101 choosing none of the subprotocols a program offered
  -- in hdrs is taken.
  local options = {
    headers = request_headers(hdrs), timeout = inp.timeout, tls = inp.tls,
    require_protocol = false,
  }

  -- evlua writes its handshake fields into the caller's table; the key is
  -- the core's own and is not known here.
  hdrs.method = "GET"
  hdrs.Connection = "Upgrade"
  hdrs.Upgrade = "websocket"
  hdrs["Sec-WebSocket-Version"] = 13

  -- The socket takes the connection's events from the moment it opens:
  -- made later (a top-level script's wait returns after the loop stopped),
  -- a failure that came with the 101 would reach no one.
  local sock, refused
  local conn, kind, message, answer, detail = wait.wait(function(finish)
    local ok, err = pcall(core.connect, target, options, function(c, ...)
      if c then sock = socket.new(c, "client", inp.msg_handler) end
      finish(c, ...)
    end)
    if not ok then refused = err; finish() end
  end)
  if refused then
    -- The core's misuse error, in the words of this call: hdrs are the
    -- core's headers.
    local reason = toolkit.core_refusal(refused, "connect")
    error("ws.connect: " .. reason:gsub("^bad option 'headers'", "bad field 'hdrs'"), 2)
  end
  if not conn then return nil, failure_message(kind, message, answer, detail) end

  answer = kind -- on success the second value is the response
  return {
    _ss = sock.proxy,
    _host = host .. ":" .. port,
    _send_timeout = inp.timeout,
    _recv_timeout = inp.timeout,
    msg_handler = inp.msg_handler,
  }, answer.status, headers.table(answer.headers)
end

return ws
