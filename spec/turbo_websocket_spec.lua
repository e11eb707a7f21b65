-- The Turbo face: turbo.websocket (WebSocketHandler, WebSocketClient,
-- WebSocketStream, errors, opcode, MAGIC), server and client, ws and wss.
-- Every network exchange runs on 127.0.0.1, port 0, under a guard timer.
local turbo = require "turbo_ws"
local S = require "spec.turbo_support"
local ws = turbo.websocket
local web = turbo.web
local core = turbo.core
local errors = ws.errors

local function url(port, path, scheme)
  return (scheme or "ws") .. "://127.0.0.1:" .. port .. (path or "/ws")
end

-- An Application on a free port, closed when the spec ends.
local function serve(routes, app_kwargs, listen_kwargs)
  local app = web.Application(routes, app_kwargs)
  local server = app:listen(0, "127.0.0.1", listen_kwargs)
  S.finally(function() app:close(); S.drain(100) end)
  return server:port(), app
end

-- A port nothing listens on.
local function closed_port()
  local fd, port = S.raw.listen()
  S.raw.close(fd)
  return port
end

local Echo = class("Echo", ws.WebSocketHandler)
function Echo:on_message(msg, binary) self:write_message(msg, binary) end

-- Runs one client against `port` until on_close or on_error; returns the
-- list of events and whether it finished in time.
-- Fails the spec when the client neither closed nor failed within `ms`.
local function client_events(address, kwargs, ms)
  local events = {}
  kwargs = kwargs or {}
  -- Records the call, then runs the spec's own callback, then `after`.
  local function record(name, after)
    local user = kwargs[name]
    kwargs[name] = function(self, ...)
      events[#events + 1] = { name, ... }
      if after then after() end
      if user then return user(self, ...) end
    end
  end
  local ok = S.loop(function(done)
    record("on_close", done)
    -- A failed connect has no on_close: finish soon after on_error.
    record("on_error", function() S.after(100, done) end)
    ws.WebSocketClient(address, kwargs)
  end, ms)
  assert(ok, "the client neither closed nor failed in time")
  return events, ok
end

local function find_event(events, name)
  for _, e in ipairs(events) do
    if e[1] == name then return e end
  end
end

local function event_names(events)
  local names = {}
  for i, e in ipairs(events) do names[i] = e[1] end
  return names
end

describe("turbo.websocket", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

  describe("module", function()
    it("has Turbo's error codes, with Turbo's values, and one of its own", function()
      assert.same({
        INSECURE_REDIRECT = -17, -- turbo_ws: a redirect that would leave TLS
        INVALID_URL = -1, INVALID_SCHEMA = -2, COULD_NOT_CONNECT = -3,
        PARSE_ERROR_HEADERS = -4, CONNECT_TIMEOUT = -5, REQUEST_TIMEOUT = -6,
        NO_HEADERS = -7, REQUIRES_BODY = -8, INVALID_BODY = -9, SOCKET_ERROR = -10,
        SSL_ERROR = -11, BUSY = -12, REDIRECT_MAX = -13, CALLBACK_ERROR = -14,
        BAD_HTTP_STATUS = -15, WEBSOCKET_PROTOCOL_ERROR = -16, INSECURE_REDIRECT = -17,
      }, ws.errors)
    end)

    it("has the opcodes and the handshake GUID", function()
      assert.same({ CONTINUE = 0, TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9, PONG = 10 }, ws.opcode)
      assert.equal("258EAFA5-E914-47DA-95CA-C5AB0DC85B11", ws.MAGIC)
    end)

    it("mixes WebSocketStream into both classes", function()
      for _, name in ipairs({ "write_message", "ping", "pong", "close", "closed" }) do
        assert.is_function(ws.WebSocketStream[name])
        assert.equal(ws.WebSocketStream[name], ws.WebSocketHandler[name])
        assert.equal(ws.WebSocketStream[name], ws.WebSocketClient[name])
      end
      assert.is_true(includes(ws.WebSocketStream, ws.WebSocketHandler))
      assert.is_true(includes(ws.WebSocketStream, ws.WebSocketClient))
    end)

    it("makes WebSocketHandler a RequestHandler subclass", function()
      assert.is_true(subclassOf(web.RequestHandler, ws.WebSocketHandler))
      for _, hook in ipairs({ "open", "on_message", "on_close", "on_error", "prepare", "subprotocol" }) do
        assert.is_function(ws.WebSocketHandler[hook])
      end
    end)

    it("is what require 'turbo.websocket' gives after turbo_ws.compat", function()
      require "turbo_ws.compat"
      assert.equal(ws, require "turbo.websocket")
      assert.equal(turbo, require "turbo")
      assert.equal(web, require "turbo.web")
    end)
  end)

  describe("WebSocketHandler", function()
    it("calls open with the route captures, then on_message, then on_close", function()
      local events = {}
      local H = class("H", ws.WebSocketHandler)
      local finished
      function H:open(...) events[#events + 1] = { "open", ... } end
      function H:on_message(msg, binary)
        events[#events + 1] = { "message", msg, binary }
        self:write_message("ack")
      end
      function H:on_close() events[#events + 1] = { "close" }; finished() end
      local port = serve({ { "^/room/(%w+)/(%d+)$", H } })
      assert.is_true(S.loop(function(done)
        finished = done
        ws.WebSocketClient(url(port, "/room/lobby/42"), {
          on_connect = function(self) self:write_message("hi") end,
          on_message = function(self) self:close() end,
        })
      end))
      assert.same({ { "open", "lobby", "42" }, { "message", "hi", false }, { "close" } }, events)
    end)

    it("passes the whole match to open() when the route has no captures", function()
      local args
      local H = class("H", ws.WebSocketHandler)
      function H:open(...) args = { ... }; self:close() end
      local port = serve({ { "^/ws$", H } })
      local events = client_events(url(port, "/ws"))
      assert.same({ "/ws" }, args)
      assert.equal("on_close", events[#events][1])
    end)

    it("tells on_message whether the message was binary and echoes both kinds", function()
      local seen = {}
      local H = class("H", Echo)
      function H:on_message(msg, binary)
        seen[#seen + 1] = { msg, binary }
        self:write_message(msg, binary)
      end
      local port = serve({ { "^/ws$", H } })
      local got = {}
      client_events(url(port), {
        on_connect = function(self)
          self:write_message("text")
          self:write_message("\0\1\2\255", true)
        end,
        on_message = function(self, msg, binary)
          got[#got + 1] = { msg, binary }
          if #got == 2 then self:close() end
        end,
      })
      assert.same({ { "text", false }, { "\0\1\2\255", true } }, seen)
      assert.same({ { "text", false }, { "\0\1\2\255", true } }, got)
    end)

    it("sends a table given to write_message as JSON", function()
      local H = class("H", ws.WebSocketHandler)
      function H:open() self:write_message({ answer = 42, list = { 1, 2 } }) end
      local port = serve({ { "^/ws$", H } })
      local got
      client_events(url(port), {
        on_message = function(self, msg) got = msg; self:close() end,
      })
      assert.same({ answer = 42, list = { 1, 2 } }, turbo.escape.json_decode(got))
    end)

    it("echoes a 1 MiB message", function()
      local port = serve({ { "^/ws$", Echo } })
      local big = string.rep("0123456789abcdef", 65536)
      local got
      client_events(url(port), {
        on_connect = function(self) self:write_message(big, true) end,
        on_message = function(self, msg) got = msg; self:close() end,
      })
      assert.equal(#big, got and #got)
      assert.is_true(got == big)
    end)

    it("raises on write_message after close(); ping and pong then do nothing", function()
      local result = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open()
        result.before = self:closed()
        self:close()
        result.after = self:closed()
        result.write = { pcall(self.write_message, self, "late") }
        result.ping = { pcall(self.ping, self, "p") }
        result.pong = { pcall(self.pong, self, "p") }
        self:close() -- twice is harmless
      end
      local port = serve({ { "^/ws$", H } })
      client_events(url(port))
      assert.is_false(result.before)
      assert.is_true(result.after)
      assert.is_false(result.write[1])
      assert.truthy(tostring(result.write[2]):find("closed", 1, true))
      assert.same({ true }, result.ping)
      assert.same({ true }, result.pong)
    end)

    it("calls the ping callback with (callback_arg, data), or (data) without an arg", function()
      local calls = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open()
        self:ping("one", function(arg, data)
          calls[#calls + 1] = { arg, data }
          self:ping("two", function(...)
            calls[#calls + 1] = { ... }
            self:close()
          end)
        end, "ARG")
      end
      local port = serve({ { "^/ws$", H } })
      client_events(url(port))
      assert.same({ { "ARG", "one" }, { "two" } }, calls)
    end)

    it("sends an unsolicited pong with pong(data)", function()
      local H = class("H", ws.WebSocketHandler)
      function H:open() self:pong("beat") end
      local port = serve({ { "^/ws$", H } })
      local pong
      assert.is_true(S.loop(function(done)
        core.connect(url(port), nil, function(conn)
          conn:set_callbacks({
            on_pong = function(data) pong = data; conn:close() end,
            on_close = function() done() end,
          })
        end)
      end))
      assert.equal("beat", pong)
    end)

    it("answers pings from the client", function()
      local port = serve({ { "^/ws$", Echo } })
      local pong
      client_events(url(port), {
        on_connect = function(self)
          self:ping("are you there", function(data) pong = data; self:close() end)
        end,
      })
      assert.equal("are you there", pong)
    end)

    it("gives on_close the close code and reason, and closes with close(code, reason)", function()
      local server_saw, client_saw
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg) self:close(4001, "server says " .. msg) end
      function H:on_close(code, reason) server_saw = { code, reason } end
      local port = serve({ { "^/ws$", H } })
      local events = client_events(url(port), {
        on_connect = function(self) self:write_message("bye") end,
        on_close = function(self, code, reason) client_saw = { code, reason } end,
      })
      assert.same({ 4001, "server says bye" }, server_saw)
      assert.same({ 4001, "server says bye" }, client_saw)
      assert.equal("on_close", events[#events][1])
    end)

    describe("subprotocol()", function()
      local calls
      local H = class("H", Echo)
      function H:subprotocol(protocols)
        calls[#calls + 1] = { "subprotocol", protocols }
        for _, p in ipairs(protocols) do
          if p == "chat.v2" then return p end
          if p == "raise" then error(web.HTTPError(403, "no such protocol")) end
        end
        return nil
      end
      function H:prepare() calls[#calls + 1] = { "prepare", self.subprotocol } end
      function H:open() calls[#calls + 1] = { "open" }; self:close() end
      before_each(function() calls = {} end)

      it("is called before prepare() with the offered list; the choice is sent back", function()
        local port = serve({ { "^/ws$", H } })
        local chosen
        client_events(url(port), {
          websocket_protocol = "chat.v1, chat.v2",
          on_headers = function(self, headers) chosen = headers:get("Sec-WebSocket-Protocol") end,
        })
        assert.same({ "subprotocol", { "chat.v1", "chat.v2" } }, calls[1])
        -- Turbo leaves the choice in self.subprotocol.
        assert.same({ "prepare", "chat.v2" }, calls[2])
        assert.same({ "open" }, calls[3])
        assert.equal("chat.v2", chosen)
      end)

      it("is not called when the client offers none", function()
        local port = serve({ { "^/ws$", H } })
        client_events(url(port))
        assert.equal("prepare", calls[1][1])
        assert.equal("open", calls[2][1])
      end)

      it("rejects the upgrade with 400 when it returns nil", function()
        local port = serve({ { "^/ws$", H } })
        local events = client_events(url(port), { websocket_protocol = "x" })
        assert.same({ { "subprotocol", { "x" } } }, calls)
        local err = find_event(events, "on_error")
        assert.equal(errors.BAD_HTTP_STATUS, err[2])
        assert.truthy(err[3]:find("400", 1, true))
        assert.is_nil(find_event(events, "on_close"))
      end)

      it("rejects the upgrade with the HTTPError it raises", function()
        local port = serve({ { "^/ws$", H } })
        local events = client_events(url(port), { websocket_protocol = "raise" })
        local err = find_event(events, "on_error")
        assert.equal(errors.BAD_HTTP_STATUS, err[2])
        assert.truthy(err[3]:find("403", 1, true))
        assert.is_nil(find_event(calls, "open"))
      end)
    end)

    describe("prepare()", function()
      it("rejects with the status and message of an HTTPError, without calling open", function()
        local opened = false
        local H = class("H", ws.WebSocketHandler)
        function H:prepare() error(web.HTTPError(401, "who are you?")) end
        function H:open() opened = true end
        local port = serve({ { "^/ws$", H } })
        local response
        assert.is_true(S.loop(function(done)
          core.connect(url(port), nil, function(conn, kind, msg, res)
            response = { conn, kind, res and res.status, res and res.body }
            done()
          end)
        end))
        assert.same({ nil, "bad_status", 401, "who are you?" }, response)
        assert.is_false(opened)
      end)

      it("answers 500 for any other error", function()
        local H = class("H", ws.WebSocketHandler)
        function H:prepare() error("boom") end
        local port = serve({ { "^/ws$", H } })
        local events = client_events(url(port))
        assert.equal(errors.BAD_HTTP_STATUS, events[1][2])
        assert.truthy(events[1][3]:find("500", 1, true))
      end)

      it("sees self.origin, self.request and the route options; set headers and cookies go out with the 101", function()
        local seen
        local H = class("H", ws.WebSocketHandler)
        function H:prepare()
          seen = {
            origin = self.origin, method = self.request.method, path = self.request.path,
            uri = self.request.uri, ip = self.request.remote_ip,
            agent = self.request.headers:get("user-agent"),
            arg = self:get_argument("room"), missing = self:get_argument("nope", "dflt"),
            cookie = self:get_cookie("session"), option = self.options.tag,
            settings = self:settings(),
          }
          self:set_header("X-Hello", "world")
          self:set_cookie("visited", "yes")
        end
        function H:open() self:close() end
        local port = serve({ { "^/ws$", H, { tag = "T" } } }, { settings = { s = 1 } })
        local response_headers
        client_events(url(port, "/ws?room=blue"), {
          cookie = "session=abc",
          user_agent = "spec-agent/1",
          modify_headers = function(self, headers) headers:add("Origin", "http://example.test") end,
          on_headers = function(self, headers) response_headers = headers end,
        })
        assert.same({
          origin = "http://example.test", method = "GET", path = "/ws", uri = "/ws?room=blue",
          ip = "127.0.0.1", agent = "spec-agent/1", arg = "blue", missing = "dflt",
          cookie = "abc", option = "T", settings = { s = 1 },
        }, seen)
        assert.equal("world", response_headers:get("X-Hello"))
        assert.truthy(response_headers:get("Set-Cookie"):find("visited=yes", 1, true))
      end)

      it("may answer the request itself instead of upgrading", function()
        local opened = false
        local H = class("H", ws.WebSocketHandler)
        function H:prepare()
          if self:get_argument("mode") == "redirect" then
            self:redirect("/elsewhere")
          elseif self:get_argument("mode") == "close" then
            self:close()
          else
            self:set_status(409)
            self:finish("busy")
          end
        end
        function H:open() opened = true end
        local port = serve({ { "^/ws$", H } })
        local responses = {}
        assert.is_true(S.loop(function(done)
          local left = 3
          for _, mode in ipairs({ "redirect", "close", "finish" }) do
            core.connect(url(port, "/ws?mode=" .. mode), nil, function(conn, kind, msg, res)
              responses[mode] = { res.status, res.body }
              left = left - 1
              if left == 0 then done() end
            end)
          end
        end))
        assert.same({ redirect = { 302, "" }, close = { 403, "Forbidden" }, finish = { 409, "busy" } }, responses)
        assert.is_false(opened)
      end)

      it("queues messages written before the upgrade and sends them first", function()
        local H = class("H", ws.WebSocketHandler)
        function H:prepare() self:write_message("from prepare") end
        function H:open() self:write_message("from open") end
        local port = serve({ { "^/ws$", H } })
        local got = {}
        client_events(url(port), {
          on_message = function(self, msg)
            got[#got + 1] = msg
            if #got == 2 then self:close() end
          end,
        })
        assert.same({ "from prepare", "from open" }, got)
      end)

      it("can check a secure cookie, as the chat example does", function()
        local nick
        local H = class("H", ws.WebSocketHandler)
        function H:prepare()
          nick = self:get_secure_cookie("nick")
          if not nick then error(web.HTTPError(400)) end
        end
        function H:open() self:close() end
        local secret = "s3cret"
        local port = serve({ { "^/ws$", H } }, { cookie_secret = secret })
        -- A cookie signed the way set_secure_cookie signs it.
        local payload = string.format("%d|%d|%s", 3, turbo.util.gettimeofday(), "bob")
        local signed = turbo.hash.HMAC(secret, payload) .. "|" .. payload
        local ok_events = client_events(url(port), { cookie = { nick = turbo.escape.escape(signed) } })
        assert.equal("bob", nick)
        assert.equal("on_close", ok_events[#ok_events][1])
        nick = nil
        local bad_events = client_events(url(port))
        assert.equal(errors.BAD_HTTP_STATUS, bad_events[1][2])
        assert.truthy(bad_events[1][3]:find("400", 1, true))
      end)
    end)

    -- An open connection keeps its request: its header objects are built
    -- only when the handler reads them, and then as they were on arrival.
    it("builds request.headers, host, arguments and connection on first use, as on arrival", function()
      local seen = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open(order)
        local r = self.request
        local s = { built = rawget(r, "headers") ~= nil or rawget(r, "host") ~= nil
                            or rawget(r, "arguments") ~= nil or rawget(r, "connection") ~= nil }
        if order == "args" then
          s.args = r.arguments
          s.shared = r.headers:get_arguments() == r.arguments
        else
          r.headers:set("Host", "changed")  -- before request.host is read
          s.shared = r.headers:get_arguments() == r.arguments
          s.args = r.arguments
        end
        s.host, s.form = r.host, r.connection.arguments
        s.agent, s.url = r.headers:get("user-agent"), r.headers:get_url()
        seen[order] = s
        self:close()
      end
      local port = serve({ { "^/ws/(%a+)$", H } })
      for _, order in ipairs({ "args", "headers" }) do
        client_events(url(port, "/ws/" .. order .. "?x=1&x=2&y=%41"), { user_agent = "spec-agent/1" })
        assert.same({ built = false, args = { x = { "1", "2" }, y = "A" }, shared = true,
                      host = "127.0.0.1:" .. port, form = {}, agent = "spec-agent/1",
                      url = "/ws/" .. order .. "?x=1&x=2&y=%41" }, seen[order])
      end
    end)

    it("answers requests that are not a WebSocket handshake like RFC 6455 says", function()
      local called = false
      local H = class("H", ws.WebSocketHandler)
      function H:prepare() called = true end
      local port = serve({ { "^/ws$", H } })
      local statuses = {}
      local requests = {
        plain = S.raw.get("/ws"),
        post = S.raw.get("/ws", { "Upgrade: websocket", "Connection: Upgrade",
          "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " .. S.KEY }, "POST", ""),
        version = S.raw.get("/ws", { "Upgrade: websocket", "Connection: Upgrade",
          "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: " .. S.KEY }),
        key = S.raw.get("/ws", { "Upgrade: websocket", "Connection: Upgrade",
          "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: short" }),
        connection = S.raw.get("/ws", { "Upgrade: websocket",
          "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " .. S.KEY }),
      }
      local headers_426
      assert.is_true(S.loop(function(done)
        local left = 5
        for name, request in pairs(requests) do
          S.raw.http(port, request, function(res)
            statuses[name] = res.status
            if name == "version" then headers_426 = res.headers end
            left = left - 1
            if left == 0 then done() end
          end)
        end
      end))
      assert.same({ plain = 400, post = 405, version = 426, key = 400, connection = 400 }, statuses)
      assert.equal("13", headers_426["sec-websocket-version"])
      assert.is_false(called)
    end)

    describe("protocol errors (RFC 6455, which Turbo did not enforce)", function()
      -- A raw client completes the handshake, then sends `bytes`.
      local function send_raw(port, bytes)
        local H = class("H", ws.WebSocketHandler)
        local result = { errors = {}, messages = {} }
        function H:on_message(msg) result.messages[#result.messages + 1] = msg end
        function H:on_error(msg) result.errors[#result.errors + 1] = msg end
        function H:on_close(code) result.close = code; result.done() end
        port = port or serve({ { "^/ws$", H } })
        local fd = S.raw.connect(port)
        S.finally(function() S.raw.close(fd) end)
        local ok = S.loop(function(done)
          result.done = done
          local buffer, sent = "", false
          S.raw.watch(fd, function(chunk)
            buffer = buffer .. chunk
            if not sent and buffer:find("\r\n\r\n", 1, true) then
              sent = true
              S.raw.send(fd, bytes)
            end
          end)
          S.after(20, function() S.raw.send(fd, S.handshake("/ws")) end)
        end)
        assert.is_true(ok, "the server did not close the connection")
        return result
      end
      local MASK = "\1\2\3\4"

      it("fails an unmasked client frame with 1002 and calls on_error", function()
        local r = send_raw(nil, S.frame(1, "unmasked"))
        assert.equal(1002, r.close)
        assert.equal(1, #r.errors)
        assert.same({}, r.messages)
      end)

      it("fails invalid UTF-8 in a text message with 1007", function()
        local r = send_raw(nil, S.frame(1, "bad \255\254 utf8", { mask = MASK }))
        assert.equal(1007, r.close)
        assert.equal(1, #r.errors)
      end)

      it("fails a frame with RSV bits but no extension with 1002", function()
        local r = send_raw(nil, S.frame(1, "rsv", { mask = MASK, rsv = 2 }))
        assert.equal(1002, r.close)
      end)

      it("fails a fragmented ping with 1002", function()
        local r = send_raw(nil, S.frame(9, "frag", { mask = MASK, fin = false }))
        assert.equal(1002, r.close)
      end)

      it("accepts a ping between the fragments of a message", function()
        local r = send_raw(nil, S.frame(1, "Hel", { mask = MASK, fin = false })
          .. S.frame(9, "between", { mask = MASK })
          .. S.frame(0, "lo", { mask = MASK })
          .. S.frame(8, "\3\232", { mask = MASK }))
        assert.same({ "Hello" }, r.messages)
        assert.same({}, r.errors)
        assert.equal(1000, r.close)
      end)
    end)

    it("closes with 1011 and calls on_error when a hook raises; other connections go on", function()
      local errors_seen = {}
      local H = class("H", Echo)
      function H:on_message(msg)
        if msg == "crash" then error("handler exploded") end
        self:write_message(msg)
      end
      function H:on_error(msg) errors_seen[#errors_seen + 1] = msg end
      local port = serve({ { "^/ws$", H } })
      local crashed_close, survivor
      assert.is_true(S.loop(function(done)
        ws.WebSocketClient(url(port), {
          on_connect = function(self) self:write_message("crash") end,
          on_close = function(self, code)
            crashed_close = code
            ws.WebSocketClient(url(port), {
              on_connect = function(c) c:write_message("still fine") end,
              on_message = function(c, msg) survivor = msg; c:close() end,
              on_close = function() done() end,
            })
          end,
        })
      end))
      assert.equal(1011, crashed_close)
      assert.equal(1, #errors_seen)
      assert.truthy(errors_seen[1]:find("handler exploded", 1, true))
      assert.equal("still fine", survivor)
    end)

    it("lets a hook yield and be resumed later", function()
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg)
        local co = coroutine.running()
        S.after(20, function() coroutine.resume(co) end)
        coroutine.yield()
        self:write_message("after yield: " .. msg)
      end
      local port = serve({ { "^/ws$", H } })
      local got
      client_events(url(port), {
        on_connect = function(self) self:write_message("x") end,
        on_message = function(self, msg) got = msg; self:close() end,
      })
      assert.equal("after yield: x", got)
    end)
  end)

  describe("WebSocketClient", function()
    it("calls modify_headers, on_headers, on_connect, on_message, on_close in order, each with the instance first", function()
      local port = serve({ { "^/ws$", Echo } })
      local instances, client = {}, nil
      local function note(name) return function(self) instances[#instances + 1] = { name, self } end end
      local events = client_events(url(port), {
        modify_headers = note("modify_headers"),
        on_headers = note("on_headers"),
        on_connect = function(self)
          note("on_connect")(self)
          self:write_message("ping-pong")
        end,
        on_message = function(self, msg)
          note("on_message")(self)
          self:close()
        end,
        on_close = note("on_close"),
      })
      assert.same({ "modify_headers", "on_headers", "on_connect", "on_message", "on_close" }, event_names(instances))
      client = instances[1][2]
      assert.is_true(client:isInstanceOf(ws.WebSocketClient))
      for _, entry in ipairs(instances) do assert.equal(client, entry[2]) end
      assert.same({ "on_close" }, event_names(events))
    end)

    it("gives modify_headers an HTTPHeaders to edit and on_headers the 101 response", function()
      local seen
      local H = class("H", ws.WebSocketHandler)
      function H:prepare()
        seen = { custom = self.request.headers:get("X-Custom"),
                 host = self.request.headers:get("Host"),
                 key = self.request.headers:get("Sec-WebSocket-Key") }
      end
      function H:open() self:close() end
      local port = serve({ { "^/ws$", H } })
      local request_headers, response
      client_events(url(port), {
        modify_headers = function(self, headers)
          request_headers = headers
          headers:add("X-Custom", "42")
        end,
        on_headers = function(self, headers)
          response = { headers:get_status_code(), (headers:get("upgrade")), (headers:get("Connection")) }
        end,
      })
      assert.is_true(request_headers:isInstanceOf(turbo.httputil.HTTPHeaders))
      assert.equal("13", request_headers:get("Sec-WebSocket-Version"))
      assert.equal(seen.key, request_headers:get("Sec-WebSocket-Key"))
      assert.equal(16, #turbo.escape.base64_decode(seen.key))
      assert.equal("websocket", request_headers:get("Upgrade"))
      assert.same({ custom = "42", host = "127.0.0.1:" .. port, key = seen.key }, seen)
      assert.same({ 101, "websocket", "Upgrade" }, response)
    end)

    it("sends the Sec-WebSocket-Key modify_headers chose, and checks the answer against it", function()
      local seen
      local H = class("H", ws.WebSocketHandler)
      function H:prepare() seen = self.request.headers:get("Sec-WebSocket-Key") end
      function H:open() self:close() end
      local port = serve({ { "^/ws$", H } })
      local events = client_events(url(port), {
        modify_headers = function(self, headers) headers:set("Sec-WebSocket-Key", S.KEY) end,
      })
      assert.equal(S.KEY, seen)
      assert.is_nil(find_event(events, "on_error"))
    end)

    it("works when created at top level, before the loop runs", function()
      local port = serve({ { "^/ws$", Echo } })
      local got, closed = nil, false
      local client = ws.WebSocketClient(url(port), {
        on_connect = function(self) self:write_message("top level") end,
        on_message = function(self, msg) got = msg; self:close() end,
        on_close = function() closed = true end,
      })
      assert.is_true(client:isInstanceOf(ws.WebSocketClient))
      assert.is_true(S.loop(function(done)
        local ref
        ref = core.set_interval(5, function()
          if closed then core.clear_interval(ref); done() end
        end)
      end))
      assert.equal("top level", got)
    end)

    it("works when created inside a coroutine, as Turbo requires", function()
      local port = serve({ { "^/ws$", Echo } })
      local got
      assert.is_true(S.loop(function(done)
        turbo.ioloop.instance():add_callback(function()
          ws.WebSocketClient(url(port), {
            on_connect = function(self) self:write_message("in a coroutine") end,
            on_message = function(self, msg) got = msg; self:close() end,
            on_close = function() done() end,
          })
        end)
      end))
      assert.equal("in a coroutine", got)
    end)

    it("queues messages written before the connection opens and sends them after on_connect", function()
      local received = {}
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg)
        received[#received + 1] = msg
        if #received == 3 then self:close() end
      end
      local port = serve({ { "^/ws$", H } })
      assert.is_true(S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_connect = function(self) self:write_message("from on_connect") end,
          on_close = function() done() end,
        })
        assert.is_false(client:closed())
        client:write_message("early 1")
        client:write_message({ early = 2 })
      end))
      assert.same({ "from on_connect", "early 1", '{"early":2}' }, received)
    end)

    it("passes the binary flag to on_message", function()
      local H = class("H", ws.WebSocketHandler)
      function H:open()
        self:write_message("t")
        self:write_message("b", true)
      end
      local port = serve({ { "^/ws$", H } })
      local got = {}
      client_events(url(port), {
        on_message = function(self, msg, binary)
          got[#got + 1] = { msg, binary }
          if #got == 2 then self:close() end
        end,
      })
      assert.same({ { "t", false }, { "b", true } }, got)
    end)

    it("calls on_ping with the ping data (and still answers it)", function()
      local pong
      local H = class("H", ws.WebSocketHandler)
      function H:open() self:ping("heartbeat", function(data) pong = data; self:close() end) end
      local port = serve({ { "^/ws$", H } })
      local pinged
      client_events(url(port), {
        on_ping = function(self, data) pinged = data end,
      })
      assert.equal("heartbeat", pinged)
      assert.equal("heartbeat", pong)
    end)

    it("sends pings with a callback and unsolicited pongs", function()
      local pongs_at_server = {}
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
        local conn = req:upgrade()
        conn:set_callbacks({ on_pong = function(data) pongs_at_server[#pongs_at_server + 1] = data end })
      end)
      S.finally(function() server:close() end)
      local calls = {}
      client_events(url(server:port()), {
        on_connect = function(self)
          self:pong("unsolicited")
          self:ping("p1", function(arg, data)
            calls[#calls + 1] = { arg, data }
            self:ping("p2", function(data2)
              calls[#calls + 1] = { data2 }
              self:close()
            end)
          end, "arg")
        end,
      })
      assert.same({ { "arg", "p1" }, { "p2" } }, calls)
      assert.same({ "unsolicited" }, pongs_at_server)
    end)

    it("raises on write_message after close(), and reports closed()", function()
      local port = serve({ { "^/ws$", Echo } })
      local r = {}
      client_events(url(port), {
        on_connect = function(self)
          r.open = self:closed()
          self:close()
          r.closed = self:closed()
          r.write = pcall(self.write_message, self, "x")
          r.ping = pcall(self.ping, self, "x")
        end,
      })
      assert.same({ open = false, closed = true, write = false, ping = true }, r)
    end)

    it("drops the connection when on_headers calls self:close(); on_connect is not called", function()
      local server_closed = false
      local H = class("H", ws.WebSocketHandler)
      function H:on_close() server_closed = true end
      local port = serve({ { "^/ws$", H } })
      local events = client_events(url(port), {
        on_headers = function(self) self:close() end,
        on_connect = function() error("must not be called") end,
      })
      assert.same({ "on_close" }, event_names(events))
      S.drain(200)
      assert.is_true(server_closed)
    end)

    it("never connects when close() is called right after the constructor", function()
      local requested = false
      local H = class("H", ws.WebSocketHandler)
      function H:prepare() requested = true end
      local port = serve({ { "^/ws$", H } })
      local called = {}
      local client = ws.WebSocketClient(url(port), {
        modify_headers = function() called[#called + 1] = "modify_headers" end,
        on_error = function() called[#called + 1] = "on_error" end,
      })
      client:close()
      assert.is_true(client:closed())
      S.drain(200)
      assert.is_false(requested)
      assert.same({}, called)
    end)

    it("drops the connection when close() is called while connecting", function()
      local server_closed = false
      local H = class("H", ws.WebSocketHandler)
      function H:on_close() server_closed = true end
      local port = serve({ { "^/ws$", H } })
      local called = {}
      local function note(name) return function() called[#called + 1] = name end end
      assert.is_true(S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_headers = note("on_headers"), on_connect = note("on_connect"),
          on_close = function() done() end,
        })
        -- Runs after the client asked the core to connect, before the answer.
        core.add_callback(function() client:close() end)
      end))
      assert.same({}, called)
      S.drain(200)
      assert.is_true(server_closed)
    end)

    it("uses a callback defined as a method of a subclass", function()
      local port = serve({ { "^/ws$", Echo } })
      local got
      local MyClient = class("MyClient", ws.WebSocketClient)
      function MyClient:on_connect() self:write_message("method") end
      function MyClient:on_message(msg) got = msg; self:close() end
      assert.is_true(S.loop(function(done)
        MyClient(url(port), { on_close = function() done() end })
      end))
      assert.equal("method", got)
    end)

    describe("kwargs", function()
      -- The handshake request as the server saw it.
      local function request_seen(kwargs, path)
        local seen
        local H = class("H", ws.WebSocketHandler)
        function H:subprotocol(protocols) return protocols[1] end
        function H:prepare()
          seen = { uri = self.request.uri, headers = self.request.headers }
        end
        function H:open() self:close() end
        local port = serve({ { "^/ws", H } })
        local events = client_events(url(port, path or "/ws"), kwargs)
        return seen, events, port
      end

      it("params: appended to the query", function()
        local seen = request_seen({ params = { b = "2 two", a = 1 } })
        assert.equal("/ws?a=1&b=2%20two", seen.uri)
        local seen2 = request_seen({ params = { c = "3" } }, "/ws?x=1")
        assert.equal("/ws?x=1&c=3", seen2.uri)
      end)

      it("cookie: a string or a table", function()
        assert.equal("a=1; b=2", request_seen({ cookie = "a=1; b=2" }).headers:get("Cookie"))
        assert.equal("x=9; y=8", request_seen({ cookie = { x = 9, y = "8" } }).headers:get("Cookie"))
      end)

      it("user_agent, with Turbo's default", function()
        assert.equal("agent/2", request_seen({ user_agent = "agent/2" }).headers:get("User-Agent"))
        assert.truthy(request_seen({}).headers:get("User-Agent"):find("^Turbo Client v"))
      end)

      it("auth_username and auth_password: Basic authentication", function()
        local seen = request_seen({ auth_username = "Aladdin", auth_password = "open sesame" })
        assert.equal("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", seen.headers:get("Authorization"))
      end)

      it("Host carries the port when it is not the default", function()
        local seen, _, port = request_seen({})
        assert.equal("127.0.0.1:" .. port, seen.headers:get("Host"))
      end)

      it("body: a string is accepted, anything else is INVALID_BODY", function()
        local seen, events = request_seen({ body = "ignored by the upgrade" })
        assert.is_table(seen)
        assert.equal("on_close", events[#events][1])
        local seen2, events2 = request_seen({ body = { 1 } })
        assert.is_nil(seen2)
        assert.same({ "on_error", errors.INVALID_BODY, "Request body is not a string." }, events2[1])
      end)

      it("websocket_protocol: offered to the server", function()
        local seen = request_seen({ websocket_protocol = "v1" })
        assert.equal("v1", seen.headers:get("Sec-WebSocket-Protocol"))
      end)

      it("allow_redirects and max_redirects", function()
        -- hop1 (port3) -> hop2 (port2) -> /ws (port)
        local port = serve({ { "^/ws$", Echo } })
        local port2 = serve({ { "^/hop2$", web.RedirectHandler, url(port, "/ws") } })
        local port3 = serve({ { "^/hop1$", web.RedirectHandler, url(port2, "/hop2") } })
        local function outcome(kwargs)
          kwargs.on_connect = function(self) self:close() end
          local events = client_events(url(port3, "/hop1"), kwargs)
          return events[1][1], events[1][2]
        end
        assert.same({ "on_close" }, { (outcome({})) })
        assert.same({ "on_close" }, { (outcome({ max_redirects = 2 })) })
        assert.same({ "on_error", errors.REDIRECT_MAX }, { outcome({ max_redirects = 1 }) })
        assert.same({ "on_error", errors.BAD_HTTP_STATUS }, { outcome({ allow_redirects = false }) })
      end)

      it("request_timeout: REQUEST_TIMEOUT when the server never answers", function()
        local port, stop = S.raw_server(function() end)
        S.finally(stop)
        local started = core.gettimemonotonic()
        local events = client_events(url(port), { request_timeout = 0.3 })
        assert.equal(errors.REQUEST_TIMEOUT, events[1][2])
        assert.is_true(core.gettimemonotonic() - started < 2000)
      end)

      it("connect_timeout: CONNECT_TIMEOUT when the TCP connect hangs", function()
        -- A listener whose accept queue is full drops new SYNs: connects hang.
        local lfd, port = S.raw.listen(0)
        local fillers = { S.raw.connect(port), S.raw.connect(port), S.raw.connect(port) }
        S.finally(function()
          for _, fd in ipairs(fillers) do S.raw.close(fd) end
          S.raw.close(lfd)
        end)
        local events = client_events(url(port), { connect_timeout = 0.3 })
        assert.equal(errors.CONNECT_TIMEOUT, events[1][2])
      end)

      it("max_buffer_size: limits incoming messages", function()
        local H = class("H", ws.WebSocketHandler)
        function H:open() self:write_message(string.rep("x", 5000)) end
        local port = serve({ { "^/ws$", H } })
        local events = client_events(url(port), { max_buffer_size = 1000 })
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, events[1][2])
        assert.equal("on_close", events[2][1])
        assert.equal(1009, events[2][2])
      end)
    end)

    describe("errors", function()
      local function first_error(address, kwargs)
        local events = client_events(address, kwargs)
        local e = find_event(events, "on_error")
        return e and e[2], e and e[3], events
      end

      it("INVALID_URL for an address that is not a URL or not a string", function()
        assert.equal(errors.INVALID_URL, (first_error("no url here")))
        assert.equal(errors.INVALID_URL, (first_error(42)))
        assert.equal(errors.INVALID_URL, (first_error("ws:///path-without-host")))
      end)

      it("INVALID_SCHEMA for a scheme other than ws, wss (or http, https)", function()
        local code, msg = first_error("ftp://127.0.0.1:21/")
        assert.equal(errors.INVALID_SCHEMA, code)
        assert.truthy(msg:find("ftp", 1, true))
      end)

      it("COULD_NOT_CONNECT when the connection is refused or the name does not resolve", function()
        assert.equal(errors.COULD_NOT_CONNECT, (first_error(url(closed_port()))))
        assert.equal(errors.COULD_NOT_CONNECT, (first_error("ws://name.invalid/ws")))
      end)

      it("BAD_HTTP_STATUS when the answer is not 101", function()
        local port = serve({ { "^/ws$", Echo } })
        local code, msg, events = first_error(url(port, "/nowhere"))
        assert.equal(errors.BAD_HTTP_STATUS, code)
        assert.equal("Expected 101, was 404, can not upgrade.", msg)
        assert.is_nil(find_event(events, "on_close"))
      end)

      -- Raw servers answering the handshake badly.
      local function against(answer)
        local port, stop = S.raw_server(function(fd, request)
          local reply = answer(request)
          if reply then S.raw.send(fd, reply) end
          S.raw.close(fd)
        end)
        S.finally(stop)
        return first_error(url(port), { request_timeout = 2 })
      end

      it("NO_HEADERS when the server closes without answering", function()
        assert.equal(errors.NO_HEADERS, (against(function() return nil end)))
      end)

      it("PARSE_ERROR_HEADERS when the answer is not HTTP", function()
        assert.equal(errors.PARSE_ERROR_HEADERS, (against(function() return "SSH-2.0-OpenSSH\r\n\r\n" end)))
      end)

      it("WEBSOCKET_PROTOCOL_ERROR when the 101 has a wrong Sec-WebSocket-Accept", function()
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, (against(function()
          return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            .. "Connection: Upgrade\r\nSec-WebSocket-Accept: wrong=\r\n\r\n"
        end)))
      end)

      it("WEBSOCKET_PROTOCOL_ERROR when the 101 lacks Upgrade or picks an unoffered subprotocol", function()
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, (against(function(request)
          return (S.accept_response(request):gsub("Upgrade: websocket\r\n", ""))
        end)))
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, (against(function(request)
          return (S.accept_response(request):gsub("\r\n\r\n$", "\r\nSec-WebSocket-Protocol: x\r\n\r\n"))
        end)))
      end)

      it("WEBSOCKET_PROTOCOL_ERROR, then on_close(1002), when the server breaks the framing", function()
        local port, stop = S.raw_server(function(fd, request)
          -- A server must not mask its frames.
          S.raw.send(fd, S.accept_response(request) .. S.frame(1, "masked", { mask = "abcd" }))
        end)
        S.finally(stop)
        local events = client_events(url(port))
        assert.same({ "on_connect", "on_error", "on_close" }, { "on_connect", events[1][1], events[2][1] })
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, events[1][2])
        assert.equal(1002, events[2][2])
      end)

      it("accepts control frames between fragments from a server", function()
        local port, stop = S.raw_server(function(fd, request)
          S.raw.send(fd, S.accept_response(request)
            .. S.frame(1, "frag", { fin = false }) .. S.frame(9, "ping")
            .. S.frame(0, "ment") .. S.frame(8, "\3\232"))
          -- The server ends the TCP connection once the client answered.
          S.after(50, function() S.raw.close(fd) end)
        end)
        S.finally(stop)
        local got
        local events = client_events(url(port), { on_message = function(self, msg) got = msg end })
        assert.equal("fragment", got)
        assert.is_nil(find_event(events, "on_error"))
      end)

      it("SOCKET_ERROR, then on_close(1006), when the connection drops without a close", function()
        local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
          local conn = req:upgrade()
          conn:set_callbacks({ on_message = function() conn:abort() end })
        end)
        S.finally(function() server:close() end)
        local events = client_events(url(server:port()), {
          on_connect = function(self) self:write_message("drop me") end,
        })
        assert.equal(errors.SOCKET_ERROR, events[1][2])
        assert.same({ "on_close", 1006 }, { events[2][1], events[2][2] })
      end)

      it("CALLBACK_ERROR when on_connect raises: the connection closes (1011), on_close follows", function()
        local server_close
        local H = class("H", ws.WebSocketHandler)
        function H:on_close(code) server_close = code end
        local port = serve({ { "^/ws$", H } })
        local code, msg, events = first_error(url(port), {
          on_connect = function() error("my bug") end,
        })
        assert.equal(errors.CALLBACK_ERROR, code)
        assert.truthy(msg:find("my bug", 1, true))
        assert.truthy(msg:find("on_connect", 1, true))
        assert.equal("on_close", events[2][1])
        S.drain(200)
        assert.equal(1011, server_close)
      end)

      it("CALLBACK_ERROR when modify_headers raises: no request is made", function()
        local requested = false
        local H = class("H", ws.WebSocketHandler)
        function H:prepare() requested = true end
        local port = serve({ { "^/ws$", H } })
        local code, msg, events = first_error(url(port), {
          modify_headers = function() error("bad headers") end,
        })
        assert.equal(errors.CALLBACK_ERROR, code)
        assert.truthy(msg:find("bad headers", 1, true))
        assert.is_false(requested)
        assert.is_nil(find_event(events, "on_close"))
      end)

      it("CALLBACK_ERROR when on_headers or on_message raises", function()
        local port = serve({ { "^/ws$", Echo } })
        local connected = false
        local code = first_error(url(port), {
          on_headers = function() error("nope") end,
          on_connect = function() connected = true end,
        })
        assert.equal(errors.CALLBACK_ERROR, code)
        assert.is_false(connected)
        local code2, msg2 = first_error(url(port), {
          on_connect = function(self) self:write_message("x") end,
          on_message = function() error("bad message handler") end,
        })
        assert.equal(errors.CALLBACK_ERROR, code2)
        assert.truthy(msg2:find("bad message handler", 1, true))
      end)

      it("an error inside on_error is only logged", function()
        local calls = 0
        local events = client_events(url(closed_port()), {
          on_error = function() calls = calls + 1; error("on_error broke") end,
        })
        assert.equal(1, calls)
        assert.equal(1, #events)
      end)

      it("REQUIRES_BODY, BUSY: never produced (the upgrade is a GET; one request per client)", function()
        local port = serve({ { "^/ws$", Echo } })
        local events = client_events(url(port), {
          body = "x", params = { a = 1 },
          on_connect = function(self) self:write_message("y") end,
          on_message = function(self) self:close() end,
        })
        assert.is_nil(find_event(events, "on_error"))
      end)
    end)

    it("rejects kwargs of the wrong type at once", function()
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { connect_timeout = "soon" }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { on_message = "not a function" }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { websocket_protocol = 5 }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { cookie = "a=1\r\nX-Injected: 1" }) end)
      S.drain(50)
    end)
  end)

  describe("wss", function()
    local tls
    setup(function() tls = S.tls_files() end)

    local function wss_server()
      return serve({ { "^/ws$", Echo } }, nil,
        { ssl_options = { cert_file = tls.cert, key_file = tls.key } })
    end

    local function echo_over(kwargs, host)
      local port = wss_server()
      local got
      kwargs.on_connect = function(self) self:write_message("secure") end
      kwargs.on_message = function(self, msg) got = msg; self:close() end
      local events = client_events("wss://" .. (host or "127.0.0.1") .. ":" .. port .. "/ws", kwargs)
      return got, events
    end

    it("connects with ssl_options.ca_path naming the certificate file", function()
      assert.equal("secure", (echo_over({ ssl_options = { ca_path = tls.cert } })))
    end)

    it("connects with a top-level ca_path naming a directory", function()
      assert.equal("secure", (echo_over({ ca_path = tls.ca_dir }, "localhost")))
    end)

    it("connects without verification when verify_ca is false (top level or in ssl_options)", function()
      assert.equal("secure", (echo_over({ verify_ca = false })))
      assert.equal("secure", (echo_over({ ssl_options = { verify_ca = false } })))
    end)

    it("reports SSL_ERROR through on_error when the certificate is not trusted", function()
      local got, events = echo_over({})
      assert.is_nil(got)
      assert.equal(errors.SSL_ERROR, events[1][2])
    end)

    it("honours cert_file and priv_file (a missing key file is an SSL_ERROR)", function()
      local got, events = echo_over({ ca_path = tls.cert, cert_file = tls.cert, priv_file = "/nonexistent/key.pem" })
      assert.is_nil(got)
      assert.equal(errors.SSL_ERROR, events[1][2])
      local got2 = echo_over({ ssl_options = { ca_path = tls.cert, cert_file = tls.cert, priv_file = tls.key } })
      assert.equal("secure", got2)
    end)

    it("presents cert_file/priv_file to a server that requires client certificates", function()
      local port = serve({ { "^/ws$", Echo } }, nil,
        { ssl_options = { cert_file = tls.cert, key_file = tls.key, client_ca_file = tls.cert } })
      local function exchange(kwargs)
        local got
        kwargs.on_connect = function(self) self:write_message("mutual") end
        kwargs.on_message = function(self, msg) got = msg; self:close() end
        local events = client_events("wss://127.0.0.1:" .. port .. "/ws", kwargs)
        return got, events
      end
      assert.equal("mutual", (exchange({ ca_path = tls.cert, cert_file = tls.cert, priv_file = tls.key })))
      local got, events = exchange({ ca_path = tls.cert })
      assert.is_nil(got)
      assert.equal(errors.SSL_ERROR, find_event(events, "on_error")[2])
    end)

    it("reports a plain ws:// client at a wss server as PARSE_ERROR_HEADERS", function()
      local port = wss_server()
      local events = client_events(url(port), { request_timeout = 2 })
      assert.equal(errors.PARSE_ERROR_HEADERS, events[1][2])
    end)
  end)
end)
