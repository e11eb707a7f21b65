-- The Turbo face's WebSocketClient kwargs (params, cookie, auth, redirects,
-- timeouts, max_buffer_size, ...) and wss: certificates, verification and
-- client certificates.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local ws, web, core, errors, url, serve = T.ws, T.web, T.core, T.errors, T.url, T.serve
local Echo, client_events, find_event = T.Echo, T.client_events, T.find_event

describe("turbo.websocket", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

  describe("WebSocketClient", function()
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
