-- Turbo's `turbo.util`, less its FFI memory helpers (see docs/api/turbo.md).
local core = require "turbo_ws.core"

local type, tostring, pairs = type, tostring, pairs
local sfind, ssub, sformat, sbyte = string.find, string.sub, string.format, string.byte
local concat = table.concat
local os_date = os.date

local util = {}

--- Milliseconds on the monotonic clock; `add_timeout` takes these.
util.gettimemonotonic = core.gettimemonotonic
--- Milliseconds since the Unix epoch.
util.gettimeofday = core.gettimeofday

--- The pieces of `str` between the separators `sep` (default ","), as a
-- list; empty pieces are kept and an empty `str` gives {} (as Turbo).
-- `max` (a number >= 1) splits at most that many times, the rest of `str`
-- being the last piece; `pattern` true makes `sep` a Lua pattern (a match
-- of no characters is not a separator). An empty `sep` raises.
function util.strsplit(str, sep, max, pattern)
  sep = sep or ","
  if sep == "" then error("util.strsplit: bad argument #2 'sep' (empty separator)", 2) end
  if max ~= nil and not (type(max) == "number" and max >= 1) then
    error("util.strsplit: bad argument #3 'max' (a number >= 1 expected, got " .. tostring(max) .. ")", 2)
  end
  local pieces = {}
  local len = #str
  if len == 0 then return pieces end
  local plain = not pattern
  local start, from, splits = 1, 1, 0
  while from <= len + 1 and (max == nil or splits < max) do
    local first, last = sfind(str, sep, from, plain)
    if not first then break end
    if last < first then
      from = first + 1 -- an empty match: look further on
    else
      pieces[#pieces + 1] = ssub(str, start, first - 1)
      start, from, splits = last + 1, last + 1, splits + 1
    end
  end
  pieces[#pieces + 1] = ssub(str, start)
  return pieces
end

local WHITESPACE = { [9] = true, [10] = true, [11] = true, [12] = true, [13] = true, [32] = true }

--- `str` without leading and trailing whitespace.
function util.strstrip(str)
  local first, last = 1, #str
  while first <= last and WHITESPACE[sbyte(str, first)] do first = first + 1 end
  while last >= first and WHITESPACE[sbyte(str, last)] do last = last - 1 end
  return ssub(str, first, last)
end

--- Compares two strings ignoring ASCII case, as C's strcasecmp: 0 when
-- equal, else the difference of the first differing bytes (lowered).
function util.strcasecmp(str1, str2)
  local i = 1
  while true do
    local a, b = sbyte(str1, i) or 0, sbyte(str2, i) or 0
    if a >= 65 and a <= 90 then a = a + 32 end
    if b >= 65 and b <= 90 then b = b + 32 end
    if a ~= b then return a - b end
    if a == 0 then return 0 end
    i = i + 1
  end
end

--- The values of the array `list` joined with `delimiter` between them;
-- "" for an empty list.
function util.join(delimiter, list)
  return concat(list, delimiter)
end

--- True when `needle` is one of the values of the array `haystack`.
function util.is_in(needle, haystack)
  if type(haystack) ~= "table" then return false end
  for i = 1, #haystack do
    if haystack[i] == needle then return true end
  end
  return false
end

--- Copies the keys of `t2` into `t1` and returns `t1`: where both hold a
-- table under a key, the one in `t2` is merged into the one in `t1` the
-- same way; otherwise `t2`'s value replaces `t1`'s. (As Turbo; a nil
-- `t2` merges nothing, a nil `t1` is a new table.)
function util.tablemerge(t1, t2)
  t1 = t1 or {}
  for k, v in pairs(t2 or {}) do
    local old = t1[k]
    if type(v) == "table" and type(old) == "table" then
      if old ~= v then util.tablemerge(old, v) end
    else
      t1[k] = v
    end
  end
  return t1
end

--- Turbo's name for unpack.
util.funpack = unpack or table.unpack

--- `n` bytes from the OS's random source (Turbo 2.1.5's /dev/urandom).
function util.secure_random_bytes(n)
  return core.random_bytes(n)
end

--- `len` (64) random hex characters, safe in headers and cookies, from
-- the OS's random source, as Turbo 2.1.5's.
function util.rand_str(len)
  len = len or 64
  local bytes = core.random_bytes(math.ceil(len / 2))
  return (bytes:gsub(".", function(c) return sformat("%02x", sbyte(c)) end):sub(1, len))
end

--- Whether a file can be opened for reading.
function util.file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- The contents of the file at `path`; raises when it cannot be opened.
function util.read_all(path)
  local f = io.open(path, "rb")
  if not f then error("Could not open file " .. tostring(path) .. " for reading.", 2) end
  local data = f:read("*a")
  f:close()
  return data
end

--- HTTP date of `msec` milliseconds since the epoch (default now), as
-- Turbo's (whose callers pass util.gettimeofday()):
-- "Sun, 06 Nov 1994 08:49:37 GMT".
function util.time_format_http_header(msec)
  msec = msec or core.gettimeofday()
  return os_date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(msec / 1000))
end

--- Turbo's cookie date of `seconds` since the epoch (default now):
-- "Sun, 06-Nov-1994 08:49:37 GMT".
function util.time_format_cookie(seconds)
  seconds = seconds or os.time()
  return os_date("!%a, %d-%b-%Y %H:%M:%S GMT", math.floor(seconds))
end

--- `n` as lower-case hexadecimal.
function util.hex(n)
  return string.format("%x", n)
end

return util
