--- turbo_ws.async -- Turbo.lua's turbo.async: `task(func, ...)` and the
-- HTTP(S) client (`HTTPClient`, `HTTPResponse`, `errors`) on
-- turbo_ws.core.http_request.
--
-- How a yield is resumed: every callback runs in a coroutine (the core's);
-- `coroutine.yield(t)` with a task `t` (what `task` and `fetch` return)
-- goes back to the core, which hands the coroutine to the yield handler
-- this module registers (`core.on_yield`). The handler keeps the coroutine
-- in the task; when the task finishes, the coroutine is resumed with its
-- results (with `core.resume`, which watches the coroutine's next yield
-- the same way, so a handler may yield any number of times). Yielding a
-- function resumes on the next loop turn with what the function returns;
-- any other value is resumed with -1, as in Turbo; a bare yield is left
-- alone (it belongs to whoever resumes it). Deliberate differences from Turbo:
-- docs/turbo-differences.md.

local core = require "turbo_ws.core"
local class = require "turbo_ws.class"
local httputil = require "turbo_ws.httputil"
local clientutil = require "turbo_ws.clientutil"
local ioloop = require "turbo_ws.ioloop"
local log = require "turbo_ws.log"
local util = require "turbo_ws.util"

local type, tostring, error, ipairs, pairs, select, pcall =
      type, tostring, error, ipairs, pairs, select, pcall
local sformat, supper, slower = string.format, string.upper, string.lower
local unpack = unpack or table.unpack

local async = {}

--- The error codes of HTTPResponse.error.code (the same table as
-- websocket.errors).
async.errors = clientutil.errors
local errors = async.errors

--------------------------------------------------------------------------
-- Tasks and resuming yielded coroutines

-- What `task` and `fetch` return: yielded, it resumes the coroutine with
-- its results once it finishes (Turbo's CoroutineContext).
local Task = class("CoroutineContext")

function Task:initialize()
  self._done = false
end

-- Resumes a coroutine as the loop runs callbacks: if it yields again, the
-- core hands it back to on_yield below; an error it raises is reported.
local resume = core.resume

local function pack(...) return { n = select("#", ...), ... } end

-- Resumes the waiting coroutine, if one yielded this task already.
function Task:_finish(...)
  if self._done then return end
  self._done = true
  self._results = pack(...)
  local co = self._co
  if co then
    self._co = nil
    resume(co, unpack(self._results, 1, self._results.n))
  end
end

-- A coroutine yielded this task: resume it when the task finishes (on the
-- next loop turn when it already has).
function Task:_await(co)
  if self._done then
    local results = self._results
    core.add_callback(function() resume(co, unpack(results, 1, results.n)) end)
  else
    self._co = co
  end
end

local function is_task(value)
  return type(value) == "table" and class.instanceOf(Task, value)
end

-- Deals with a coroutine that yielded `value`.
local function on_yield(co, value)
  if is_task(value) then
    value:_await(co)
  elseif type(value) == "function" then
    core.add_callback(function()
      local results = pack(pcall(value))
      if results[1] then
        resume(co, unpack(results, 2, results.n))
      else
        log.error("[async.lua] A yielded function raised: " .. tostring(results[2]))
        resume(co, -1)
      end
    end)
  elseif value ~= nil then
    log.warning(sformat("[async.lua] Callback yielded with unsupported value, %s.", type(value)))
    core.add_callback(function() resume(co, -1) end)
  end
end

-- The yield handler; turbo_ws.ioloop's stand-in calls it for the yield
-- that loaded this module.
function async._on_yield(co, value)
  local ok, err = pcall(on_yield, co, value)
  if not ok then log.error("[async.lua] " .. tostring(err)) end
end
core.on_yield(async._on_yield)

--- task(func, ...): calls func(..., callback, callback_arg) and returns a
-- task; yielding it resumes with the arguments func gave the callback
-- (after callback_arg).
function async.task(func, ...)
  if type(func) ~= "function" then
    error("async.task: bad argument #1 'func' (function expected, got " .. type(func) .. ")", 2)
  end
  local t = Task()
  local args = { n = select("#", ...) + 2, ... }
  args[args.n - 1] = function(task, ...) task:_finish(...) end
  args[args.n] = t
  func(unpack(args, 1, args.n))
  return t
end

--------------------------------------------------------------------------
-- HTTPResponse

--- What fetch resumes with: `error` ({code, message}) or `code`,
-- `reason`, `headers` (an httputil.HTTPParser), `body`, `url`; always
-- `request` (the HTTPHeaders sent) and `request_time` (ms).
async.HTTPResponse = class("HTTPResponse")

--------------------------------------------------------------------------
-- HTTPClient

async.HTTPClient = class("HTTPClient")
local HTTPClient = async.HTTPClient

local DEFAULT_USER_AGENT = "Turbo Client v2.1.5"
local SCHEMES = { http = "http", https = "https" }
-- Methods whose `params` become a form body (when there is no body).
local FORM_METHODS = { POST = true, PUT = true, DELETE = true, PATCH = true }
-- Core error kinds whose code differs from the WebSocketClient's: a body
-- over max_buffer_size filled Turbo's stream buffer, a socket error.
local HTTP_ERRORS = { too_big = errors.SOCKET_ERROR }

-- Raises on kwargs of the wrong type: misuse is an error at the call, as
-- everywhere in turbo_ws. (`body` of the wrong type is Turbo's
-- INVALID_BODY, `url` Turbo's INVALID_URL: answers, not errors.)
local KWARG_TYPES = {
  method = "string", params = "table", http_version = "string", use_gzip = "boolean",
  allow_redirects = "boolean", max_redirects = "number", on_headers = "function",
  request_timeout = "number", connect_timeout = "number", user_agent = "string",
  auth_username = "string", auth_password = "string", keep_alive = "boolean",
}

-- "HTTPClient: ssl_options.ca_path", for clientutil.check_tls.
local function ssl_option_name(name)
  return "HTTPClient: ssl_options." .. name
end

--- HTTPClient([ssl_options [, io_loop [, max_buffer_size]]]): ssl_options
-- {priv_file, cert_file, ca_path, verify_ca = true}; max_buffer_size
-- bounds a response body.
function HTTPClient:initialize(ssl_options, io_loop, max_buffer_size)
  if ssl_options ~= nil and type(ssl_options) ~= "table" then
    error("HTTPClient: ssl_options must be a table, got " .. type(ssl_options), 3)
  end
  clientutil.check_tls(ssl_options, nil, ssl_option_name, 3)
  if max_buffer_size ~= nil and type(max_buffer_size) ~= "number" then
    error("HTTPClient: max_buffer_size must be a number, got " .. type(max_buffer_size), 3)
  end
  self.ssl_options = ssl_options or {}
  if self.ssl_options.verify_ca == nil then self.ssl_options.verify_ca = true end
  self.io_loop = io_loop or ioloop.instance()
  self.max_buffer_size = max_buffer_size
end

-- An HTTPResponse carrying an error.
local function failure(code, message, request, start)
  local res = async.HTTPResponse()
  res.error = { code = code, message = message }
  res.request = request
  res.request_time = util.gettimemonotonic() - start
  return res
end

-- The request as Turbo shows it to on_headers (and in HTTPResponse.request).
local function request_headers(kwargs, method, target, form)
  local headers = httputil.HTTPHeaders()
  headers:set_method(method)
  headers:set_uri(target.target)
  headers:set_version(kwargs.http_version or "HTTP/1.1")
  headers:add("Host", target.host_header)
  headers:add("User-Agent", kwargs.user_agent or DEFAULT_USER_AGENT)
  if kwargs.cookie then headers:add("Cookie", clientutil.cookie_header(kwargs.cookie)) end
  local auth = clientutil.basic_auth(kwargs.auth_username, kwargs.auth_password)
  if auth then headers:add("Authorization", auth) end
  if form then headers:add("Content-Type", "application/x-www-form-urlencoded") end
  return headers
end

-- Core http_request options from the (possibly edited) headers and kwargs.
function HTTPClient:_request_options(kwargs, method, headers, target, body)
  local list = {}
  for _, field in ipairs(headers:to_list()) do
    -- An unchanged Host is the core's to write (and to rewrite on redirects).
    if not (slower(field[1]) == "host" and field[2] == target.host_header) then
      list[#list + 1] = field
    end
  end
  local connect_timeout, timeout, max_redirects = clientutil.request_limits(kwargs)
  return {
    method = headers:get_method() or method,
    version = headers:get_version(),
    headers = list,
    body = body,
    connect_timeout = connect_timeout,
    timeout = timeout,
    max_redirects = max_redirects,
    max_body_size = self.max_buffer_size,
    decompress = kwargs.use_gzip ~= false,
    session = self:_session(kwargs.keep_alive),
    tls = clientutil.tls_options(self.ssl_options),
  }
end

-- With keep_alive, the core session that keeps this client's connection
-- open for its next fetch; without, any kept connection is closed (as
-- Turbo closed its stream).
function HTTPClient:_session(keep_alive)
  if keep_alive then
    self._keep = self._keep or core.http_session()
    return self._keep
  end
  if self._keep then
    self._keep:close()
    self._keep = nil
  end
  return nil
end

-- The core's answer as an HTTPResponse.
local function response_from(answer, request, start)
  local res = async.HTTPResponse()
  local source = { status_code = answer.status, version = answer.version, names_lowered = true }
  for i, pair in ipairs(answer.headers) do source[i] = pair end
  res.headers = httputil.HTTPParser(source)
  res.code = answer.status
  res.reason = answer.reason
  res.body = answer.body
  res.url = answer.url
  res.request = request
  res.request_time = util.gettimemonotonic() - start
  return res
end

local function log_answer(method, url, res)
  local line = sformat("[async.lua] %s %s => %d %s %dms", method, url, res.code,
    tostring(res.reason), res.request_time)
  if res.code == 200 then log.success(line) else log.warning(line) end
end

--- fetch(url [, kwargs]): starts the request on the loop and returns a
-- task; `coroutine.yield(task)` gives the HTTPResponse.
function HTTPClient:fetch(url, kwargs)
  if kwargs ~= nil and type(kwargs) ~= "table" then
    error("HTTPClient:fetch: kwargs must be a table, got " .. type(kwargs), 2)
  end
  kwargs = kwargs or {}
  clientutil.check_kwargs("HTTPClient:fetch", kwargs, KWARG_TYPES, 2)
  local t, start = Task(), util.gettimemonotonic()
  local function finish(res)
    if res.error then log.error(sformat("[async.lua] Error code %d. %s", res.error.code, res.error.message)) end
    t:_finish(res)
  end
  local function fail_soon(code, message, request)
    local res = failure(code, message, request, start)
    core.add_callback(function() finish(res) end)
    return t
  end
  if self._in_progress then
    return fail_soon(errors.BUSY, "HTTPClient is busy.")
  end
  local method = supper(kwargs.method or "GET")
  local body = kwargs.body
  if body ~= nil and type(body) ~= "string" then
    return fail_soon(errors.INVALID_BODY, "Request body is not a string.")
  end
  local form = body == nil and FORM_METHODS[method] and kwargs.params ~= nil
  local target, code, message = clientutil.parse_target(url, not form and kwargs.params or nil, SCHEMES)
  if not target then return fail_soon(code, message) end
  if form then body = clientutil.encode_params(kwargs.params) end
  local headers = request_headers(kwargs, method, target, form)
  if kwargs.on_headers then kwargs.on_headers(headers) end
  local options = self:_request_options(kwargs, method, headers, target, body)
  core.http_request(target.url, options, function(answer, kind, msg)
    self._in_progress = false
    if not answer then
      return finish(failure(clientutil.error_code(kind, HTTP_ERRORS), msg, headers, start))
    end
    local res = response_from(answer, headers, start)
    log_answer(options.method, res.url, res)
    finish(res)
  end)
  self._in_progress = true
  return t
end

return async
