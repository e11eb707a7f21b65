--- turbo_ws.json -- JSON for every face: the encoder and decoder behind
-- the Turbo face's turbo_ws.escape.json_encode/json_decode (the same
-- functions), and what a pub/sub hub sends a table as. It requires
-- nothing, so loading it loads no face.
--
-- JSON follows what Turbo 2.1.5's bundled JSON.lua (J. Friedl, 20170927.26)
-- does, so that programs see the same strings and the same Lua values:
--   * a table with only positive numeric keys is an array, filled with null
--     up to its largest key; an empty table is `[]`; any string key, or a
--     numeric key <= 0 or infinite, makes an object: its string keys sorted, then
--     its numeric keys as strings, sorted by number ("1" and 1 both there
--     is an error);
--   * only `"`, `\` and control characters are escaped in strings (with
--     \n \r \t \b \f short forms, otherwise \u00xx); UTF-8 passes through;
--   * NaN encodes as null, +/-inf as 1e+9999 / -1e+9999;
--   * decoding a blank string gives nil, JSON null gives nil, text after
--     the first value (but blanks) is an error, unknown backslash escapes
--     keep the escaped character, lone UTF-16 surrogates become "?".
-- Deliberate differences (more correct, never fewer accepted inputs):
--   * numbers keep full precision (Turbo used tostring, i.e. 14 digits);
--   * `null` inside an array keeps its slot (Turbo shifted later elements
--     down, losing their positions);
--   * error messages quote at most 80 characters of the input;
--   * a boolean key is an error (Turbo wrote it as a string key with the
--     value null).

local type, tostring, tonumber, pairs, error =
      type, tostring, tonumber, pairs, error
local sbyte, schar, sfind, sformat, ssub, sgsub =
      string.byte, string.char, string.find, string.format, string.sub,
      string.gsub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge
local math_type = math.type  -- nil before Lua 5.3

local json = {}

--------------------------------------------------------------------------
-- JSON encoding

-- Escape sequence for every byte JSON requires (or Turbo chose) to escape.
local JSON_ESCAPES = {
    ['"'] = '\\"', ["\\"] = "\\\\",
    ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
    ["\t"] = "\\t",
}
for byte = 0, 31 do
    local c = schar(byte)
    if not JSON_ESCAPES[c] then
        JSON_ESCAPES[c] = sformat("\\u%04x", byte)
    end
end
local JSON_ESCAPE_CLASS = '[%z\1-\31"\\]'

local function encode_error(message)
    error(message, 0)
end

-- Escape the body of a JSON string (without the quotes).
local function escape_string(s)
    -- Most strings need no escaping; skip the gsub allocation for them.
    if sfind(s, JSON_ESCAPE_CLASS) then
        return (sgsub(s, JSON_ESCAPE_CLASS, JSON_ESCAPES))
    end
    return s
end

-- Object keys repeat a lot (every element of an array of records has the
-- same ones), so their quoted form `"key":` is memoised. The cache is
-- dropped when it grows large so arbitrary keys cannot pin memory.
local key_cache, key_cache_size = {}, 0

local function quoted_key(key)
    local quoted = key_cache[key]
    if quoted then return quoted end
    if key_cache_size >= 2048 then key_cache, key_cache_size = {}, 0 end
    quoted = '"' .. escape_string(key) .. '":'
    key_cache[key] = quoted
    key_cache_size = key_cache_size + 1
    return quoted
end

-- Shortest text that reads back as exactly the same number.
local function number_text(n)
    if n ~= n then return "null" end
    if n >= huge then return "1e+9999" end
    if n <= -huge then return "-1e+9999" end
    if math_type and math_type(n) == "integer" then
        return sformat("%d", n)  -- Lua 5.3+: exact, whatever its size
    end
    if n == floor(n) and n > -1e15 and n < 1e15 then
        return sformat("%d", n)  -- integral double: no exponent, no ".0"
    end
    -- tostring gives 14 significant digits (as Turbo wrote); fall back to
    -- 17 when that does not read back as the same double.
    local text = tostring(n)
    if tonumber(text) ~= n then text = sformat("%.17g", n) end
    return text
end

-- Decide how a table is written. Returns "array", length  or  "object",
-- keys, map (map: where to read the keys from when some were numbers).
-- Mirrors Turbo: positive numeric keys alone make an array as long as the
-- largest key; a string key or a number <= 0 or infinite makes an object.
local function classify(t)
    local keys, nkeys = nil, 0
    local max_index, numeric, odd_index
    for k in pairs(t) do
        local kt = type(k)
        if kt == "string" then
            nkeys = nkeys + 1
            if not keys then keys = {} end
            keys[nkeys] = k
        elseif kt == "number" then
            numeric = true
            if k <= 0 or k >= huge then odd_index = true
            elseif not max_index or k > max_index then max_index = k end
        else
            encode_error("can't encode table with a key of type " .. kt)
        end
    end
    if keys or odd_index then
        -- Turbo 2.1.5's JSON.lua (20170927.26): an object; numeric keys
        -- become strings, sorted, after the sorted string keys.
        keys = keys or {}
        sort(keys)
        local map
        if numeric then
            local nums = {}
            for k in pairs(t) do if type(k) == "number" then nums[#nums + 1] = k end end
            sort(nums)
            map = {}
            for _, k in ipairs(keys) do map[k] = t[k] end
            for _, k in ipairs(nums) do
                local sk = tostring(k)
                if map[sk] ~= nil or t[sk] ~= nil then
                    encode_error("conflict converting table with mixed-type keys into a JSON object: key "
                        .. sk .. " exists both as a string and a number.")
                end
                keys[#keys + 1] = sk
                map[sk] = t[k]
            end
        end
        return "object", keys, map
    end
    if not max_index then return "array", 0 end
    -- (Whole part by arithmetic: a full busted run under Debian's LuaJIT
    -- 2.1 beta3 twice got a non-number 'for' limit from floor() here,
    -- not reproduced alone.)
    return "array", max_index - max_index % 1
end

local encode_into  -- forward: encode_into(value, buf, n, parents) -> n

local function encode_table(t, buf, n, parents)
    if parents[t] then
        encode_error("table " .. tostring(t) .. " is a child of itself")
    end
    parents[t] = true
    local kind, info, map = classify(t)
    if kind == "object" then
        local src = map or t
        n = n + 1; buf[n] = "{"
        for i = 1, #info do
            local key = info[i]
            if i > 1 then n = n + 1; buf[n] = "," end
            n = n + 1; buf[n] = quoted_key(key)
            n = encode_into(src[key], buf, n, parents)
        end
        n = n + 1; buf[n] = "}"
    else
        n = n + 1; buf[n] = "["
        for i = 1, info do
            if i > 1 then n = n + 1; buf[n] = "," end
            n = encode_into(t[i], buf, n, parents)
        end
        n = n + 1; buf[n] = "]"
    end
    -- Only cycles are errors; the same table may appear twice side by side.
    parents[t] = nil
    return n
end

encode_into = function(value, buf, n, parents)
    local vt = type(value)
    if vt == "string" then
        buf[n + 1] = '"'
        buf[n + 2] = escape_string(value)
        buf[n + 3] = '"'
        n = n + 3
    elseif vt == "number" then
        n = n + 1; buf[n] = number_text(value)
    elseif vt == "table" then
        n = encode_table(value, buf, n, parents)
    elseif vt == "boolean" then
        n = n + 1; buf[n] = value and "true" or "false"
    elseif value == nil then
        n = n + 1; buf[n] = "null"
    else
        encode_error("can't convert " .. vt .. " to JSON")
    end
    return n
end

--- JSON stringify a Lua value (table, string, number, boolean or nil).
-- Raises an error for values JSON cannot represent.
function json.encode(t)
    local buf = {}
    local n = encode_into(t, buf, 0, {})
    return concat(buf, "", 1, n)
end

--------------------------------------------------------------------------
-- JSON decoding

local function excerpt(text)
    if #text > 80 then return ssub(text, 1, 77) .. "..." end
    return text
end

local function decode_error(message, text, pos)
    if pos then
        error(sformat("%s at char %d of: %s", message, pos, excerpt(text)), 0)
    end
    error(sformat("%s: %s", message, excerpt(text)), 0)
end

-- UTF-8 bytes for a code point; surrogate halves cannot be encoded and
-- become "?" as in Turbo.
local function utf8_char(cp)
    if cp < 0x80 then
        return schar(cp)
    elseif cp < 0x800 then
        return schar(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
    elseif cp < 0x10000 then
        if cp >= 0xD800 and cp <= 0xDFFF then return "?" end
        return schar(0xE0 + floor(cp / 0x1000),
                     0x80 + floor(cp / 0x40) % 0x40,
                     0x80 + cp % 0x40)
    end
    return schar(0xF0 + floor(cp / 0x40000),
                 0x80 + floor(cp / 0x1000) % 0x40,
                 0x80 + floor(cp / 0x40) % 0x40,
                 0x80 + cp % 0x40)
end

local SIMPLE_UNESCAPES = {
    b = "\b", f = "\f", n = "\n", r = "\r", t = "\t",
}

-- Byte values used by the parser.
local B_QUOTE = sbyte('"')
local B_LBRACE, B_RBRACE = sbyte("{"), sbyte("}")
local B_LBRACKET, B_RBRACKET = sbyte("["), sbyte("]")
local B_COMMA, B_COLON, B_MINUS = sbyte(","), sbyte(":"), sbyte("-")
local B_0, B_9 = sbyte("0"), sbyte("9")
local B_DOT, B_PLUS = sbyte("."), sbyte("+")
local B_LOWER_E, B_UPPER_E = sbyte("e"), sbyte("E")

local WS_BYTES = { [32] = true, [10] = true, [13] = true, [9] = true }

local function skip_ws(text, i)
    -- Compact JSON has no whitespace: answer from one byte look-up first.
    if not WS_BYTES[sbyte(text, i)] then return i end
    local _, e = sfind(text, "^[ \n\r\t]+", i)
    return e + 1
end

-- Decode the \u escape whose backslash is at `i`; returns text, next index.
local function decode_unicode(text, i)
    local hex = sfind(text, "^\\u%x%x%x%x", i) and ssub(text, i + 2, i + 5)
    if not hex then
        return "u", i + 2  -- "\u" without four hex digits: keep the letter
    end
    local cp = tonumber(hex, 16)
    i = i + 6
    if cp >= 0xD800 and cp <= 0xDBFF
            and sfind(text, "^\\u[dD][c-fC-F]%x%x", i) then
        local low = tonumber(ssub(text, i + 2, i + 5), 16)
        cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
        i = i + 6
    end
    return utf8_char(cp), i
end

-- Positions of the next '"' and the next '\' in the document being
-- decoded, at or after where they were last searched from (see
-- decode_string); reset by json_decode for every new document.
local next_quote, next_backslash = 0, 0

-- String starting at the opening quote at `start`; returns value, next index.
local function decode_string(text, start)
    if sbyte(text, start) ~= B_QUOTE then
        decode_error("expected string's opening quote", text, start)
    end
    local parts, n = nil, 0
    local i = start + 1
    while true do
        -- Plain finds are much faster than a pattern class under LuaJIT.
        -- Both positions are remembered, so a string full of escapes does
        -- not rescan to its closing quote once per escape.
        if next_quote < i then
            next_quote = sfind(text, '"', i, true) or huge
        end
        if next_backslash < i then
            next_backslash = sfind(text, "\\", i, true) or huge
        end
        local j = next_quote < next_backslash and next_quote or next_backslash
        if j == huge then decode_error("unclosed string", text, start) end
        if sbyte(text, j) == B_QUOTE then
            if not parts then return ssub(text, i, j - 1), j + 1 end
            n = n + 1; parts[n] = ssub(text, i, j - 1)
            return concat(parts, "", 1, n), j + 1
        end
        -- Backslash: flush the plain run, then decode the escape.
        parts = parts or {}
        if j > i then n = n + 1; parts[n] = ssub(text, i, j - 1) end
        local c = ssub(text, j + 1, j + 1)
        if c == "" then decode_error("unclosed string", text, start) end
        local piece
        if c == "u" then
            piece, i = decode_unicode(text, j)
        else
            piece, i = SIMPLE_UNESCAPES[c] or c, j + 2
        end
        n = n + 1; parts[n] = piece
    end
end

-- Advance over a run of ASCII digits starting at i; returns the index after.
local function skip_digits(text, i)
    local c = sbyte(text, i)
    while c and c >= B_0 and c <= B_9 do
        i = i + 1
        c = sbyte(text, i)
    end
    return i
end

-- Number grammar as in Turbo: -?(0|[1-9]digits)(.digits)?([eE][+-]?digits)?
-- Scanned byte by byte because LuaJIT compiles string.byte but not
-- pattern matching.
local function decode_number(text, start)
    local i = start
    if sbyte(text, i) == B_MINUS then i = i + 1 end
    local c = sbyte(text, i)
    if c == B_0 then
        i = i + 1
    elseif c and c > B_0 and c <= B_9 then
        i = skip_digits(text, i + 1)
    else
        decode_error("expected number", text, start)
    end
    if sbyte(text, i) == B_DOT then
        local after = skip_digits(text, i + 1)
        if after > i + 1 then i = after end
    end
    c = sbyte(text, i)
    if c == B_LOWER_E or c == B_UPPER_E then
        local j = i + 1
        c = sbyte(text, j)
        if c == B_PLUS or c == B_MINUS then j = j + 1 end
        local after = skip_digits(text, j)
        if after > j then i = after end
    end
    local value = tonumber(ssub(text, start, i - 1))
    if not value then decode_error("bad number", text, start) end
    return value, i
end

local decode_value  -- forward: decode_value(text, i) -> value, next index

local function decode_array(text, start)
    local result, n = {}, 0
    local i = skip_ws(text, start + 1)
    if sbyte(text, i) == B_RBRACKET then return result, i + 1 end
    while true do
        local value
        value, i = decode_value(text, i)
        n = n + 1
        result[n] = value
        i = skip_ws(text, i)
        local c = sbyte(text, i)
        if c == B_RBRACKET then return result, i + 1 end
        if c == nil then decode_error("unclosed '['", text, start) end
        if c ~= B_COMMA then
            decode_error("expected comma or ']'", text, i)
        end
        i = skip_ws(text, i + 1)
    end
end

local function decode_object(text, start)
    local result = {}
    local i = skip_ws(text, start + 1)
    if sbyte(text, i) == B_RBRACE then return result, i + 1 end
    while true do
        if i > #text then decode_error("unclosed '{'", text, start) end
        local key, value
        key, i = decode_string(text, i)
        i = skip_ws(text, i)
        if sbyte(text, i) ~= B_COLON then
            decode_error("expected colon", text, i)
        end
        value, i = decode_value(text, skip_ws(text, i + 1))
        result[key] = value
        i = skip_ws(text, i)
        local c = sbyte(text, i)
        if c == B_RBRACE then return result, i + 1 end
        if c == nil then decode_error("unclosed '{'", text, start) end
        if c ~= B_COMMA then
            decode_error("expected comma or '}'", text, i)
        end
        i = skip_ws(text, i + 1)
    end
end

decode_value = function(text, i)
    i = skip_ws(text, i)
    local c = sbyte(text, i)
    if c == nil then
        decode_error("unexpected end of string", text)
    elseif c == B_QUOTE then
        return decode_string(text, i)
    elseif c == B_LBRACE then
        return decode_object(text, i)
    elseif c == B_LBRACKET then
        return decode_array(text, i)
    elseif c == B_MINUS or (c >= B_0 and c <= B_9) then
        return decode_number(text, i)
    elseif ssub(text, i, i + 3) == "true" then
        return true, i + 4
    elseif ssub(text, i, i + 4) == "false" then
        return false, i + 5
    elseif ssub(text, i, i + 3) == "null" then
        return nil, i + 4
    end
    decode_error("can't parse JSON", text, i)
end

--- Decode a JSON text into Lua values. Objects and arrays become tables,
-- null becomes nil. A blank string decodes to nil. Raises an error on
-- malformed input.
function json.decode(s)
    if s == nil then
        error("nil passed to JSON:decode()", 0)
    elseif type(s) ~= "string" then
        error("expected string argument to JSON:decode(), got " .. type(s), 0)
    end
    if not sfind(s, "%S") then return nil end
    if sfind(s, "^%s*<") then
        decode_error("html passed to JSON:decode()", s)
    end
    local b1, b2 = sbyte(s, 1, 2)
    if b1 == 0 or b2 == 0 then
        decode_error("JSON package groks only UTF-8, sorry", s)
    end
    next_quote, next_backslash = 0, 0
    local value, i = decode_value(s, 1)
    i = skip_ws(s, i)
    if i <= #s then decode_error("trailing garbage", s, i) end  -- as Turbo 2.1.5
    return value
end

return json
