-- Helpers for the Turbo-face specs (not a spec itself: no _spec suffix).
-- Loaded with require "spec.turbo_support".
--
--   S.loop(body, ms)      runs the loop until body's done() or a guard
--                         interval (ms, default 5000) closes it
--   S.quiet()/S.loud()    silence turbo.log around a spec file
--   S.raw                 non-blocking TCP through LuaJIT's FFI, to play
--                         peers that misbehave (garbage, silence, bad
--                         frames) and to speak plain HTTP to a server
--   S.tls_files()         a self-signed localhost/127.0.0.1 certificate
--   S.frame(...)          builds a WebSocket frame
local turbo = require "turbo_ws"
local core = turbo.core
local ffi = require "ffi"
local bit = require "bit"
local P = require "spec.support.peer"

local S = {}

--------------------------------------------------------------------------
-- The loop

--- Calls body(done) inside the loop and runs the loop until done() is
-- called or `ms` pass. Returns true when done() was called in time.
-- An error raised by body itself is re-raised here.
local generation = 0
function S.loop(body, ms)
  generation = generation + 1
  local mine = generation
  local finished, body_error = false, nil
  -- A done() left over from an earlier loop (e.g. in a timer) must not
  -- stop this one.
  local function done()
    if mine ~= generation or finished then return end
    finished = true
    core.close()
  end
  local guard = core.set_interval(ms or 5000, function()
    if mine == generation then core.close() end
  end, nil, false)
  core.add_callback(function()
    local ok, err = pcall(body, done)
    if not ok then body_error = err; core.close() end
  end)
  core.start()
  core.clear_interval(guard)
  generation = generation + 1
  if body_error then error(body_error, 0) end
  return finished
end

-- busted gives `finally` to the spec file's environment, not to _G: the
-- first function up the stack that runs in such an environment has it
-- (S.finally may be called from a helper module such as
-- spec/support/turbo_websocket.lua, whose environment is _G).
local function busted_finally()
  local found = rawget(_G, "finally")
  local level = 1 -- from here (pcall's frame) up to the spec's function
  while not found do
    local ok, env = pcall(getfenv, level)
    assert(ok, "S.finally: not called from a running spec")
    found = env.finally
    level = level + 1
  end
  return found
end

-- busted keeps only the last `finally` of a spec; S.finally keeps them all
-- and runs them in reverse order of registration.
local cleanups = {}
local function run_cleanups()
  local list = cleanups
  cleanups = {}
  for i = #list, 1, -1 do pcall(list[i]) end
end
function S.finally(fn)
  cleanups[#cleanups + 1] = fn
  busted_finally()(run_cleanups)
end

--- Lets pending closes and callbacks run (bounded).
function S.drain(ms)
  local guard = core.set_interval(ms or 300, function() core.close() end, nil, false)
  core.run()
  core.clear_interval(guard)
end

--- Calls fn() after ms milliseconds.
function S.after(ms, fn)
  return core.add_timeout(core.gettimemonotonic() + ms, fn)
end

local saved_categories
function S.quiet()
  local log = turbo.log
  saved_categories = {}
  for k, v in pairs(log.categories) do saved_categories[k] = v end
  log.disable_all()
end

function S.loud()
  if saved_categories then turbo.log.categories = saved_categories end
end

--------------------------------------------------------------------------
-- Raw TCP (FFI)

if not pcall(ffi.typeof, "struct turbo_spec_sockaddr_in") then
  ffi.cdef [[
    struct turbo_spec_sockaddr_in {
      unsigned short sin_family; unsigned short sin_port;
      unsigned int sin_addr; char zero[8];
    };
    int socket(int domain, int type, int protocol);
    int bind(int fd, const void *addr, unsigned int len);
    int listen(int fd, int backlog);
    int getsockname(int fd, void *addr, unsigned int *len);
    int connect(int fd, const void *addr, unsigned int len);
    int close(int fd);
    int accept4(int fd, void *addr, void *len, int flags);
    long read(int fd, void *buf, unsigned long n);
    long write(int fd, const void *buf, unsigned long n);
    unsigned short htons(unsigned short v);
    unsigned int inet_addr(const char *cp);
  ]]
end
local C = ffi.C
local AF_INET, SOCK_STREAM, SOCK_NONBLOCK = 2, 1, 2048
local EAGAIN, EINPROGRESS = 11, 115

local raw = {}
S.raw = raw

-- Descriptors we opened and have not closed, and the pollers reading
-- them. A descriptor number is reused by the kernel after close(), maybe
-- for one of the core's sockets: closing twice or polling after close
-- would touch someone else's socket, so both are guarded here.
local open_fds, watchers = {}, {}
local function opened(fd) open_fds[fd] = true; return fd end

local function address(port)
  local sa = ffi.new("struct turbo_spec_sockaddr_in")
  sa.sin_family = AF_INET
  sa.sin_port = C.htons(port)
  sa.sin_addr = C.inet_addr("127.0.0.1")
  return sa
end

--- A listening socket on 127.0.0.1, port chosen by the system: fd, port.
function raw.listen(backlog)
  local fd = C.socket(AF_INET, SOCK_STREAM + SOCK_NONBLOCK, 0)
  assert(fd >= 0, "socket")
  local sa = address(0)
  assert(C.bind(fd, sa, ffi.sizeof(sa)) == 0, "bind")
  assert(C.listen(fd, backlog or 16) == 0, "listen")
  local len = ffi.new("unsigned int[1]", ffi.sizeof(sa))
  C.getsockname(fd, sa, len)
  return opened(fd), C.htons(sa.sin_port)
end

--- Non-blocking accept: a connected fd or nil.
function raw.accept(fd)
  local c = C.accept4(fd, nil, nil, SOCK_NONBLOCK)
  if c >= 0 then return opened(c) end
  return nil
end

--- A non-blocking connection to 127.0.0.1:port (may still be connecting).
function raw.connect(port)
  local fd = C.socket(AF_INET, SOCK_STREAM + SOCK_NONBLOCK, 0)
  local sa = address(port)
  local rc = C.connect(fd, sa, ffi.sizeof(sa))
  assert(rc == 0 or ffi.errno() == EINPROGRESS, "connect")
  return opened(fd)
end

--- Writes all of data (retrying while the socket buffer is full).
-- (Localhost peers drain fast; the retry count only bounds a stuck one.)
function raw.send(fd, data)
  if not open_fds[fd] then return false end
  local sent, retries = 0, 0
  while sent < #data do
    local n = C.write(fd, ffi.cast("const char *", data) + sent, #data - sent)
    if n < 0 then
      if ffi.errno() ~= EAGAIN and ffi.errno() ~= EINPROGRESS then return false end
      retries = retries + 1
      if retries > 1e6 then return false end
    else
      sent = sent + n
    end
  end
  return true
end

--- What can be read now: a string, "" when nothing is there yet, or nil
-- at end of stream / error.
function raw.recv(fd)
  local buf = ffi.new("char[65536]")
  local n = C.read(fd, buf, 65536)
  if n > 0 then return ffi.string(buf, n) end
  if n < 0 and (ffi.errno() == EAGAIN or ffi.errno() == EINPROGRESS) then return "" end
  return nil
end

--- Closes fd once (later calls do nothing) and stops its poller.
function raw.close(fd)
  if not open_fds[fd] then return end
  open_fds[fd] = nil
  if watchers[fd] then watchers[fd](); watchers[fd] = nil end
  C.close(fd)
end

--- Polls `fd` every few ms, calling on_data(chunk) and finally on_eof().
-- Returns a function that stops polling.
function raw.watch(fd, on_data, on_eof)
  local ref
  local function stop() core.clear_interval(ref) end
  ref = core.set_interval(3, function()
    if not open_fds[fd] then return stop() end
    while true do
      local chunk = raw.recv(fd)
      if chunk == nil then
        core.clear_interval(ref)
        if on_eof then on_eof() end
        return
      end
      if chunk == "" then return end
      on_data(chunk)
      if not open_fds[fd] then return stop() end
    end
  end, nil, false)
  watchers[fd] = stop
  return stop
end

--- A one-shot HTTP exchange: sends `request` (a string) to the port and
-- calls on_response({status, headers = {lower-name = value}, body, raw})
-- once the whole response has arrived (by Content-Length) or the server
-- closed the connection.
function raw.http(port, request, on_response)
  local fd = raw.connect(port)
  local buffer, done = "", false
  local function finish()
    if done then return end
    local head, body = buffer:match("^(.-)\r\n\r\n(.*)$")
    if not head then return end
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):%s*([^\r\n]*)") do
      local key = name:lower()
      if headers[key] then headers[key] = headers[key] .. "\n" .. value
      else headers[key] = value end
    end
    local length = tonumber(headers["content-length"])
    if request:find("^HEAD ") then length = 0 end  -- no body, whatever the length says
    if length and #body < length then return end
    done = true
    raw.close(fd)
    on_response({ status = tonumber(head:match("^HTTP/%d%.%d (%d+)")),
                  headers = headers, body = body, raw = buffer })
  end
  local stop
  local sent = false
  stop = raw.watch(fd, function(chunk)
    buffer = buffer .. chunk
    finish()
    if done then stop() end
  end, function() finish() end)
  -- The connect may still be in progress: write once it is writable.
  local ref
  ref = core.set_interval(2, function()
    if sent then return end
    if raw.send(fd, request) then sent = true; core.clear_interval(ref) end
  end, nil, false)
  return fd
end

--- A GET request as text.
function raw.get(path, extra_headers, method, body)
  local lines = { (method or "GET") .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1",
                  "Connection: close" }
  for _, h in ipairs(extra_headers or {}) do lines[#lines + 1] = h end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

--- A valid client handshake for `path` with a fixed key.
S.KEY = "dGhlIHNhbXBsZSBub25jZQ=="
S.ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
function S.handshake(path, extra)
  local headers = { "Upgrade: websocket", "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " .. S.KEY }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  local request = raw.get(path, headers)
  return (request:gsub("Connection: close\r\n", ""))
end

--- One WebSocket frame. opts: fin (default true), rsv (0-7), mask (a
-- 4-byte string, or nil for unmasked).
function S.frame(opcode, payload, opts)
  opts = opts or {}
  local b0 = (opts.fin == false and 0 or 0x80) + (opts.rsv or 0) * 16 + opcode
  local len = #payload
  local mask_bit = opts.mask and 0x80 or 0
  local head
  if len < 126 then
    head = string.char(b0, mask_bit + len)
  elseif len < 65536 then
    head = string.char(b0, mask_bit + 126, math.floor(len / 256), len % 256)
  else
    local bytes = {}
    for i = 8, 1, -1 do bytes[i] = len % 256; len = math.floor(len / 256) end
    head = string.char(b0, mask_bit + 127, unpack(bytes))
  end
  if not opts.mask then return head .. payload end
  local key = { opts.mask:byte(1, 4) }
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(bit.bxor(payload:byte(i), key[(i - 1) % 4 + 1]))
  end
  return head .. opts.mask .. table.concat(out)
end

--- A raw TCP server on 127.0.0.1: for each connection, once a request
-- head has arrived, calls on_request(fd, request_text). Returns the port
-- and a function that closes everything.
function S.raw_server(on_request, backlog)
  local lfd, port = raw.listen(backlog)
  local conns, stops = {}, {}
  local ref = core.set_interval(3, function()
    local fd = raw.accept(lfd)
    if not fd then return end
    conns[#conns + 1] = fd
    local buffer, handled = "", false
    stops[#stops + 1] = raw.watch(fd, function(chunk)
      buffer = buffer .. chunk
      if not handled and buffer:find("\r\n\r\n", 1, true) then
        handled = true
        on_request(fd, buffer)
      end
    end)
  end, nil, false)
  return port, function()
    core.clear_interval(ref)
    for _, stop in ipairs(stops) do stop() end
    for _, fd in ipairs(conns) do raw.close(fd) end
    raw.close(lfd)
  end
end

--- Sec-WebSocket-Accept for a client key (RFC 6455 4.2.2).
function S.accept_key(key)
  local hash = require "turbo_ws.hash"
  local digest = hash.SHA1(key .. "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"):raw()
  return (turbo.escape.base64_encode(digest, nil, true))
end

--- The 101 answer a raw server gives to `request`.
function S.accept_response(request)
  local key = request:match("[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey:%s*(%S+)")
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. S.accept_key(key) .. "\r\n\r\n"
end

--------------------------------------------------------------------------
-- Files and commands

--- Runs a shell command; true when it exited 0 (LuaJIT's os.execute
-- returns the status number, Lua 5.2+ a boolean).
function S.sh(cmd)
  local rc = os.execute(cmd)
  return rc == 0 or rc == true
end

--- A fresh temporary directory; writing a file.
S.tmpdir = P.tmpdir
S.write_file = P.write_file

function S.rmdir(path)
  if path and path:match("^/tmp/") then os.execute("rm -rf '" .. path .. "'") end
end

local tls_cache
--- A self-signed certificate for localhost and 127.0.0.1 (EC P-256) in a
-- temp dir: {dir, cert, key, ca_dir}. basicConstraints CA:FALSE, because
-- rustls refuses a CA certificate used as a server's own (end-entity)
-- certificate; the certificate is then its own trust anchor.
function S.tls_files()
  if tls_cache then return tls_cache end
  local dir = S.tmpdir()
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  local cmd = table.concat({
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes",
    "-subj /CN=localhost",
    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1",
    "-addext basicConstraints=critical,CA:FALSE",
    "-days 2 -keyout '" .. key .. "' -out '" .. cert .. "' >/dev/null 2>&1",
  }, " ")
  assert(S.sh(cmd), "openssl failed")
  local ca_dir = dir .. "/ca"
  os.execute("mkdir -p '" .. ca_dir .. "' && cp '" .. cert .. "' '" .. ca_dir .. "/'")
  tls_cache = { dir = dir, cert = cert, key = key, ca_dir = ca_dir }
  return tls_cache
end

function S.cleanup_tls()
  if tls_cache then S.rmdir(tls_cache.dir); tls_cache = nil end
end

return S
