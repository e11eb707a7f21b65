-- A WebSocketHandler's fields made on first read (lua/turbo_ws/websocket.lua,
-- LAZY): `stream`, the response `headers` once the 101 went out, the
-- route's captures `_url_args` after open(); SUPPORTED_METHODS read from
-- the class; the request's method, uri, query, peer and start time read
-- from its raw copy (lua/turbo_ws/web_request.lua, RAW_FIELDS). Each read gives what the handler held before the
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
      into.class = { self.class == H, rawget(self, "class") == nil,
                     class.instanceOf(ws.WebSocketHandler, self), self:isInstanceOf(H) }
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
    assert.same({ true, true, true, true }, after.class)
  end)

  it("keep a class's own __index, set before or after the first instance", function()
    local seen = {}
    local function custom(_, key) if key == "custom" then return "from " .. "__index" end end
    local Before = class("Before", ws.WebSocketHandler)
    Before.__index = custom
    local After = class("After", ws.WebSocketHandler)
    local Table = class("Table", ws.WebSocketHandler)
    Table.__index = { custom = "from a table" }
    local function on_message(self)
      seen[#seen + 1] = { tostring(self.custom), self.stream.class == ws.WebSocketIOStream,
                          self.class.name, self:isInstanceOf(ws.WebSocketHandler) }
      self:write_message("x")
    end
    Before.on_message, After.on_message, Table.on_message = on_message, on_message, on_message
    local port = serve({ { "^/b$", Before }, { "^/a$", After }, { "^/t$", Table } })
    one_message(port, "/b")
    one_message(port, "/a")       -- After's first instance: no __index of its own yet
    After.__index = custom
    one_message(port, "/a")
    one_message(port, "/t")
    assert.same({
      { "from __index", true, "Before", true },
      { "nil", true, "After", true },
      { "from __index", true, "After", true },
      { "from a table", true, "Table", true },
    }, seen)
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
    function Base.static:subclassed() end  -- a program's own hook changes nothing here
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

  it("read the request's line and peer from its raw copy, the same before and after headers are built", function()
    local seen = {}
    local H = class("H", ws.WebSocketHandler)
    local function fields(r)
      return { r.method, r.uri, r.query, r.remote_ip, type(r.remote_port), type(r._start),
               r:request_time() >= 0, rawget(r, "uri") ~= nil }
    end
    function H:prepare() seen.prepare = fields(self.request) end
    function H:on_message()
      local r = self.request
      seen.message = fields(r)
      local _ = r.headers  -- builds them, and stores these fields
      seen.built = fields(r)
      r.uri = "/changed"
      seen.changed = r.uri
      self:write_message("x")
    end
    local port = serve({ { "^/ws", H } })
    one_message(port, "/ws?a=1")
    local expected = { "GET", "/ws?a=1", "a=1", "127.0.0.1", "number", "number", true, false }
    assert.same(expected, seen.prepare)
    assert.same(expected, seen.message)
    expected[8] = true
    assert.same(expected, seen.built)
    assert.equal("/changed", seen.changed)
  end)

  it("leave an idle handler's and its request's tables at 4 hash slots each", function()
    local ffi = require "ffi"
    ffi.cdef [[ typedef struct spec_GCtab { void *nextgc; uint8_t marked, gct, nomm; int8_t colo;
      void *array, *gclist, *metatable, *node; uint32_t asize, hmask; } spec_GCtab; ]]
    local slots = {}
    local function hash_slots(t)
      return ffi.cast("spec_GCtab *", ffi.cast("uintptr_t", tonumber(string.format("%p", t)))).hmask + 1
    end
    local H = class("H", ws.WebSocketHandler)
    function H:on_message()
      slots[1], slots[2] = hash_slots(self), hash_slots(self.request)
      self:write_message("x")
    end
    local port = serve({ { "^/ws$", H } })
    -- A browser sends an Origin header (self.origin is read from it).
    client_events(url(port, "/ws?q=1"), {
      on_headers = function() end,
      modify_headers = function(_, headers) headers:add("Origin", "http://example.test") end,
      on_connect = function(self) self:write_message("go") end,
      on_message = function(self) self:close() end,
    })
    assert.same({ 4, 4 }, slots)
  end)
end)
