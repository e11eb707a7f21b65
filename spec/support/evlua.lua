-- Helpers shared by the evlua-face specs (spec/evlua_*_spec.lua); not a
-- spec itself. Loaded with `local E = require "spec.support.evlua"`.
--
--   E.run_async(body, ms)  runs a spec body in a loop coroutine, bounded
--   E.spawn(fn)            a concurrent peer; its join() re-raises its error
--   E.on_cleanup(fn)       closes what a spec opened, after its body
--   E.raw_connect/raw_listen  raw TCP peers (LuaJIT ffi sockets polled from
--                          the loop) that look at the bytes on the wire
--   E.frame/cframe         WebSocket frames built here, not by the face
--   E.start_server         an evlua.serve server on 127.0.0.1:0 whose
--                          handler module "evspec.probe" does what E.probe says
--   E.connect              ws.connect to it with the usual inputs
-- busted's assert lives in the specs' environment, not in this module's.
local assert = require "luassert"
local ffi = require "ffi"
local bit = require "bit"
local turbo_ws = require "turbo_ws"
local evlua = require "turbo_ws.evlua"
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

local assert_error_with = require("spec.support.loop").assert_error_with

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
cdef "int setsockopt(int fd, int level, int name, const void *value, unsigned int len);"
local C = ffi.C
local AF_INET, SOCK_STREAM, SOCK_NONBLOCK = 2, 1, 2048
local SOL_SOCKET, SO_RCVBUF = 1, 8
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

-- A small receive buffer (`rcvbuf` bytes, set before connect/listen so
-- that the window is small from the start): a peer that does not read
-- then holds the sender back after a few KiB in the kernel, not MiBs.
local function set_rcvbuf(fd, rcvbuf)
  if not rcvbuf then return end
  local value = ffi.new("int[1]", rcvbuf)
  assert(C.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, value, 4) == 0, "setsockopt failed")
end

--- A raw client connected to 127.0.0.1:port (receive buffer `rcvbuf`
-- bytes when given).
local function raw_connect(port, rcvbuf)
  local fd = C.socket(AF_INET, SOCK_STREAM, 0)
  assert(fd >= 0, "socket failed")
  set_rcvbuf(fd, rcvbuf)
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

--- Reads until EOF or `seconds` (3), counting what arrives without
-- keeping it (megabytes: `buf` would copy them over and over); returns
-- the byte count (`buf`'s included, then emptied) and whether EOF came.
function Raw:count_until_eof(seconds)
  local tmp = ffi.new("char[65536]")
  local count, deadline = #self.buf, now() + (seconds or 3) * 1000
  self.buf = ""
  while self.fd >= 0 and not self.eof do
    local n = tonumber(C.recv(self.fd, tmp, 65536, MSG_DONTWAIT))
    if n > 0 then
      count = count + n
    elseif n == 0 then
      self.eof = true
    elseif now() >= deadline then
      break
    else
      sleep(0.005)
    end
  end
  return count, self.eof == true
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

--- A raw listener on 127.0.0.1:0; `:accept()` waits for one connection
-- (which has a receive buffer of `rcvbuf` bytes when given).
local function raw_listen(rcvbuf)
  local fd = C.socket(AF_INET, bit.bor(SOCK_STREAM, SOCK_NONBLOCK), 0)
  assert(fd >= 0, "socket failed")
  set_rcvbuf(fd, rcvbuf)
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

-- Per-spec behaviour of the handler module "evspec.probe". Reset in place,
-- so that the specs' reference to it stays the one the module reads.
local probe = {}
local function reset_probe()
  for k in pairs(probe) do probe[k] = nil end
  probe.init = function() return true end
  probe.handle_message = function(msg)
    local text = ffi.string(msg.buf, msg.payload_len)
    ws_util.send_msg({ _ss = msg._ss }, text,
                     msg.op_code == ws_const.FRAME_OP_TEXT and { msg_type = "TEXT" } or nil)
  end
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

--- A raw client that has completed an upgrade to `path` (`rcvbuf`: as
-- raw_connect's).
local function raw_upgraded(port, path, rcvbuf)
  local raw = raw_connect(port, rcvbuf)
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

return {
  turbo_ws = turbo_ws,
  evlua = evlua,
  core = core,
  ws = ws,
  ws_util = ws_util,
  ws_const = ws_const,
  NO_CONNECTION = NO_CONNECTION,
  NO_UPGRADE = NO_UPGRADE,
  BAD_ACCEPT = BAD_ACCEPT,
  RECV_WITH_HANDLER = RECV_WITH_HANDLER,
  SAMPLE_KEY = SAMPLE_KEY,
  SAMPLE_ACCEPT = SAMPLE_ACCEPT,
  now = now,
  sleep = sleep,
  on_cleanup = on_cleanup,
  run_async = run_async,
  spawn = spawn,
  capture_stderr = capture_stderr,
  assert_error_with = assert_error_with,
  raw_connect = raw_connect,
  frame = frame,
  cframe = cframe,
  raw_listen = raw_listen,
  accept_for = accept_for,
  upgrade_request = upgrade_request,
  probe = probe,
  reset_probe = reset_probe,
  start_server = start_server,
  raw_upgraded = raw_upgraded,
  connect = connect,
}
