-- The Turbo face's turbo.websocket module tables (errors, opcode, MAGIC, the
-- WebSocketStream mixin) and WebSocketHandler on an open connection: its
-- hooks in order, messages, pings and pongs, close, the RFC 6455 protocol
-- errors Turbo did not enforce, and hooks that raise or yield.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local turbo, ws, web, core, errors, url = T.turbo, T.ws, T.web, T.core, T.errors, T.url
local serve, Echo, client_events = T.serve, T.Echo, T.client_events

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

    -- Turbo queued every write; a program does not check write_message's
    -- result. Past the core's 1 MiB default, under the face's 64 MiB.
    it("sends several large messages written at once, by a handler and by a client", function()
      local chunk = string.rep("x", 600 * 1024)
      local H = class("H", ws.WebSocketHandler)
      function H:on_message(msg)
        for i = 1, 3 do assert.is_true(self:write_message(msg .. i)) end
      end
      local port = serve({ { "^/ws$", H } })
      local got, errors_seen = {}, {}
      client_events(url(port), {
        on_connect = function(self)
          assert.is_true(self:write_message("small"))
          assert.is_true(self:write_message(chunk))
          assert.is_true(self:write_message(chunk))
        end,
        on_message = function(self, msg)
          got[#got + 1] = #msg
          if #got == 9 then self:close() end
        end,
        on_error = function(_, code, message) errors_seen[#errors_seen + 1] = message end,
      })
      assert.same({}, errors_seen)
      assert.same({ 6, 6, 6, #chunk + 1, #chunk + 1, #chunk + 1, #chunk + 1, #chunk + 1, #chunk + 1 }, got)
    end)

    it("raises for a close reason that is not UTF-8 and stays open and usable", function()
      local result = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open()
        result.refused = { pcall(self.close, self, 1000, "\255") }
        result.string_code = { pcall(self.close, self, "1000") }
        result.closed = self:closed()
        self:write_message("still open")
        self:close(4000, "now")
      end
      local port = serve({ { "^/ws$", H } })
      local got
      local events = client_events(url(port), { on_message = function(_, msg) got = msg end })
      assert.is_false(result.refused[1])
      assert.equal("close: bad argument #2 'reason' (invalid UTF-8)",
                   (tostring(result.refused[2]):gsub("^.-: close:", "close:")))
      assert.equal("close: bad argument #1 'code' (number expected, got string)",
                   (tostring(result.string_code[2]):gsub("^.-: close:", "close:")))
      assert.is_nil(result.closed)
      assert.equal("still open", got)
      assert.equal(4000, T.find_event(events, "on_close")[2])
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
      assert.is_nil(result.before) -- Turbo: true if closed, otherwise nil
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
            calls[#calls + 1] = { select("#", ...), ... }  -- (data) alone, no nil after it
            self:close()
          end)
        end, "ARG")
      end
      local port = serve({ { "^/ws$", H } })
      client_events(url(port))
      assert.same({ { "ARG", "one" }, { 1, "two" } }, calls)
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

    it("delivers nothing more after a hook raised (open), and calls on_error once", function()
      local seen = {}
      local H = class("H", ws.WebSocketHandler)
      function H:open() error("open exploded") end
      function H:on_message(msg) seen[#seen + 1] = "message " .. msg end
      function H:on_error(msg) seen[#seen + 1] = "error" end
      local port = serve({ { "^/ws$", H } })
      local close_code
      -- The client writes at once: its messages may arrive with the upgrade.
      client_events(url(port), {
        on_connect = function(self) for i = 1, 3 do self:write_message("m" .. i) end end,
        on_close = function(_, code) close_code = code end,
      })
      assert.equal(1011, close_code)
      assert.same({ "error" }, seen)
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
end)
