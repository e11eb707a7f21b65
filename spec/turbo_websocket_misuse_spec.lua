-- The Turbo face's misuse checks that must hold in every state of a
-- connection: WebSocketClient kwargs the core's connect would refuse raise
-- at the constructor (naming the kwarg), a request modify_headers made
-- unsendable is that callback's error, ping's callback must be a
-- function, and close()'s reason must be UTF-8 before the client is
-- connected as well as after.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local ws, errors, url, serve, Echo = T.ws, T.errors, T.url, T.serve, T.Echo
local client_events, find_event = T.client_events, T.find_event

-- The message of the error fn() raised, checked to point at this file
-- (the caller), not at the face.
local function raised(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error")
  err = tostring(err)
  assert.matches("^[^:]*turbo_websocket_misuse_spec%.lua:%d+: ", err)
  return (err:gsub("^[^:]*:%d+: ", ""))
end

describe("turbo.websocket misuse", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

  describe("WebSocketClient(address, kwargs)", function()
    local ADDRESS = "ws://127.0.0.1:1/ws"

    it("raises for kwargs the core's connect refuses, naming the kwarg; nothing is attempted", function()
      local cases = {
        { { connect_timeout = 1e300 },
          "WebSocketClient: kwarg 'connect_timeout' must be a number of seconds from 0 to 1e9, got 1e+300" },
        { { request_timeout = 1e10 },
          "WebSocketClient: kwarg 'request_timeout' must be a number of seconds from 0 to 1e9, got 10000000000" },
        { { max_buffer_size = -5 },
          "WebSocketClient: kwarg 'max_buffer_size' must be a whole number of bytes from 1 to 1099511627776, got -5" },
        { { max_buffer_size = 0.5 },
          "WebSocketClient: kwarg 'max_buffer_size' must be a whole number of bytes from 1 to 1099511627776, got 0.5" },
        { { max_buffer_size = 0 },
          "WebSocketClient: kwarg 'max_buffer_size' must be a whole number of bytes from 1 to 1099511627776, got 0" },
        { { ssl_options = { ca_path = 5 } }, "WebSocketClient: kwarg 'ssl_options.ca_path' must be a string, got number" },
        { { priv_file = {} }, "WebSocketClient: kwarg 'priv_file' must be a string, got table" },
        { { ssl_options = { cert_file = "/c.pem" } },
          "WebSocketClient: kwarg 'cert_file' must come with 'priv_file' (a client certificate needs its key)" },
        { { key_file = "/k.pem" },
          "WebSocketClient: kwarg 'priv_file' must come with 'cert_file' (a client certificate needs its key)" },
        { { user_agent = "a\1b" },
          "WebSocketClient: kwarg 'user_agent' must be a valid header value (no control byte but tab)" },
        { { user_agent = "a\r\nX-Injected: 1" },
          "WebSocketClient: kwarg 'user_agent' must be a valid header value (no control byte but tab)" },
        { { cookie = "a=\127" }, "WebSocketClient: kwarg 'cookie' must be a valid header value (no control byte but tab)" },
        { { cookie = { a = "1\n" } },
          "WebSocketClient: kwarg 'cookie' must be a valid header value (no control byte but tab)" },
        { { websocket_protocol = "chat\r\nX: 1" },
          "WebSocketClient: kwarg 'websocket_protocol' must be a valid header value (no control byte but tab)" },
        { { websocket_protocol = { "chat", "a b" } },
          "WebSocketClient: kwarg 'websocket_protocol' must name subprotocols (RFC 6455 tokens), got \"a b\"" },
        { { websocket_protocol = { "chat", {} } },
          "WebSocketClient: kwarg 'websocket_protocol' must be a string or a list of strings, got a table at [2]" },
      }
      local reported = {}
      for _, case in ipairs(cases) do
        case[1].on_error = function(_, code, msg) reported[#reported + 1] = { code, msg } end
        assert.equal(case[2], raised(function() ws.WebSocketClient(ADDRESS, case[1]) end))
      end
      S.drain(50)
      assert.same({}, reported)
    end)

    it("raises for a verify_ca that is not a boolean, in ssl_options or at top level", function()
      local reported = {}
      local function on_error(_, code, msg) reported[#reported + 1] = { code, msg } end
      for _, case in ipairs({
        { { ssl_options = { verify_ca = "no" } }, "WebSocketClient: kwarg 'ssl_options.verify_ca' must be a boolean, got string" },
        { { ssl_options = { verify_ca = 0 } }, "WebSocketClient: kwarg 'ssl_options.verify_ca' must be a boolean, got number" },
        { { verify_ca = "false" }, "WebSocketClient: kwarg 'verify_ca' must be a boolean, got string" },
        -- ssl_options wins, but a top-level value of the wrong type is still misuse.
        { { ssl_options = { verify_ca = true }, verify_ca = "no" },
          "WebSocketClient: kwarg 'verify_ca' must be a boolean, got string" },
      }) do
        case[1].on_error = on_error
        assert.equal(case[2], raised(function() ws.WebSocketClient("wss://127.0.0.1:1/ws", case[1]) end))
      end
      for _, kwargs in ipairs({ { ssl_options = { verify_ca = false } }, { verify_ca = true }, { ssl_options = {} } }) do
        kwargs.on_error = on_error
        ws.WebSocketClient("wss://127.0.0.1:1/ws", kwargs):close()
      end
      S.drain(50)
      assert.same({}, reported)
    end)

    it("takes the limits and bytes the core takes", function()
      local reported = {}
      local function on_error(_, code, msg) reported[#reported + 1] = { code, msg } end
      for _, kwargs in ipairs({
        { connect_timeout = 1e9, request_timeout = 0 },
        { max_buffer_size = 2 ^ 40 },
        { user_agent = "tab\there, bytes \200\255" },
        { cookie = { a = "1", b = "\200" } },
        { websocket_protocol = { "chat", 2 } },
        { websocket_protocol = "chat, v2.json" },
        { ssl_options = { cert_file = "/c.pem" }, priv_file = "/k.pem" },
      }) do
        kwargs.on_error = on_error
        -- Cancelled at once: nothing is attempted.
        ws.WebSocketClient(ADDRESS, kwargs):close()
      end
      S.drain(50)
      assert.same({}, reported)
    end)

    it("CALLBACK_ERROR naming modify_headers when it leaves a header the core refuses; nothing is sent", function()
      local requests = 0
      local H = class("H", ws.WebSocketHandler)
      function H:prepare() requests = requests + 1 end
      local port = serve({ { "^/ws$", H } })
      local function outcome(edit)
        local events = client_events(url(port), { modify_headers = function(_, headers) edit(headers) end })
        assert.is_nil(find_event(events, "on_close"))
        local e = find_event(events, "on_error")
        return e[2], e[3]
      end
      local prefix = 'WebSocketClient error in callback "modify_headers": '
      assert.same({ errors.CALLBACK_ERROR, prefix .. "header 'X-A' has a control byte in its value (only tab is allowed)" },
                  { outcome(function(h) h:add("X-A", "a\1b") end) })
      assert.same({ errors.CALLBACK_ERROR, prefix .. '"a b" is not a valid header name' },
                  { outcome(function(h) h:add("a b", "v") end) })
      assert.same({ errors.CALLBACK_ERROR, prefix .. '"a b" is not a subprotocol name (RFC 6455 wants a token)' },
                  { outcome(function(h) h:set("Sec-WebSocket-Protocol", "chat, a b") end) })
      assert.equal(0, requests)
    end)
  end)

  describe("ping(data, callback, callback_arg)", function()
    local CALLBACK_ERROR = "ping: bad argument #2 'callback' (function expected, got string)"

    it("raises for a callback that is not a function on an open client; the connection goes on", function()
      local port = serve({ { "^/ws$", Echo } })
      local r = {}
      local events = client_events(url(port), {
        on_connect = function(self)
          r.bad = raised(function() self:ping("x", "not a function") end)
          -- A payload too long for a control frame: the face's own message,
          -- as before the connection opened (not the core's method name).
          r.long = raised(function() self:ping(string.rep("p", 126)) end)
          r.long_pong = raised(function() self:pong(string.rep("p", 126)) end)
          -- false counts as no callback, as in Turbo.
          r.none = self:ping("y", false)
          self:write_message("still open")
        end,
        on_message = function(self, msg) r.echo = msg; self:close() end,
      })
      assert.equal(CALLBACK_ERROR, r.bad)
      assert.equal("ping: bad argument #1 'data' (control frame payload is 126 bytes, at most 125 allowed)", r.long)
      assert.equal("pong: bad argument #1 'data' (control frame payload is 126 bytes, at most 125 allowed)", r.long_pong)
      assert.is_true(r.none)
      assert.equal("still open", r.echo)
      assert.is_nil(find_event(events, "on_error"))
      assert.equal(1000, find_event(events, "on_close")[2])
    end)

    it("raises for it before the client is connected, and queues nothing", function()
      local port = serve({ { "^/ws$", Echo } })
      local r = {}
      assert.is_true(S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_connect = function(self) self:close() end,
          on_close = function(_, code) r.code = code; done() end,
          on_error = function(_, code, msg) r.error = { code, msg } end,
        })
        r.bad = raised(function() client:ping("x", "not a function") end)
        r.buffered = client:buffered_amount()
      end))
      assert.equal(CALLBACK_ERROR, r.bad)
      assert.equal(0, r.buffered)
      assert.is_nil(r.error)
      assert.equal(1000, r.code)
    end)

    it("raises for it in a WebSocketHandler; the connection goes on", function()
      local r = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open()
        r.bad = raised(function() self:ping("x", "not a function") end)
        self:close(4000, "done")
      end
      function H:on_error(msg) r.error = msg end
      local port = serve({ { "^/ws$", H } })
      local events = client_events(url(port))
      assert.equal(CALLBACK_ERROR, r.bad)
      assert.is_nil(r.error)
      assert.equal(4000, find_event(events, "on_close")[2])
    end)
  end)

  describe("close(code, reason)", function()
    local BAD_REASON = "close: bad argument #2 'reason' (invalid UTF-8)"

    it("raises for a reason that is not UTF-8 before the client is connected; it still connects", function()
      local port = serve({ { "^/ws$", Echo } })
      local r = {}
      assert.is_true(S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_connect = function(self) r.connected = true; self:close(4001, "bye") end,
          on_close = function(_, code) r.code = code; done() end,
        })
        r.bad = raised(function() client:close(1000, "\255\254") end)
        r.closed = client:closed()
      end))
      assert.equal(BAD_REASON, r.bad)
      assert.is_nil(r.closed)
      assert.is_true(r.connected)
      assert.equal(4001, r.code)
    end)

    it("raises the same once connected, and the client stays open", function()
      local port = serve({ { "^/ws$", Echo } })
      local r = {}
      local events = client_events(url(port), {
        on_connect = function(self)
          r.bad = raised(function() self:close(1000, "\255") end)
          r.closed = self:closed()
          self:close()
        end,
      })
      assert.equal(BAD_REASON, r.bad)
      assert.is_nil(r.closed)
      assert.equal(1000, find_event(events, "on_close")[2])
    end)
  end)
end)
