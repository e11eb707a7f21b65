-- The evlua face (turbo_ws.evlua): evlua's service_utils.WS.web_socket,
-- ws_util and ws_const, and the serve{} server entry. Server and client
-- are checked against each other and against raw TCP peers (LuaJIT ffi
-- sockets polled from the loop) that look at the bytes on the wire.
local ffi = require "ffi"
local bit = require "bit"
local turbo_ws = require "turbo_ws"
local evlua = require "turbo_ws.evlua"
local wait = require "turbo_ws.evlua.wait"
local core = turbo_ws.core

local ws, ws_util, ws_const = evlua.web_socket, evlua.ws_util, evlua.ws_const

local NO_CONNECTION = "No Connection: Upgrade header in handshake response"
local NO_UPGRADE = "No Upgrade: websocket header in handshake response"
local BAD_ACCEPT = "Invalid or missing Sec-WebSocket-Accept header in handshake response"
local RECV_WITH_HANDLER =
  "Cannot invoke ws_util.recv_frame when message_handler is set for the websocket"
-- RFC 6455 1.3's example key and its accept value.
local SAMPLE_KEY, SAMPLE_ACCEPT = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

local function now() return core.gettimemonotonic() end
local sleep = evlua.platform.ev_hibernate

------------------------------------------------------------------------
-- Running a spec body on the loop

-- Cleanups run after each spec body, in reverse order. Those that may
-- wait on the network (`may_wait`) run on the loop, under the guard; if
-- the body timed out they are skipped.
local cleanups = {}
local function on_cleanup(fn, may_wait)
  cleanups[#cleanups + 1] = { fn = fn, may_wait = may_wait }
end

local function run_cleanups(on_loop)
  local pending = cleanups
  cleanups = {}
  for i = #pending, 1, -1 do
    if on_loop or not pending[i].may_wait then pcall(pending[i].fn) end
  end
end

-- Runs `body` in a loop coroutine; fails on its error or after `ms`.
local function run_async(body, ms)
  local state = {}
  local guard = core.set_interval(ms or 5000, function()
    state.timed_out = true
    core.close()
  end, nil, false)
  core.add_callback(function()
    local ok, err = xpcall(body, debug.traceback)
    run_cleanups(true)
    state.done, state.err = true, not ok and err or nil
    core.close()
  end)
  core.run()
  core.clear_interval(guard)
  run_cleanups(false) -- left over only if the body timed out
  -- Let closing connections finish, bounded (not asserted).
  local drain = core.set_interval(300, function() core.close() end, nil, false)
  core.run()
  core.clear_interval(drain)
  assert(not state.timed_out, "the spec body did not finish in time")
  assert(state.done, "the spec body did not finish")
  if state.err then error(state.err, 0) end
end

-- Runs `fn` in its own loop coroutine (a concurrent peer); its error is
-- kept and raised by the returned `join()`, which also waits for it.
local function spawn(fn)
  local result = {}
  core.add_callback(function()
    local ok, err = xpcall(fn, debug.traceback)
    result.done, result.err = true, not ok and err or nil
  end)
  return function(seconds)
    local deadline = now() + (seconds or 3) * 1000
    while not result.done and now() < deadline do sleep(0.005) end
    assert(result.done, "a spawned peer did not finish")
    if result.err then error(result.err, 0) end
  end
end

-- Captures what the face reports on stderr while `fn` runs.
local function capture_stderr(fn)
  local saved, text = io.stderr, {}
  io.stderr = { write = function(_, ...) for _, s in ipairs{ ... } do text[#text + 1] = s end end }
  local ok, err = pcall(fn)
  io.stderr = saved
  if not ok then error(err, 0) end
  return table.concat(text)
end

local function assert_error_with(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  assert.truthy(tostring(err):find(expected, 1, true), "error was: " .. tostring(err))
end

------------------------------------------------------------------------
-- Raw TCP peers (ffi; non-blocking reads polled from the loop)

local function cdef(decl) pcall(ffi.cdef, decl) end
cdef [[struct evspec_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };]]
cdef "int socket(int domain, int type, int protocol);"
cdef "int connect(int fd, const void *addr, unsigned int len);"
cdef "int bind(int fd, const void *addr, unsigned int len);"
cdef "int listen(int fd, int backlog);"
cdef "int accept(int fd, void *addr, void *len);"
cdef "int getsockname(int fd, void *addr, unsigned int *len);"
cdef "long send(int fd, const void *buf, size_t n, int flags);"
cdef "long recv(int fd, void *buf, size_t n, int flags);"
cdef "int close(int fd);"
local C = ffi.C
local AF_INET, SOCK_STREAM, SOCK_NONBLOCK = 2, 1, 2048
local MSG_DONTWAIT, MSG_NOSIGNAL = 0x40, 0x4000

local function htons(n) return bit.bor(bit.rshift(n, 8), bit.lshift(bit.band(n, 0xFF), 8)) end

local function loopback(port)
  local addr = ffi.new("struct evspec_sockaddr_in")
  addr.family = AF_INET
  addr.port = htons(port)
  addr.addr = ffi.abi("le") and 0x0100007F or 0x7F000001
  return addr
end

local Raw = {}
Raw.__index = Raw

local function raw_wrap(fd)
  local r = setmetatable({ fd = fd, buf = "" }, Raw)
  on_cleanup(function() r:close() end)
  return r
end

--- A raw client connected to 127.0.0.1:port.
local function raw_connect(port)
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  assert(fd >= 0, "socket failed")
  assert(C.connect(fd, loopback(port), 16) == 0, "connect failed")
  return raw_wrap(fd)
end

function Raw:close()
  if self.fd >= 0 then C.close(self.fd) end
  self.fd = -1
end

function Raw:send(bytes)
  assert(tonumber(C.send(self.fd, bytes, #bytes, MSG_NOSIGNAL)) == #bytes, "send failed")
end

-- Reads what has arrived, without blocking.
function Raw:poll()
  local tmp = ffi.new("char[65536]")
  while self.fd >= 0 and not self.eof do
    local n = tonumber(C.recv(self.fd, tmp, 65536, MSG_DONTWAIT))
    if n > 0 then
      self.buf = self.buf .. ffi.string(tmp, n)
    elseif n == 0 then
      self.eof = true
    else
      return
    end
  end
end

--- Polls until `take(self)` returns non-nil (its value), EOF or timeout (nil).
function Raw:wait_for(take, seconds)
  local deadline = now() + (seconds or 3) * 1000
  while true do
    self:poll()
    local v = take(self)
    if v ~= nil then return v end
    if self.eof or now() >= deadline then return nil end
    sleep(0.005)
  end
end

--- Waits for the peer to close the TCP connection; true if it did.
function Raw:wait_eof(seconds)
  return self:wait_for(function(r) return r.eof or nil end, seconds) == true
end

-- Splits an HTTP head: status/request line, fields (lower-case names; a
-- list under `all`), and what follows.
local function parse_head(text)
  local head, rest = text:match("^(.-)\r\n\r\n(.*)$")
  if not head then return nil end
  local first = head:match("^[^\r]*")
  local fields, all = {}, {}
  for name, value in head:gmatch("\r\n([^:\r]+):[ \t]*([^\r]*)") do
    fields[name:lower()] = value
    all[#all + 1] = { name:lower(), value }
  end
  return { first = first, fields = fields, all = all, head = head }, rest
end

--- Reads one HTTP response (Content-Length framing, or none for 101).
function Raw:read_response(seconds)
  return self:wait_for(function(r)
    local res, rest = parse_head(r.buf)
    if not res then return nil end
    local len = tonumber(res.fields["content-length"]) or 0
    if #rest < len then return nil end
    res.status = tonumber(res.first:match("^HTTP/1%.1 (%d+)"))
    res.body = rest:sub(1, len)
    r.buf = rest:sub(len + 1)
    return res
  end, seconds)
end

--- Reads one HTTP request head (the client's handshake).
function Raw:read_request(seconds)
  return self:wait_for(function(r)
    local req, rest = parse_head(r.buf)
    if not req then return nil end
    r.buf = rest
    return req
  end, seconds)
end

-- One frame from the start of `s`: {byte0, fin, op, masked, key, payload}
-- (payload unmasked), and the rest; nil if incomplete.
local function parse_frame(s)
  if #s < 2 then return nil end
  local b0, b1 = s:byte(1, 2)
  local len, pos = bit.band(b1, 0x7F), 3
  if len == 126 then
    if #s < 4 then return nil end
    len, pos = s:byte(3) * 256 + s:byte(4), 5
  elseif len == 127 then
    if #s < 10 then return nil end
    len = 0
    for i = 3, 10 do len = len * 256 + s:byte(i) end
    pos = 11
  end
  local masked = bit.band(b1, 0x80) ~= 0
  local key
  if masked then
    key = s:sub(pos, pos + 3)
    pos = pos + 4
  end
  if #s < pos + len - 1 then return nil end
  local payload = s:sub(pos, pos + len - 1)
  if masked then
    local out = {}
    for i = 1, #payload do
      out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
    end
    payload = table.concat(out)
  end
  return {
    byte0 = b0, fin = bit.band(b0, 0x80) ~= 0, op = bit.band(b0, 0x0F),
    masked = masked, key = key, payload = payload, raw = s:sub(1, pos + len - 1),
  }, s:sub(pos + len)
end

--- Reads one frame, or nil on EOF / timeout.
function Raw:read_frame(seconds)
  return self:wait_for(function(r)
    local f, rest = parse_frame(r.buf)
    if f then r.buf = rest end
    return f
  end, seconds)
end

--- The bytes of a frame; masked with `key` (4 bytes) when given.
local function frame(byte0, payload, key)
  local n = #payload
  local b1 = key and 0x80 or 0
  local head
  if n < 126 then
    head = string.char(byte0, b1 + n)
  elseif n < 65536 then
    head = string.char(byte0, b1 + 126, bit.rshift(n, 8), bit.band(n, 0xFF))
  else
    error("test frames stay under 64 KiB")
  end
  if not key then return head .. payload end
  local out = {}
  for i = 1, n do
    out[i] = string.char(bit.bxor(payload:byte(i), key:byte((i - 1) % 4 + 1)))
  end
  return head .. key .. table.concat(out)
end

-- A client frame (masked, as RFC 6455 requires).
local function cframe(byte0, payload) return frame(byte0, payload, "\55\250\33\61") end

--- A raw listener on 127.0.0.1:0; `:accept()` waits for one connection.
local function raw_listen()
  local fd = C.socket(AF_INET, bit.bor(SOCK_STREAM, SOCK_NONBLOCK), 0)
  assert(fd >= 0, "socket failed")
  assert(C.bind(fd, loopback(0), 16) == 0, "bind failed")
  assert(C.listen(fd, 8) == 0, "listen failed")
  local addr, len = ffi.new("struct evspec_sockaddr_in"), ffi.new("unsigned int[1]", 16)
  assert(C.getsockname(fd, addr, len) == 0)
  local listener = { fd = fd, port = htons(addr.port) }
  -- Closing twice could close a socket of the core that reused the number.
  function listener.close()
    if listener.fd >= 0 then C.close(listener.fd) end
    listener.fd = -1
  end
  on_cleanup(listener.close)
  function listener.accept(_, seconds)
    local deadline = now() + (seconds or 3) * 1000
    while now() < deadline do
      local conn = C.accept(listener.fd, nil, nil)
      if conn >= 0 then return raw_wrap(conn) end
      sleep(0.005)
    end
    error("no connection to accept")
  end
  return listener
end

-- base64(SHA-1(key .. GUID)), from Python's standard library.
local function accept_for(key)
  local p = assert(io.popen(("python3 -c 'import base64,hashlib,sys;"
    .. "print(base64.b64encode(hashlib.sha1((sys.argv[1]+sys.argv[2]).encode()).digest()).decode())'"
    .. " '%s' '%s'"):format(key, ws.WEBSOCKET_GUID)))
  local out = p:read("*l")
  p:close()
  return out
end

--- An upgrade request; `fields` overrides the defaults (false drops one).
local function upgrade_request(path, fields, port)
  local defaults = {
    { "Host", "127.0.0.1:" .. (port or 80) }, { "Upgrade", "websocket" },
    { "Connection", "Upgrade" }, { "Sec-WebSocket-Key", SAMPLE_KEY },
    { "Sec-WebSocket-Version", "13" },
  }
  fields = fields or {}
  local lines = { "GET " .. path .. " HTTP/1.1" }
  for _, pair in ipairs(defaults) do
    local v = fields[pair[1]]
    if v == nil then v = pair[2] end
    if v then lines[#lines + 1] = pair[1] .. ": " .. v end
    fields[pair[1]] = nil
  end
  for name, v in pairs(fields) do
    if v then lines[#lines + 1] = name .. ": " .. v end
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

------------------------------------------------------------------------
-- Servers and handler modules

-- Per-spec behaviour of the handler module "evspec.probe".
local probe = {}
local function reset_probe()
  probe = {
    init = function() return true end,
    handle_message = function(msg)
      local text = ffi.string(msg.buf, msg.payload_len)
      ws_util.send_msg({ _ss = msg._ss }, text,
                       msg.op_code == ws_const.FRAME_OP_TEXT and { msg_type = "TEXT" } or nil)
    end,
  }
end
reset_probe()

package.preload["evspec.probe"] = function()
  return {
    init = function(...) return probe.init(...) end,
    handle_message = function(msg) return probe.handle_message(msg) end,
    handle_ping = function(msg) if probe.handle_ping then return probe.handle_ping(msg) end end,
    handle_pong = function(msg) if probe.handle_pong then return probe.handle_pong(msg) end end,
  }
end
-- No handle_ping / handle_pong: the PONG must still go out.
package.preload["evspec.bare"] = function()
  return {
    init = function() return true end,
    handle_message = function(msg) probe.bare_seen = ffi.string(msg.buf, msg.payload_len) end,
  }
end

-- Accepts upgrades the way evlua's controller decides (Connection: Upgrade
-- and Upgrade: websocket); anything else gets 404.
local function accept_upgrades(request, response)
  local conn = request:get_hdr_field("Connection"):lower()
  local upgrade = request:get_hdr_field("Upgrade"):lower()
  if conn:find("upgrade", 1, true) and upgrade == "websocket" then
    probe.accepted = ws.accept(request, response, probe.uc or {})
    return
  end
  response:set_status(404)
  response:send()
  response:write("not found")
end

--- An evlua server on 127.0.0.1:0; returns it and its port.
local function start_server(handle_request, opts)
  opts = opts or {}
  opts.host, opts.port = "127.0.0.1", 0
  opts.handle_request = handle_request or accept_upgrades
  local server = evlua.serve(opts)
  on_cleanup(function() server:close() end)
  return server, server:port()
end

--- A raw client that has completed an upgrade to `path`.
local function raw_upgraded(port, path)
  local raw = raw_connect(port)
  raw:send(upgrade_request(path or "/evspec/probe", nil, port))
  local res = raw:read_response()
  assert(res and res.status == 101, "upgrade failed: " .. tostring(res and res.first))
  return raw
end

--- ws.connect to our server with the usual inputs (+ `extra`).
local function connect(port, path, extra)
  local inp = { url = "http://127.0.0.1:" .. port .. (path or "/evspec/probe"),
                hdrs = {}, external = false }
  for k, v in pairs(extra or {}) do inp[k] = v end
  local conn, status, hdrs = ws.connect(inp)
  assert(conn, "ws.connect failed: " .. tostring(status))
  on_cleanup(function() pcall(ws_util.close, conn) end, true)
  return conn, status, hdrs
end

------------------------------------------------------------------------

describe("evlua face: modules", function()
  it("is require('turbo_ws').evlua = {web_socket, ws_util, ws_const, serve}", function()
    assert.are.equal(evlua, turbo_ws.evlua)
    assert.are.equal(require "turbo_ws.evlua.web_socket", evlua.web_socket)
    assert.are.equal(require "turbo_ws.evlua.ws_util", evlua.ws_util)
    assert.are.equal(require "turbo_ws.evlua.ws_const", evlua.ws_const)
    assert.are.equal("function", type(evlua.serve))
    for _, name in ipairs{ "accept", "connect", "handle_msg" } do
      assert.are.equal("function", type(ws[name]), name)
    end
    for _, name in ipairs{ "send_msg", "recv_frame", "send_frame", "ping", "close",
                           "add_ws_to_pool", "get_ws_from_pool" } do
      assert.are.equal("function", type(ws_util[name]), name)
    end
  end)

  it("aliases service_utils.WS.* in turbo_ws.compat to the same tables", function()
    require "turbo_ws.compat"
    assert.are.equal(ws, require "service_utils.WS.web_socket")
    assert.are.equal(ws_util, require "service_utils.WS.ws_util")
    assert.are.equal(ws_const, require "service_utils.WS.ws_const")
  end)

  it("has evlua's GUID and version", function()
    assert.are.equal("258EAFA5-E914-47DA-95CA-C5AB0DC85B11", ws.WEBSOCKET_GUID)
    assert.are.equal("13", ws.WEBSOCKET_VERSION)
  end)

  it("has every ws_const value of evlua", function()
    assert.are.same({
      FRAME_FLAG_MASK = 0x80, FRAME_FLAG_FIN = 0x80, FRAME_FLAG_RSV1 = 0x40,
      FRAME_FLAG_RSV2 = 0x20, FRAME_FLAG_RSV3 = 0x10,
      FRAME_OP_CONT = 0, FRAME_OP_TEXT = 1, FRAME_OP_BINARY = 2, FRAME_OP_CLOSE = 8,
      FRAME_OP_PING = 9, FRAME_OP_PONG = 0xA, FRAME_OP_BITMASK = 0xF, FRAME_OP_SETRAW = 0x100,
      FRAME_TEXT = 0x81, FRAME_BINARY = 0x82, MAX_HEADER_LENGTH = 14,
      WS_SERVER = 0, WS_CLIENT = 1,
      WS_NORMAL_CLOSE = 1000, WS_ENDPOINT_GOING_AWAY = 1001, WS_PROTOCOL_ERROR = 1002,
      WS_PAYLOAD_NOT_ACCEPTABLE = 1003, WS_RESERVED = 1004, WS_RESERVED_NO_STATUS_CODE = 1005,
      WS_RESERVED_ABNORMAL_CLOSE = 1006, WS_MALFORMED_PAYLOAD = 1007,
      WS_POLICY_VIOLATION = 1008, WS_PAYLOAD_TOO_BIG = 1009, WS_EXTENSION_REQUIRED = 1010,
      WS_UNEXPECTED_CONDITION = 1011, WS_RESERVED_TLS_FAILURE = 1015,
      WS_ERR_NO_HANDSHAKE = 1, WS_ERR_HANDSHAKE_NO_VERSION = 2,
      WS_ERR_HANDSHAKE_UNSUPPORTED_VERSION = 3, WS_ERR_HANDSHAKE_NO_KEY = 4,
      WS_ERR_HANDSHAKE_ACCEPT = 5, WS_ERR_UNAUTHORIZED = 6, WS_ERR_PAYLOAD_TOO_BIG = 10,
      WS_ERR_INCOMPLETE_FRAME = 11, TO_BE_CLOSED = -1,
    }, ws_const)
  end)
end)

describe("evlua.serve: requests and responses", function()
  before_each(reset_probe)

  it("gives handle_request evlua's request methods", function()
    run_async(function()
      local seen
      local _, port = start_server(function(request, response)
        local fields = request:get_hdr_fields()
        local names = {}
        for name in pairs(fields) do names[name] = true end
        seen = {
          req = tostring(request), resp = tostring(response),
          method = request:get_method(), uri = request:get_uri(),
          version = request:get_version(), host = request:get_host(),
          custom = request:get_hdr_field("X-CUSTOM"),
          custom2 = request:get_hdr_field(request, "x-custom"),
          absent = request:get_hdr_field("X-Absent"),
          no_name = select(2, pcall(request.get_hdr_field, request))
                    :match("get_hdr_field: .*"),
          key = fields["Sec-WebSocket-Key"], key_lower = fields["sec-websocket-key"],
          names = names, query = request:get_query_parameters(),
          body = request:get_message_body_str(),
        }
      end)
      local raw = raw_connect(port)
      raw:send("POST /p/q?a=1&b=x%20y&c HTTP/1.1\r\nHost: 127.0.0.1:" .. port
               .. "\r\nx-custom: v\r\nsec-websocket-key: abc\r\nContent-Length: 7\r\n\r\npayload")
      local res = raw:read_response()
      assert.are.equal(200, res.status)
      assert.are.same({
        req = "httpsreq", resp = "httpsresp", method = "POST", uri = "/p/q?a=1&b=x%20y&c",
        version = "HTTP/1.1", host = "127.0.0.1:" .. port, custom = "v", custom2 = "v",
        absent = "", key = "abc", key_lower = "abc",
        no_name = "get_hdr_field: header name (string) expected, got nil",
        names = { Host = true, ["X-Custom"] = true, ["Sec-WebSocket-Key"] = true,
                  ["Content-Length"] = true },
        query = { a = "1", b = "x y", c = "" }, body = "payload",
      }, seen)
    end)
  end)

  it("sends what the response methods set: status, fields, body", function()
    run_async(function()
      local _, port = start_server(function(_, response)
        response:set_status(201)
        response:set_hdr_field("X-One", "1")
        response:set_hdr_field("x-one", "2") -- replaces, whatever the case
        response:set_hdr_field("X-Num", 42)
        response:set_content_type("text/plain")
        response:set_content_length(5)
        response:set_chunked_trfencoding(false)
        response:send()
        response:write("he")
        sleep(0.01) -- handle_request may yield
        response:write("llo")
      end)
      local raw = raw_connect(port)
      raw:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = raw:read_response()
      assert.are.equal("HTTP/1.1 201 Created", res.first)
      assert.are.equal("2", res.fields["x-one"])
      assert.are.equal("42", res.fields["x-num"])
      assert.are.equal("text/plain", res.fields["content-type"])
      assert.are.equal("hello", res.body)
      local ones = 0
      for _, pair in ipairs(res.all) do if pair[1] == "x-one" then ones = ones + 1 end end
      assert.are.equal(1, ones)
    end)
  end)

  it("keeps the connection alive between requests unless set_keep_alive(false)", function()
    run_async(function()
      local calls = 0
      local _, port = start_server(function(request, response)
        calls = calls + 1
        if request:get_uri() == "/last" then response:set_keep_alive(false) end
        response:write(request:get_uri())
      end)
      local raw = raw_connect(port)
      raw:send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal("/first", raw:read_response().body)
      raw:send("GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = raw:read_response()
      assert.are.equal("/last", res.body)
      assert.are.equal("close", res.fields["connection"])
      assert.is_true(raw:wait_eof())
      assert.are.equal(2, calls)
    end)
  end)

  it("answers an error in handle_request with 500 and evlua's error document, and goes on", function()
    run_async(function()
      local _, port = start_server(function(request, response)
        if request:get_uri() == "/boom" then error("boom \"quoted\" é\n", 0) end
        response:write("fine")
      end)
      local raw = raw_connect(port)
      local logged = capture_stderr(function()
        raw:send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        local res = raw:read_response()
        assert.are.equal(500, res.status)
        assert.are.equal("application/json", res.fields["content-type"])
        local json = '{"error_message":"boom \\"quoted\\" \\u00e9\\n"}'
        assert.are.equal(json, res.fields["x-msg"])
        assert.are.equal(json, res.body)
      end)
      assert.truthy(logged:find("handle_request", 1, true))
      raw:send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal("fine", raw:read_response().body)
    end)
  end)

  it("runs each request in its own coroutine: one that waits does not hold up others", function()
    run_async(function()
      local order = {}
      local _, port = start_server(function(request, response)
        if request:get_uri() == "/slow" then sleep(0.2) end
        order[#order + 1] = request:get_uri()
        response:write("x")
      end)
      local slow, fast = raw_connect(port), raw_connect(port)
      slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      sleep(0.02)
      fast:send("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal(200, fast:read_response().status)
      assert.are.equal(200, slow:read_response().status)
      assert.are.same({ "/fast", "/slow" }, order)
    end)
  end)

  it("checks its options", function()
    assert_error_with("handle_request", evlua.serve, { host = "127.0.0.1", port = 0 })
    assert_error_with("options table expected", evlua.serve, nil)
    assert_error_with("app_base_path", evlua.serve,
                      { port = 0, handle_request = print, app_base_path = 1 })
  end)
end)

describe("ws.accept", function()
  before_each(reset_probe)

  -- Sends an upgrade request and returns the response (and the raw peer).
  local function try_upgrade(port, path, fields)
    local raw = raw_connect(port)
    raw:send(upgrade_request(path, fields, port))
    return raw:read_response(), raw
  end

  local function assert_rejected(res, msg)
    local json = '{"error_message":"' .. msg .. '"}'
    assert.are.equal(400, res.status)
    assert.are.equal("application/json", res.fields["content-type"])
    assert.are.equal(json, res.fields["x-msg"])
    assert.are.equal(json, res.body)
    assert.is_false(probe.accepted)
  end

  local rejections = {
    { "no version (checked first)", "/evspec/probe",
      { ["Sec-WebSocket-Version"] = false, ["Sec-WebSocket-Key"] = false },
      "Missing Sec-WebSocket-Version in handshake request" },
    { "another version", "/evspec/probe", { ["Sec-WebSocket-Version"] = "8" },
      "Unsupported WebSocket version requested" },
    { "no key", "/evspec/probe", { ["Sec-WebSocket-Key"] = false },
      "Missing Sec-WebSocket-Key in handshake request" },
    { "a blank key", "/evspec/probe", { ["Sec-WebSocket-Key"] = "   " },
      "Missing Sec-WebSocket-Key in handshake request" },
    { "the root path", "/", {}, "Path empty: Unable to deduce message handler" },
    { "a path with only a query", "/?evspec=probe", {},
      "Path empty: Unable to deduce message handler" },
    { "a path naming no module", "/evspec/../probe", {},
      "Invalid path: Unable to deduce message handler" },
  }
  for _, case in ipairs(rejections) do
    it("refuses " .. case[1] .. " with 400 '" .. case[4] .. "'", function()
      run_async(function()
        local init_called = false
        probe.init = function() init_called = true return true end
        local _, port = start_server()
        assert_rejected(try_upgrade(port, case[2], case[3]), case[4])
        assert.is_false(init_called)
      end)
    end)
  end

  it("refuses with the message of a handler's init that returns false", function()
    run_async(function()
      probe.init = function() return false, "not allowed here" end
      local _, port = start_server()
      assert_rejected(try_upgrade(port, "/evspec/probe"), "not allowed here")
    end)
  end)

  it("answers 101 with the accept key and the fields init set; passes request, response, uc", function()
    run_async(function()
      local got
      probe.uc = { user = "u1" }
      probe.init = function(request, response, uc)
        got = { req = tostring(request), resp = tostring(response), uc = uc,
                uri = request:get_uri() }
        response:set_hdr_field("X-Init", "done")
        return true
      end
      local _, port = start_server()
      local res, raw = try_upgrade(port, "/evspec/probe?room=1",
                                   { ["Sec-WebSocket-Version"] = " 13 " })
      assert.are.equal("HTTP/1.1 101 Switching Protocols", res.first)
      assert.are.equal("websocket", res.fields["upgrade"]:lower())
      assert.are.equal("upgrade", res.fields["connection"]:lower())
      assert.are.equal(SAMPLE_ACCEPT, res.fields["sec-websocket-accept"])
      assert.are.equal("done", res.fields["x-init"])
      assert.are.equal("", res.body)
      assert.is_true(probe.accepted)
      assert.are.same({ req = "httpsreq", resp = "httpsresp", uc = probe.uc,
                        uri = "/evspec/probe?room=1" }, got)
      assert.are.equal(probe.uc, got.uc)
      -- the connection now speaks WebSocket
      raw:send(cframe(0x81, "hi"))
      assert.are.equal("hi", raw:read_frame().payload)
    end)
  end)

  it("finds the handler module under the server's app_base_path", function()
    run_async(function()
      local _, port = start_server(nil, { app_base_path = "evspec" })
      local res, raw = try_upgrade(port, "/probe")
      assert.are.equal(101, res.status)
      raw:send(cframe(0x81, "based"))
      assert.are.equal("based", raw:read_frame().payload)
    end)
  end)

  it("raises when the handler module cannot be loaded (serve answers 500)", function()
    run_async(function()
      local _, port = start_server()
      local res
      capture_stderr(function() res = try_upgrade(port, "/evspec/missing") end)
      assert.are.equal(500, res.status)
      assert.truthy(res.fields["x-msg"]:find("evspec.missing", 1, true))
    end)
  end)

  it("returns false when the core finds the handshake invalid (RFC 6455 key)", function()
    run_async(function()
      local _, port = start_server()
      local res = try_upgrade(port, "/evspec/probe", { ["Sec-WebSocket-Key"] = "short" })
      assert.are.equal(400, res.status)
      assert.is_false(probe.accepted)
    end)
  end)

  it("checks its arguments", function()
    run_async(function()
      local errors = {}
      local _, port = start_server(function(request, response)
        for _, args in ipairs{ { {}, response, {} }, { request, {}, {} },
                               { request, response, nil }, { request, response, "uc" } } do
          local ok, err = pcall(ws.accept, args[1], args[2], args[3])
          errors[#errors + 1] = not ok and tostring(err) or "no error"
        end
        response:write("checked")
      end)
      local raw = raw_connect(port)
      raw:send(upgrade_request("/evspec/probe", nil, port))
      assert.are.equal("checked", raw:read_response().body)
      assert.are.equal(4, #errors)
      assert.truthy(errors[1]:find("request (httpsreq) expected", 1, true))
      assert.truthy(errors[2]:find("response (httpsresp) expected", 1, true))
      assert.truthy(errors[3]:find("uc (table) expected", 1, true))
      assert.truthy(errors[4]:find("uc (table) expected", 1, true))
    end)
  end)
end)

describe("frame dispatch to handler modules (server side)", function()
  before_each(reset_probe)

  it("calls handle_message with evlua's msg table; replies go out unmasked", function()
    run_async(function()
      local seen
      probe.handle_message = function(msg)
        seen = msg
        ws_util.send_msg({ _ss = msg._ss }, "hello", { msg_type = "TEXT" })
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "hello"))
      local reply = raw:read_frame()
      assert.are.equal("\129\005hello", reply.raw) -- FIN|TEXT, no mask bit, no key
      assert.are.equal(5, seen.payload_len)
      assert.are.equal(ws_const.FRAME_OP_TEXT, seen.op_code)
      assert.are.equal(0x81, seen.flags)
      assert.is_true(seen.use_mask)
      assert.is_true(ffi.istype("unsigned char[4]", seen.mask))
      assert.is_true(ffi.istype("unsigned char[?]", seen.buf))
      assert.are.equal(6, ffi.sizeof(seen.buf)) -- payload_len + 1
      assert.are.equal(0, seen.buf[5]) -- the trailing NUL
      assert.are.equal("hello", ffi.string(seen.buf))
      assert.are.equal("userdata", type(seen._ss))
      assert.truthy(tostring(seen._ss):match("^streamsocket:%d+$"))
    end)
  end)

  it("delivers binary messages with every byte, NULs included", function()
    run_async(function()
      local seen
      probe.handle_message = function(msg)
        seen = { op = msg.op_code, flags = msg.flags, len = msg.payload_len,
                 data = ffi.string(msg.buf, msg.payload_len), nul = msg.buf[msg.payload_len] }
        ws_util.send_msg({ _ss = msg._ss }, seen.data)
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x82, "a\0b\0"))
      assert.are.equal("\130\004a\0b\0", raw:read_frame().raw)
      assert.are.same({ op = 2, flags = 0x82, len = 4, data = "a\0b\0", nul = 0 }, seen)
    end)
  end)

  it("reassembles fragments into one handle_message; a PING between them goes to handle_ping", function()
    run_async(function()
      local messages, pings = {}, {}
      probe.handle_message = function(msg)
        messages[#messages + 1] = { ffi.string(msg.buf), msg.flags, msg.payload_len }
      end
      probe.handle_ping = function(msg)
        pings[#pings + 1] = { ffi.string(msg.buf), msg.op_code, msg.flags, msg.use_mask }
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x01, "hel") .. cframe(0x89, "p") .. cframe(0x80, "lo"))
      assert.are.equal("\138\001p", raw:read_frame().raw) -- the PONG
      raw:send(cframe(0x81, "next"))
      raw:wait_for(function() return #messages == 2 or nil end)
      assert.are.same({ { "hello", 0x81, 5 }, { "next", 0x81, 4 } }, messages)
      assert.are.same({ { "p", ws_const.FRAME_OP_PING, 0x89, true } }, pings)
    end)
  end)

  it("answers a PING with the same payload when the handler has no handle_ping", function()
    run_async(function()
      local _, port = start_server()
      local raw = raw_upgraded(port, "/evspec/bare")
      raw:send(cframe(0x89, "are you there"))
      assert.are.equal("\138\013are you there", raw:read_frame().raw)
      raw:send(cframe(0x8A, "unasked")) -- a PONG without handle_pong: ignored
      raw:send(cframe(0x81, "after"))
      raw:wait_for(function() return probe.bare_seen end)
      assert.are.equal("after", probe.bare_seen)
    end)
  end)

  it("calls handle_pong for a PONG and sends nothing back", function()
    run_async(function()
      local pongs = {}
      probe.handle_pong = function(msg)
        pongs[#pongs + 1] = { ffi.string(msg.buf), msg.op_code, msg.flags }
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x8A, "pong!"))
      raw:send(cframe(0x81, "echo"))
      -- the first frame back is the echo: nothing was sent for the PONG
      assert.are.equal("\129\004echo", raw:read_frame().raw)
      assert.are.same({ { "pong!", ws_const.FRAME_OP_PONG, 0x8A } }, pongs)
    end)
  end)

  it("dispatches one message at a time, in order, each in its own coroutine", function()
    run_async(function()
      local log, threads = {}, {}
      probe.handle_message = function(msg)
        local text = ffi.string(msg.buf)
        threads[text] = coroutine.running()
        log[#log + 1] = "start " .. text
        if text == "slow" then sleep(0.1) end
        log[#log + 1] = "end " .. text
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "slow") .. cframe(0x81, "a") .. cframe(0x81, "b"))
      raw:wait_for(function() return #log == 6 or nil end)
      assert.are.same({ "start slow", "end slow", "start a", "end a", "start b", "end b" }, log)
      assert.are_not.equal(threads.slow, threads.a) -- not run inside the waiting one
    end)
  end)

  it("gives every message its own msg, buf and mask: a handler may keep them", function()
    run_async(function()
      local kept = {}
      probe.handle_message = function(msg)
        kept[#kept + 1] = msg
        if #kept == 1 then sleep(0.05) end -- the next two wait in the queue
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      local big = ("0123456789abcdef"):rep(300) -- 4800 bytes
      raw:send(cframe(0x81, "one") .. cframe(0x82, big) .. cframe(0x81, "three"))
      raw:wait_for(function() return #kept == 3 or nil end)
      local texts = { "one", big, "three" }
      for i, msg in ipairs(kept) do
        assert.are.equal(#texts[i], msg.payload_len)
        assert.are.equal(#texts[i] + 1, ffi.sizeof(msg.buf))
        assert.are.equal(texts[i], ffi.string(msg.buf, msg.payload_len))
        assert.are.equal(0, msg.buf[msg.payload_len])
        assert.is_true(ffi.istype("unsigned char[4]", msg.mask))
        for j = 1, i - 1 do
          assert.are_not.equal(kept[j], msg)
          assert.is_false(rawequal(kept[j].buf, msg.buf))
          assert.is_false(rawequal(kept[j].mask, msg.mask))
        end
      end
      -- Writing into one kept buf leaves the others alone.
      kept[1].buf[0] = 0x21
      assert.are.equal("!ne", ffi.string(kept[1].buf))
      assert.are.equal("three", ffi.string(kept[3].buf))
    end)
  end)

  it("logs an error in a handler and goes on with the next message", function()
    run_async(function()
      probe.handle_message = function(msg)
        if ffi.string(msg.buf) == "bad" then error("handler broke") end
        ws_util.send_msg({ _ss = msg._ss }, "ok", { msg_type = "TEXT" })
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      local logged = capture_stderr(function()
        raw:send(cframe(0x81, "bad") .. cframe(0x81, "good"))
        assert.are.equal("ok", raw:read_frame().payload)
      end)
      assert.truthy(logged:find("evspec.probe", 1, true))
      assert.truthy(logged:find("handler broke", 1, true))
    end)
  end)

  it("echoes a CLOSE with its code and closes the TCP connection", function()
    run_async(function()
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x88, "\3\233bye"))
      local close = raw:read_frame()
      assert.are.equal(0x88, close.byte0)
      assert.is_false(close.masked)
      assert.are.equal("\3\233", close.payload:sub(1, 2)) -- 1001
      assert.is_true(raw:wait_eof())
    end)
  end)

  local failures = {
    { "an unmasked client frame", frame(0x81, "plain"), 1002 },
    { "a reserved opcode", cframe(0x83, "x"), 1002 },
    { "RSV bits without an extension", cframe(0xC1, "x"), 1002 },
    { "a fragmented control frame", cframe(0x09, "x"), 1002 },
    { "a continuation without a start", cframe(0x80, "x"), 1002 },
    { "invalid UTF-8 in a text message", cframe(0x81, "\255\254"), 1007 },
  }
  for _, case in ipairs(failures) do
    it("closes with " .. case[3] .. " on " .. case[1] .. ", without dispatching it", function()
      run_async(function()
        local called = false
        probe.handle_message = function() called = true end
        local _, port = start_server()
        local raw = raw_upgraded(port)
        raw:send(case[2])
        local close = raw:read_frame()
        assert.are.equal(0x88, close.byte0)
        assert.are.equal(case[3], close.payload:byte(1) * 256 + close.payload:byte(2))
        assert.is_true(raw:wait_eof())
        assert.is_false(called)
      end)
    end)
  end

  it("closes with 1009 past serve's max_message_size", function()
    run_async(function()
      local _, port = start_server(nil, { max_message_size = 8 })
      local raw = raw_upgraded(port)
      raw:send(cframe(0x82, ("x"):rep(9)))
      local close = raw:read_frame()
      assert.are.equal("\3\241", close.payload:sub(1, 2))
    end)
  end)

  it("runs ws.handle_msg for every frame (evlua's per-message entry)", function()
    run_async(function()
      local calls, original = {}, ws.handle_msg
      ws.handle_msg = function(request, response)
        calls[#calls + 1] = { tostring(request), tostring(response) }
        return original(request, response)
      end
      local ok, err = pcall(function()
        local _, port = start_server()
        local raw = raw_upgraded(port)
        raw:send(cframe(0x89, "") .. cframe(0x81, "x"))
        assert.are.equal(0x8A, raw:read_frame().byte0)
        assert.are.equal("x", raw:read_frame().payload)
      end)
      ws.handle_msg = original
      assert(ok, err)
      assert.are.same({ { "httpsreq", "httpsresp" }, { "httpsreq", "httpsresp" } }, calls)
    end)
  end)

  it("ws.handle_msg raises outside a frame dispatch", function()
    run_async(function()
      assert_error_with("no incoming frame", ws.handle_msg, nil, nil)
    end)
  end)
end)

describe("ws.connect", function()
  before_each(reset_probe)

  it("returns conn, 101 and the response fields; sends hdrs; fills evlua's fields into hdrs", function()
    run_async(function()
      local token, uri
      probe.init = function(request, response)
        token, uri = request:get_hdr_field("X-Token"), request:get_uri()
        response:set_hdr_field("X-Init", "yes")
        return true
      end
      local _, port = start_server()
      local hdrs = { ["X-Token"] = "t1" }
      local conn, status, resp = ws.connect{
        url = "http://127.0.0.1:" .. port .. "/evspec/probe?x=1", hdrs = hdrs, external = true }
      on_cleanup(function() pcall(ws_util.close, conn) end, true)
      assert.are.equal("t1", token)
      assert.are.equal("/evspec/probe?x=1", uri)
      assert.are.equal(101, status)
      assert.are.equal("number", type(status))
      assert.are.equal("yes", resp["X-Init"])
      assert.are.equal("websocket", resp["Upgrade"])
      assert.are.equal(resp["sec-websocket-accept"], resp["Sec-WebSocket-Accept"])
      assert.are.equal(28, #resp["Sec-WebSocket-Accept"])
      assert.are.equal("userdata", type(conn._ss))
      assert.truthy(tostring(conn._ss):match("^streamsocket:%d+$"))
      assert.are.equal("127.0.0.1:" .. port, conn._host)
      assert.are.equal(40, conn._send_timeout)
      assert.are.equal(40, conn._recv_timeout)
      assert.is_nil(conn.msg_handler)
      assert.are.equal("GET", hdrs.method)
      assert.are.equal("Upgrade", hdrs.Connection)
      assert.are.equal("websocket", hdrs.Upgrade)
      assert.are.equal(13, hdrs["Sec-WebSocket-Version"])
    end)
  end)

  it("takes ws:// URLs, a timeout, and reuses a hdrs table evlua already filled", function()
    run_async(function()
      local _, port = start_server()
      local hdrs = { method = "GET", Connection = "Upgrade", Upgrade = "websocket",
                     ["Sec-WebSocket-Version"] = 13, ["Sec-WebSocket-Key"] = "stale" }
      local conn, status = connect(port, "/evspec/probe", { hdrs = hdrs, timeout = 7 })
      assert.are.equal(101, status)
      assert.are.equal(7, conn._recv_timeout)
      assert.are.equal(7, conn._send_timeout)
      local conn2 = ws.connect{ url = "ws://127.0.0.1:" .. port .. "/evspec/probe",
                                hdrs = {}, external = false, secure = false }
      on_cleanup(function() pcall(ws_util.close, conn2) end, true)
      assert.is_table(conn2)
    end)
  end)

  it("sends evlua's handshake request on the wire", function()
    run_async(function()
      local listener = raw_listen()
      local request
      local join = spawn(function()
        local peer = listener:accept()
        request = peer:read_request()
        peer:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/a/b?x=1&y=2",
                               hdrs = { ["X-Token"] = "t1", Count = 3 }, external = false }
      join()
      assert.is_nil(conn)
      assert.are.equal("GET /a/b?x=1&y=2 HTTP/1.1", request.first)
      local f = request.fields
      assert.are.equal("127.0.0.1:" .. listener.port, f["host"])
      assert.are.equal("upgrade", f["connection"]:lower())
      assert.are.equal("websocket", f["upgrade"]:lower())
      assert.are.equal("13", f["sec-websocket-version"])
      assert.truthy(f["sec-websocket-key"]:match("^[%w+/]+==$"))
      assert.are.equal(24, #f["sec-websocket-key"])
      assert.are.equal("t1", f["x-token"])
      assert.are.equal("3", f["count"])
      assert.is_nil(f["method"])
      local keys = 0
      for _, pair in ipairs(request.all) do
        if pair[1] == "sec-websocket-key" then keys = keys + 1 end
      end
      assert.are.equal(1, keys)
    end)
  end)

  -- A raw server answering the handshake with `answer(key)`.
  local function connect_to_raw(answer)
    local listener = raw_listen()
    local join = spawn(function()
      local peer = listener:accept()
      local request = peer:read_request()
      peer:send(answer(request.fields["sec-websocket-key"]))
      -- answer the client's closing handshake, if it got that far
      local close = peer:read_frame(2)
      if close and close.op == 8 then peer:send(frame(0x88, close.payload)) end
      peer:close()
    end)
    local conn, msg, extra = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/h",
                                         hdrs = {}, external = false, timeout = 3 }
    if conn then ws_util.close(conn) end
    join()
    return conn, msg, extra
  end

  local function response(first, fields)
    return first .. "\r\n" .. table.concat(fields, "\r\n") .. (#fields > 0 and "\r\n" or "")
           .. "Content-Length: 0\r\n\r\n"
  end

  local refusals = {
    { "a 200 without Connection", { "HTTP/1.1 200 OK", {} }, NO_CONNECTION },
    { "a 200 with Connection but no Upgrade",
      { "HTTP/1.1 200 OK", { "Connection: Upgrade" } }, NO_UPGRADE },
    { "a 200 with both (not a WebSocket answer)",
      { "HTTP/1.1 200 OK", { "Connection: Upgrade", "Upgrade: websocket" } }, BAD_ACCEPT },
    { "a 101 without Connection", { "HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Sec-WebSocket-Accept: x" } }, NO_CONNECTION },
    { "a 101 without Upgrade", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Sec-WebSocket-Accept: x" } }, NO_UPGRADE },
    { "a 101 with a wrong accept", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Accept: " .. SAMPLE_ACCEPT } },
      BAD_ACCEPT },
    { "a 101 without accept", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Upgrade: websocket" } }, BAD_ACCEPT },
  }
  for _, case in ipairs(refusals) do
    it("returns nil, '" .. case[3] .. "' for " .. case[1], function()
      run_async(function()
        local conn, msg = connect_to_raw(function() return response(case[2][1], case[2][2]) end)
        assert.is_nil(conn)
        assert.are.equal(case[3], msg)
      end)
    end)
  end

  it("returns nil and the X-msg field for another status", function()
    run_async(function()
      local conn, msg = connect_to_raw(function()
        return response("HTTP/1.1 403 Forbidden", { 'X-msg: {"error_message":"denied"}' })
      end)
      assert.is_nil(conn)
      assert.are.equal('{"error_message":"denied"}', msg)
      local conn2, msg2, extra = connect_to_raw(function()
        return response("HTTP/1.1 404 Not Found", {})
      end)
      assert.is_nil(conn2)
      assert.is_nil(msg2)
      assert.is_nil(extra)
    end)
  end)

  it("returns evlua's X-msg when our server's accept refuses", function()
    run_async(function()
      probe.init = function() return false, "go away" end
      local _, port = start_server()
      local conn, msg = ws.connect{ url = "http://127.0.0.1:" .. port .. "/evspec/probe",
                                    hdrs = {}, external = false }
      assert.is_nil(conn)
      assert.are.equal('{"error_message":"go away"}', msg)
    end)
  end)

  it("accepts a valid 101 from a raw server (case-insensitive field values)", function()
    run_async(function()
      local conn, status, hdrs = connect_to_raw(function(key)
        return "HTTP/1.1 101 Switching Protocols\r\nconnection: UPGRADE\r\nupgrade: WebSocket\r\n"
               .. "sec-websocket-accept: " .. accept_for(key) .. "\r\nx-msg: none\r\n\r\n"
      end)
      assert.is_table(conn)
      assert.are.equal(101, status)
      assert.are.equal("none", hdrs["X-msg"])
      assert.are.equal("UPGRADE", hdrs["Connection"])
    end)
  end)

  -- A CA and a certificate for 127.0.0.1 it signed (openssl), or nil.
  local function make_certs()
    local dir = os.tmpname()
    os.remove(dir)
    local ok = os.execute("mkdir -p " .. dir .. " && cd " .. dir .. " && ("
      .. "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
      .. " -subj /CN=evspec-ca -addext basicConstraints=critical,CA:TRUE"
      .. " -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem"
      .. " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      .. " -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr"
      .. " && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf"
      .. " && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
      .. " -extfile ext.cnf -out cert.pem) >/dev/null 2>&1")
    if ok ~= true and ok ~= 0 then return nil end
    return { ca = dir .. "/ca.pem", cert = dir .. "/cert.pem", key = dir .. "/key.pem", dir = dir }
  end

  it("uses TLS when secure = true, whatever the URL's scheme", function()
    local certs = make_certs()
    if not certs then return pending("openssl is needed to make test certificates") end
    run_async(function()
      local _, port = start_server(nil, { tls = { cert_file = certs.cert, key_file = certs.key } })
      local url = "http://127.0.0.1:" .. port .. "/evspec/probe"
      local conn, status = ws.connect{ url = url, hdrs = {}, external = true, secure = true,
                                       tls = { ca_file = certs.ca } }
      on_cleanup(function() pcall(ws_util.close, conn) end, true)
      assert.are.equal(101, status)
      ws_util.send_msg(conn, "over tls", { msg_type = "TEXT" })
      assert.are.equal("over tls", ffi.string(ws_util.recv_frame(conn).buf))
      -- verification is on by default: our test CA is not trusted
      assert_error_with("tls", ws.connect, { url = url, hdrs = {}, external = true, secure = true })
    end)
    os.execute("rm -rf " .. certs.dir)
  end)

  it("raises on network failures", function()
    run_async(function()
      local listener = raw_listen()
      local port = listener.port
      listener.close() -- nobody listens there any more
      assert_error_with("refused", ws.connect,
                        { url = "http://127.0.0.1:" .. port .. "/x", hdrs = {}, external = false })
      assert_error_with("unsupported URL", ws.connect,
                        { url = "ftp://127.0.0.1/x", hdrs = {}, external = false })
    end)
  end)

  it("raises on a handshake that takes longer than timeout", function()
    run_async(function()
      local listener = raw_listen()
      local join = spawn(function()
        local peer = listener:accept()
        peer:read_request()
        peer:wait_eof(2) -- never answers
      end)
      assert_error_with("handshake_timeout", ws.connect,
                        { url = "http://127.0.0.1:" .. listener.port .. "/x", hdrs = {},
                          external = false, timeout = 0.2 })
      join()
    end)
  end)

  it("asserts its inputs", function()
    local good = { url = "http://127.0.0.1:1/x", hdrs = {}, external = false }
    local function with(k, v)
      local t = {}
      for key, value in pairs(good) do t[key] = value end
      t[k] = v
      return t
    end
    assert_error_with("inputs (table)", ws.connect, nil)
    assert_error_with("url (string)", ws.connect, with("url", nil))
    assert_error_with("hdrs (table)", ws.connect, with("hdrs", nil))
    assert_error_with("external (boolean)", ws.connect, with("external", nil))
    assert_error_with("secure must be a boolean", ws.connect, with("secure", "yes"))
    assert_error_with("timeout must be a number", ws.connect, with("timeout", "1"))
    assert_error_with("msg_handler must be a string", ws.connect, with("msg_handler", 1))
    assert_error_with("credentials must be a table", ws.connect, with("credentials", "c"))
  end)
end)

describe("ws_util", function()
  before_each(reset_probe)

  it("send_msg sends text or binary (default) and describes the frame", function()
    run_async(function()
      local got = {}
      probe.handle_message = function(msg)
        got[#got + 1] = { msg.op_code, ffi.string(msg.buf, msg.payload_len) }
      end
      local _, port = start_server()
      local conn = connect(port)
      local d = ws_util.send_msg(conn, "hello", { msg_type = "TEXT" })
      assert.are.equal(5, d.size)
      assert.are.equal(0x81, d.flags)
      assert.are.equal("hello", ffi.string(d.buf, d.size))
      assert.is_true(d.use_mask) -- client frames are masked
      assert.are.equal(6 + 5, d.total_len)
      local b = ws_util.send_msg(conn, "a\0b")
      assert.are.equal(0x82, b.flags)
      assert.are.equal(3, b.size)
      assert.are.equal(0x82, ws_util.send_msg(conn, "bin", { msg_type = "BINARY" }).flags)
      local conn_wait = function() return #got == 3 or nil end
      while not conn_wait() do sleep(0.005) end
      assert.are.same({ { 1, "hello" }, { 2, "a\0b" }, { 2, "bin" } }, got)
    end)
  end)

  it("send_msg describes messages of every size: buf is a NUL-terminated copy, the same on every read", function()
    run_async(function()
      local got = {}
      probe.handle_message = function(msg) got[#got + 1] = ffi.string(msg.buf, msg.payload_len) end
      local _, port = start_server()
      local conn = connect(port)
      local sent = {}
      for i, n in ipairs{ 0, 1, 255, 256, 257, 70000 } do
        local payload = (string.char(i) .. "x\0y"):rep(n):sub(1, n)
        local d = ws_util.send_msg(conn, payload)
        assert.are.equal(n, d.size)
        assert.are.equal(0x82, d.flags)
        assert.is_true(d.use_mask)
        assert.are.equal(d.hdr_len + n, d.total_len)
        assert.is_true(ffi.istype("unsigned char[?]", d.buf))
        assert.are.equal(n + 1, ffi.sizeof(d.buf))
        assert.are.equal(payload, ffi.string(d.buf, d.size))
        assert.are.equal(0, d.buf[n])
        assert.is_true(rawequal(d.buf, d.buf))
        assert.is_nil(d.nothing)
        sent[i] = payload
      end
      -- A buf assigned before it was read replaces the one to be made.
      local d = ws_util.send_msg(conn, ("z"):rep(300))
      d.buf = nil
      assert.is_nil(d.buf)
      sent[#sent + 1] = ("z"):rep(300)
      while #got < #sent do sleep(0.005) end
      assert.are.same(sent, got)
    end)
  end)

  it("send_msg on a closed connection raises 'ws_util.send_msg: the websocket is closed'", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      ws_util.close(conn)
      local ok, err = pcall(ws_util.send_msg, conn, "x")
      assert.is_false(ok)
      assert.are.equal("ws_util.send_msg: the websocket is closed", err)
      ok, err = pcall(ws_util.send_msg, conn, ("x"):rep(1000), { msg_type = "TEXT" })
      assert.are.equal("ws_util.send_msg: the websocket is closed", err)
    end)
  end)

  it("send_msg masks on the client and checks its arguments", function()
    run_async(function()
      local listener = raw_listen()
      local frames = {}
      local join = spawn(function()
        local peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n")
        for i = 1, 3 do frames[i] = peer:read_frame() end
        peer:send(frame(0x88, frames[3].payload))
        peer:close()
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      ws_util.send_msg(conn, "hi", { msg_type = "TEXT" })
      ws_util.send_frame{ ss = conn._ss, size = 3, flags = 0, buf = ffi.cast("const char *", "raw"),
                          use_mask = false } -- use_mask is the socket's role, not the caller's
      ws_util.close(conn)
      join()
      assert.are.equal(0x81, frames[1].byte0)
      assert.is_true(frames[1].masked)
      assert.are.equal("hi", frames[1].payload)
      assert.are.equal(0x82, frames[2].byte0)
      assert.is_true(frames[2].masked)
      assert.are.equal("raw", frames[2].payload)
      assert.are.equal(0x88, frames[3].byte0)
      assert.are.equal("\3\232", frames[3].payload)
      assert_error_with("connection (table) expected", ws_util.send_msg, nil, "x")
      assert_error_with("no websocket (_ss)", ws_util.send_msg, {}, "x")
      assert_error_with("message (string) expected", ws_util.send_msg, conn, 1)
      assert_error_with("options (table) expected", ws_util.send_msg, conn, "x", "TEXT")
    end)
  end)

  it("send_msg refuses invalid UTF-8 as text (RFC 6455)", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      assert_error_with("UTF-8", ws_util.send_msg, conn, "\255", { msg_type = "TEXT" })
      assert.are.equal(0x82, ws_util.send_msg(conn, "\255").flags)
    end)
  end)

  it("recv_frame returns every kind of frame with evlua's msg fields (client side)", function()
    run_async(function()
      probe.handle_message = function(msg)
        local s = { _ss = msg._ss }
        ws_util.send_msg(s, "text", { msg_type = "TEXT" })
        ws_util.send_msg(s, "bi\0n")
        ws_util.ping(s, "from server")
      end
      local _, port = start_server()
      local conn = connect(port)
      ws_util.send_msg(conn, "go")
      local t = ws_util.recv_frame(conn)
      assert.are.equal(1, t.op_code)
      assert.are.equal(0x81, t.flags)
      assert.are.equal(4, t.payload_len)
      assert.is_false(t.use_mask)
      assert.is_nil(t.mask)
      assert.are.equal("text", ffi.string(t.buf))
      assert.are.equal(0, t.buf[4])
      assert.are.equal(conn._ss, t._ss)
      local b = ws_util.recv_frame(conn)
      assert.are.same({ 2, 0x82, 4, "bi\0n", 0 },
                      { b.op_code, b.flags, b.payload_len, ffi.string(b.buf, 4), b.buf[4] })
      local p = ws_util.recv_frame(conn)
      assert.are.same({ 9, 0x89, "from server" }, { p.op_code, p.flags, ffi.string(p.buf) })
    end)
  end)

  it("recv_frame raises when the connection has a message handler", function()
    run_async(function()
      local _, port = start_server()
      package.preload["evspec.client_handler"] = function() return { handle_message = print } end
      local conn = connect(port, nil, { msg_handler = "evspec.client_handler" })
      assert.are.equal("evspec.client_handler", conn.msg_handler)
      local ok, err = pcall(ws_util.recv_frame, conn)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(RECV_WITH_HANDLER, 1, true))
      -- also for a table naming one over a socket without
      local plain = connect(port)
      ok, err = pcall(ws_util.recv_frame, { _ss = plain._ss, msg_handler = "x" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find(RECV_WITH_HANDLER, 1, true))
    end)
  end)

  it("dispatches a client's frames to its msg_handler module", function()
    run_async(function()
      local seen = {}
      package.preload["evspec.client_probe"] = function()
        return {
          handle_message = function(msg)
            seen[#seen + 1] = { ffi.string(msg.buf), msg.op_code, msg.use_mask, msg.mask }
          end,
          handle_pong = function(msg) seen[#seen + 1] = { ffi.string(msg.buf), msg.op_code } end,
        }
      end
      local _, port = start_server()
      local conn = connect(port, nil, { msg_handler = "evspec.client_probe" })
      ws_util.send_msg(conn, "one", { msg_type = "TEXT" })
      ws_util.ping(conn, "p1")
      ws_util.send_msg(conn, "two")
      while #seen < 3 do sleep(0.005) end
      assert.are.same({ { "one", 1, false }, { "p1", 10 }, { "two", 2, false } }, seen)
    end)
  end)

  it("ping sends PING (default payload 'PING'); the PONG comes back", function()
    run_async(function()
      local pings = {}
      probe.handle_ping = function(msg) pings[#pings + 1] = ffi.string(msg.buf) end
      local _, port = start_server()
      local conn = connect(port)
      local d = ws_util.ping(conn)
      assert.are.same({ 4, 0x89 }, { d.size, d.flags })
      local pong = ws_util.recv_frame(conn)
      assert.are.same({ 10, 0x8A, "PING" }, { pong.op_code, pong.flags, ffi.string(pong.buf) })
      ws_util.ping(conn, "custom")
      assert.are.equal("custom", ffi.string(ws_util.recv_frame(conn).buf))
      assert.are.same({ "PING", "custom" }, pings)
      assert_error_with("at most 125 bytes", ws_util.ping, conn, ("x"):rep(126))
      assert_error_with("payload (string) expected", ws_util.ping, conn, 5)
    end)
  end)

  it("close sends CLOSE 1000, waits for the closing handshake; later calls raise", function()
    run_async(function()
      local _, port = start_server()
      local raw_conn = connect(port)
      local d = ws_util.close(raw_conn)
      assert.are.same({ 2, 0x88, "\3\232" }, { d.size, d.flags, ffi.string(d.buf, 2) })
      assert_error_with("closed", ws_util.send_msg, raw_conn, "x")
      assert_error_with("closed", ws_util.ping, raw_conn)
      assert_error_with("closed", ws_util.recv_frame, raw_conn)
      assert_error_with("closed", ws_util.close, raw_conn)
    end)
  end)

  it("recv_frame returns the server's CLOSE, then raises", function()
    run_async(function()
      probe.handle_message = function(msg) ws_util.close({ _ss = msg._ss }) end
      local _, port = start_server()
      local conn = connect(port)
      ws_util.send_msg(conn, "close me")
      local c = ws_util.recv_frame(conn)
      assert.are.same({ 8, 0x88, 2, "\3\232" },
                      { c.op_code, c.flags, c.payload_len, ffi.string(c.buf, 2) })
      assert_error_with("closed", ws_util.recv_frame, conn)
      assert_error_with("closed", ws_util.send_msg, conn, "x")
    end)
  end)

  it("recv_frame raises when the server drops the connection", function()
    run_async(function()
      local listener = raw_listen()
      local join = spawn(function()
        local peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n"
                  .. frame(0x81, "last words"))
        peer:close()
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      join()
      assert.are.equal("last words", ffi.string(ws_util.recv_frame(conn).buf))
      assert_error_with("without a closing handshake", ws_util.recv_frame, conn)
    end)
  end)

  it("recv_frame raises after _recv_timeout and closes the connection", function()
    run_async(function()
      probe.handle_message = function() end -- never answers
      local _, port = start_server()
      local conn = connect(port)
      conn._recv_timeout = 0.1
      local t0 = now()
      assert_error_with("no frame within 0.1 seconds", ws_util.recv_frame, conn)
      assert.is_true(now() - t0 >= 90)
      assert_error_with("closed", ws_util.send_msg, conn, "x")
    end)
  end)

  it("send_frame sends data frames; fragments arrive as one message", function()
    run_async(function()
      local got, pings = {}, {}
      probe.handle_message = function(msg)
        got[#got + 1] = { msg.op_code, ffi.string(msg.buf, msg.payload_len) }
      end
      probe.handle_ping = function(msg) pings[#pings + 1] = ffi.string(msg.buf) end
      local _, port = start_server()
      local conn = connect(port)
      local function cbuf(s) return ffi.cast("const unsigned char *", s) end
      local d = ws_util.send_frame{ ss = conn._ss, size = 2, flags = 0, buf = cbuf("ab"),
                                    use_mask = true }
      assert.are.equal(0x82, d.flags)
      assert.are.equal(2, d.size)
      -- flags 0 means FIN|BINARY (as in evlua), so a middle continuation
      -- frame carries an RSV bit to be non-zero; RSV bits are not sent.
      ws_util.send_frame{ ss = conn._ss, size = 3, flags = ws_const.FRAME_OP_TEXT, buf = cbuf("fra") }
      ws_util.send_frame{ ss = conn._ss, size = 1, flags = ws_const.FRAME_OP_PING, buf = cbuf("p") }
      ws_util.send_frame{ ss = conn._ss, size = 2, flags = ws_const.FRAME_FLAG_RSV3, buf = cbuf("gm") }
      local last = ws_util.send_frame{ conn = conn, size = 4, buf = cbuf("ents"),
        flags = bit.bor(ws_const.FRAME_FLAG_FIN, ws_const.FRAME_OP_CONT) }
      assert.are.equal(0x80, last.flags)
      local ping = ws_util.send_frame{ ss = conn._ss, size = 0, flags = ws_const.FRAME_OP_PING }
      assert.are.equal(0x89, ping.flags) -- control frames always get FIN
      while #got < 2 or #pings < 2 do sleep(0.005) end
      assert.are.same({ { 2, "ab" }, { 1, "fragments" } }, got)
      assert.are.same({ "p", "" }, pings)
    end)
  end)

  it("send_frame refuses what cannot be sent", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      local buf = ffi.cast("const unsigned char *", "x")
      assert_error_with("without a message to continue", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = ws_const.FRAME_FLAG_FIN, buf = buf })
      assert_error_with("reserved opcode 0x3", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = 0x83, buf = buf })
      assert_error_with("'ss'", ws_util.send_frame, { size = 1, flags = 0, buf = buf })
      assert_error_with("'size'", ws_util.send_frame, { ss = conn._ss, size = 1.5, flags = 0, buf = buf })
      assert_error_with("'flags'", ws_util.send_frame, { ss = conn._ss, size = 1, buf = buf })
      assert_error_with("'buf'", ws_util.send_frame, { ss = conn._ss, size = 1, flags = 0, buf = "x" })
      assert_error_with("at most 125", ws_util.send_frame, { ss = conn._ss, size = 126,
        flags = ws_const.FRAME_OP_PING, buf = ffi.new("unsigned char[126]") })
      ws_util.send_frame{ ss = conn._ss, size = 1, flags = ws_const.FRAME_OP_TEXT, buf = buf }
      assert_error_with("before the fragmented one was finished", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = ws_const.FRAME_TEXT, buf = buf })
    end)
  end)

  it("send_frame with CLOSE sends its code, or 1000 for evlua's free-text payload", function()
    run_async(function()
      local _, port = start_server()
      for _, case in ipairs{ { "\15\160done", 4000 }, { "CLOSING WEBSOCKET", 1000 } } do
        local raw_peer = raw_upgraded(port) -- to see the server's side of the wire
        -- the server-side socket sends the CLOSE: capture its _ss
        local ss
        probe.handle_message = function(msg) ss = msg._ss end
        raw_peer:send(cframe(0x81, "hi"))
        while not ss do sleep(0.005) end
        local payload = case[1]
        ws_util.send_frame{ ss = ss, size = #payload, flags = ws_const.FRAME_OP_CLOSE,
                            buf = ffi.cast("const unsigned char *", payload) }
        local close = raw_peer:read_frame()
        assert.are.equal(0x88, close.byte0)
        assert.are.equal(case[2], close.payload:byte(1) * 256 + close.payload:byte(2))
        raw_peer:close()
      end
    end)
  end)

  it("keeps a process-wide pool of live sockets", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-room"))
      ws_util.add_ws_to_pool(conn, "evspec-room")
      local pooled = ws_util.get_ws_from_pool("evspec-room")
      assert.are.same({ _ss = conn._ss, shared = true }, pooled)
      ws_util.send_msg(pooled, "via pool", { msg_type = "TEXT" })
      assert.are.equal("via pool", ffi.string(ws_util.recv_frame(conn).buf))
      ws_util.add_ws_to_pool(pooled, "evspec-other") -- a shared conn is not added
      assert.is_nil(ws_util.get_ws_from_pool("evspec-other"))
      ws_util.close(conn)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-room"))
      assert_error_with("name (string) expected", ws_util.add_ws_to_pool, conn, 1)
      assert_error_with("name (string) expected", ws_util.get_ws_from_pool, nil)
    end)
  end)

  it("lets a server handler pool its socket for other code to send on", function()
    run_async(function()
      probe.handle_message = function(msg)
        ws_util.add_ws_to_pool({ _ss = msg._ss }, "evspec-subscriber")
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "subscribe"))
      local conn
      while not conn do
        sleep(0.005)
        conn = ws_util.get_ws_from_pool("evspec-subscriber")
      end
      ws_util.send_msg(conn, "event", { msg_type = "TEXT" })
      assert.are.equal("\129\005event", raw:read_frame().raw)
      raw:send(cframe(0x88, "\3\232"))
      assert.is_true(raw:wait_eof())
      sleep(0.02)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-subscriber"))
    end)
  end)
end)

describe("evlua programs", function()
  -- The environment child processes need to load this build (and, in
  -- development, the faces from lua/).
  local ENV = "LUA_CPATH='./build/?.so;;' "

  local function read_file(path)
    local f = io.open(path)
    if not f then return "" end
    local text = f:read("*a")
    f:close()
    return text
  end

  -- Runs a Lua program in a child luajit (bounded by `timeout`); returns
  -- its exit status and output.
  local function run_program(args)
    local p = assert(io.popen(ENV .. "timeout 20 luajit " .. args .. " 2>&1; echo \"exit=$?\""))
    local out = p:read("*a")
    p:close()
    return tonumber(out:match("exit=(%d+)%s*$")), out
  end

  it("run client calls from top-level code (the main thread runs the loop while waiting)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local turbo_ws = require "turbo_ws"
      local evlua = require "turbo_ws.evlua"
      local ffi = require "ffi"
      local ws, ws_util = evlua.web_socket, evlua.ws_util
      package.preload["main_echo"] = function() return {
        init = function() return true end,
        handle_message = function(msg)
          ws_util.send_msg({ _ss = msg._ss }, ffi.string(msg.buf):upper(), { msg_type = "TEXT" })
        end } end
      local server = evlua.serve{ host = "127.0.0.1", port = 0, handle_request = function(rq, rs)
        ws.accept(rq, rs, {}) end }
      local conn = ws.connect{ url = "http://127.0.0.1:" .. server:port() .. "/main_echo",
                               hdrs = {}, external = false, timeout = 5 }
      conn._recv_timeout = 5
      ws_util.send_msg(conn, "shout", { msg_type = "TEXT" })
      print("reply=" .. ffi.string(ws_util.recv_frame(conn).buf))
      evlua.platform.ev_hibernate(0.05)
      ws_util.close(conn)
      server:close()
      turbo_ws.run()
      print("done")
    ]])
    f:close()
    local status, out = run_program(path)
    os.remove(path)
    assert.are.equal(0, status, out)
    assert.truthy(out:find("reply=SHOUT\n", 1, true), out)
    assert.truthy(out:find("done\n", 1, true), out)
  end)

  it("examples/evlua_server.lua serves examples/evlua_client.lua", function()
    local out_path, pid_path = os.tmpname(), os.tmpname()
    os.execute(("(%s exec timeout 20 luajit examples/evlua_server.lua 0 > %s 2>&1) & echo $! > %s")
               :format(ENV, out_path, pid_path))
    local pid = tonumber(read_file(pid_path))
    local ok, err = pcall(function()
      assert(pid, "the example server did not start")
      local port
      for _ = 1, 100 do -- up to 5 s
        port = read_file(out_path):match("127%.0%.0%.1:(%d+)/")
        if port then break end
        os.execute("sleep 0.05")
      end
      assert(port, "the example server printed no port: " .. read_file(out_path))
      local url = "http://127.0.0.1:" .. port .. "/evlua_handlers/echo"
      local status, out = run_program("-l turbo_ws -l turbo_ws.compat examples/evlua_client.lua " .. url)
      assert.are.equal(0, status, out)
      assert.truthy(out:find("connected: 101, handler echo", 1, true), out)
      assert.truthy(out:find("echo: hello from evlua", 1, true), out)
      assert.truthy(out:find("binary echo of 7 bytes, opcode 2", 1, true), out)
      assert.truthy(out:find("pong: true KEEP ALIVE", 1, true), out)
      assert.truthy(out:find("closed", 1, true), out)
    end)
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.remove(out_path)
    os.remove(pid_path)
    assert(ok, err)
  end)

  it("the example handler refuses through init", function()
    run_async(function()
      package.path = "examples/?.lua;" .. package.path
      require "turbo_ws.compat"
      local _, port = start_server()
      local conn, msg = ws.connect{ url = "http://127.0.0.1:" .. port .. "/evlua_handlers/echo",
                                    hdrs = { ["X-Refuse"] = "1" }, external = false }
      assert.is_nil(conn)
      assert.are.equal('{"error_message":"refused on request"}', msg)
    end)
  end)
end)
