-- Issue 18, "drop-in fidelity" of the Turbo face: a request is always
-- answered (never left waiting on an error while answering), header values
-- are taken as Turbo took them (only CR, LF and NUL refused), and a
-- WebSocketHandler has Turbo's `self.stream`. The peer is a raw socket
-- (spec support, LuaJIT FFI) speaking HTTP and RFC 6455 bytes itself, on
-- 127.0.0.1 and port 0, under guard timers.
local turbo = require "turbo_ws"
local S = require "spec.turbo_support"
local web, websocket, core = turbo.web, turbo.websocket, turbo.core

-- An Application on a free port, closed when the spec ends.
local function serve(routes)
  local app = web.Application(routes)
  local server = app:listen(0, "127.0.0.1")
  S.finally(function() app:close(); S.drain(100) end)
  return server:port()
end

-- One raw HTTP exchange; fails the spec if no complete answer comes in
-- 2 s (an unanswered request hangs the client: that is the bug pinned).
-- The collector is stopped meanwhile: an answer must not depend on a
-- dropped request object being collected.
local function fetch(port, request)
  local response
  collectgarbage("stop")
  local ok = S.loop(function(done)
    S.raw.http(port, request, function(res) response = res; done() end)
  end, 2000)
  collectgarbage("restart")
  assert(ok, "no answer within 2 s: the request was left waiting")
  return response
end

local function get(port, path, headers) return fetch(port, S.raw.get(path, headers)) end

local function handler(get_fn, base)
  local H = class("H", base or web.RequestHandler)
  H.get = get_fn
  return H
end

-- The value of header `name` exactly as it was on the wire (raw bytes).
local function raw_header(res, name)
  for line in res.raw:gmatch("([^\r\n]*)\r\n") do
    local n, v = line:match("^([^:]+):%s?(.*)$")
    if n and n:lower() == name:lower() then return v end
  end
end

describe("Turbo face fidelity (issue 18)", function()
  setup(S.quiet)
  teardown(S.loud)

  describe("header values", function()
    it("sends control bytes other than CR, LF and NUL as given, as Turbo did", function()
      local value = "Turbo\8 \1\31\127\255"
      local port = serve({ { "^/$", handler(function(self)
        self:add_header("X-Powered-By", value)
        self:set_header("X-Other", "a\tb\27c")
        self:write("hello")
      end) } })
      local res = get(port, "/")
      assert.equal(200, res.status)
      assert.equal("hello", res.body)
      assert.equal(value, raw_header(res, "X-Powered-By"))
      assert.equal("a\tb\27c", raw_header(res, "X-Other"))
    end)

    it("sends them in a WebSocketHandler's 101 too (headers set in prepare)", function()
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:prepare() self:add_header("X-Powered-By", "Turbo\8") end
      local port = serve({ { "^/ws$", WS } })
      local res = fetch(port, S.handshake("/ws"))
      assert.equal(101, res.status)
      assert.equal("Turbo\8", raw_header(res, "X-Powered-By"))
    end)

    it("refuses CR, LF and NUL in add_header/set_header at the call", function()
      local h = turbo.httputil.HTTPHeaders()
      for _, bad in ipairs({ "a\rb", "a\nb", "a\0b" }) do
        assert.has_error(function() h:add("X-A", bad) end)
        assert.has_error(function() h:set("X-A", bad) end)
      end
      assert.has_error(function() h:add("X-\0", "v") end)
      h:add("X-A", "a\8b")
      assert.equal("a\8b", h:get("X-A"))
    end)

    it("answers 500 at once when add_header raises in the handler", function()
      local port = serve({ { "^/$", handler(function(self) self:add_header("X-A", "a\0b") end) } })
      assert.equal(500, get(port, "/").status)
    end)

    it("the core sends any byte but CR, LF and NUL, and refuses those", function()
      local outcome = {}
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
        if info.path == "/ok" then
          req:respond(200, { { "X-A", "\1\8\127\200" } }, "ok")
        else
          local ok, err = pcall(req.respond, req, 200, { { "X-A", info.path == "/nul" and "a\0b" or "a\rb" } }, "x")
          outcome[info.path] = { ok, tostring(err), req:answered() }
        end
      end)
      S.finally(function() server:close(); S.drain(100) end)
      local port = server:port()
      assert.equal("\1\8\127\200", raw_header(get(port, "/ok"), "X-A"))
      assert.equal(500, get(port, "/nul").status)
      assert.equal(500, get(port, "/cr").status)
      for _, path in ipairs({ "/nul", "/cr" }) do
        assert.is_false(outcome[path][1])
        assert.matches("request:respond: bad value for header 'x%-a'", outcome[path][2])
        assert.is_true(outcome[path][3])  -- answered: the 500 went out
      end
    end)
  end)

  describe("an error while answering", function()
    it("gives 500 at once when the core refuses the response (a bad header name)", function()
      local port = serve({ { "^/$", handler(function(self)
        self:add_header("Bad Name", "v")  -- Turbo checked only CR/LF; HTTP forbids the space
        self:write("never sent")
      end) } })
      local res = get(port, "/")
      assert.equal(500, res.status)
      assert.is_nil(res.body:find("never sent", 1, true))
    end)

    it("gives 500 at once for a status the core cannot send", function()
      local port = serve({ { "^/$", handler(function(self) self:set_status(1000) end) } })
      assert.equal(500, get(port, "/").status)
    end)

    it("core: respond with bad arguments answers 500 at once and raises", function()
      local seen
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
        local ok, err = pcall(req.respond, req, "200")
        local again = { pcall(req.respond, req, 200) }
        seen = { ok, tostring(err), req:answered(), again[1], tostring(again[2]) }
      end)
      S.finally(function() server:close(); S.drain(100) end)
      assert.equal(500, get(server:port(), "/").status)
      assert.is_false(seen[1])
      assert.matches("bad argument #1 'status'", seen[2])
      assert.is_true(seen[3])
      assert.is_false(seen[4])
      assert.matches("already answered", seen[5])
    end)

    it("core: upgrade with a bad extra header answers 500 at once and raises", function()
      local seen
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
        local ok, err = pcall(req.upgrade, req, { headers = { { "X-A", "a\nb" } } })
        seen = { ok, tostring(err), req:answered() }
      end)
      S.finally(function() server:close(); S.drain(100) end)
      local res = fetch(server:port(), S.handshake("/"))
      assert.equal(500, res.status)
      assert.is_false(seen[1])
      assert.matches("bad value for header", seen[2])
      assert.is_true(seen[3])
    end)

    it("a WebSocketHandler whose 101 headers are refused answers 500", function()
      local WS = class("WS", websocket.WebSocketHandler)
      local opened = false
      function WS:prepare() self:add_header("Bad Name", "v") end
      function WS:open() opened = true end
      local port = serve({ { "^/ws$", WS } })
      local res = fetch(port, S.handshake("/ws"))
      assert.equal(500, res.status)
      assert.is_false(opened)
    end)
  end)

  describe("a handler that returns without finish()", function()
    it("is finished with what it wrote, as Turbo's auto-finish does", function()
      local port = serve({
        { "^/wrote$", handler(function(self) self:set_status(201); self:write("partial") end) },
        { "^/nothing$", handler(function() end) },
      })
      local res = get(port, "/wrote")
      assert.same({ 201, "partial" }, { res.status, res.body })
      res = get(port, "/nothing")
      assert.same({ 200, "" }, { res.status, res.body })
    end)

    it("an asynchronous one is answered when it finishes later", function()
      local port = serve({ { "^/$", handler(function(self)
        self:set_async(true)
        S.after(50, function() self:finish("late") end)
      end) } })
      assert.equal("late", get(port, "/").body)
    end)

    it("gets 500 at once when a subclass's finish() sends nothing", function()
      local H = handler(function(self) self:write("x") end)
      function H:finish() self._finished = true end
      local port = serve({ { "^/$", H } })
      assert.equal(500, get(port, "/").status)
    end)
  end)

  describe("WebSocketHandler self.stream", function()
    -- Opens a raw WebSocket connection to `path`, sends `frames` once the
    -- 101 is in, and collects what arrives after it until the server
    -- closes TCP. Returns { status, after = bytes after the 101, eof }.
    local function session(port, path, frames, extra_ms)
      local out = { after = "", eof = false }
      local fd = S.raw.connect(port)
      local buffer, sent = "", false
      local ok = S.loop(function(done)
        S.raw.watch(fd, function(chunk)
          buffer = buffer .. chunk
          local head, rest = buffer:match("^(.-)\r\n\r\n(.*)$")
          if head and not out.status then
            out.status = tonumber(head:match("^HTTP/1.1 (%d+)"))
            buffer = rest
            if out.status == 101 then
              for _, f in ipairs(frames) do S.raw.send(fd, f) end
            end
          end
          if out.status then out.after = buffer end
        end, function()
          out.eof = true
          S.after(extra_ms or 100, done)  -- let the server's on_close run
        end)
        local ref
        ref = core.set_interval(2, function()
          if sent then return end
          if S.raw.send(fd, S.handshake(path)) then sent = true; core.clear_interval(ref) end
        end, nil, false)
      end, 3000)
      S.raw.close(fd)
      out.finished = ok
      return out
    end

    local MASK = "\1\2\3\4"

    it("close() drops TCP without a close frame; on_close follows, on_error does not", function()
      local events = {}
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:open()
        events[#events + 1] = "open reading=" .. tostring(self.stream:reading())
      end
      function WS:on_message(msg)
        if msg == "drop" then
          self:write_message("queued before the drop")
          self.stream:close()
          events[#events + 1] = "closed=" .. tostring(self.stream:closed())
          -- As in Turbo, a write after the drop is silently lost.
          local ok = pcall(self.write_message, self, "after")
          events[#events + 1] = "write after=" .. tostring(ok)
        end
      end
      function WS:on_close(code) events[#events + 1] = "on_close " .. tostring(code) end
      function WS:on_error(msg) events[#events + 1] = "on_error " .. tostring(msg) end
      local port = serve({ { "^/ws$", WS } })
      local out = session(port, "/ws", { S.frame(1, "drop", { mask = MASK }) })
      assert.is_true(out.finished, "the server did not close the connection")
      assert.equal(101, out.status)
      assert.is_true(out.eof)
      -- Nothing after the 101: no close frame, and the queued message was dropped.
      assert.equal("", out.after)
      assert.same({ "open reading=true", "closed=true", "write after=true", "on_close 1006" }, events)
    end)

    it("set_close_callback(fn, arg) runs once the connection ended, before on_close", function()
      local events = {}
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:open()
        events[#events + 1] = "misuse raises=" .. tostring(not pcall(self.stream.set_close_callback, self.stream, "no"))
        self.stream:set_close_callback(function(arg) events[#events + 1] = "callback " .. arg end, "x")
      end
      function WS:on_message() self.stream:close() end
      function WS:on_close() events[#events + 1] = "on_close" end
      local port = serve({ { "^/ws$", WS } })
      local out = session(port, "/ws", { S.frame(1, "bye", { mask = MASK }) })
      assert.is_true(out.finished)
      assert.same({ "misuse raises=true", "callback x", "on_close" }, events)
    end)

    it("the close callback also runs on a normal closing handshake", function()
      local events = {}
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:open()
        self.stream:set_close_callback(function() events[#events + 1] = "callback" end)
      end
      function WS:on_close(code) events[#events + 1] = "on_close " .. code end
      local port = serve({ { "^/ws$", WS } })
      local out = session(port, "/ws", { S.frame(8, "\3\232", { mask = MASK }) })
      assert.is_true(out.finished)
      -- The server answered the close frame (1000) before closing TCP.
      assert.equal("\136\2\3\232", out.after)
      assert.same({ "callback", "on_close 1000" }, events)
    end)

    it("is there in prepare(); close() there refuses the upgrade", function()
      local seen = {}
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:prepare()
        seen.has_stream = self.stream ~= nil
        seen.closed_before = self.stream:closed()
        self.stream:close()
        seen.closed_after = self.stream:closed()
      end
      function WS:open() seen.opened = true end
      local port = serve({ { "^/ws$", WS } })
      local res = fetch(port, S.handshake("/ws"))
      assert.equal(403, res.status)
      assert.same({ has_stream = true, closed_before = false, closed_after = true }, seen)
    end)

    it("writing() tells whether bytes wait to be sent", function()
      local seen = {}
      local WS = class("WS", websocket.WebSocketHandler)
      function WS:open()
        seen[1] = self.stream:writing()
        self:write_message("hello")
        seen[2] = self.stream:writing()
        self:close()
      end
      local port = serve({ { "^/ws$", WS } })
      session(port, "/ws", { S.frame(8, "\3\232", { mask = MASK }) })
      assert.same({ false, true }, seen)
    end)
  end)
end)
