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

  it("resolves Turbo's module names after turbo_ws.compat", function()
    require "turbo_ws.compat"
    for _, name in ipairs({ "websocket", "web", "ioloop", "escape", "httputil", "log", "util", "hash" }) do
      assert.equal(turbo[name], require("turbo." .. name), name)
    end
    assert.is_function(require("turbo.escape").json_encode)
    assert.is_function(require("turbo.escape").json_decode)
    assert.is_table(require("turbo.httputil").HTTPHeaders)
  end)
end)
