-- The Turbo face's WebSocketClient: its callbacks in order, created at top
-- level or in a coroutine, messages, pings and pongs, close at every stage,
-- and kwargs of the wrong type.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local turbo, ws, core, url, serve, Echo = T.turbo, T.ws, T.core, T.url, T.serve, T.Echo
local client_events, find_event, event_names = T.client_events, T.find_event, T.event_names

describe("turbo.websocket", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

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
        assert.is_nil(client:closed()) -- Turbo: true if closed, otherwise nil
        client:write_message("early 1")
        client:write_message({ early = 2 })
      end))
      assert.same({ "from on_connect", "early 1", '{"early":2}' }, received)
    end)

    it("sends messages written before the connection opens ahead of a close() in on_connect", function()
      local received = {}
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg) received[#received + 1] = msg end
      local port = serve({ { "^/ws$", H } })
      assert.is_true(S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_connect = function(self) self:close() end,
          on_close = function() done() end,
        })
        client:write_message("early 1")
        client:write_message("early 2")
      end))
      assert.same({ "early 1", "early 2" }, received)
    end)

    it("refuses writes before the connection opens past max_buffered (BUSY), as after, and drops none it took", function()
      local web = turbo.web
      local saved = web._MAX_BUFFERED
      web._MAX_BUFFERED = 300
      local received = {}
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg)
        received[#received + 1] = msg
        self:close()
      end
      local port = serve({ { "^/ws$", H } })
      local results, errors = {}, {}
      local ok, err = pcall(S.loop, function(done)
        local client = ws.WebSocketClient(url(port), {
          on_error = function(_, code, message) errors[#errors + 1] = { code, message } end,
          on_close = function() done() end,
        })
        for i = 1, 3 do
          local sent, kind = client:write_message(("%d"):format(i):rep(200))
          results[i] = { sent, kind }
        end
        assert.equal(200, client:buffered_amount())
      end)
      web._MAX_BUFFERED = saved
      assert(ok, err)
      assert.same({ { true }, { nil, "too_big" }, { nil, "too_big" } }, results)
      assert.equal(2, #errors)
      assert.equal(ws.errors.BUSY, errors[1][1])
      assert.truthy(errors[1][2]:find("before the connection opened", 1, true), errors[1][2])
      assert.same({ ("1"):rep(200) }, received)
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
            self:ping("p2", function(...)
              calls[#calls + 1] = { select("#", ...), ... }  -- (data) alone, no nil after it
              self:close()
            end)
          end, "arg")
        end,
      })
      assert.same({ { "arg", "p1" }, { 1, "p2" } }, calls)
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
      assert.same({ open = nil, closed = true, write = false, ping = true }, r) -- Turbo: nil until closed
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

    it("rejects kwargs of the wrong type at once", function()
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { connect_timeout = "soon" }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { on_message = "not a function" }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { websocket_protocol = 5 }) end)
      assert.has_error(function() ws.WebSocketClient("ws://127.0.0.1:1/", { cookie = "a=1\r\nX-Injected: 1" }) end)
      S.drain(50)
    end)
  end)
end)
