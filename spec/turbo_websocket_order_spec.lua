-- The Turbo face's ordering rules: a connection's messages are handled one
-- after another even when on_message yields (Turbo read the next frame only
-- once on_message returned), on_close comes last, and what is written
-- before the connection opens is checked at the call, as it would be once
-- open. Shared helpers: spec/support/turbo_websocket.lua.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local turbo, ws, url, serve, Echo = T.turbo, T.ws, T.url, T.serve, T.Echo
local client_events, event_names = T.client_events, T.event_names

-- Suspends the calling handler for `ms` (a task the loop resumes).
local function sleep(ms)
  coroutine.yield(turbo.async.task(function(callback, callback_arg)
    S.after(ms, function() callback(callback_arg) end)
  end))
end

describe("turbo.websocket ordering", function()
  setup(S.quiet)
  teardown(S.loud)

  it("handles a handler's messages one after another when on_message yields", function()
    local log = {}
    local Slow = class("Slow", ws.WebSocketHandler)
    function Slow:on_message(msg)
      log[#log + 1] = "start " .. msg
      if msg == "a" then sleep(150) end
      log[#log + 1] = "end " .. msg
      self:write_message("done " .. msg)
    end
    local port = serve({ { "^/ws$", Slow } })
    local got = {}
    client_events(url(port), {
      on_connect = function(self)
        self:write_message("a"); self:write_message("b"); self:write_message("c")
      end,
      on_message = function(self, msg)
        got[#got + 1] = msg
        if #got == 3 then self:close() end
      end,
    })
    assert.same({ "start a", "end a", "start b", "end b", "start c", "end c" }, log)
    assert.same({ "done a", "done b", "done c" }, got)
  end)

  it("keeps a connection's order while another's held messages are delivered", function()
    local core = turbo.core
    local L = require "spec.support.loop"
    local log = {}
    local Slow = class("SlowEach", ws.WebSocketHandler)
    function Slow:on_message(msg)
      log[#log + 1] = "start " .. msg
      local ms = tonumber(msg:match("^slow(%d+)"))
      if ms then sleep(ms) end
      log[#log + 1] = "end " .. msg
    end
    local port = serve({ { "^/ws$", Slow } })
    local conns = {}
    local function client(steps)
      core.connect(url(port), nil, function(c)
        conns[#conns + 1] = c
        for _, step in ipairs(steps) do
          S.after(step[1], function() for i = 2, #step do c:send(step[i]) end end)
        end
      end)
    end
    -- A's second message is held while its first sleeps; B's first call
    -- is suspended when A's returns and its held message goes in.
    client({ { 0, "slow100-A1", "A2" } })
    client({ { 20, "slow300-B1" }, { 150, "B2" } })
    L.run_until(function() return #log == 8 end, 5000, "eight events")
    local at = {}
    for i, event in ipairs(log) do at[event] = i end
    assert.is_true(at["end slow100-A1"] < at["start A2"], table.concat(log, ", "))
    assert.is_true(at["end slow300-B1"] < at["start B2"], table.concat(log, ", "))
    for _, c in ipairs(conns) do c:close() end
    L.run_until(function()
      return conns[1]:state() == "closed" and conns[2]:state() == "closed"
    end, 5000, "the clients' close")
  end)

  it("handles a client's messages one after another when on_message yields", function()
    local Burst = class("Burst", ws.WebSocketHandler)
    function Burst:open()
      self:write_message("1"); self:write_message("2"); self:write_message("3")
    end
    local port = serve({ { "^/ws$", Burst } })
    local log = {}
    client_events(url(port), {
      on_message = function(self, msg)
        log[#log + 1] = "start " .. msg
        if msg == "1" then sleep(150) end
        log[#log + 1] = "end " .. msg
        if msg == "3" then self:close() end
      end,
    })
    assert.same({ "start 1", "end 1", "start 2", "end 2", "start 3", "end 3" }, log)
  end)

  it("does not report a failure after on_close", function()
    -- on_message yields, the peer closes meanwhile, and the resumed call's
    -- write raises: on_close was the last callback.
    local events = {}
    local Slow = class("Slow", ws.WebSocketHandler)
    function Slow:on_message()
      sleep(150)
      self:write_message("too late")
    end
    function Slow:on_close() events[#events + 1] = "on_close" end
    function Slow:on_error() events[#events + 1] = "on_error" end
    local port = serve({ { "^/ws$", Slow } })
    client_events(url(port), {
      on_connect = function(self)
        self:write_message("x")
        S.after(30, function() self:close() end)
      end,
    })
    S.drain(300)
    assert.same({ "on_close" }, events)
  end)

  it("calls a ping callback with its argument only when the argument is truthy, as Turbo", function()
    local calls = {}
    local port = serve({ { "^/ws$", Echo } })
    client_events(url(port), {
      on_connect = function(self)
        self:ping("one", function(...) calls[#calls + 1] = { ... }
          self:ping("two", function(...) calls[#calls + 1] = { ... }; self:close() end, "arg")
        end, false)
      end,
    })
    assert.same({ { "one" }, { "arg", "two" } }, calls)
  end)

  describe("writes before the connection opens", function()
    it("raise for text that is not UTF-8 and for a ping over 125 bytes, and the rest still goes out", function()
      local port = serve({ { "^/ws$", Echo } })
      local results, got = {}, {}
      S.loop(function(done)
        local client = ws.WebSocketClient(url(port), {
          on_message = function(self, msg) got[#got + 1] = msg; self:close() end,
          on_close = done,
        })
        results.text = { pcall(client.write_message, client, "\255\254") }
        results.ping = { pcall(client.ping, client, string.rep("p", 126)) }
        results.ok = { client:write_message("fine") }
      end)
      assert.is_false(results.text[1])
      assert.matches("valid UTF%-8", results.text[2])
      assert.is_false(results.ping[1])
      assert.matches("at most 125", results.ping[2])
      assert.is_true(results.ok[1])
      assert.same({ "fine" }, got)
    end)

    it("raise in prepare() too, and the handler opens as usual", function()
      local seen = {}
      local Early = class("Early", ws.WebSocketHandler)
      function Early:prepare()
        seen.text = { pcall(self.write_message, self, "\255\254") }
        self:write_message("hello")
      end
      function Early:open() seen.open = true end
      local port = serve({ { "^/ws$", Early } })
      local got = {}
      local events = client_events(url(port), {
        on_message = function(self, msg) got[#got + 1] = msg; self:close() end,
      })
      assert.is_false(seen.text[1])
      assert.matches("valid UTF%-8", seen.text[2])
      assert.is_true(seen.open)
      assert.same({ "hello" }, got)
      assert.same({ "on_close" }, event_names(events))
    end)
  end)

  it("names write_message in the UTF-8 error once open too, handler and client", function()
    local seen = {}
    local Opened = class("Opened", ws.WebSocketHandler)
    function Opened:open() seen.handler = { pcall(self.write_message, self, "\255") } end
    local port = serve({ { "^/ws$", Opened } })
    client_events(url(port), {
      on_connect = function(self)
        seen.client = { pcall(self.write_message, self, "\255") }
        self:close()
      end,
    })
    for _, side in ipairs({ "handler", "client" }) do
      assert.is_false(seen[side][1], side)
      assert.matches("^write_message: a text message must be valid UTF%-8", seen[side][2])
    end
  end)
end)
