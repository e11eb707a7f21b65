-- Turbo's fd watching on the core's reactor: IOLoop:add_handler,
-- update_handler, remove_handler on a pipe and a socket pair (LuaJIT FFI
-- makes them), with Turbo's READ/WRITE/ERROR values and level-triggered
-- readiness.
local ffi = require "ffi"
local turbo = require "turbo_ws"
local ioloop = require "turbo_ws.ioloop"
local L = require "spec.support.loop"

ffi.cdef [[
  int pipe(int fds[2]);
  int socketpair(int domain, int type, int protocol, int sv[2]);
  long read(int fd, void *buf, size_t count);
  long write(int fd, const void *buf, size_t count);
  int close(int fd);
  int open(const char *path, int flags);
]]

local function pipe()
  local fds = ffi.new("int[2]")
  assert(ffi.C.pipe(fds) == 0)
  return fds[0], fds[1]
end

local function socket_pair()
  local fds = ffi.new("int[2]")
  assert(ffi.C.socketpair(1 --[[AF_UNIX]], 1 --[[SOCK_STREAM]], 0, fds) == 0)
  return fds[0], fds[1]
end

local function read_byte(fd)
  local buf = ffi.new("char[1]")
  assert(ffi.C.read(fd, buf, 1) == 1)
  return ffi.string(buf, 1)
end

local function write(fd, s) assert(ffi.C.write(fd, s, #s) == #s) end

describe("IOLoop fd handlers", function()
  local loop = ioloop.instance()
  local log = require "turbo_ws.log"
  setup(function() log.disable_all() end)
  teardown(function() log.enable_all() end)

  it("has Turbo's event values", function()
    assert.equal(0x001, ioloop.READ)
    assert.equal(0x004, ioloop.WRITE)
    assert.equal(0x002, ioloop.PRI)
    assert.equal(0x018, ioloop.ERROR)
  end)

  it("calls a READ handler with (arg, fd, events), level-triggered, on a pipe", function()
    local r, w = pipe()
    local got = {}
    assert.is_true(loop:add_handler(r, ioloop.READ, function(arg, fd, events)
      got[#got + 1] = { arg, fd, events, read_byte(fd) }
      if #got == 3 then loop:remove_handler(fd) end
    end, "the arg"))
    write(w, "abc")
    L.run_until(function() return #got == 3 end, 2000, "three calls")
    -- One byte per call: still readable, so called again (level-triggered).
    for i, c in ipairs({ "a", "b", "c" }) do
      assert.same({ "the arg", r, ioloop.READ, c }, got[i])
    end
    ffi.C.close(r); ffi.C.close(w)
  end)

  it("calls handler(fd, events) when no arg was given", function()
    local r, w = pipe()
    local args
    loop:add_handler(r, ioloop.READ, function(...)
      args = { ... }
      loop:remove_handler(r)
    end)
    write(w, "x")
    L.run_until(function() return args ~= nil end, 2000, "the call")
    assert.same({ r, ioloop.READ }, args)
    ffi.C.close(r); ffi.C.close(w)
  end)

  it("reports WRITE readiness on a socket and follows update_handler", function()
    local a, b = socket_pair()
    local seen = {}
    assert.is_true(loop:add_handler(a, ioloop.WRITE, function(fd, events)
      seen[#seen + 1] = events
      if events == ioloop.WRITE then
        -- Writable: now wait for the peer to speak instead.
        assert.is_true(loop:update_handler(fd, ioloop.READ))
        write(b, "hi")
      else
        read_byte(fd); read_byte(fd)
        loop:remove_handler(fd)
      end
    end))
    L.run_until(function() return #seen == 2 end, 2000, "write then read")
    assert.same({ ioloop.WRITE, ioloop.READ }, seen)
    ffi.C.close(a); ffi.C.close(b)
  end)

  it("reports ERROR when the peer hangs up", function()
    local a, b = socket_pair()
    local events
    loop:add_handler(a, ioloop.READ, function(fd, ev)
      events = ev
      loop:remove_handler(fd)
    end)
    ffi.C.close(b)
    L.run_until(function() return events ~= nil end, 2000, "the hang-up")
    -- A hung-up stream socket is readable (EOF) and hung up.
    assert.is_true(bit.band(events, ioloop.READ) ~= 0)
    ffi.C.close(a)
  end)

  it("stops calling after remove_handler, and a second handler for an fd is refused", function()
    local r, w = pipe()
    local calls = 0
    assert.is_true(loop:add_handler(r, ioloop.READ, function() calls = calls + 1 end))
    assert.is_false(loop:add_handler(r, ioloop.READ, function() end))
    assert.is_true(loop:remove_handler(r))
    assert.is_nil(loop:remove_handler(r))
    assert.is_false(loop:update_handler(r, ioloop.READ))
    write(w, "x")
    local t = turbo.core.add_timeout(turbo.core.gettimemonotonic() + 50, function() end)
    L.run_bounded(2000)
    assert.equal(0, calls)
    ffi.C.close(r); ffi.C.close(w)
    assert.is_number(t)
  end)

  it("refuses an fd epoll cannot watch (a regular file) with false", function()
    local fd = ffi.C.open("/etc/hostname", 0)
    assert.is_true(fd >= 0)
    assert.is_false(loop:add_handler(fd, ioloop.READ, function() end))
    ffi.C.close(fd)
  end)

  it("removes a handler that raises, after logging it", function()
    local r, w = pipe()
    local calls = 0
    loop:add_handler(r, ioloop.READ, function() calls = calls + 1; error("boom") end)
    write(w, "xy")
    local t = turbo.core.add_timeout(turbo.core.gettimemonotonic() + 100, function() end)
    L.run_bounded(2000)
    assert.equal(1, calls)
    assert.is_nil(loop:remove_handler(r))
    ffi.C.close(r); ffi.C.close(w)
    assert.is_number(t)
  end)

  it("raises for misuse, naming the argument", function()
    L.assert_error_with("add_handler: bad argument #3 'handler'", function()
      loop:add_handler(0, ioloop.READ, nil)
    end)
    L.assert_error_with("bad argument #2 'events'", function()
      turbo.core.watch_fd(0, 0x100, function() end)
    end)
  end)
end)
