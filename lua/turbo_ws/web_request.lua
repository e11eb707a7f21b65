--- turbo_ws.web_request -- Turbo's HTTPRequest (`turbo.web.HTTPRequest`):
-- what a handler sees as `self.request`, built from the core's request
-- `info`, with the fields a WebSocket connection rarely reads built lazily;
-- and the request log line. turbo_ws.web routes requests and answers them.

local core = require "turbo_ws.core"
local class = require "turbo_ws.class"
local httputil = require "turbo_ws.httputil"
local log = require "turbo_ws.log"
local util = require "turbo_ws.util"

local type, tostring, error, ipairs, pairs, pcall, getmetatable, rawget, rawset =
      type, tostring, error, ipairs, pairs, pcall, getmetatable, rawget, rawset
local sformat, slower, sfind, smatch, ssub = string.format, string.lower,
      string.find, string.match, string.sub
-- LuaJIT's table.new presizes a table; elsewhere a plain table does.
local has_table_new, table_new = pcall(require, "table.new")
local new_table = has_table_new and table_new or function() return {} end

local M = {}

local HTTPRequest = class("HTTPRequest")
M.HTTPRequest = HTTPRequest

-- Form fields of an application/x-www-form-urlencoded body (else empty);
-- `ctype` is the Content-Type header's value.
local function form_arguments(ctype, body)
  ctype = ctype or ""
  if type(ctype) == "table" then ctype = ctype[1] end
  if body and body ~= "" and sfind(slower(ctype), "application/x-www-form-urlencoded", 1, true) then
    return httputil.parse_post_arguments(body)
  end
  return {}
end

-- The pristine copy of a request, flat: the request line and what the core
-- said of it at these indices, then the header fields from FIRST_HEADER on
-- as name1, value1, name2, ... (false stands for a missing value).
local METHOD, URI, VERSION, REMOTE_IP, REMOTE_PORT, QUERY, START = 1, 2, 3, 4, 5, 6, 7
local FIRST_HEADER = 8

-- A request header's value as HTTPParser:get(name) gives it (a string, a
-- table of strings when repeated, nil; then the count), looked up in the
-- flat list `raw`.
local function raw_header(raw, name)
  local lname, value, count = slower(name), nil, 0
  for i = FIRST_HEADER, #raw, 2 do
    if slower(raw[i]) == lname then
      count = count + 1
      value = httputil._gather(value, count, raw[i + 1])
    end
  end
  return value, count
end

-- Lazy fields. A WebSocket connection keeps its request for as long as it
-- is open, and most handlers never read these, so for requests routed to
-- a class with `_lazy_request` (WebSocketHandler) they are built on first
-- access, from the pristine copy of the request in self._raw; each gives
-- what the eager constructor would have given at arrival, whatever the
-- program changed in the meantime and in whichever order they are read.
-- `headers` builds them all, as the eager constructor did, and drops
-- _raw. The only visible difference: pairs() lists a field once read.
-- (With the request line's url, path, version, the empty body and "http"
-- left out too, a request holds 8 fields: one 8-slot hash part, not 16.)
local LAZY = {}

-- Fields read straight from _raw, never stored while it is there: with
-- them a lazy request holds 2 or 3 fields (_req, _raw, an https
-- protocol; and `class`), one 4-slot hash part. Stored when _raw goes
-- (headers read).
local RAW_FIELDS = {
  method = METHOD, uri = URI, remote_ip = REMOTE_IP, remote_port = REMOTE_PORT,
  query = QUERY, _start = START,
}

-- The path of an origin-form request target: up to the query or fragment.
local function target_path(uri)
  return (smatch(uri, "^[^?#]*"))
end

function LAZY.url(self) return self._raw[URI] or nil end
function LAZY.path(self) return target_path(self._raw[URI]) end
function LAZY.version(self) return self._raw[VERSION] or nil end
-- Lazy requests are those without a body, and secure ones store "https".
function LAZY.body() return "" end
function LAZY.protocol() return "http" end

function LAZY.host(self)
  return (raw_header(self._raw, "Host"))
end

-- The query arguments, as request.headers:get_arguments() parses them
-- (the eager constructor set request.arguments from it). Read first only
-- on lazy requests, whose target always parses.
function LAZY.arguments(self)
  local fields = httputil.parse_url_fields(self._raw[URI])
  local query = fields and fields[httputil.UF.QUERY]
  return query and httputil.parse_post_arguments(query) or {}
end

-- Turbo keeps form fields on the connection object; programs reach them
-- as self.request.connection.arguments. A lazy request had no body (an
-- eager one gets this field in _materialize, from its body).
function LAZY.connection()
  return { arguments = {} }
end

-- Builds lazy field `key` unless it is there; returns its value.
local function build_field(self, key)
  local value = rawget(self, key)
  if value == nil then
    value = LAZY[key](self)
    if value ~= nil then rawset(self, key, value) end  -- (NOTE on nil fields)
  end
  return value
end

local REQUEST_LINE_FIELDS = { "url", "path", "version", "body", "protocol" }

function LAZY.headers(self)
  local raw = self._raw
  local source = { method = raw[METHOD] or nil, url = raw[URI] or nil,
    version = raw[VERSION] or nil, names_lowered = true }
  for i = FIRST_HEADER, #raw, 2 do source[#source + 1] = { raw[i], raw[i + 1] } end
  local headers = httputil.HTTPParser(source)
  local arguments = rawget(self, "arguments")
  if arguments == nil then
    -- What the eager constructor did (it raises for a target it cannot parse).
    rawset(self, "arguments", headers:get_arguments())
  else
    -- Already read: leave the parser as get_arguments() would have, sharing them.
    headers._url_fields = httputil.parse_url_fields(raw[URI])
    headers._arguments = arguments
    headers._arguments_parsed = true
  end
  for _, key in ipairs(REQUEST_LINE_FIELDS) do build_field(self, key) end
  build_field(self, "host")
  build_field(self, "connection")
  for key, i in pairs(RAW_FIELDS) do
    if rawget(self, key) == nil and raw[i] ~= false then rawset(self, key, raw[i]) end
  end
  self._raw = nil
  return headers
end

-- Instances look fields of _raw and lazy fields up here, then methods.
local instance_methods = HTTPRequest.__instanceDict
HTTPRequest.__index = function(self, key)
  local raw = rawget(self, "_raw")
  if raw ~= nil then
    local i = RAW_FIELDS[key]
    if i ~= nil then
      local value = raw[i]
      if value == false then return nil end
      return value
    end
    if LAZY[key] ~= nil then return build_field(self, key) end
  end
  return instance_methods[key]
end

--- Built from the core's request `info` (see docs/core.md); `req` is the
-- core request to answer, `secure` whether it arrived over TLS. With
-- `lazy` (the Application passes it) headers, host, arguments and
-- connection are left to be built on first access (see LAZY above) when
-- that cannot fail or differ: an origin-form target and no body.
function HTTPRequest:initialize(req, info, secure, lazy)
  self._req = req
  local start = util.gettimemonotonic()
  local uri = info.uri
  local body = info.body or ""
  -- The header fields flat, not as {name, value} tables: a third of the size.
  local fields = info.headers or {}
  local raw, n = new_table(FIRST_HEADER - 1 + 2 * #fields, 0), FIRST_HEADER - 1
  raw[METHOD], raw[URI], raw[VERSION] = info.method or false, uri or false, info.version or false
  raw[REMOTE_IP], raw[REMOTE_PORT] = info.remote_ip or false, info.remote_port or false
  raw[QUERY], raw[START] = info.query or false, start
  for _, pair in ipairs(fields) do
    raw[n + 1], raw[n + 2] = pair[1], pair[2]
    n = n + 2
  end
  self._raw = raw
  if secure then self.protocol = "https" end
  -- (Only HTTPRequest's own instances look fields up through its __index.)
  lazy = lazy and getmetatable(self) == instance_methods and body == ""
    and type(uri) == "string" and ssub(uri, 1, 1) == "/" and core.split_url(uri) ~= nil
    and info.path == target_path(uri)
  if not lazy then
    self._start, self.method, self.uri = start, info.method, uri
    if info.query ~= nil then self.query = info.query end  -- (NOTE on nil fields)
    self.remote_ip, self.remote_port = info.remote_ip, info.remote_port
    self.url, self.path, self.version, self.body = uri, info.path, info.version, body
    if not secure then self.protocol = "http" end
    self:_materialize()
  end
end

-- request.path, without building it (the router reads it on every request).
function HTTPRequest:_path()
  if rawget(self, "_raw") == nil or rawget(self, "path") ~= nil then return self.path end
  return LAZY.path(self)
end

-- Builds every lazy field now (the constructor's eager behaviour). Runs
-- before any program code could change self.body.
function HTTPRequest:_materialize()
  local raw = rawget(self, "_raw")
  if raw == nil then return end
  if rawget(self, "connection") == nil then
    self.connection = { arguments = form_arguments(raw_header(raw, "Content-Type"), self.body) }
  end
  build_field(self, "headers")  -- and host and arguments
end

-- request.headers:get(name), without building request.headers.
function HTTPRequest:_header(name)
  local raw = rawget(self, "_raw")
  if raw == nil or rawget(self, "headers") ~= nil then return self.headers:get(name) end
  return raw_header(raw, name)
end

--- Milliseconds since the request arrived.
function HTTPRequest:request_time()
  return util.gettimemonotonic() - self._start
end

--- "http://host/path?query" as the client asked for it.
function HTTPRequest:full_url()
  return sformat("%s://%s%s", self.protocol, tostring(self.host or ""), self.uri)
end

function HTTPRequest:supports_http_1_1()
  return self.version == "HTTP/1.1"
end

--- Whether the request got its answer (or can get none: it was upgraded).
function HTTPRequest:_answered()
  local req = self._req
  return not req or req:answered()
end

--- Sends the one response this request gets, and logs it. If the core
-- refuses it (a header value with CR, LF or NUL, say), the core has
-- answered 500 at once; that is logged and the error raised on.
function HTTPRequest:_respond(status, headers, body)
  if self:_answered() then error("the response to this request has already been sent", 3) end
  local req = self._req
  self._req = nil
  local ok, err = pcall(req.respond, req, status, headers, body)
  M.log_request(self, ok and status or 500)
  if not ok then error(err, 0) end
end

--- Logs one answered request, as Turbo's web.lua does.
function M.log_request(request, status)
  local line = sformat("[web.lua] %d %s %s %s (%s) %dms", status,
    httputil.status_codes[status] or "", tostring(request.method),
    tostring(request.uri), tostring(request.remote_ip), request:request_time())
  if status == 200 or status == 101 or status == 304 then
    log.success(line)
  else
    log.warning(line)
  end
end

return M
