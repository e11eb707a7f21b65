--- turbo_ws.web -- Turbo.lua's turbo.web, the parts WebSocket programs use:
-- Application (routes are Lua patterns), RequestHandler, HTTPError,
-- ErrorHandler, StaticFileHandler and RedirectHandler, on top of
-- turbo_ws.core.
--
-- How a request flows: core.listen calls Application:_on_request(req, info)
-- inside a coroutine; the first route whose pattern matches the path gives
-- the handler class, which is instantiated as in Turbo
-- (`Handler(app, request, url_args, options)`) and asked to `_serve()`.
-- A plain handler runs prepare() and the method (get, post, ...), buffers
-- what it writes and answers with one `req:respond(...)` at finish(). The
-- WebSocketHandler (turbo_ws.websocket) overrides `_serve` to upgrade.
--
-- Deliberate differences from Turbo are listed in docs/turbo-differences.md.

local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local class = require "turbo_ws.class"
local httputil = require "turbo_ws.httputil"
local escape = require "turbo_ws.escape"
local log = require "turbo_ws.log"
local util = require "turbo_ws.util"
local hash = require "turbo_ws.hash"
local web_request = require "turbo_ws.web_request"
-- Handlers may yield tasks and functions (turbo_ws.ioloop sees to it).
require "turbo_ws.ioloop"

local type, tostring, tonumber, error, pairs, ipairs =
      type, tostring, tonumber, error, pairs, ipairs
local sformat, slower, sfind, smatch, ssub = string.format, string.lower,
      string.find, string.match, string.sub
local concat = table.concat
local unpack = unpack or table.unpack

local web = {}

--- What a handler sees as `self.request` (turbo_ws.web_request).
web.HTTPRequest = web_request.HTTPRequest
local HTTPRequest = web.HTTPRequest
web._log_request = web_request.log_request

-- NOTE on nil fields. Objects that live as long as a connection (the
-- WebSocketHandler, its request) avoid `t.field = nil` for a field that
-- is not there: Lua 5.1 and LuaJIT still give the key a hash slot, and if
-- the table is full that doubles its size (8 fields, 16 slots: +192 bytes).

local DEFAULT_SERVER_NAME = "turbo_ws"
local DEFAULT_CONTENT_TYPE = "text/html; charset=UTF-8"
local JSON_CONTENT_TYPE = "application/json; charset=UTF-8"

--------------------------------------------------------------------------
-- Small helpers

-- An error with its traceback, unless it is an HTTPError (those are
-- expected, not bugs).
local function traced(err)
  if type(err) == "table" then return err end
  return debug.traceback(tostring(err), 2)
end

-- Runs fn(...) and returns true, results; or false and the error, traced.
local function protected(fn, ...) return toolkit.xpcall(fn, traced, ...) end
web._protected = protected

local function is_http_error(err)
  return type(err) == "table" and class.instanceOf(web.HTTPError, err)
end

-- Values of a query/form argument table entry as an array of strings.
local function as_list(value)
  if value == nil then return {} end
  if type(value) == "table" then
    local list = {}
    for i, v in ipairs(value) do list[i] = v end
    return list
  end
  return { value }
end

--------------------------------------------------------------------------
-- HTTPError

--- Raise `error(web.HTTPError(code[, message]))` in a handler to answer
-- with that status; the message (default: the reason phrase) is the body.
web.HTTPError = class("HTTPError")

function web.HTTPError:initialize(code, message)
  if type(code) ~= "number" then
    error("HTTPError code argument must be number.")
  end
  self.code = code
  self.message = message or httputil.status_codes[code] or "Unknown"
end

function web.HTTPError:__tostring()
  return sformat("HTTPError %d: %s", self.code, tostring(self.message))
end

--------------------------------------------------------------------------
-- Cookies

-- Adds the pairs of one Cookie header ("a=1; b=2") to `jar`; names and
-- values are URL-unescaped because set_cookie escapes them.
local function parse_cookie_header(text, jar)
  for pair in text:gmatch("[^;]+") do
    -- Split at the first '=' and trimmed (escape.trim is linear: a pattern
    -- with a lazy part before %s*$ took seconds on a long run of spaces).
    local eq = sfind(pair, "=", 1, true)
    local name, value
    if eq then name, value = escape.trim(ssub(pair, 1, eq - 1)), escape.trim(ssub(pair, eq + 1)) end
    if name and name ~= "" then
      if ssub(value, 1, 1) == '"' and ssub(value, -1) == '"' and #value >= 2 then
        value = ssub(value, 2, -2)
      end
      jar[(escape.unescape(name))] = (escape.unescape(value))
    end
  end
  return jar
end

local function secure_cookie_payload(value)
  return sformat("%d|%d|%s", #value, math.floor(util.gettimeofday()), value)
end

-- What a secure cookie's HMAC signs: its name too (Turbo 2.1.4 on), so a
-- value signed for one cookie cannot be replayed under another name.
local function secure_cookie_mac(secret, name, payload)
  return hash.HMAC(secret, name .. "|" .. payload)
end

--------------------------------------------------------------------------
-- RequestHandler

web.RequestHandler = class("RequestHandler")
local RequestHandler = web.RequestHandler

-- On the class, not copied into every instance: `self.SUPPORTED_METHODS`
-- reads it all the same, and a handler narrows it per instance or per class.
RequestHandler.SUPPORTED_METHODS = { "GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS", "PATCH" }

-- A WebSocketHandler instance lives as long as its connection, so no
-- field is set that would only hold a default: _finished and _auto_finish
-- stay nil until set (nil meaning false and true), _status_code until set
-- (nil meaning 200), _set_cookie and _write_buffer until something is
-- added (NONE stands for them).
local NONE = {}

function RequestHandler:initialize(application, request, url_args, options)
  self.application = application
  self.request = request
  self._url_args = url_args or {}
  if options ~= nil then self.options = options end  -- (NOTE on nil fields)
  self:clear()
  self:on_create(options)
end

--- The Application's `settings` kwarg.
function RequestHandler:settings()
  return self.application and self.application.settings
end

-- Hooks a subclass may redefine.
function RequestHandler:prepare() end
function RequestHandler:on_create(options) end -- luacheck: ignore
function RequestHandler:on_finish() end
function RequestHandler:set_default_headers() end
function RequestHandler:on_connection_close() end

-- HTTP methods: 405 unless the subclass implements them.
for _, method in ipairs({ "head", "get", "post", "delete", "put", "options", "patch" }) do
  RequestHandler[method] = function() error(web.HTTPError(405)) end
end

---------------------------------------- input

--- Every value of query or form argument `name`, query first; an empty
-- table when absent. `strip` trims whitespace.
function RequestHandler:get_arguments(name, strip)
  local values = as_list(self.request.arguments and self.request.arguments[name])
  local connection = self.request.connection
  local form = connection and connection.arguments
  for _, v in ipairs(as_list(form and form[name])) do values[#values + 1] = v end
  if strip then
    for i, v in ipairs(values) do values[i] = escape.trim(v) end
  end
  return values
end

--- The first value of argument `name`; `default` when absent, or an
-- HTTPError 400 when there is no default.
function RequestHandler:get_argument(name, default, strip)
  local value = self:get_arguments(name, strip)[1]
  if value ~= nil then return value end
  if default ~= nil then return default end
  error(web.HTTPError(400, "Missing required argument."))
end

--- The request body decoded as JSON; nil unless the Content-Type is JSON
-- or `force` is true.
function RequestHandler:get_json(force)
  local ctype = self.request.headers:get("Content-Type") or ""
  if type(ctype) == "table" then ctype = ctype[1] end
  if force ~= true and not sfind(ctype, "application/json", 1, true) then
    return nil
  end
  return escape.json_decode(self.request.body)
end

--- Value of the request cookie `name`, or `default`.
function RequestHandler:get_cookie(name, default)
  if not self._cookies then
    local jar = {}
    -- Not self.request.headers: that would build a lazy request's headers.
    local header = self.request:_header("Cookie")
    for _, text in ipairs(as_list(header)) do parse_cookie_header(text, jar) end
    self._cookies = jar
  end
  local value = self._cookies[name]
  if value == nil then return default end
  return value
end

--- Value of a cookie made by set_secure_cookie. `default` when there is
-- no such cookie; raises an error when its signature does not verify
-- (forged, or another cookie_secret) or when it is older than `max_age`
-- seconds.
function RequestHandler:get_secure_cookie(name, default, max_age)
  local cookie = self:get_cookie(name)
  if not cookie then return default end
  local mac, len, timestamp, value = smatch(cookie, "^(%x+)|(%d+)|(%d+)|(.*)$")
  if not mac or tonumber(len) ~= #value then
    error("Secure cookie is malformed.", 2)
  end
  local expected = secure_cookie_mac(self:_cookie_secret(), name, sformat("%s|%s|%s", len, timestamp, value))
  if not hash.equal(slower(mac), expected) then
    error("Secure cookie does not match hash. Either the cookie is forged or the cookie secret has been changed.", 2)
  end
  if max_age and util.gettimeofday() - tonumber(timestamp) > max_age * 1000 then
    error("Cookie has expired.", 2)
  end
  return value
end

function RequestHandler:_cookie_secret()
  local kwargs = self.application and self.application.kwargs
  local secret = kwargs and kwargs.cookie_secret
  if type(secret) ~= "string" then
    error("No cookie secret has been set in the Application class.", 3)
  end
  return secret
end

---------------------------------------- output

--- Resets the response: headers, status and body.
function RequestHandler:clear()
  self.headers = httputil.HTTPHeaders()
  self:set_default_headers()
  -- set_default_headers may have set its own Server (Turbo's doc says so).
  if not self:get_header("Server") then
    self:add_header("Server", web._server_name(self.application))
  end
  if self._write_buffer ~= nil then self._write_buffer = nil end  -- (NOTE on nil fields)
  if self._status_code ~= nil then self._status_code = nil end  -- 200
end

function RequestHandler:add_header(name, value) self.headers:add(name, value) end
function RequestHandler:set_header(name, value) self.headers:set(name, value) end
function RequestHandler:get_header(name) return self.headers:get(name, true) end
function RequestHandler:clear_header(name) self.headers:remove(name) end

function RequestHandler:set_status(status_code)
  if type(status_code) ~= "number" then
    error("set_status method requires number.", 2)
  end
  self._status_code = status_code
end

function RequestHandler:get_status() return self._status_code or 200 end

--- Adds `chunk` to the body; a table is sent as JSON.
function RequestHandler:write(chunk)
  if self._finished then
    error("write() method was called after finish().", 2)
  end
  local t = type(chunk)
  if chunk == nil or chunk == "" then return end
  if t == "table" then
    self:set_header("Content-Type", JSON_CONTENT_TYPE)
    chunk = escape.json_encode(chunk)
  elseif t ~= "string" then
    error("Unsupported type written as response; " .. t, 2)
  end
  local buffer = self._write_buffer
  if buffer == nil then buffer = {}; self._write_buffer = buffer end
  buffer[#buffer + 1] = chunk
end

--- The core sends each response whole, at finish(); flush() only runs
-- its callback (on the next loop turn, as after a socket write).
function RequestHandler:flush(callback, arg)
  if callback then core.add_callback(function() callback(arg) end) end
end

function RequestHandler:set_async(bool)
  if type(bool) ~= "boolean" then error("bool must be boolean!", 2) end
  self._auto_finish = not bool
end

--- Accepted for compatibility; the response is still sent whole (with a
-- Content-Length) at finish().
function RequestHandler:set_chunked_write()
  if self._finished then
    error("Headers already written, can not switch to chunked write.", 2)
  end
  self.chunked = true
end

function RequestHandler:finished() return self._finished == true end

--- Redirect with 302, or 301 when `permanent`; finishes the request.
function RequestHandler:redirect(url, permanent)
  if self._finished then
    error("Cannot redirect after headers have been written", 2)
  end
  self:set_status(permanent and 301 or 302)
  self:set_header("Location", url)
  self:finish()
end

function RequestHandler:send_error(status_code, msg)
  if type(status_code) ~= "number" then error("status code must be a number", 2) end
  error(web.HTTPError(status_code, msg))
end

--- Sets a response cookie that expires after `expire_hours` (default 1,
-- as in Turbo; 0 expires it at once). Name and value are URL-escaped.
function RequestHandler:set_cookie(name, value, domain, expire_hours)
  local cookies = self._set_cookie
  if cookies == nil then cookies = {}; self._set_cookie = cookies end
  cookies[#cookies + 1] = {
    name = tostring(name), value = tostring(value or ""),
    domain = domain, expire_hours = expire_hours or 1,
  }
end

--- Sets a cookie signed with HMAC-SHA1 under the Application's
-- cookie_secret: "hmac|length|timestamp_ms|value" (signed, not encrypted;
-- the HMAC covers the name too).
function RequestHandler:set_secure_cookie(name, value, domain, expire_hours)
  local payload = secure_cookie_payload(tostring(value))
  local mac = secure_cookie_mac(self:_cookie_secret(), name, payload)
  self:set_cookie(name, mac .. "|" .. payload, domain, expire_hours)
end

function RequestHandler:clear_cookie(name, domain)
  self:set_cookie(name, "", domain, 0)
end

-- Appends a Set-Cookie field to `list` for each cookie set so far.
function RequestHandler:_add_cookie_headers(list)
  for _, c in ipairs(self._set_cookie or NONE) do
    local expires = c.expire_hours == 0 and 0 or os.time() + c.expire_hours * 3600
    local parts = { (escape.escape(c.name)) .. "=" .. (escape.escape(c.value)), "Path=/" }
    if c.domain then parts[#parts + 1] = "Domain=" .. c.domain end
    -- An HTTP date (RFC 6265); Turbo wrote its dashed cookie date here.
    parts[#parts + 1] = "Expires=" .. util.time_format_http_header(expires * 1000)
    list[#list + 1] = { "Set-Cookie", concat(parts, "; ") }
  end
  return list
end

-- The response headers as the core wants them: { {name, value}, ... }.
function RequestHandler:_response_headers()
  local status = self._status_code or 200
  if status ~= 204 and status ~= 304 and not self:get_header("Content-Type") then
    self:add_header("Content-Type", DEFAULT_CONTENT_TYPE)
  end
  return self:_add_cookie_headers(self.headers:to_list())
end

--- Sends the response; only once per request.
function RequestHandler:finish(chunk)
  if self._finished then
    error("finish() called twice. Something terrible has happened", 2)
  end
  if chunk ~= nil then self:write(chunk) end
  local status = self._status_code or 200
  if not httputil.status_codes[status] then
    -- Turbo's HTTPHeaders:set_status_code raises here (-> 500).
    error(sformat("Invalid HTTP status code given: %d", status), 2)
  end
  self._finished = true
  local body = concat(self._write_buffer or NONE)
  self._write_buffer = nil
  self.request:_respond(self._status_code or 200, self:_response_headers(), body)
  self:on_finish()
end

---------------------------------------- dispatch

-- Calls a request method: a function, or Turbo's table form
-- { pre = fn|{fn...}, main = ..., post = ... }.
local function call_method(self, method, args)
  if type(method) ~= "table" then
    return method(self, unpack(args))
  end
  for _, stage in ipairs({ "pre", "main", "post" }) do
    local fns = method[stage]
    if type(fns) == "function" then fns = { fns } end
    for _, fn in ipairs(fns or {}) do fn(self, unpack(args)) end
  end
end

--- Runs prepare() and the request method (Turbo's entry point).
function RequestHandler:_execute()
  if not util.is_in(self.request.method, self.SUPPORTED_METHODS) then
    error(web.HTTPError(405))
  end
  self:prepare()
  if self._finished then return end
  local name = slower(self.request.method)
  -- self.options holds the route's option value (Turbo's API), which
  -- shadows the OPTIONS method on the instance: take that one from the class.
  local method = name == "options" and self.class.__instanceDict.options or self[name]
  if method == nil then error(web.HTTPError(405)) end
  call_method(self, method, self._url_args)
  -- (Not when another handler, an ErrorHandler say, answered the request.)
  if self._auto_finish ~= false and not self._finished and not self.request:_answered() then
    self:finish()
  end
end

--- Called by the Application for each request. A request the handler
-- left unanswered and not asynchronous (set_async(true)) -- a subclass
-- that replaced finish() or _execute, say -- gets a 500 now: no client
-- waits for an answer nothing will send.
function RequestHandler:_serve()
  local ok, err = protected(self._execute, self)
  if not ok then
    web._fail_request(self.request, err, self.application)
  elseif self._auto_finish ~= false and not self.request:_answered() then
    web._fail_request(self.request, "the handler returned without answering the request", self.application)
  end
end

--------------------------------------------------------------------------
-- Answers, logging


--- The `Server` field of `app`'s answers (its application_name).
function web._server_name(app)
  return app and app.application_name or DEFAULT_SERVER_NAME
end

--- Answers `request` with an error page: an HTTPError's code and message,
-- or a 500 for any other error (logged with its traceback; not sent).
-- `app` (the Application, when known) names the server, as on its other
-- answers.
function web._fail_request(request, err, app)
  local code, message
  local ctype = "text/plain; charset=UTF-8"
  if is_http_error(err) then
    code, message = err.code, err.message
    if type(message) == "table" then
      -- Turbo's ErrorHandler write()s the message: a table goes out as JSON.
      local ok, json = pcall(escape.json_encode, message)
      message = ok and json or httputil.status_codes[code] or "Unknown"
      if ok then ctype = JSON_CONTENT_TYPE end
    else
      message = tostring(message)
    end
    if not httputil.status_codes[code] then
      -- Turbo's ErrorHandler failed on it at finish (an invalid status).
      log.error(sformat("[web.lua] HTTPError with an invalid status code: %s", tostring(code)))
      code, message, ctype = 500, httputil.status_codes[500], "text/plain; charset=UTF-8"
    end
  else
    log.error("[web.lua] Error in RequestHandler:\n" .. tostring(err))
    code, message = 500, httputil.status_codes[500]
  end
  if request:_answered() then
    -- The response already went out (e.g. an error after finish()).
    return
  end
  request:_respond(code, { { "Content-Type", ctype },
    { "Server", web._server_name(app) } }, message)
end

--------------------------------------------------------------------------
-- StaticFileHandler

local CONTENT_TYPES = {
  html = "text/html", htm = "text/html", css = "text/css",
  js = "application/javascript", mjs = "application/javascript",
  json = "application/json", map = "application/json",
  txt = "text/plain", md = "text/markdown", csv = "text/csv",
  xml = "application/xml", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  ico = "image/x-icon", webp = "image/webp", bmp = "image/bmp",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  pdf = "application/pdf", wasm = "application/wasm", zip = "application/zip",
  gz = "application/gzip", mp3 = "audio/mpeg", ogg = "audio/ogg",
  wav = "audio/wav", mp4 = "video/mp4", webm = "video/webm", lua = "text/plain",
  xhtml = "application/xhtml+xml", ics = "text/calendar", rtf = "application/rtf",
  tif = "image/tiff", tiff = "image/tiff", svgz = "image/svg+xml", avif = "image/avif",
  mpeg = "video/mpeg", mpg = "video/mpeg", mov = "video/quicktime",
  avi = "video/x-msvideo", flac = "audio/flac", m4a = "audio/mp4",
  tar = "application/x-tar", tsv = "text/tab-separated-values",
  doc = "application/msword", xls = "application/vnd.ms-excel",
  ppt = "application/vnd.ms-powerpoint", rss = "application/rss+xml",
  atom = "application/atom+xml", epub = "application/epub+zip",
}
web.CONTENT_TYPES = CONTENT_TYPES

-- The system's map of the rest (/etc/mime.types, Debian's media-types
-- package), read once, at the first extension the table does not know.
local system_types
local function system_content_type(ext)
  if not system_types then
    system_types = {}
    local file = io.open("/etc/mime.types", "r")
    if file then
      for line in file:lines() do
        local ctype, exts = smatch(line, "^([^#%s]+)%s+([^#]+)")
        for e in (exts or ""):gmatch("%S+") do
          e = slower(e)
          if system_types[e] == nil then system_types[e] = ctype end
        end
      end
      file:close()
    end
  end
  return system_types[ext]
end

--- Content type for a file name, from its extension.
function web.content_type(path)
  local ext = smatch(path, "%.([%w]+)$")
  ext = ext and slower(ext)
  local ctype = ext and (CONTENT_TYPES[ext] or system_content_type(ext))
  if not ctype then return "application/octet-stream" end
  if sfind(ctype, "^text/") or ctype == "application/javascript" then
    return ctype .. "; charset=UTF-8"
  end
  return ctype
end

-- A URL-supplied file name may not leave the directory: no "..", no
-- absolute paths, no NUL bytes or backslashes.
local function safe_relative(name)
  if sfind(name, "%z") or sfind(name, "\\", 1, true) or ssub(name, 1, 1) == "/" then
    return false
  end
  for segment in name:gmatch("[^/]+") do
    if segment == ".." then return false end
  end
  return true
end

-- Contents of a regular file, or nil (missing, unreadable, a directory).
local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

--- Serves one file (route option "path/file") or the files of a
-- directory (route option "path/", file name = the route's first capture).
web.StaticFileHandler = class("StaticFileHandler", RequestHandler)

function web.StaticFileHandler:prepare()
  if type(self.options) ~= "string" or self.options == "" then
    error("StaticFileHandler not initialized with correct parameters.")
  end
end

function web.StaticFileHandler:_file_path()
  local base = self.options
  if ssub(base, -1) ~= "/" then return base end
  local name = self._url_args[1]
  if type(name) ~= "string" or name == "" then error(web.HTTPError(404)) end
  name = escape.unescape(name)
  if not safe_relative(name) then error(web.HTTPError(403)) end
  return base .. name
end

function web.StaticFileHandler:get()
  local path = self:_file_path()
  local data = read_file(path)
  if not data then error(web.HTTPError(404)) end
  self:set_header("Content-Type", web.content_type(path))
  self:write(data)
  self:finish()
end

-- The core sends no body for HEAD and keeps the Content-Length.
web.StaticFileHandler.head = web.StaticFileHandler.get

--------------------------------------------------------------------------
-- ErrorHandler

--- ErrorHandler(application, request, code [, message]) answers `request`
-- at once with status `code` and `message` (default: the reason phrase)
-- as the body, as Turbo's. The Application answers its own errors
-- without it (text/plain); a program may use it for its own.
web.ErrorHandler = class("ErrorHandler", RequestHandler)

function web.ErrorHandler:initialize(application, request, code, message)
  RequestHandler.initialize(self, application, request)
  self:write(message or httputil.status_codes[code])
  self:set_status(code)
  self:finish()
end

--------------------------------------------------------------------------
-- RedirectHandler

--- Redirects (301) every request to the URL given as route option.
web.RedirectHandler = class("RedirectHandler", RequestHandler)

function web.RedirectHandler:prepare()
  if type(self.options) ~= "string" then
    error(web.HTTPError(500, "RedirectHandler executed without URL argument."))
  end
  self:redirect(self.options, true)
end

--------------------------------------------------------------------------
-- Application

--- Application(handlers, kwargs): handlers is { {pattern, HandlerClass
-- [, options]}, ... }; kwargs: cookie_secret, settings, default_host,
-- application_name.
web.Application = class("Application")
local Application = web.Application

function Application:initialize(handlers, kwargs)
  self.handlers = handlers or {}
  self.kwargs = kwargs or {}
  self.settings = self.kwargs.settings
  self.default_host = self.kwargs.default_host
  self.application_name = self.kwargs.application_name or DEFAULT_SERVER_NAME
  self.servers = {}
end

function Application:set_server_name(name) self.application_name = name end
function Application:get_server_name() return self.application_name end

function Application:add_handler(pattern, handler, arg)
  self.handlers[#self.handlers + 1] = { pattern, handler, arg }
end

-- Core listen options a program may pass in listen()'s kwargs (see
-- docs/core.md): limits, keep-alive pings, the listen queue.
local LISTEN_OPTIONS = {
  "max_message_size", "max_frame_size", "max_buffered", "read_buffer_size",
  "close_timeout", "handshake_timeout", "max_body_size", "max_header_size",
  "max_headers", "max_connections", "ping_interval", "idle_timeout",
  "backlog", "reuse_port", "permessage_deflate", "close_slow_readers",
}

-- The Turbo face's send queue limit per connection, listeners and
-- clients alike (the core's default is 1 MiB). Turbo queued every write
-- without limit and its programs do not check write_message's result: a
-- handler that writes a few large messages at once must not see the later
-- ones refused. 64 MiB still bounds what a peer that never reads can hold.
web._MAX_BUFFERED = 64 * 1024 * 1024

-- kwargs.ssl_options -> core tls: Turbo's {cert_file, key_file}, plus the
-- core's client_ca_file (require client certificates).
-- A true value that is not a table raises: serving in plain text when
-- TLS was asked for would fail open. (nil or false: plain, as Turbo.)
local function tls_options(ssl)
  if not ssl then return nil end
  if type(ssl) ~= "table" then
    error("Application:listen: bad argument #3 'kwargs' (ssl_options: table expected, got "
      .. type(ssl) .. ")", 3)
  end
  local cert, key = ssl.cert_file, ssl.key_file or ssl.priv_file
  if not cert or not key then
    error("ssl_options needs cert_file and key_file", 3)
  end
  return { cert_file = cert, key_file = key, client_ca_file = ssl.client_ca_file }
end

--- Starts serving on `port` (0 picks a free one) and `address` (default
-- all IPv4 interfaces). kwargs.ssl_options = {cert_file, key_file} serves
-- https/wss. Returns the core server (`:port()`, `:close()`); Turbo
-- returned nothing.
function Application:listen(port, address, kwargs)
  kwargs = kwargs or {}
  if type(kwargs) ~= "table" then
    error("Application:listen: bad argument #3 'kwargs' (table expected, got " .. type(kwargs) .. ")", 2)
  end
  local options = { host = address or "0.0.0.0", port = port or 0 }
  options.tls = tls_options(kwargs.ssl_options)
  for _, name in ipairs(LISTEN_OPTIONS) do options[name] = kwargs[name] end
  options.max_buffered = options.max_buffered or web._MAX_BUFFERED
  local secure = options.tls ~= nil
  local ok, server = pcall(core.listen, options, function(req, info)
    self:_on_request(req, info, secure)
  end)
  if not ok then
    -- The core's refusal (a bad option, a port in use), in this call's words.
    error("Application:listen: " .. toolkit.core_refusal(server, "listen"), 2)
  end
  self.servers[#self.servers + 1] = server
  return server
end

--- Stops every listener this Application started (not in Turbo).
function Application:close()
  for _, server in ipairs(self.servers) do server:close() end
  self.servers = {}
end

--- The first route matching the request path: handler class, captures
-- (the whole match when the pattern has none, as string.match gives)
-- and the route's options.
function Application:_get_request_handlers(request)
  local path = request:_path() or "/"
  for _, route in ipairs(self.handlers) do
    local captures = { smatch(path, route[1]) }
    if #captures > 0 then return route[2], captures, route[3] end
  end
end

function Application:_on_request(req, info, secure)
  local request = HTTPRequest(req, info, secure, true)
  local handler_class, args, options = self:_get_request_handlers(request)
  -- Only handlers whose request lives long (WebSocketHandler) get the lazy
  -- fields; for the others the request is as it always was.
  if not (type(handler_class) == "table" and handler_class._lazy_request) then
    request:_materialize()
  end
  if not handler_class then
    if self.default_host then
      request:_respond(301, { { "Location", self.default_host },
        { "Content-Type", DEFAULT_CONTENT_TYPE }, { "Server", web._server_name(self) } }, "")
    else
      web._fail_request(request, web.HTTPError(404), self)
    end
    return
  end
  local ok, handler = protected(handler_class, self, request, args, options)
  if not ok then
    web._fail_request(request, handler, self)
    return
  end
  handler:_serve()
end

return web
