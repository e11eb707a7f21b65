-- The Turbo face's WebSocketHandler up to the upgrade: subprotocol(),
-- prepare() (rejecting, answering itself, headers and cookies on the 101),
-- the request it keeps, and requests that are not a WebSocket handshake.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local turbo, ws, web, core, errors, url = T.turbo, T.ws, T.web, T.core, T.errors, T.url
local serve, Echo, client_events, find_event = T.serve, T.Echo, T.client_events, T.find_event

describe("turbo.websocket", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

  describe("WebSocketHandler", function()
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
        -- A cookie signed the way set_secure_cookie signs it (its name too).
        local payload = string.format("%d|%d|%s", 3, turbo.util.gettimeofday(), "bob")
        local signed = turbo.hash.HMAC(secret, "nick|" .. payload) .. "|" .. payload
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
        -- Turbo's 400 too: without a version it is no handshake (§4.2.1).
        no_version = S.raw.get("/ws", { "Upgrade: websocket", "Connection: Upgrade",
          "Sec-WebSocket-Key: " .. S.KEY }),
      }
      local headers_426
      assert.is_true(S.loop(function(done)
        local left = 6
        for name, request in pairs(requests) do
          S.raw.http(port, request, function(res)
            statuses[name] = res.status
            if name == "version" then headers_426 = res.headers end
            left = left - 1
            if left == 0 then done() end
          end)
        end
      end))
      assert.same({ plain = 400, post = 405, version = 426, key = 400, connection = 400,
                    no_version = 400 }, statuses)
      assert.equal("13", headers_426["sec-websocket-version"])
      assert.is_false(called)
    end)
  end)
end)
