--- turbo_ws.escape -- Turbo.lua's turbo.escape: JSON, URL escaping, base64,
-- HTML escaping and trimming.
--
-- JSON is turbo_ws.json, shared by every face (its top says how it follows
-- Turbo's JSON): json_encode and json_decode are its functions.

local type, tonumber, error = type, tonumber, error
local sbyte, schar, sfind, sformat, ssub, sgsub =
      string.byte, string.char, string.find, string.format, string.sub,
      string.gsub
local concat = table.concat
local floor = math.floor
local unpack = unpack or table.unpack  -- luacheck: ignore

local json = require "turbo_ws.json"

local escape = {}

--------------------------------------------------------------------------
-- JSON

--- JSON stringify a Lua value (table, string, number, boolean or nil).
-- Raises an error for values JSON cannot represent.
escape.json_encode = json.encode

--- Decode a JSON text into Lua values (objects and arrays become tables,
-- null becomes nil; a blank string gives nil). Raises an error on
-- malformed input.
escape.json_decode = json.decode

--------------------------------------------------------------------------
-- URL-style escaping. Both return gsub's (string, count) pair like Turbo.

local function hex_to_char(hex) return schar(tonumber(hex, 16)) end

--- Replace every %XX sequence with the byte it encodes.
function escape.unescape(s)
    return sgsub(s, "%%(%x%x)", hex_to_char)
end

local function char_to_hex(c) return sformat("%%%02x", sbyte(c)) end

--- Replace every byte except [A-Za-z0-9_] with %xx (lower-case hex).
function escape.escape(s)
    return sgsub(s, "([^A-Za-z0-9_])", char_to_hex)
end

--------------------------------------------------------------------------
-- HTML

local HTML_ENTITIES = {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;", ["/"] = "&#47;",
}

--- Replace & < > " ' / with HTML entities (helps against XSS).
function escape.html_escape(s)
    -- As Turbo: strings only (Lua would quietly turn a number into one).
    if type(s) ~= "string" then
        error("escape.html_escape: bad argument #1 (string expected, got " .. type(s) .. ")", 2)
    end
    return (sgsub(s, "[&<>\"'/]", HTML_ENTITIES))
end

--------------------------------------------------------------------------
-- Trimming. find-based so that long runs of spaces stay linear.

--- Remove leading and trailing whitespace.
function escape.trim(s)
    local first = sfind(s, "%S")
    if not first then return "" end
    local _, last = sfind(s, ".*%S", first)
    return ssub(s, first, last)
end

--- Remove leading whitespace.
function escape.ltrim(s)
    local first = sfind(s, "%S")
    if not first then return "" end
    return ssub(s, first)
end

--- Remove trailing whitespace.
function escape.rtrim(s)
    local n = #s
    while n > 0 and sfind(s, "^%s", n) do n = n - 1 end
    return ssub(s, 1, n)
end

--------------------------------------------------------------------------
-- Base64 (RFC 4648 alphabet). Like Turbo, encoding breaks lines with CRLF
-- every 76 characters unless `disable_break` is set, and decoding skips any
-- byte outside the alphabet (line breaks, '=' padding, ...).

local B64_ALPHABET =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- 12-bit value -> its two base64 characters, so a 3-byte group costs two
-- lookups; and byte -> 6-bit value for decoding.
local B64_PAIRS, B64_VALUES = {}, {}
do
    local chars = {}
    for i = 1, 64 do
        chars[i - 1] = ssub(B64_ALPHABET, i, i)
        B64_VALUES[sbyte(B64_ALPHABET, i)] = i - 1
    end
    for hi = 0, 63 do
        for lo = 0, 63 do
            B64_PAIRS[hi * 64 + lo] = chars[hi] .. chars[lo]
        end
    end
end

-- Turbo's functions also accept an FFI pointer plus a length.
local function as_string(str, sz)
    if type(str) == "string" then
        if sz and sz < #str then return ssub(str, 1, sz) end
        return str
    end
    local ok, ffi = pcall(require, "ffi")
    if ok and type(str) == "cdata" and sz then
        return ffi.string(str, sz)
    end
    error("expected a string (or an FFI pointer and a size)", 3)
end

--- Base64-encode a string (or `sz` bytes of an FFI pointer).
-- Lines are broken with CRLF every 76 characters unless `disable_break`.
function escape.base64_encode(str, sz, disable_break)
    local s = as_string(str, sz)
    local len = #s
    local out, n = {}, 0
    local full = len - len % 3
    for i = 1, full, 3 do
        local a, b, c = sbyte(s, i, i + 2)
        local v = a * 65536 + b * 256 + c
        n = n + 1; out[n] = B64_PAIRS[floor(v / 4096)]
        n = n + 1; out[n] = B64_PAIRS[v % 4096]
    end
    local rest = len - full
    if rest > 0 then
        local a, b = sbyte(s, full + 1, full + 2)
        local v = a * 65536 + (b or 0) * 256
        local quad = B64_PAIRS[floor(v / 4096)] .. B64_PAIRS[v % 4096]
        n = n + 1
        out[n] = rest == 1 and ssub(quad, 1, 2) .. "=="
                            or ssub(quad, 1, 3) .. "="
    end
    local encoded = concat(out, "", 1, n)
    if disable_break or #encoded <= 76 then return encoded end
    local lines, m = {}, 0
    for i = 1, #encoded, 76 do
        m = m + 1; lines[m] = ssub(encoded, i, i + 75)
    end
    return concat(lines, "\r\n", 1, m)
end

-- Emit decoded bytes through string.char in bounded batches (unpack has a
-- stack limit).
local function bytes_to_string(bytes, count)
    local chunks, m = {}, 0
    for i = 1, count, 4096 do
        m = m + 1
        chunks[m] = schar(unpack(bytes, i, i + 4095 < count and i + 4095 or count))
    end
    return concat(chunks, "", 1, m)
end

--- Base64-decode a string (or `sz` bytes of an FFI pointer). Bytes outside
-- the alphabet are ignored; a trailing partial group yields what it can.
function escape.base64_decode(str, sz)
    local s = as_string(str, sz)
    if sfind(s, "[^%w%+/]") then s = sgsub(s, "[^%w%+/]", "") end
    local len = #s
    local bytes, n = {}, 0
    local vals = B64_VALUES
    for i = 1, len - len % 4, 4 do
        local a, b, c, d = sbyte(s, i, i + 3)
        local v = vals[a] * 262144 + vals[b] * 4096 + vals[c] * 64 + vals[d]
        bytes[n + 1] = floor(v / 65536)
        bytes[n + 2] = floor(v / 256) % 256
        bytes[n + 3] = v % 256
        n = n + 3
    end
    local rest = len % 4
    if rest >= 2 then
        local a, b, c = sbyte(s, len - rest + 1, len)
        local v = vals[a] * 262144 + vals[b] * 4096 + (c and vals[c] * 64 or 0)
        n = n + 1; bytes[n] = floor(v / 65536)
        if rest == 3 then n = n + 1; bytes[n] = floor(v / 256) % 256 end
    end
    return bytes_to_string(bytes, n)
end

return escape
