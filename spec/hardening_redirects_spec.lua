-- Redirects followed safely by every client that follows them (the core's
-- and the Turbo face's WebSocketClient; coro-websocket and evlua follow
-- none, as their originals): credentials stay on their origin, TLS is
-- never left, loops end.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local L = require "spec.support.loop"

local dir = os.tmpname()
os.remove(dir)

local function header(info, name)
  for _, h in ipairs(info.headers) do
    if h[1]:lower() == name then return h[2] end
  end
end

-- A listener that answers every request with `answer(req, info)` and keeps
-- the requests it saw.
local function listener(answer, tls)
  local seen = {}
  local server = core.listen({ host = "127.0.0.1", port = 0, tls = tls }, function(req, info)
    seen[#seen + 1] = info
    answer(req, info)
  end)
  return server, seen
end

local function echo(req)
  local conn = req:upgrade()
  if conn then conn:set_callbacks{ on_message = function(m) conn:send(m) end } end
end

local function redirect_to(location)
  return function(req) req:respond(302, { Location = location }, "") end
end

local CREDENTIALS = { Authorization = "Bearer secret", Cookie = "session=1", ["X-Trace"] = "kept" }

-- core.connect; returns "open" or the error kind and message.
local function core_connect(url, opts)
  local result, message
  opts = opts or {}
  opts.headers = opts.headers or CREDENTIALS
  opts.max_redirects = opts.max_redirects or 4
  core.connect(url, opts, function(conn, kind, msg)
    if conn then result = "open"; conn:close() else result, message = kind, msg end
  end)
  L.run_until(function() return result ~= nil end, 5000, "connect")
  return result, message
end

setup(function() require("turbo_ws.log").disable_all() end)
teardown(function() require("turbo_ws.log").enable_all() end)

describe("redirects (core client)", function()
  it("drop Authorization and Cookie on a redirect to another origin", function()
    local b, seen_b = listener(echo)
    local a = listener(redirect_to("ws://127.0.0.1:" .. b:port() .. "/there"))
    assert.equal("open", core_connect("ws://127.0.0.1:" .. a:port() .. "/here"))
    assert.equal(1, #seen_b)
    assert.is_nil(header(seen_b[1], "authorization"))
    assert.is_nil(header(seen_b[1], "cookie"))
    assert.equal("kept", header(seen_b[1], "x-trace"))
    a:close(); b:close()
  end)

  it("follow only 301, 302, 303, 307 and 308: a 300 or 304 with a Location is the answer", function()
    for _, status in ipairs({ 300, 304, 305 }) do
      local b, seen_b = listener(echo)
      local a = listener(function(req)
        req:respond(status, { Location = "ws://127.0.0.1:" .. b:port() .. "/there" }, "")
      end)
      local kind = core_connect("ws://127.0.0.1:" .. a:port() .. "/here")
      assert.equal("bad_status", kind, status)
      assert.equal(0, #seen_b, status)
      a:close(); b:close()
    end
    for _, status in ipairs({ 301, 303, 307, 308 }) do
      local b = listener(echo)
      local a = listener(function(req)
        req:respond(status, { Location = "ws://127.0.0.1:" .. b:port() .. "/there" }, "")
      end)
      assert.equal("open", core_connect("ws://127.0.0.1:" .. a:port() .. "/here"), status)
      a:close(); b:close()
    end
  end)

  it("keep them on a redirect within the origin", function()
    local a, seen = listener(function(req, info)
      if info.path == "/here" then return redirect_to("/there")(req) end
      echo(req)
    end)
    assert.equal("open", core_connect("ws://127.0.0.1:" .. a:port() .. "/here"))
    assert.equal(2, #seen)
    assert.equal("/there", seen[2].path)
    assert.equal("Bearer secret", header(seen[2], "authorization"))
    assert.equal("session=1", header(seen[2], "cookie"))
    a:close()
  end)

  it("also drop Proxy-Authorization across origins, whatever the header's case", function()
    local b, seen_b = listener(echo)
    local a = listener(redirect_to("http://127.0.0.1:" .. b:port() .. "/"))
    local headers = { { "proxy-AUTHORIZATION", "Basic x" }, { "COOKIE", "a=b" } }
    assert.equal("open", core_connect("ws://127.0.0.1:" .. a:port() .. "/", { headers = headers }))
    assert.is_nil(header(seen_b[1], "proxy-authorization"))
    assert.is_nil(header(seen_b[1], "cookie"))
    a:close(); b:close()
  end)

  it("end a redirect loop with an error, not a hang", function()
    local a, seen = listener(function(req, info)
      redirect_to(info.path == "/1" and "/2" or "/1")(req)
    end)
    local kind, message = core_connect("ws://127.0.0.1:" .. a:port() .. "/1", { max_redirects = 50 })
    assert.equal("redirects", kind)
    assert.truthy(message:find("loop", 1, true), message)
    assert.equal(2, #seen)
    a:close()
  end)

  it("still stop at max_redirects", function()
    local n = 0
    local a = listener(function(req) n = n + 1; redirect_to("/r" .. n)(req) end)
    local kind = core_connect("ws://127.0.0.1:" .. a:port() .. "/", { max_redirects = 3 })
    assert.equal("redirects", kind)
    assert.equal(4, n)
    a:close()
  end)
end)

describe("redirects out of TLS", function()
  local tls
  setup(function()
    os.execute("mkdir -p " .. dir)
    local made = os.execute("cd " .. dir .. " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256"
      .. " -nodes -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1"
      .. " -keyout self.key -out self.pem >/dev/null 2>&1")
    assert(made == true or made == 0, "openssl could not make a certificate")
    tls = { cert_file = dir .. "/self.pem", key_file = dir .. "/self.key" }
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  for _, scheme in ipairs({ "ws", "http" }) do
    it("are refused (wss -> " .. scheme .. "), and the plain target is never contacted", function()
      local b, seen_b = listener(echo)
      local a = listener(redirect_to(scheme .. "://127.0.0.1:" .. b:port() .. "/"), tls)
      local kind, message = core_connect("wss://127.0.0.1:" .. a:port() .. "/",
                                         { tls = { verify = false } })
      assert.equal("insecure_redirect", kind)
      assert.truthy(message:find("TLS", 1, true), message)
      assert.equal(0, #seen_b)
      a:close(); b:close()
    end)
  end

  it("to another wss origin are followed, without the credentials", function()
    local b, seen_b = listener(echo, tls)
    local a = listener(redirect_to("wss://localhost:" .. b:port() .. "/"), tls)
    assert.equal("open", core_connect("wss://127.0.0.1:" .. a:port() .. "/",
                                      { tls = { verify = false } }))
    assert.is_nil(header(seen_b[1], "authorization"))
    a:close(); b:close()
  end)

  it("reach the Turbo face's on_error with INSECURE_REDIRECT", function()
    local ws = require "turbo_ws.websocket"
    local b, seen_b = listener(echo)
    local a = listener(redirect_to("ws://127.0.0.1:" .. b:port() .. "/"), tls)
    local code
    ws.WebSocketClient("wss://127.0.0.1:" .. a:port() .. "/", {
      ssl_options = { verify_ca = false },
      auth_username = "u", auth_password = "p",
      on_error = function(_, c) code = c end,
    })
    L.run_until(function() return code ~= nil end, 5000, "on_error")
    assert.equal(ws.errors.INSECURE_REDIRECT, code)
    assert.equal(0, #seen_b)
    a:close(); b:close()
  end)
end)

describe("redirects (Turbo WebSocketClient)", function()
  local ws = require "turbo_ws.websocket"
  local log = require "turbo_ws.log"
  setup(function() log.disable_all() end)
  teardown(function() log.enable_all() end)

  local function turbo_connect(url)
    local opened, failed
    ws.WebSocketClient(url, {
      auth_username = "user", auth_password = "pass", cookie = { session = "1" },
      max_redirects = 4,
      on_headers = function() end,
      on_connect = function(self) opened = true; self:close() end,
      on_error = function(_, code, msg) failed = { code, msg } end,
    })
    L.run_until(function() return opened or failed end, 5000, "the Turbo client")
    return opened, failed
  end

  it("drops the basic-auth header and the cookie across origins", function()
    local b, seen_b = listener(echo)
    local a, seen_a = listener(redirect_to("ws://localhost:" .. b:port() .. "/"))
    assert.truthy(turbo_connect("ws://127.0.0.1:" .. a:port() .. "/"))
    assert.truthy(header(seen_a[1], "authorization"))
    assert.truthy(header(seen_a[1], "cookie"))
    assert.is_nil(header(seen_b[1], "authorization"))
    assert.is_nil(header(seen_b[1], "cookie"))
    a:close(); b:close()
  end)

  it("keeps them on the same origin", function()
    local a, seen = listener(function(req, info)
      if info.path == "/" then return redirect_to("/next")(req) end
      echo(req)
    end)
    assert.truthy(turbo_connect("ws://127.0.0.1:" .. a:port() .. "/"))
    assert.equal("Basic dXNlcjpwYXNz", header(seen[2], "authorization"))
    assert.truthy(header(seen[2], "cookie"))
    a:close()
  end)
end)
