--- turbo_ws.clientutil -- what the Turbo face's two clients share
-- (websocket.WebSocketClient and async.HTTPClient): Turbo's error codes
-- and the core error kinds they stand for, the URL with `params`, the
-- `cookie` and Basic-auth headers, and `ssl_options` as core TLS options.
-- Internal: programs reach the codes as `websocket.errors` and
-- `async.errors` (this same table).

local core = require "turbo_ws.core"
local escape = require "turbo_ws.escape"
local toolkit = require "turbo_ws.toolkit"

local type, tostring, tonumber, ipairs, pairs, next, select =
      type, tostring, tonumber, ipairs, pairs, next, select
local slower = string.lower
local concat, sort = table.concat, table.sort

local clientutil = {}

-- The longest timeout the core takes (its options' bound, in seconds).
local MAX_SECONDS = 1e9

--- Turbo's error codes (its websocket.lua and async.lua number them alike).
-- When each one happens is listed in docs/turbo-differences.md.
clientutil.errors = {
  INVALID_URL = -1,
  INVALID_SCHEMA = -2,
  COULD_NOT_CONNECT = -3,
  PARSE_ERROR_HEADERS = -4,
  CONNECT_TIMEOUT = -5,
  REQUEST_TIMEOUT = -6,
  NO_HEADERS = -7,
  REQUIRES_BODY = -8,
  INVALID_BODY = -9,
  SOCKET_ERROR = -10,
  SSL_ERROR = -11,
  BUSY = -12,
  REDIRECT_MAX = -13,
  CALLBACK_ERROR = -14,
  BAD_HTTP_STATUS = -15,
  WEBSOCKET_PROTOCOL_ERROR = -16,
  -- turbo_ws: a redirect from wss/https to ws/http, never followed.
  INSECURE_REDIRECT = -17,
}
local errors = clientutil.errors

-- Core error kind -> Turbo error code.
local KIND_TO_ERROR = {
  bad_url = errors.INVALID_URL,
  bad_scheme = errors.INVALID_SCHEMA,
  dns = errors.COULD_NOT_CONNECT,
  refused = errors.COULD_NOT_CONNECT,
  connect = errors.COULD_NOT_CONNECT,
  connect_timeout = errors.CONNECT_TIMEOUT,
  handshake_timeout = errors.REQUEST_TIMEOUT,
  timeout = errors.REQUEST_TIMEOUT,
  tls = errors.SSL_ERROR,
  no_response = errors.NO_HEADERS,
  bad_response = errors.PARSE_ERROR_HEADERS,
  bad_handshake = errors.WEBSOCKET_PROTOCOL_ERROR,
  bad_status = errors.BAD_HTTP_STATUS,
  redirects = errors.REDIRECT_MAX,
  insecure_redirect = errors.INSECURE_REDIRECT,
  protocol = errors.WEBSOCKET_PROTOCOL_ERROR,
  too_big = errors.WEBSOCKET_PROTOCOL_ERROR,
  io = errors.SOCKET_ERROR,
  closed = errors.SOCKET_ERROR,
}

--- The Turbo code for a core error kind; `overrides` (kind -> code) first.
function clientutil.error_code(kind, overrides)
  return (overrides and overrides[kind]) or KIND_TO_ERROR[kind] or errors.SOCKET_ERROR
end

--- Raises for a kwarg of the wrong type (misuse is an error at the
-- call; Turbo failed later or not at all): `types` maps kwarg names to
-- type names, and `cookie` may be a string or a table. `fname` names the
-- call in the message; `level` is error()'s, as seen from the caller.
function clientutil.check_kwargs(fname, kwargs, types, level)
  for name, expected in pairs(types) do
    local value = kwargs[name]
    if value ~= nil and type(value) ~= expected then
      error(("%s: kwarg '%s' must be a %s, got %s"):format(fname, name, expected, type(value)), level + 1)
    end
  end
  local cookie = kwargs.cookie
  if cookie ~= nil and type(cookie) ~= "string" and type(cookie) ~= "table" then
    error(fname .. ": kwarg 'cookie' must be a string or a table", level + 1)
  end
  -- The ranges the core takes (redirects up to 100, timeouts up to 1e9 s):
  -- misuse raises here, at the call and naming the kwarg, not later as the
  -- core's error about its own option or as a failed connection.
  local redirects = kwargs.max_redirects
  if redirects ~= nil and not (redirects >= 0 and redirects <= 100 and redirects % 1 == 0) then
    error(("%s: kwarg 'max_redirects' must be a whole number from 0 to 100, got %s")
      :format(fname, tostring(redirects)), level + 1)
  end
  for _, name in ipairs({ "connect_timeout", "request_timeout" }) do
    local seconds = kwargs[name]
    if seconds ~= nil and not (seconds >= 0 and seconds <= MAX_SECONDS) then
      error(("%s: kwarg '%s' must be a number of seconds from 0 to 1e9, got %s")
        :format(fname, name, tostring(seconds)), level + 1)
    end
  end
  if kwargs.allow_redirects ~= nil and type(kwargs.allow_redirects) ~= "boolean" then
    error(fname .. ": kwarg 'allow_redirects' must be a boolean, got " .. type(kwargs.allow_redirects), level + 1)
  end
end

--- The kwargs both Turbo clients read the same way, as core options:
-- connect and request timeouts (Turbo's 20 s and 60 s) and the redirect
-- limit (`max_redirects`, 4; none with `allow_redirects = false`).
function clientutil.request_limits(kwargs)
  local max_redirects = kwargs.max_redirects or 4
  if kwargs.allow_redirects == false then max_redirects = 0 end
  return kwargs.connect_timeout or 20, kwargs.request_timeout or 60, max_redirects
end

--- "a=1&b=2" from a params table, keys sorted so the URL is predictable.
function clientutil.encode_params(params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = params[k]
    if v == nil then v = params[tonumber(k)] end
    parts[i] = (escape.escape(k)) .. "=" .. (escape.escape(tostring(v)))
  end
  return concat(parts, "&")
end

-- The request target (path?query) with `params` (a table) joined to the
-- query; an empty target becomes "/" when params need one.
local function target_with(parts, params)
  local path, query = parts.path, parts.query
  if type(params) == "table" and next(params) ~= nil then
    if path == "" and not query then path = "/" end
    query = (query and query .. "&" or "") .. clientutil.encode_params(params)
  end
  return query and path .. "?" .. query or path
end

local DEFAULT_PORTS = { ws = 80, wss = 443, http = 80, https = 443 }

--- Checks `address` (split by the core) and rebuilds it with the scheme
-- to use: `schemes` maps each accepted one (lower case) to it. `params`
-- (a table) joins the query. Returns {url, scheme, host_header, target =
-- path?query}, or nil, error code, message.
function clientutil.parse_target(address, params, schemes)
  if type(address) ~= "string" then
    return nil, errors.INVALID_URL, "URL must be string."
  end
  local invalid = "Invalid URL provided: " .. address
  local parts = core.split_url(address)
  if not parts or not parts.host then return nil, errors.INVALID_URL, invalid end
  local mapped = schemes[slower(parts.scheme)]
  if not mapped then
    return nil, errors.INVALID_SCHEMA, "Invalid schema used in URL parameter: " .. parts.scheme
  end
  local host, port = parts.host, parts.port
  if host == "" or port == "" then return nil, errors.INVALID_URL, invalid end
  local host_port = toolkit.url_host(host) .. (port and ":" .. port or "")
  local userinfo = parts.userinfo and parts.userinfo .. "@" or ""
  local target = target_with(parts, params)
  local fragment = parts.fragment and "#" .. parts.fragment or ""
  local host_header = toolkit.url_host(host)
  if port and tonumber(port) ~= DEFAULT_PORTS[mapped] then host_header = host_header .. ":" .. tonumber(port) end
  return { url = mapped .. "://" .. userinfo .. host_port .. target .. fragment, scheme = mapped,
           host_header = host_header, target = target }
end

--- The Cookie header for kwargs.cookie: a string as is, a table as
-- "k=v; k2=v2" (keys sorted).
function clientutil.cookie_header(cookie)
  if type(cookie) == "string" then return cookie end
  local keys = {}
  for k in pairs(cookie) do keys[#keys + 1] = k end
  sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = tostring(k) .. "=" .. tostring(cookie[k]) end
  return concat(parts, "; ")
end

--- The Authorization header for auth_username / auth_password, or nil.
function clientutil.basic_auth(username, password)
  if not username then return nil end
  return "Basic " .. escape.base64_encode(username .. ":" .. (password or ""), nil, true)
end

-- Is `path` a directory? (Turbo's ca_path may name a file or a directory.)
local function is_directory(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local _, _, code = f:read(1)
  f:close()
  return code == 21  -- EISDIR
end

-- The TLS options naming files (tls_options below reads them).
local TLS_PATHS = { "ca_path", "ca_file", "cert_file", "cert_key", "priv_file", "key_file", "priv_key" }

--- Raises for TLS options the core would refuse later, so that misuse
-- raises at the call, naming the option: in `ssl` (Turbo's ssl_options)
-- and in `fallback` (the WebSocketClient's top-level kwargs, or nil) paths
-- are strings and `verify_ca` a boolean, as Turbo documents it (its
-- tls_options verifies unless it is false, so a "no" or a 0 would silently
-- mean "verify"); and a client certificate comes with its key, wherever
-- each was given. `label(name, in_ssl)` names an option in the message
-- ("HTTPClient: ssl_options.ca_path"); `level` is error()'s, as seen from
-- the caller.
function clientutil.check_tls(ssl, fallback, label, level)
  local function check(options, in_ssl)
    for _, name in ipairs(TLS_PATHS) do
      local value = options[name]
      if value ~= nil and type(value) ~= "string" then
        error(("%s must be a string, got %s"):format(label(name, in_ssl), type(value)), level + 2)
      end
    end
    local verify = options.verify_ca
    if verify ~= nil and type(verify) ~= "boolean" then
      error(("%s must be a boolean, got %s"):format(label("verify_ca", in_ssl), type(verify)), level + 2)
    end
  end
  if ssl then check(ssl, true) end
  if fallback then check(fallback, false) end
  local tls = clientutil.tls_options(ssl, fallback)
  if tls and tls.cert_file and not tls.key_file then
    error(label("cert_file") .. " must come with 'priv_file' (a client certificate needs its key)", level + 1)
  elseif tls and tls.key_file and not tls.cert_file then
    error(label("priv_file") .. " must come with 'cert_file' (a client certificate needs its key)", level + 1)
  end
end

--- Core `tls` options from `ssl` (Turbo's ssl_options), else the same keys
-- in `fallback` (the WebSocketClient's top-level kwargs); nil for defaults.
function clientutil.tls_options(ssl, fallback)
  ssl, fallback = ssl or {}, fallback or {}
  local function pick(...)
    for i = 1, select("#", ...) do
      local name = select(i, ...)
      if ssl[name] ~= nil then return ssl[name] end
    end
    for i = 1, select("#", ...) do
      local name = select(i, ...)
      if fallback[name] ~= nil then return fallback[name] end
    end
  end
  local tls = {}
  if pick("verify_ca") == false then tls.verify = false end
  local ca = pick("ca_path", "ca_file")
  if ca then
    if is_directory(ca) then tls.ca_path = ca else tls.ca_file = ca end
  end
  tls.cert_file = pick("cert_file", "cert_key")
  tls.key_file = pick("priv_file", "key_file", "priv_key")
  if next(tls) == nil then return nil end
  return tls
end

return clientutil
