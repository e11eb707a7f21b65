-- A WebSocketHandler's fields made on first read (lua/turbo_ws/websocket.lua,
-- LAZY): `stream`, the response `headers` once the 101 went out, the
-- route's captures `_url_args` after open(); and SUPPORTED_METHODS read
-- from the class. Each read gives what the handler held before the
-- upgrade; the rawget checks pin that an idle connection does not keep them.
local S = require "spec.turbo_support"
local T = require "spec.support.turbo_websocket"
local ws, web = T.ws, T.web
local serve, url, client_events = T.serve, T.url, T.client_events

-- Runs one client that sends "go" once open and closes on the answer.
local function one_message(port, path)
  client_events(url(port, path), {
    on_connect = function(self) self:write_message("go") end,
    on_message = function(self) self:close() end,
  })
end

describe("WebSocketHandler lazy fields", function()
  setup(S.quiet)
  teardown(S.loud)

  it("give after the upgrade what they held before it", function()
    local before, after, raw = {}, {}, {}
    local H = class("H", ws.WebSocketHandler)
    local function record(self, into)
      into.server = (self.headers:get("Server"))
      into.fields = self.headers:to_list()
      into.args = { unpack(self._url_args) }
      into.methods = self.SUPPORTED_METHODS
      into.stream_class = self.stream.class
    end
    function H:prepare() record(self, before) end
    function H:on_message()
      raw.headers, raw.url_args = rawget(self, "headers"), rawget(self, "_url_args")
      record(self, after)
      self:write_message("done")
    end
    local port = serve({ { "^/room/(%w+)/(%d+)$", H } })
    one_message(port, "/room/lobby/42")
    assert.is_nil(raw.headers, "headers dropped at the upgrade")
    assert.is_nil(raw.url_args, "captures dropped after open()")
    assert.equal("turbo_ws", before.server)
    assert.same(before, after)
    assert.same({ "lobby", "42" }, after.args)
    assert.equal(web.RequestHandler.SUPPORTED_METHODS, after.methods)
    assert.equal(ws.WebSocketIOStream, after.stream_class)
  end)

  it("make the stream once, on first read, before or after the upgrade", function()
    local in_prepare, in_open, unread
    local H = class("H", ws.WebSocketHandler)
    function H:prepare() in_prepare = self.stream end
    function H:open() in_open = self.stream end
    local U = class("U", ws.WebSocketHandler)
    function U:on_message() unread = rawget(self, "stream"); self:write_message("x") end
    local port = serve({ { "^/h$", H }, { "^/u$", U } })
    client_events(url(port, "/h"), { on_connect = function(self) self:close() end })
    one_message(port, "/u")
    assert.is_table(in_prepare)
    assert.equal(in_prepare, in_open)
    assert.is_nil(unread, "a stream nobody read is not made")
  end)

  it("keep response headers the handler set, and the application's name", function()
    local kept, named
    local Set = class("Set", ws.WebSocketHandler)
    function Set:prepare() self:set_header("X-Extra", "1"); self.prepared = self.headers end
    function Set:on_message()
      kept = rawget(self, "headers") == self.prepared and self.headers:get("X-Extra")
      self:write_message("x")
    end
    local Named = class("Named", ws.WebSocketHandler)
    function Named:on_message() named = self:get_header("Server"); self:write_message("x") end
    local port = serve({ { "^/set$", Set }, { "^/named$", Named } }, { application_name = "chat-1" })
    one_message(port, "/set")
    one_message(port, "/named")
    assert.equal("1", kept)
    assert.equal("chat-1", named)
  end)

  it("work in subclasses of subclasses, and fields the program sets win", function()
    local seen
    local Base = class("Base", ws.WebSocketHandler)
    local Leaf = class("Leaf", Base)
    function Leaf:open(name) self._url_args = { "mine", name } end
    function Leaf:on_message()
      seen = { self._url_args, (self.headers:get("Server")), self.stream.class }
      self:write_message("x")
    end
    local port = serve({ { "^/(leaf)$", Leaf } })
    one_message(port, "/leaf")
    assert.same({ { "mine", "leaf" }, "turbo_ws", ws.WebSocketIOStream }, seen)
  end)

  it("leave an idle handler's table at 8 hash slots", function()
    local ffi = require "ffi"
    ffi.cdef [[ typedef struct spec_GCtab { void *nextgc; uint8_t marked, gct, nomm; int8_t colo;
      void *array, *gclist, *metatable, *node; uint32_t asize, hmask; } spec_GCtab; ]]
    local slots
    local H = class("H", ws.WebSocketHandler)
    function H:on_message()
      local tab = ffi.cast("spec_GCtab *", ffi.cast("uintptr_t", tonumber(string.format("%p", self))))
      slots = tab.hmask + 1
      self:write_message("x")
    end
    local port = serve({ { "^/ws$", H } })
    one_message(port, "/ws")
    assert.equal(8, slots)
  end)
end)
