-- The Turbo face's WebSocketClient errors: every errors.* code it reports
-- through on_error (and the ones it never produces), against our server and
-- raw servers that answer wrongly.
-- Shared helpers: spec/support/turbo_websocket.lua, spec/turbo_support.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local ws, core, errors, url, serve = T.ws, T.core, T.errors, T.url, T.serve
local closed_port, Echo, client_events = T.closed_port, T.Echo, T.client_events
local find_event, event_names = T.find_event, T.event_names

describe("turbo.websocket", function()
  setup(S.quiet)
  teardown(function() S.loud(); S.cleanup_tls() end)

  describe("WebSocketClient", function()
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
      local function against(answer, kwargs)
        local port, stop = S.raw_server(function(fd, request)
          local reply = answer(request)
          if reply then S.raw.send(fd, reply) end
          S.raw.close(fd)
        end)
        S.finally(stop)
        kwargs = kwargs or {}
        kwargs.request_timeout = 2
        return first_error(url(port), kwargs)
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

      it("WEBSOCKET_PROTOCOL_ERROR when the 101 picks a subprotocol other than the offered one", function()
        assert.equal(errors.WEBSOCKET_PROTOCOL_ERROR, (against(function(request)
          return (S.accept_response(request):gsub("\r\n\r\n$", "\r\nSec-WebSocket-Protocol: other\r\n\r\n"))
        end, { websocket_protocol = "chat" })))
      end)

      -- RFC 6455 4.1 fails only an unoffered choice; Turbo's client did not check.
      it("connects when the 101 picks none of the offered subprotocols", function()
        local port, stop = S.raw_server(function(fd, request)
          assert(request:find("Sec-WebSocket-Protocol: chat", 1, true), request)
          S.raw.send(fd, S.accept_response(request) .. S.frame(8, "\3\232"))
          S.after(50, function() S.raw.close(fd) end)
        end)
        S.finally(stop)
        local connected = false
        local events = client_events(url(port), {
          websocket_protocol = "chat",
          on_connect = function() connected = true end,
        })
        assert.is_true(connected)
        assert.is_nil(find_event(events, "on_error"))
        assert.equal(1000, find_event(events, "on_close")[2])
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

      it("an error in on_close is only logged: on_close stays the last call", function()
        local port = serve({ { "^/ws$", T.Echo } })
        local events = client_events(url(port), {
          on_connect = function(self) self:close() end,
          on_close = function() error("closing bug") end,
        })
        S.drain(200)
        assert.same({ "on_close" }, event_names(events))
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
  end)
end)
