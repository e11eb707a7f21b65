-- The parts of Turbo's `turbo.util` that WebSocket programs use.
local core = require "turbo_ws.core"

local type, tostring, pairs = type, tostring, pairs
local sfind, ssub, sformat, sbyte = string.find, string.sub, string.format, string.byte
local os_date = os.date

local util = {}

--- Milliseconds on the monotonic clock; `add_timeout` takes these.
util.gettimemonotonic = core.gettimemonotonic
--- Milliseconds since the Unix epoch.
util.gettimeofday = core.gettimeofday

--- Splits `str` at every occurrence of the plain-text separator `sep`
-- (default ","); empty pieces are kept, as Turbo does.
function util.strsplit(str, sep)
  sep = sep or ","
  local pieces, start = {}, 1
  if sep == "" then return { str } end
  while true do
    local first, last = sfind(str, sep, start, true)
    if not first then
      pieces[#pieces + 1] = ssub(str, start)
      return pieces
    end
    pieces[#pieces + 1] = ssub(str, start, first - 1)
    start = last + 1
  end
end

--- True when `needle` is one of the values of the array `haystack`.
function util.is_in(needle, haystack)
  if type(haystack) ~= "table" then return false end
  for i = 1, #haystack do
    if haystack[i] == needle then return true end
  end
  return false
end

--- A new table with the keys of `t1`, then those of `t2` (which win).
function util.tablemerge(t1, t2)
  local merged = {}
  for k, v in pairs(t1 or {}) do merged[k] = v end
  for k, v in pairs(t2 or {}) do merged[k] = v end
  return merged
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

--- HTTP date of `seconds` since the epoch (default now), e.g. for headers:
-- "Sun, 06 Nov 1994 08:49:37 GMT".
function util.time_format_http_header(seconds)
  return os_date("!%a, %d %b %Y %H:%M:%S GMT", seconds)
end

--- Cookie "expires" date of `seconds` since the epoch.
util.time_format_cookie = util.time_format_http_header

--- `n` as lower-case hexadecimal.
function util.hex(n)
  return string.format("%x", n)
end

return util
