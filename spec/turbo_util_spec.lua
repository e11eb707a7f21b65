-- The Turbo face's small modules: turbo.util, turbo.hash, and the globals
-- and aliases a Turbo program expects.
local turbo = require "turbo_ws"

describe("turbo.util", function()
  local util = turbo.util

  it("gives wall-clock and monotonic milliseconds", function()
    local wall = util.gettimeofday()
    assert.is_true(math.abs(wall - os.time() * 1000) < 2000)
    local a = util.gettimemonotonic()
    local b = util.gettimemonotonic()
    assert.is_true(b >= a)
    assert.equal(math.floor(a), a)
  end)

  it("splits strings at a plain separator, keeping empty pieces", function()
    assert.same({ "a", "b", "", "c" }, util.strsplit("a,b,,c", ","))
    assert.same({ "x.y" }, util.strsplit("x.y", "%"))
    assert.same({ "1", "2" }, util.strsplit("1%.2", "%."))
  end)

  it("splits as Turbo 2.1.5: nothing from an empty string, at most max times, by pattern", function()
    assert.same({}, util.strsplit("", ","))
    assert.same({ "", "" }, util.strsplit(",", ","))
    assert.same({ "a", "b,c,d" }, util.strsplit("a,b,c,d", ",", 1))
    assert.same({ "a", "b", "c,d" }, util.strsplit("a,b,c,d", ",", 2))
    assert.same({ "a", "b", "c", "d" }, util.strsplit("a,b,c,d", ",", 10))
    assert.same({ "a", "b", "c" }, util.strsplit("a12b3c", "%d+", nil, true))
    assert.same({ "a", "b3c" }, util.strsplit("a12b3c", "%d+", 1, true))
    assert.same({ "k", "v" }, util.strsplit("k = v", "%s*=%s*", nil, true))
    -- A pattern's empty matches split nothing (Turbo looped forever).
    assert.same({ "a", "b" }, util.strsplit("a b", "%s*", nil, true))
    assert.same({ "ab" }, util.strsplit("ab", "x*", nil, true))
    -- Without `pattern` the separator is plain text.
    assert.same({ "a", "b" }, util.strsplit("a%d+b", "%d+"))
    assert.has_error(function() util.strsplit("a,b", "") end)
    assert.has_error(function() util.strsplit("a,b", ",", 0) end)
  end)

  it("merges t2 into t1 in place, into nested tables too, and returns t1 (as Turbo)", function()
    local inner = { x = 1, y = 2 }
    local t1 = { a = inner, b = 1, keep = true }
    local t2 = { a = { y = 3, z = { deep = 1 } }, b = { now = "table" }, c = 5 }
    local merged = util.tablemerge(t1, t2)
    assert.equal(t1, merged)
    assert.equal(inner, t1.a)
    assert.same({ x = 1, y = 3, z = { deep = 1 } }, inner)
    assert.same({ now = "table" }, t1.b)
    assert.same({ 5, true }, { t1.c, t1.keep })
    -- t2 is left as it was.
    assert.same({ a = { y = 3, z = { deep = 1 } }, b = { now = "table" }, c = 5 }, t2)
    -- Nested tables merge key by key.
    local cfg = util.tablemerge({ log = { level = 1, file = "x" } }, { log = { level = 2 } })
    assert.same({ log = { level = 2, file = "x" } }, cfg)
    -- A table merged into itself is left alone.
    local self_ref = { t = {} }
    self_ref.t.again = self_ref.t
    assert.equal(self_ref, util.tablemerge(self_ref, self_ref))
  end)

  it("formats HTTP dates from milliseconds and cookie dates from seconds (as Turbo's code)", function()
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", util.time_format_http_header(784111777000))
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", util.time_format_http_header(784111777999))
    assert.equal(util.time_format_http_header(util.gettimeofday()), util.time_format_http_header())
    assert.equal("Sun, 06-Nov-1994 08:49:37 GMT", util.time_format_cookie(784111777))
    assert.equal("Thu, 01-Jan-1970 00:00:00 GMT", util.time_format_cookie(0))
  end)

  it("has join, strstrip, read_all and strcasecmp", function()
    assert.equal("a, b, 3", util.join(", ", { "a", "b", 3 }))
    assert.equal("one", util.join("-", { "one" }))
    assert.equal("", util.join(",", {}))
    assert.equal("x y", util.strstrip(" \t x y\r\n "))
    assert.equal("", util.strstrip(" \t\n"))
    assert.equal("", util.strstrip(""))
    assert.equal("a", util.strstrip("a"))
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write("line 1\n\0binary\255")
    f:close()
    assert.equal("line 1\n\0binary\255", util.read_all(path))
    os.remove(path)
    assert.has_error(function() util.read_all(path) end, "Could not open file " .. path .. " for reading.")
    assert.equal(0, util.strcasecmp("Content-Type", "content-TYPE"))
    assert.equal(0, util.strcasecmp("", ""))
    assert.is_true(util.strcasecmp("abc", "ABD") < 0)
    assert.is_true(util.strcasecmp("b", "A") > 0)
    assert.is_true(util.strcasecmp("ab", "a") > 0)
    assert.is_true(util.strcasecmp("a", "AB") < 0)
  end)

  it("has is_in, tablemerge, file_exists, hex and the HTTP date format", function()
    assert.is_true(util.is_in("b", { "a", "b" }))
    assert.is_false(util.is_in("z", { "a", "b" }))
    assert.same({ a = 1, b = 3, c = 4 }, util.tablemerge({ a = 1, b = 2 }, { b = 3, c = 4 }))
    assert.is_true(util.file_exists("spec/turbo_util_spec.lua"))
    assert.is_false(util.file_exists("spec/no-such-file"))
    assert.equal("ff", util.hex(255))
    assert.equal("Thu, 01 Jan 1970 00:00:00 GMT", util.time_format_http_header(0))
    assert.equal(16, #util.rand_str(16))
    -- Hex from the OS's random source, as Turbo 2.1.5's.
    assert.truthy(util.rand_str(15):find("^%x+$"))
    assert.equal(64, #util.rand_str())
    assert.are_not.equal(util.rand_str(), util.rand_str())
    assert.equal(7, #util.secure_random_bytes(7))
    assert.equal("", util.secure_random_bytes(0))
    assert.has_error(function() util.secure_random_bytes(-1) end)
  end)
end)

describe("turbo.hash", function()
  local hash = turbo.hash

  it("computes SHA-1 (FIPS 180 test vectors)", function()
    assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hash.SHA1("abc"):hex())
    assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hash.SHA1(""):hex())
    assert.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hash.SHA1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"):hex())
    local d = hash.SHA1()
    for _ = 1, 1000 do d:update(string.rep("a", 1000)) end
    assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", d:hex())
    assert.equal(20, #d:finalize())
    assert.has_error(function() d:update("more") end)
    -- SHA1(str) digests at once (Turbo's docs): no update after.
    assert.has_error(function() hash.SHA1("lol"):update("ol") end)
  end)

  it("computes HMAC-SHA1 (RFC 2202 test vectors)", function()
    assert.equal("b617318655057264e28bc0b6fb378c8ef146be00", hash.HMAC(string.rep("\11", 20), "Hi There"))
    assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", hash.HMAC("Jefe", "what do ya want for nothing?"))
    assert.equal("aa4ae5e15272d00e95705637ce8a3b55ed402112",
      hash.HMAC(string.rep("\170", 80), "Test Using Larger Than Block-Size Key - Hash Key First"))
    assert.equal(20, #hash.HMAC("k", "d", true))
  end)

  it("compares signatures", function()
    assert.is_true(hash.equal("abc", "abc"))
    assert.is_false(hash.equal("abc", "abd"))
    assert.is_false(hash.equal("abc", "ab"))
    assert.is_false(hash.equal(nil, "ab"))
  end)
end)

describe("a Turbo program's environment", function()
  it("has the global class with middleclass semantics", function()
    local Animal = class("Animal")
    function Animal:initialize(name) self.name = name end
    function Animal:speak() return self.name .. " makes a sound" end
    local Dog = class("Dog", Animal)
    function Dog:speak() return self.name .. " barks" end
    local d = Dog("rex")
    assert.equal("rex barks", d:speak())
    assert.is_true(instanceOf(Animal, d))
    assert.is_true(d:isInstanceOf(Dog))
    assert.is_true(subclassOf(Animal, Dog))
  end)

  it("accepts _G.TURBO_SSL and the Turbo version numbers", function()
    _G.TURBO_SSL = true
    assert.same({ 2, 1, 5 }, { turbo.MAJOR_VERSION, turbo.MINOR_VERSION, turbo.MICRO_VERSION })
    _G.TURBO_SSL = nil
  end)

  it("has turbo.VERSION_HEX, turbo.signal and turbo.platform", function()
    assert.equal(0x020105, turbo.VERSION_HEX)
    local signal = turbo.signal
    assert.same({ 1, 2, 15, 13, 9 }, { signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGKILL })
    if jit and (jit.arch == "x64" or jit.arch == "x86" or jit.arch == "arm64" or jit.arch == "arm") then
      assert.same({ 10, 12, 17 }, { signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD })
    end
    local platform = turbo.platform
    for _, flag in ipairs({ "__WINDOWS__", "__UNIX__", "__LINUX__", "__DARWIN__", "__ABI32__", "__ABI64__",
                            "__X86__", "__X64__", "__PPC__", "__PPC64__", "__ARM__", "__ARM64__", "__MIPSEL__" }) do
      assert.is_boolean(platform[flag], flag)
    end
    assert.is_true(platform.__ABI32__ ~= platform.__ABI64__)
    if jit then
      assert.equal(jit.os == "Linux", platform.__LINUX__)
      assert.equal(jit.arch == "x64", platform.__X64__)
      assert.equal(require("ffi").abi("64bit"), platform.__ABI64__)
    end
  end)

  it("resolves Turbo's module names after turbo_ws.compat", function()
    require "turbo_ws.compat"
    for _, name in ipairs({ "websocket", "web", "ioloop", "escape", "httputil", "log", "util", "hash",
                            "async", "signal", "platform" }) do
      assert.equal(turbo[name], require("turbo." .. name), name)
    end
    assert.equal(turbo.structs.deque, require("turbo.structs.deque"))
    assert.is_function(require("turbo.escape").json_encode)
    assert.is_function(require("turbo.escape").json_decode)
    assert.is_table(require("turbo.httputil").HTTPHeaders)
  end)
end)
