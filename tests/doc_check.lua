-- tests/doc_check.lua -- checks that the API reference covers the code.
--
--   LUA_CPATH='./build/?.so;;' luajit tests/doc_check.lua
--
-- It enumerates what each face exports, at run time, from the loaded
-- library (and a few option names from the source files), and checks that
-- every name is documented in that face's reference file:
--
--   face            file
--   core            docs/core.md
--   Turbo           docs/api/turbo.md
--   coro-websocket  docs/api/coro-websocket.md
--   evlua           docs/api/evlua.md
--
-- The rule: a name is documented when its *doc key* occurs, as a whole
-- token, inside an inline code span (`...`) of the file, headings and
-- tables included; fenced code blocks (examples) do not count. "Whole
-- token" means the characters around the key, where the key starts or
-- ends with a letter, digit or `_`, are not letters, digits or `_`:
-- `core.start` is found in `core.start()` and in `turbo_ws.core.start`, not
-- in `core.started`.
--
-- Doc keys, by kind of name (names starting with `_` are private and
-- skipped everywhere):
--   module function/value     <module>.<name>          `web.content_type`
--   class                      <module>.<Class>         `web.RequestHandler`
--   class method               <Class>:<method>         `RequestHandler:write`
--   class constructor          <Class>(                 `HTTPError(`
--     (the `initialize` method; `<Class>:new` is accepted too)
--   class static (Object)      Class:<name>             `Class:subclass`
--   mixin method               <Mixin>:<method>         `WebSocketStream:ping`
--     (a class that includes the mixin may be documented either way)
--   callable table             <name>(                  `class(`, `IOLoop(`
--   constant of a table        <table>.<KEY>            `errors.INVALID_URL`
--   core userdata method       server:/req:/conn:<m>    `conn:send`
--   evlua request/response     request:/response:<m>    `request:get_uri`
--   coro connect result        res.<field>, socket:<m>  `res.keepAlive`
--   request field (Turbo)      request.<field>          `request.remote_ip`
--   option, callback, field,   <name>                   `max_redirects`
--   error kind (from source)
--
-- Userdata methods are read from the real objects: the script listens with
-- core.listen{port = 0}, connects to itself with core.connect and reads the
-- method tables of the server, request and connection (their metatables
-- are protected, debug.getmetatable reads them anyway).
--
-- Options are locals in the code, not exported, so they are read from the
-- source files with the patterns in OPTION_SOURCES below.
--
-- Every module the library embeds (package.preload["turbo_ws.*"]) must be
-- walked here or listed as internal in COVERED, so a new module cannot
-- slip through undocumented.
--
-- Prints every missing name, then "doc-check: N passed, M failed" (one
-- check per name; a problem of the check itself -- a module not covered, a
-- source pattern that no longer matches, a test connection that fails --
-- counts as one failure); exits 1 when any check failed. Run it from the
-- repository root (it reads docs/, lua/ and src/ there).

local ROOT = (arg and arg[0] or ""):match("^(.*)/tests/[^/]*$") or "."

local checks = {}   -- { file, keys = {alternatives...}, what }
local notes = {}    -- problems of the check itself (each counts as a failure)

local function add(file, what, ...)
  checks[#checks + 1] = { file = file, keys = { ... }, what = what }
end

local function problem(msg) notes[#notes + 1] = msg end

local function private(name) return type(name) ~= "string" or name:sub(1, 1) == "_" end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do if not private(k) then keys[#keys + 1] = k end end
  table.sort(keys)
  return keys
end

local function read(path)
  local f = io.open(ROOT .. "/" .. path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

---------------------------------------------------------------------------
-- Documentation: the inline code spans of a Markdown file
---------------------------------------------------------------------------

local doc_cache = {}

local function spans_of(file)
  if doc_cache[file] ~= nil then return doc_cache[file] end
  local text = read(file)
  if not text then
    problem("missing documentation file " .. file)
    doc_cache[file] = false
    return false
  end
  local spans, fenced = {}, false
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    if line:match("^%s*```") or line:match("^%s*~~~") then
      fenced = not fenced
    elseif not fenced then
      for span in line:gmatch("`([^`]+)`") do spans[#spans + 1] = span end
    end
  end
  -- One string, spans separated by newlines (never part of a token).
  doc_cache[file] = "\n" .. table.concat(spans, "\n") .. "\n"
  return doc_cache[file]
end

local function is_ident(c) return c ~= "" and c:match("^[%w_]$") ~= nil end

local function documented(file, key)
  local spans = spans_of(file)
  if not spans then return false end
  local first_ident, last_ident = is_ident(key:sub(1, 1)), is_ident(key:sub(-1))
  local init = 1
  while true do
    local s, e = spans:find(key, init, true)
    if not s then return false end
    local before, after = spans:sub(s - 1, s - 1), spans:sub(e + 1, e + 1)
    if not (first_ident and is_ident(before)) and not (last_ident and is_ident(after)) then
      return true
    end
    init = s + 1
  end
end

---------------------------------------------------------------------------
-- Walking Lua tables and classes
---------------------------------------------------------------------------

local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local class = require "turbo_ws.class"

-- Tables of data, not API: checked by their own name only.
local DATA = {}

-- Plain tables used as mixins: their functions are methods.
local MIXINS = {}

local function callable(t)
  local mt = getmetatable(t)
  return type(mt) == "table" and mt.__call ~= nil
end

local function is_constant_table(t)
  local n = 0
  for k, v in pairs(t) do
    if type(k) ~= "string" or not k:match("^[%u][%u%d_]*$") then return false end
    if type(v) ~= "number" and type(v) ~= "string" then return false end
    n = n + 1
  end
  return n > 0
end

-- The mixins a class included (class.__mixins is middleclass's layout).
local function mixin_names(klass)
  local names = {}
  local k = klass
  while class.isClass(k) do
    for mixin in pairs(rawget(k, "__mixins") or {}) do
      if MIXINS[mixin] then names[#names + 1] = { MIXINS[mixin], mixin } end
    end
    k = rawget(k, "super")
  end
  return names
end

local function walk_class(file, name, klass, origin)
  local dict = rawget(klass, "__instanceDict")
  local mixins = mixin_names(klass)
  for _, m in ipairs(sorted_keys(dict)) do
    if type(dict[m]) == "function" then
      local what = origin .. " method " .. m
      if m == "initialize" then
        add(file, what, name .. "(", name .. ":new")
      else
        local keys = { name .. ":" .. m }
        for _, mx in ipairs(mixins) do
          if mx[2][m] == dict[m] then keys[#keys + 1] = mx[1] .. ":" .. m end
        end
        add(file, what, (table.unpack or unpack)(keys))
      end
    end
  end
  local static = rawget(klass, "static")
  for _, m in ipairs(sorted_keys(static)) do
    local v = rawget(static, m)
    if type(v) == "function" then
      add(file, origin .. " static " .. m, name == "Object" and ("Class:" .. m) or (name .. "." .. m))
    end
  end
end

local function walk_methods(file, name, methods, origin)
  for _, m in ipairs(sorted_keys(methods)) do
    if type(methods[m]) == "function" then
      add(file, origin .. " method " .. m, name .. ":" .. m)
    end
  end
end

-- Walks module table `t` documented as `prefix.<name>`.
local function walk_module(file, prefix, t, origin)
  if callable(t) then add(file, origin .. " (callable)", prefix .. "(") end
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    local what = origin .. "." .. k
    add(file, what, prefix .. "." .. k)
    if class.isClass(v) then
      walk_class(file, k, v, what)
    elseif MIXINS[v] then
      walk_methods(file, k, v, what)
    elseif type(v) == "table" and not DATA[v] then
      if callable(v) then add(file, what .. " (callable)", k .. "(") end
      if is_constant_table(v) then
        for _, c in ipairs(sorted_keys(v)) do add(file, what .. "." .. c, k .. "." .. c) end
      end
    end
  end
end

---------------------------------------------------------------------------
-- Option names from the source files
---------------------------------------------------------------------------

-- The names `pattern` captures in the `{ ... }` that follows `opening` in
-- `text`; nil when `opening` is not there.
local function block_matches(text, opening, pattern)
  local s = text:find(opening, 1, true)
  if not s then return nil end
  local block = text:match("%b{}", s)
  local out = {}
  for name in block:gmatch(pattern) do out[#out + 1] = name end
  return out
end

-- Quoted names in the `{ ... }` that follows `opening` in `text`.
local function block_strings(text, opening)
  return block_matches(text, opening, '"([%a_][%w_]*)"')
end

-- Keys (`name =`) in the `{ ... }` that follows `opening` in `text`.
local function block_keys(text, opening)
  return block_matches(text, opening, "([%a_][%w_]*)%s*=")
end

local RUST_OPTION_METHODS = {
  string = true, bool = true, table = true, integer = true, seconds = true,
  strings = true, headers = true, header_fields = true,
}

-- Each entry: doc file, source file, and how to find names in it:
-- `patterns` (captures), `blocks` (the quoted names in the `{...}` after
-- that text), `key_blocks` (the `name =` keys there), `calls` (quoted
-- names in the arguments of calls to that function). A block that is not
-- found is reported: the code changed and this list must follow it.
local OPTION_SOURCES = {
  -- core: options read through config::Opts, the Limits, callbacks, the
  -- request `info` and connect `response` fields, the error kinds.
  -- (`info` and the answer are `record::build` field lists: `("name", value)` lines.)
  { "docs/core.md", "src/binding/server.rs", rust_options = true, patterns = { '\n%s*%("([%l_]+)", ' } },
  { "docs/core.md", "src/binding/client.rs", rust_options = true },
  { "docs/core.md", "src/binding/answer.rs", patterns = { '\n%s*%("([%l_]+)", ' } },
  { "docs/core.md", "src/binding/opts.rs", rust_options = true, patterns = { 'size%("([%l_]+)"' } },
  { "docs/core.md", "src/binding/http_client.rs", rust_options = true },
  { "docs/core.md", "src/binding/connection.rs", rust_options = true, patterns = { 'key%("([%l_]+)", ' } },
  { "docs/core.md", "src/engine/error.rs", patterns = { '=> "([%l_]+)",' } },
  -- Turbo: WebSocketClient kwargs and callbacks, Application kwargs,
  -- listen kwargs and ssl_options.
  { "docs/api/turbo.md", "lua/turbo_ws/websocket.lua",
    patterns = { "kwargs%.([%a_][%w_]*)" },
    key_blocks = { "local KWARG_TYPES = " } },
  -- ssl_options keys, read for both clients.
  { "docs/api/turbo.md", "lua/turbo_ws/clientutil.lua", calls = { "pick" } },
  -- HTTPClient:fetch kwargs, ssl_options.
  { "docs/api/turbo.md", "lua/turbo_ws/async.lua",
    patterns = { "kwargs%.([%a_][%w_]*)" }, key_blocks = { "local KWARG_TYPES = " } },
  { "docs/api/turbo.md", "lua/turbo_ws/web.lua",
    patterns = { "kwargs%.([%a_][%w_]*)", "ssl%.([%a_][%w_]*)" },
    blocks = { "local LISTEN_OPTIONS = " } },
  -- coro-websocket: connect/wrapIo options, tls options.
  { "docs/api/coro-websocket.md", "lua/turbo_ws/coro_websocket.lua",
    patterns = { "options%.([%a_][%w_]*)", "tls%.([%a_][%w_]*)" },
    blocks = { "for _, k in ipairs(" } },
  -- evlua: ws.connect inputs, handler module functions, ws_util inputs,
  -- serve options.
  { "docs/api/evlua.md", "lua/turbo_ws/evlua/web_socket.lua",
    patterns = { "inp%.([%a_][%w_]*)", "handler%.([%a_][%w_]*)" } },
  { "docs/api/evlua.md", "lua/turbo_ws/evlua/ws_util.lua",
    patterns = { "inp%.([%a_][%w_]*)", "opts%.([%a_][%w_]*)" } },
  { "docs/api/evlua.md", "lua/turbo_ws/evlua/http.lua", patterns = { "opts%.([%a_][%w_]*)" } },
}

local function scan_options()
  for _, src in ipairs(OPTION_SOURCES) do
    local file, path = src[1], src[2]
    local text = read(path)
    if not text then
      problem("cannot read " .. path .. " (run from the repository, or via its path)")
    else
      local found = {}
      local function found_name(name, how)
        if not private(name) and not found[name] then found[name] = how end
      end
      if src.rust_options then
        for method, name in text:gmatch('%.([%a_]+)%(%s*"([%l_]+)"') do
          if RUST_OPTION_METHODS[method] then found_name(name, "option") end
        end
      end
      for _, pattern in ipairs(src.patterns or {}) do
        local matched = false
        for name in text:gmatch(pattern) do
          matched = true
          found_name(name, "name")
        end
        if not matched then
          problem(("%s: the pattern %q finds nothing; update OPTION_SOURCES in tests/doc_check.lua")
            :format(path, pattern))
        end
      end
      local blocks = {}
      for _, opening in ipairs(src.blocks or {}) do blocks[#blocks + 1] = { opening, block_strings } end
      for _, opening in ipairs(src.key_blocks or {}) do blocks[#blocks + 1] = { opening, block_keys } end
      for _, block in ipairs(blocks) do
        local opening = block[1]
        local names = block[2](text, opening)
        if not names or #names == 0 then
          problem(("%s: no `%s{...}` found; update OPTION_SOURCES in tests/doc_check.lua")
            :format(path, opening))
        else
          for _, name in ipairs(names) do found_name(name, "listed option") end
        end
      end
      for _, fn in ipairs(src.calls or {}) do
        for args in text:gmatch(fn .. "(%b())") do
          for name in args:gmatch('"([%a_][%w_]*)"') do found_name(name, "option") end
        end
      end
      for _, name in ipairs(sorted_keys(found)) do
        add(file, path .. " " .. found[name] .. " " .. name, name)
      end
    end
  end
end

---------------------------------------------------------------------------
-- Core userdata: a server, a request and a connection, for real
---------------------------------------------------------------------------

-- Method names of a userdata (from its protected metatable).
local function userdata_methods(obj)
  local mt = debug.getmetatable(obj)
  local index = type(mt) == "table" and rawget(mt, "__index")
  if type(index) ~= "table" then return nil end
  local names = {}
  for k, v in pairs(index) do
    if type(v) == "function" and not private(k) then names[k] = v end
  end
  return names
end

-- Used when a metatable cannot be read: each listed method must exist.
local KNOWN = {
  server = { "port", "address", "close" },
  req = { "respond", "upgrade", "answered" },
  conn = { "send", "ping", "pong", "send_frame", "close", "abort", "closed", "state",
           "buffered_amount", "protocol", "remote_address", "set_callbacks" },
}

local function check_userdata(label, obj)
  if obj == nil then
    problem("could not obtain a core " .. label .. " to inspect")
    return
  end
  local methods = userdata_methods(obj)
  if not methods then
    methods = {}
    for _, m in ipairs(KNOWN[label]) do
      local ok, v = pcall(function() return obj[m] end)
      if ok and type(v) == "function" then methods[m] = v
      else problem(("core %s has no method '%s' (KNOWN list in tests/doc_check.lua)"):format(label, m)) end
    end
  end
  walk_methods("docs/core.md", label, methods, "core " .. label)
end

-- Runs the loop until `done()` or `seconds`; false when it timed out.
local function run_until(seconds, done)
  local timed_out = false
  local timer = core.add_timeout(core.gettimemonotonic() + seconds * 1000, function()
    timed_out = true
    core.close()
  end)
  local ticker = core.set_interval(10, function() if done() then core.close() end end, nil, false)
  core.run()
  core.remove_timeout(timer)
  core.clear_interval(ticker)
  return not timed_out and done()
end

local function inspect_core()
  walk_module("docs/core.md", "core", core, "turbo_ws.core")
  local server_req, server_conn, client_conn
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
    server_req = req
    server_conn = req:upgrade()
  end)
  core.connect("ws://127.0.0.1:" .. server:port() .. "/", {}, function(conn, kind, msg)
    if not conn then problem("core.connect to self failed: " .. tostring(kind) .. " " .. tostring(msg)) end
    client_conn = conn or false
  end)
  run_until(5, function() return client_conn ~= nil and server_conn ~= nil end)
  check_userdata("server", server)
  check_userdata("req", server_req)
  check_userdata("conn", client_conn or server_conn)
  if client_conn then client_conn:close() end
  server:close()
  run_until(2, function() return client_conn == nil or client_conn == false or client_conn:closed() end)
end

---------------------------------------------------------------------------
-- The faces
---------------------------------------------------------------------------

local TURBO = "docs/api/turbo.md"
local CORO = "docs/api/coro-websocket.md"
local EVLUA = "docs/api/evlua.md"

local function inspect_turbo()
  local websocket = turbo_ws.websocket
  local web, httputil, log = turbo_ws.web, turbo_ws.httputil, turbo_ws.log
  MIXINS[websocket.WebSocketStream] = "WebSocketStream"
  DATA[web.CONTENT_TYPES] = true
  DATA[httputil.status_codes] = true
  DATA[log.categories] = true

  -- The table require "turbo_ws" returns (Turbo's `turbo`).
  for _, k in ipairs(sorted_keys(turbo_ws)) do
    add(TURBO, "turbo_ws." .. k, "turbo_ws." .. k)
  end
  for _, name in ipairs({ "websocket", "web", "ioloop", "util", "escape", "httputil", "log", "class", "hash", "async",
                          "signal", "platform", "structs" }) do
    walk_module(TURBO, name, require("turbo_ws." .. name), "turbo_ws." .. name)
  end
  -- IOLoop's methods live in the instance's metatable.
  local ioloop = require "turbo_ws.ioloop"
  walk_methods(TURBO, "IOLoop", getmetatable(ioloop.instance()).__index, "turbo_ws.ioloop.IOLoop")
  -- The fields of a request as handlers see it (self.request).
  local fake_req = setmetatable({}, { __index = function() return function() end end })
  local request = web.HTTPRequest(fake_req, {
    method = "GET", uri = "/x?a=1", path = "/x", query = "a=1", version = "HTTP/1.1",
    headers = { { "host", "h" } }, remote_ip = "127.0.0.1", remote_port = 1, body = "",
  }, false)
  for _, k in ipairs(sorted_keys(request)) do
    if k ~= "class" then add(TURBO, "turbo_ws.web.HTTPRequest field " .. k, "request." .. k) end
  end
end

-- turbo_ws.pubsub and a hub's methods, documented in docs/scale-out.md.
local function inspect_pubsub()
  local SCALE = "docs/scale-out.md"
  local pubsub = require "turbo_ws.pubsub"
  for _, k in ipairs(sorted_keys(pubsub)) do add(SCALE, "turbo_ws.pubsub." .. k, "pubsub." .. k) end
  local hub = pubsub.new({ backend = "memory" })
  local methods = userdata_methods(hub) or {}
  for _, k in ipairs(sorted_keys(methods)) do add(SCALE, "pubsub hub:" .. k, "hub:" .. k) end
  hub:close()
end

local function inspect_coro()
  local coro_websocket = turbo_ws.coro_websocket
  walk_module(CORO, "coro_websocket", coro_websocket, "turbo_ws.coro_websocket")
  -- connect's result: the fields of `res` and the methods of `res.socket`.
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req) req:upgrade() end)
  local res, err
  coroutine.wrap(function()
    res, err = coro_websocket.connect({ host = "127.0.0.1", port = server:port(), pathname = "/" })
    res = res or false
  end)()
  run_until(5, function() return res ~= nil end)
  if not res then
    problem("coro_websocket.connect to self failed: " .. tostring(err))
  else
    for _, k in ipairs(sorted_keys(res)) do
      add(CORO, "coro_websocket.connect result field " .. k, "res." .. k)
    end
    walk_methods(CORO, "socket", res.socket, "coro_websocket res.socket")
    res.socket:close()
  end
  server:close()
end

local function inspect_evlua()
  local evlua = turbo_ws.evlua
  local submodules = { web_socket = true, ws_util = true, ws_const = true }
  for _, k in ipairs(sorted_keys(evlua)) do
    local v = evlua[k]
    add(EVLUA, "turbo_ws.evlua." .. k, "evlua." .. k)
    if submodules[k] then
      walk_module(EVLUA, k, v, "turbo_ws.evlua." .. k)
    elseif type(v) == "table" then
      walk_module(EVLUA, "evlua." .. k, v, "turbo_ws.evlua." .. k)
    end
  end
  -- The request and response objects handle_request gets.
  local got
  local server = evlua.serve{ host = "127.0.0.1", port = 0, handle_request = function(request, response)
    got = { request = request, response = response }
  end }
  local answered = false
  core.connect("ws://127.0.0.1:" .. server:port() .. "/x", {}, function() answered = true end)
  run_until(5, function() return answered end)
  server:close()
  if not got then
    problem("evlua.serve: handle_request was not called; cannot inspect request/response")
    return
  end
  for _, label in ipairs({ "request", "response" }) do
    local methods = getmetatable(got[label]).__index
    walk_methods(EVLUA, label, methods, "evlua " .. label)
  end
end

---------------------------------------------------------------------------
-- Every module the library ships is covered above or known to be internal

-- Modules walked above (directly or through their face's table), and the
-- internal ones (no public names of their own).
local COVERED = {
  ["turbo_ws.websocket"] = true, ["turbo_ws.web"] = true, ["turbo_ws.ioloop"] = true,
  ["turbo_ws.util"] = true, ["turbo_ws.escape"] = true, ["turbo_ws.httputil"] = true,
  ["turbo_ws.log"] = true, ["turbo_ws.class"] = true, ["turbo_ws.hash"] = true,
  ["turbo_ws.coro_websocket"] = true, ["turbo_ws.evlua"] = true, ["turbo_ws.async"] = true,
  ["turbo_ws.signal"] = true, ["turbo_ws.platform"] = true, ["turbo_ws.structs"] = true,
  ["turbo_ws.evlua.web_socket"] = true, ["turbo_ws.evlua.ws_util"] = true,
  ["turbo_ws.evlua.ws_const"] = true, ["turbo_ws.pubsub"] = true,
  -- internal: the `turbo_ws` table itself (checked as turbo_ws.*), the
  -- compat aliases (listed in docs/api/turbo.md), the evlua face's parts
  -- and the handler's stream class (reached through the objects checked
  -- above)
  ["turbo_ws.main"] = true, ["turbo_ws.compat"] = true,
  -- documented in docs/core.md ("libuv (luv, luvit) in the same process")
  ["turbo_ws.luv"] = true,
  -- (the Turbo clients' shared helpers; their codes are websocket.errors)
  ["turbo_ws.clientutil"] = true,
  -- (the JSON behind turbo_ws.escape.json_* and pub/sub's tables)
  ["turbo_ws.json"] = true,
  -- (the Lua helpers every face shares: error reports, the message queue)
  ["turbo_ws.toolkit"] = true,
  -- (the faces' FFI send path; docs/architecture.md, "One message")
  ["turbo_ws.fast_send"] = true,
  -- (the evlua face's FFI receive path: messages copied into msg.buf;
  -- docs/architecture.md, "One message")
  ["turbo_ws.message_copy"] = true,
  ["turbo_ws.websocket_stream"] = true,  -- websocket.WebSocketIOStream
  ["turbo_ws.web_request"] = true,  -- web.HTTPRequest
  ["turbo_ws.evlua.headers"] = true, ["turbo_ws.evlua.http"] = true,
  ["turbo_ws.evlua.socket"] = true, ["turbo_ws.evlua.wait"] = true, ["turbo_ws.evlua.msg"] = true,
}

local function check_modules()
  local names = {}
  for name in pairs(package.preload) do
    if type(name) == "string" and name:match("^turbo_ws%.") then names[#names + 1] = name end
  end
  if #names == 0 then
    -- Development mode (TURBO_WS_LUA_DIR): the faces are files.
    local dir = os.getenv("TURBO_WS_LUA_DIR") or (ROOT .. "/lua")
    local ls = io.popen('find "' .. dir .. '/turbo_ws" -name "*.lua" 2>/dev/null')
    for path in ls:lines() do
      names[#names + 1] = path:sub(#dir + 2):gsub("%.lua$", ""):gsub("/", ".")
    end
    ls:close()
  end
  table.sort(names)
  for _, name in ipairs(names) do
    if not COVERED[name] then
      problem(("module %s is not covered: document it and add it to the walk (or COVERED) in tests/doc_check.lua"):format(name))
    end
  end
end

---------------------------------------------------------------------------

local ok, err = xpcall(function()
  check_modules()
  inspect_core()
  inspect_turbo()
  inspect_coro()
  inspect_evlua()
  inspect_pubsub()
  scan_options()
end, debug.traceback)
if not ok then problem("the check itself failed: " .. tostring(err)) end

local passed, failed = 0, 0
local seen = {}
for _, c in ipairs(checks) do
  local id = c.file .. "\0" .. table.concat(c.keys, "\0")
  if not seen[id] then
    seen[id] = true
    local found = false
    for _, key in ipairs(c.keys) do
      if documented(c.file, key) then found = true; break end
    end
    if found then
      passed = passed + 1
    else
      failed = failed + 1
      print(("missing in %s: `%s` (%s)"):format(c.file, table.concat(c.keys, "` or `"), c.what))
    end
  end
end
for _, msg in ipairs(notes) do
  failed = failed + 1
  print("doc-check problem: " .. msg)
end
print(("doc-check: %d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
