--- turbo_ws.evlua.headers -- header tables as evlua programs index them,
-- and the small text helpers the face needs (JSON strings, query strings).
local json = require "turbo_ws.json"

local M = {}

-- Words whose usual spelling is not simply capitalised.
local SPECIAL_WORDS = {
  websocket = "WebSocket", www = "WWW", md5 = "MD5", te = "TE",
  etag = "ETag", dnt = "DNT",
}

--- "sec-websocket-key" -> "Sec-WebSocket-Key": the spelling evlua code uses
-- to index header tables (Poco keeps names as sent; clients vary).
function M.canonical(name)
  return (name:lower():gsub("[^%-]+", function(word)
    return SPECIAL_WORDS[word] or (word:sub(1, 1):upper() .. word:sub(2))
  end))
end

--- A name -> value table built from `{ {name, value}, ... }`, keyed by the
-- canonical spellings and answering any spelling (`t["x-msg"]`,
-- `t["X-msg"]`). Repeated fields are joined with ", " (RFC 9110 5.3).
function M.table(list)
  local by_lower = {}
  local t = setmetatable({}, {
    __index = function(self, key)
      if type(key) ~= "string" then return nil end
      local canonical = by_lower[key:lower()]
      return canonical and rawget(self, canonical)
    end,
  })
  for _, pair in ipairs(list) do
    local lower = pair[1]:lower()
    local canonical = by_lower[lower]
    if canonical then
      rawset(t, canonical, rawget(t, canonical) .. ", " .. pair[2])
    else
      canonical = M.canonical(lower)
      by_lower[lower] = canonical
      rawset(t, canonical, pair[2])
    end
  end
  return t
end

--- The value of header `name` (any case) in a `{ {name, value}, ... }` list.
function M.get(list, name)
  name = name:lower()
  for _, pair in ipairs(list) do
    if pair[1]:lower() == name then return pair[2] end
  end
  return nil
end

-- One UTF-8 sequence (or stray byte) as JSON \u escapes.
local function escape_code_point(seq)
  local b1, n = seq:byte(1), #seq
  local cp
  if n == 2 and b1 >= 0xC2 and b1 <= 0xDF then
    cp = (b1 - 0xC0) * 64 + (seq:byte(2) - 0x80)
  elseif n == 3 and b1 >= 0xE0 and b1 <= 0xEF then
    cp = (b1 - 0xE0) * 4096 + (seq:byte(2) - 0x80) * 64 + (seq:byte(3) - 0x80)
    if cp < 0x800 or (cp >= 0xD800 and cp <= 0xDFFF) then cp = nil end
  elseif n == 4 and b1 >= 0xF0 and b1 <= 0xF4 then
    cp = (b1 - 0xF0) * 262144 + (seq:byte(2) - 0x80) * 4096
         + (seq:byte(3) - 0x80) * 64 + (seq:byte(4) - 0x80)
    if cp < 0x10000 or cp > 0x10FFFF then cp = nil end
  end
  if not cp then
    -- not UTF-8: one replacement character per byte
    return ("\\ufffd"):rep(n)
  end
  if cp < 0x10000 then return ("\\u%04x"):format(cp) end
  cp = cp - 0x10000
  return ("\\u%04x\\u%04x"):format(0xD800 + math.floor(cp / 1024), 0xDC00 + cp % 1024)
end

--- `s` as a JSON string literal using only printable ASCII, so the same
-- text is valid both as a body and as an HTTP header value (X-msg): the
-- shared JSON encoder's string, with DEL and what is not ASCII escaped too.
function M.json_string(s)
  s = json.encode(s):gsub("\127", "\\u007f")
  return (s:gsub("[\128-\255][\128-\191]*", escape_code_point))
end

--- evlua's error document: {"error_message": msg}; {} without a msg (an
-- `init` that returned false alone), as evlua's JSON encoder writes it.
function M.error_json(msg)
  if msg == nil then return "{}" end
  return '{"error_message":' .. M.json_string(tostring(msg)) .. "}"
end

local function url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- "a=1&b=x%20y" -> {a = "1", b = "x y"}; a name without "=" maps to "".
function M.parse_query(query)
  local params = {}
  for part in (query or ""):gmatch("[^&]+") do
    local name, value = part:match("^([^=]*)=?(.*)$")
    params[url_decode(name)] = url_decode(value)
  end
  return params
end

return M
