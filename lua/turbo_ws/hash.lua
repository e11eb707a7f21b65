--- turbo_ws.hash -- the parts of Turbo.lua's turbo.hash that web programs
-- meet: SHA-1 digests and HMAC-SHA1, used by secure cookies.
--
-- Turbo calls OpenSSL through the FFI; this is plain Lua so that it needs
-- no library and runs under LuaJIT, Lua 5.1 and 5.4 alike. It is meant for
-- short inputs (cookies), not for hashing large files.
--
--   hash.SHA1("abc"):hex()            -> "a9993e36..." (40 hex digits)
--   local d = hash.SHA1(); d:update("a"); d:update("bc"); d:finalize()
--   d:hex(), d:raw()                  -> hex string / 20-byte string
--   hash.HMAC(key, data)              -> HMAC-SHA1 as 40 hex digits
--   hash.HMAC(key, data, true)        -> the same as 20 raw bytes

local class = require "turbo_ws.class"

local sbyte, schar, sformat, srep = string.byte, string.char, string.format, string.rep
local concat = table.concat
local floor = math.floor

-- Plain Lua 5.1 has no bit library: combine the operands bit by bit.
local function arithmetic_bit_ops()
  local function combine(a, b, rule)
    a, b = a % 4294967296, b % 4294967296
    local result, place = 0, 1
    for _ = 1, 32 do
      local x, y = a % 2, b % 2
      if rule(x, y) then result = result + place end
      a, b, place = (a - x) / 2, (b - y) / 2, place * 2
    end
    return result
  end
  local function both(x, y) return x == 1 and y == 1 end
  local function either(x, y) return x == 1 or y == 1 end
  local function differ(x, y) return x ~= y end
  return {
    band = function(a, b) return combine(a, b, both) end,
    bor = function(a, b) return combine(a, b, either) end,
    bxor = function(a, b) return combine(a, b, differ) end,
    bnot = function(a) return 4294967295 - a % 4294967296 end,
    lshift = function(a, n) return (a * 2 ^ n) % 4294967296 end,
    rshift = function(a, n) return math.floor((a % 4294967296) / 2 ^ n) end,
  }
end

-- 32-bit operations: LuaJIT's `bit`, else Lua 5.2's `bit32`, else Lua 5.3+
-- native operators (compiled from a string so older parsers never see
-- them), else arithmetic.
local function bit_ops()
  local ok, lib = pcall(require, "bit")
  if ok then return lib end
  ok, lib = pcall(require, "bit32")
  if ok then return lib end
  if not math.type then return arithmetic_bit_ops() end
  return load([[
    local M = 0xffffffff
    return {
      band = function(a, b) return (a & b) & M end,
      bor = function(a, b) return (a | b) & M end,
      bxor = function(a, b) return (a ~ b) & M end,
      bnot = function(a) return (~a) & M end,
      lshift = function(a, n) return (a << n) & M end,
      rshift = function(a, n) return (a & M) >> n end,
    }]])()
end

local bit = bit_ops()
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local lshift, rshift = bit.lshift, bit.rshift

local TWO32 = 4294967296

-- Results of `bit` are signed on LuaJIT; arithmetic modulo 2^32 keeps
-- every intermediate value a non-negative 32-bit number on all Luas.
local function u32(x) return x % TWO32 end
local function add(a, b) return (a + b) % TWO32 end
local function rol(x, n) return u32(bor(lshift(x, n), rshift(u32(x), 32 - n))) end

local function be32(s, i)
  local a, b, c, d = sbyte(s, i, i + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function be32_string(x)
  x = u32(x)
  return schar(floor(x / 16777216) % 256, floor(x / 65536) % 256,
               floor(x / 256) % 256, x % 256)
end

-- Mixes one 64-byte block into the state h[1..5].
local function compress(h, block)
  local w = {}
  for i = 0, 15 do w[i] = be32(block, i * 4 + 1) end
  for i = 16, 79 do
    w[i] = rol(bxor(bxor(w[i - 3], w[i - 8]), bxor(w[i - 14], w[i - 16])), 1)
  end
  local a, b, c, d, e = h[1], h[2], h[3], h[4], h[5]
  for i = 0, 79 do
    local f, k
    if i < 20 then
      f, k = bor(band(b, c), band(bnot(b), d)), 0x5A827999
    elseif i < 40 then
      f, k = bxor(bxor(b, c), d), 0x6ED9EBA1
    elseif i < 60 then
      f, k = bor(bor(band(b, c), band(b, d)), band(c, d)), 0x8F1BBCDC
    else
      f, k = bxor(bxor(b, c), d), 0xCA62C1D6
    end
    local temp = add(add(add(rol(a, 5), u32(f)), add(e, k)), w[i])
    a, b, c, d, e = temp, a, rol(b, 30), c, d
  end
  h[1], h[2], h[3] = add(h[1], a), add(h[2], b), add(h[3], c)
  h[4], h[5] = add(h[4], d), add(h[5], e)
end

local hash = {}

--- Incremental SHA-1, Turbo's `hash.SHA1([data])` class.
hash.SHA1 = class("SHA1")
local SHA1 = hash.SHA1

function SHA1:initialize(data)
  self._h = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 }
  self._pending = ""
  self._length = 0
  self._final = nil
  -- As Turbo: SHA1(str) digests at once; update is not allowed after.
  if data ~= nil then
    self:update(data)
    self:finalize()
  end
end

--- Feed more data; not allowed after finalize().
function SHA1:update(data)
  if self._final then error("SHA1: update after finalize", 2) end
  if type(data) ~= "string" then error("SHA1: string expected", 2) end
  self._length = self._length + #data
  local buf = self._pending .. data
  local whole = #buf - #buf % 64
  for i = 1, whole, 64 do compress(self._h, buf:sub(i, i + 63)) end
  self._pending = buf:sub(whole + 1)
end

--- Ends the digest; returns the 20-byte digest (later calls return it too).
function SHA1:finalize()
  if self._final then return self._final end
  local bits = self._length * 8
  local pad = 64 - (self._length + 9) % 64
  if pad == 64 then pad = 0 end
  local tail = "\128" .. srep("\0", pad)
    .. be32_string(floor(bits / TWO32)) .. be32_string(bits % TWO32)
  local buf = self._pending .. tail
  for i = 1, #buf, 64 do compress(self._h, buf:sub(i, i + 63)) end
  local parts = {}
  for i = 1, 5 do parts[i] = be32_string(self._h[i]) end
  self._final = concat(parts)
  self._pending = nil
  return self._final
end

--- The digest as 20 raw bytes.
function SHA1:raw() return self:finalize() end

--- The digest as 40 lower-case hex digits.
function SHA1:hex()
  return (self:finalize():gsub(".", function(c) return sformat("%02x", sbyte(c)) end))
end

function SHA1:__eq(other) return self:finalize() == other:finalize() end

--- HMAC-SHA1 (RFC 2104) of `data` under `key`: 40 hex digits, or the raw
-- 20 bytes when `raw` is true.
function hash.HMAC(key, data, raw)
  if type(key) ~= "string" then error("HMAC: key must be a string", 2) end
  if type(data) ~= "string" then error("HMAC: data must be a string", 2) end
  if #key > 64 then key = SHA1(key):raw() end
  key = key .. srep("\0", 64 - #key)
  local ipad = key:gsub(".", function(c) return schar(bxor(sbyte(c), 0x36)) end)
  local opad = key:gsub(".", function(c) return schar(bxor(sbyte(c), 0x5c)) end)
  local digest = SHA1(opad .. SHA1(ipad .. data):raw())
  if raw then return digest:raw() end
  return digest:hex()
end

--- Compares two strings in time that depends only on their lengths, so a
-- signature check does not reveal how many leading bytes matched.
function hash.equal(a, b)
  if type(a) ~= "string" or type(b) ~= "string" or #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bor(diff, bxor(sbyte(a, i), sbyte(b, i))) end
  return diff == 0
end

return hash
