--- turbo_ws.evlua.http -- the server entry of the evlua face: `serve`, and
-- the request / response objects (evlua's "httpsreq" / "httpsresp")
-- that `handle_request`, `ws.accept` and handler modules' `init` get.
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local headers = require "turbo_ws.evlua.headers"
local socket = require "turbo_ws.evlua.socket"

local M = {}

------------------------------------------------------------------------
-- request

local Request = {}
Request.__index = Request
Request.__tostring = function() return "httpsreq" end

function Request:get_method() return self._info.method end

--- The request-target as sent: path and query.
function Request:get_uri() return self._info.uri end

function Request:get_version() return self._info.version end

--- The Host field as sent ("" when absent).
function Request:get_host() return self:get_hdr_field("Host") end

--- Name -> value of every header field; any spelling of a name works
-- (`["Sec-WebSocket-Key"]`, `["sec-websocket-key"]`).
function Request:get_hdr_fields()
  if not self._fields then self._fields = headers.table(self._info.headers) end
  return self._fields
end

--- One header field, "" when absent. evlua code also calls it as
-- `req:get_hdr_field(req, name)`, so the name is the last argument.
function Request:get_hdr_field(...)
  local n = select("#", ...)
  local name = n > 0 and select(n, ...) or nil
  if type(name) ~= "string" then
    error("get_hdr_field: header name (string) expected, got " .. type(name), 2)
  end
  return self:get_hdr_fields()[name] or ""
end

--- Name -> value of the query string's parameters, URL-decoded.
function Request:get_query_parameters()
  return headers.parse_query(self._info.query)
end

function Request:get_message_body_str() return self._info.body end

------------------------------------------------------------------------
-- response
--
-- The core answers a request in one call, so the response collects its
-- status, fields and body, and goes out when `handle_request` returns
-- (or, for an accepted upgrade, from `ws.accept`). The body's framing
-- (Content-Length or chunked) is the server's choice.

local Response = {}
Response.__index = Response
Response.__tostring = function() return "httpsresp" end

-- What the core can send is checked when the response is set, not when it
-- goes out: there a bad status or field fails after handle_request has
-- returned, and the client gets the core's plain 500 instead of evlua's
-- error document for the error of the call that caused it.

--- The status line's code: a whole number from 200 to 999 (RFC 9110 15:
-- three digits; the core sends any such code), or 101 for the upgrade
-- ws.accept answers. Other 1xx are interim answers (RFC 9110 15.2): no
-- request can end with one.
function Response:set_status(status)
  if type(status) ~= "number" then
    error("set_status: number expected, got " .. type(status), 2)
  end
  if status % 1 ~= 0 or (status < 200 and status ~= 101) or status > 999 then
    error("set_status: status must be 101 or a whole number from 200 to 999, got " .. tostring(status), 2)
  end
  self._status = status
end

-- A field name is a token (RFC 9110 5.1, 5.6.2); a value may hold any
-- byte but CR, LF and NUL, which would end or corrupt the field's line.
local function check_field(name, value)
  if not core.valid_token(name) then
    error(("set_hdr_field: bad header name '%s' (a token expected)"):format(name), 3)
  end
  if value:find("[\r\n%z]") then
    error(("set_hdr_field: bad value for header '%s' (CR, LF or NUL)"):format(name), 3)
  end
end

--- Sets a header field, replacing an earlier value of the same name.
function Response:set_hdr_field(name, value)
  if type(name) ~= "string" then
    error("set_hdr_field: header name (string) expected, got " .. type(name), 2)
  end
  value = tostring(value)
  check_field(name, value)
  local lower = name:lower()
  for _, pair in ipairs(self._headers) do
    if pair[1]:lower() == lower then
      pair[2] = value
      return
    end
  end
  self._headers[#self._headers + 1] = { name, value }
end

function Response:set_content_type(value) self:set_hdr_field("Content-Type", value) end

-- Recorded only: the server frames the body itself.
function Response:set_content_length(n) self._content_length = n end
function Response:set_chunked_trfencoding(on) self._chunked = on and true or false end

function Response:set_keep_alive(on) self._keep_alive = on and true or false end

--- Marks the status line and fields as sent (they go out with the body).
function Response:send() self._sent = true end

function Response:write(data) self._body[#self._body + 1] = tostring(data) end

-- Fields the server writes itself.
local FRAMING = { ["content-length"] = true, ["transfer-encoding"] = true }
local UPGRADE_OWN = {
  ["content-length"] = true, ["transfer-encoding"] = true, ["upgrade"] = true,
  ["connection"] = true, ["sec-websocket-accept"] = true,
  ["sec-websocket-protocol"] = true, -- the upgrade's `protocol`
}

-- The subprotocol `init` chose by setting Sec-WebSocket-Protocol, or nil.
local function chosen_protocol(response)
  for _, pair in ipairs(response._headers) do
    if pair[1]:lower() == "sec-websocket-protocol" then return pair[2] end
  end
  return nil
end

-- The subprotocols the client offered: every Sec-WebSocket-Protocol
-- field's comma-separated names, as a set.
local function offered_protocols(request)
  local offered = {}
  for _, field in ipairs(request._info.headers or {}) do
    if field[1]:lower() == "sec-websocket-protocol" then
      for name in field[2]:gmatch("[^,%s]+") do offered[name] = true end
    end
  end
  return offered
end

local function wire_headers(response, drop)
  local list = {}
  for _, pair in ipairs(response._headers) do
    if not drop[pair[1]:lower()] then list[#list + 1] = pair end
  end
  if response._keep_alive == false and drop ~= UPGRADE_OWN then
    list[#list + 1] = { "Connection", "close" }
  end
  return list
end

-- Answers the request with what the response collected (unless answered).
local function finish(response)
  local req = response._req
  if req:answered() then return end
  req:respond(response._status, wire_headers(response, FRAMING),
              table.concat(response._body))
end

------------------------------------------------------------------------
-- upgrade, used by ws.accept

function M.is_request(v) return getmetatable(v) == Request end
function M.is_response(v) return getmetatable(v) == Response end

--- The serve option `app_base_path` for this request's server, or nil.
function M.base_path(request) return request._server.app_base_path end

-- An upgraded request is kept as long as its connection is open (handler
-- modules get it with every frame): it keeps what its methods read, in a
-- table of its own size, and builds its name -> value fields again if
-- they are read (ws.accept built them to check the handshake). Idle
-- memory: ~900 B less per connection.
local KEPT = { "method", "uri", "version", "query", "body", "headers" }
local function keep_for_connection(request)
  local info, kept = request._info, {}
  for _, key in ipairs(KEPT) do kept[key] = info[key] end
  request._info, request._fields = kept, nil
end

--- Answers 101 (with the fields `init` set; a Sec-WebSocket-Protocol it
-- set is the subprotocol chosen, which the client must have offered, else
-- this raises) and starts dispatching the
-- connection's frames to module `handler` (named; `module` is what
-- `require` gave ws.accept). The core re-checks the
-- handshake (RFC 6455 4.2.1); if it refuses, it has answered the error
-- itself and this returns false, status, message.
function M.upgrade(request, response, handler, module)
  local protocol = chosen_protocol(response)
  -- Checked here, not left to the core: its refusal answers a plain 500
  -- at once, and an error raised before answering gets serve's JSON 500.
  if protocol ~= nil and not offered_protocols(request)[protocol] then
    error(("ws.accept: init chose subprotocol '%s', which the client did not offer (RFC 6455 4.2.2)")
      :format(protocol), 3)
  end
  local conn, status, message = request._req:upgrade{
    protocol = protocol,
    headers = wire_headers(response, UPGRADE_OWN),
  }
  if not conn then
    response._status = status
    return false, status, message
  end
  -- Known before the first frame: a `require` there is a C call the JIT
  -- stops its trace at, on the path every frame takes.
  socket.new(conn, "server", handler, request, response).handler_module = module
  keep_for_connection(request)
  return true
end

------------------------------------------------------------------------
-- serve

-- A raised error answers 500 with evlua's error document, as its
-- controller does; the server goes on.
local function fail(req, err)
  toolkit.report("turbo_ws.evlua", "error in handle_request", err.trace)
  if req:answered() then return end
  local json = headers.error_json(err.message)
  req:respond(500, { { "Content-Type", "application/json" }, { "X-msg", json } }, json)
end

local function on_request(server, req, info)
  local request = setmetatable({ _req = req, _info = info, _server = server }, Request)
  local response = setmetatable({ _req = req, _status = 200, _headers = {}, _body = {} },
                                Response)
  local ok, err = xpcall(server.handle_request, toolkit.caught, request, response)
  if ok then
    finish(response)
  else
    fail(req, err)
  end
end

--- `serve{host, port, handle_request [, app_base_path] [, tls, limits...]}`:
-- listens (core.listen options) and runs `handle_request(request, response)`
-- for every HTTP request, each in its own coroutine. Returns the server
-- (`server:port()`, `server:close()`).
function M.serve(opts)
  if type(opts) ~= "table" then
    error("evlua.serve: options table expected, got " .. type(opts), 2)
  end
  if type(opts.handle_request) ~= "function" then
    error("evlua.serve: option 'handle_request' (function) expected, got "
          .. type(opts.handle_request), 2)
  end
  if opts.app_base_path ~= nil and type(opts.app_base_path) ~= "string" then
    error("evlua.serve: option 'app_base_path' (string) expected, got "
          .. type(opts.app_base_path), 2)
  end
  local server = { handle_request = opts.handle_request, app_base_path = opts.app_base_path }
  local listen_opts = {}
  for k, v in pairs(opts) do
    if k ~= "handle_request" and k ~= "app_base_path" then listen_opts[k] = v end
  end
  return core.listen(listen_opts, function(req, info) on_request(server, req, info) end)
end

return M
