--- turbo_ws.httputil -- the parts of Turbo.lua's turbo.httputil that
-- WebSocket programs meet.
--
-- Turbo has two header classes, and programs see both:
--   * HTTPHeaders -- headers built in Lua. A WebSocketClient's
--     `modify_headers(self, headers)` callback receives one. `get` is
--     case-SENSITIVE unless its second argument is true.
--   * HTTPParser  -- headers that arrived from the network: a server's
--     `self.request.headers` and a client's `on_headers(self, headers)`.
--     `get` is case-INSENSITIVE unless its second argument is false, and it
--     has the request/status line accessors (get_url, get_method, ...).
-- Here HTTPParser is a subclass of HTTPHeaders (so it can also be edited).
--
-- Both keep their fields in `self._fields`, an ordered array of
-- {name, value} -- the name Turbo uses, since some programs iterate it. The
-- Rust core hands headers to Lua in that same shape, so either class can be
-- built straight from such an array:
--   HTTPHeaders({{"Host", "example.com"}, {"X-A", "1"}})
--   HTTPParser({{"Upgrade", "websocket"}, method = "GET", url = "/ws?a=1",
--               version = "HTTP/1.1"})
--   HTTPParser({{"Upgrade", "websocket"}, status_code = 101,
--               version = "HTTP/1.1"})
-- `headers:to_list()` gives the fields back in that shape.
--
-- A header looked up by `get` yields a string when it occurs once, a table
-- of strings when it occurs several times, nil when absent; the number of
-- occurrences is the second result.

local class = require "turbo_ws.class"
local split_url = require("turbo_ws.core").split_url

local type, tostring, tonumber, error, ipairs =
      type, tostring, tonumber, error, ipairs
local sfind, sformat, slower, ssub, sgsub, smatch, schar =
      string.find, string.format, string.lower, string.sub, string.gsub,
      string.match, string.char
local concat, tremove = table.concat, table.remove

local httputil = {}

--- URL field identifiers for HTTPParser:get_url_field (same values as
-- Turbo / http-parser).
httputil.UF = {
    SCHEMA = 0, HOST = 1, PORT = 2, PATH = 3, QUERY = 4, FRAGMENT = 5,
    USERINFO = 6,
}

--- Header kinds for HTTPParser(hdr_str, hdr_t).
httputil.hdr_t = { HTTP_REQUEST = 0, HTTP_RESPONSE = 1, HTTP_BOTH = 2 }

--- Status code -> reason phrase. set_status_code only accepts these.
-- (Turbo keeps this in turbo.http_response_codes; phrases as Turbo has them
-- where it has them, IANA's otherwise.)
httputil.status_codes = {
    [100] = "Continue", [101] = "Switching Protocols", [102] = "Processing",
    [200] = "OK", [201] = "Created", [202] = "Accepted",
    [203] = "Non-Authoritative Information", [204] = "No Content",
    [205] = "Reset Content", [206] = "Partial Content",
    [207] = "Multi-Status", [208] = "Already Reported", [226] = "IM Used",
    [300] = "Multiple Choices", [301] = "Moved Permanently", [302] = "Found",
    [303] = "See Other", [304] = "Not Modified", [305] = "Use Proxy",
    [306] = "Unused", [307] = "Temporary Redirect",
    [308] = "Permanent Redirect",
    [400] = "Bad Request", [401] = "Unauthorized",
    [402] = "Payment Required", [403] = "Forbidden", [404] = "Not Found",
    [405] = "Method Not Allowed", [406] = "Not Acceptable",
    [407] = "Proxy Authentication Required", [408] = "Request Timeout",
    [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
    [412] = "Precondition Failed", [413] = "Request Entity Too Large",
    [414] = "Request-URI Too Long", [415] = "Unsupported Media Type",
    [416] = "Requested Range Not Satisfiable",
    [417] = "Expectation Failed", [418] = "I'm a teapot",
    [421] = "Misdirected Request", [422] = "Unprocessable Entity",
    [423] = "Locked", [424] = "Failed Dependency", [425] = "Too Early",
    [426] = "Upgrade Required", [428] = "Precondition Required",
    [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
    [451] = "Unavailable For Legal Reasons",
    [500] = "Internal Server Error", [501] = "Not Implemented",
    [502] = "Bad Gateway", [503] = "Service Unavailable",
    [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
    [506] = "Variant Also Negotiates", [507] = "Insufficient Storage",
    [508] = "Loop Detected", [511] = "Network Authentication Required",
}
local status_codes = httputil.status_codes

--------------------------------------------------------------------------
-- Small helpers

local function check_string(value, what)
    if type(value) ~= "string" then
        error(sformat("%s not a string.", what), 3)
    end
end

-- Header names and values end up on the wire: refuse what would split or
-- cut a header line (Turbo refused "\r\n"; a lone CR or LF is just as
-- dangerous, and a NUL ends the line for many peers). Other control
-- bytes (e.g. 0x08) are sent as given, as Turbo did.
local function check_field(key, value)
    if type(key) ~= "string" then
        error("Key parameter must be a string.", 3)
    end
    if sfind(key, "[\r\n%z]") then
        error("Key contains <CR>, <LF> or <NUL>, not allowed.", 3)
    end
    local t = type(value)
    if t == "string" then
        if sfind(value, "[\r\n%z]") then
            error("String value contain <CR><LF> or <NUL>, not allowed.", 3)
        end
    elseif t ~= "number" then
        error("Value parameter must be a string or number.", 3)
    end
end

-- Does field name `name` match `key`? `lkey` is key:lower() when matching
-- case-insensitively, nil otherwise.
local function name_matches(name, key, lkey)
    if lkey then return slower(name) == lkey end
    return name == key
end

-- Current time as an HTTP date (RFC 7231 IMF-fixdate).
local function http_date()
    return os.date("!%a, %d %b %Y %H:%M:%S GMT")
end

-- Adds the `count`th value `v` of a header to `value`, the header's value
-- as `get` gives it: a string, then a table of strings from the second on.
function httputil._gather(value, count, v)
    if count == 1 then return v end
    if count == 2 then return { value, v } end
    value[count] = v
    return value
end

--------------------------------------------------------------------------
-- HTTPHeaders

httputil.HTTPHeaders = class("HTTPHeaders")
local HTTPHeaders = httputil.HTTPHeaders

--- Create headers, optionally from an array of {name, value} pairs.
function HTTPHeaders:initialize(fields)
    self._fields = {}
    if type(fields) == "table" then
        for _, pair in ipairs(fields) do
            self:add(pair[1], pair[2])
        end
    end
end

--- Value(s) of header `key`: a string, a table of strings when the header
-- occurs more than once, or nil; plus the number of occurrences.
-- Matching is case-sensitive unless `caseinsensitive` is true.
function HTTPHeaders:get(key, caseinsensitive)
    check_string(key, "Key parameter")
    local lkey = caseinsensitive == true and slower(key) or nil
    local value, count = nil, 0
    local fields = self._fields
    for i = 1, #fields do
        local field = fields[i]
        if name_matches(field[1], key, lkey) then
            count = count + 1
            value = httputil._gather(value, count, field[2])
        end
    end
    return value, count
end

--- Append a header; a name may occur several times (e.g. Set-Cookie).
-- `value` must be a string or a number.
function HTTPHeaders:add(key, value)
    check_field(key, value)
    local fields = self._fields
    fields[#fields + 1] = { key, value }
end

--- Replace every occurrence of `key` (matched case-insensitively unless
-- `caseinsensitive` is false) with a single `key: value`.
function HTTPHeaders:set(key, value, caseinsensitive)
    check_field(key, value)
    self:remove(key, caseinsensitive)
    self:add(key, value)
end

--- Remove every occurrence of `key`; matched case-insensitively unless
-- `caseinsensitive` is false.
function HTTPHeaders:remove(key, caseinsensitive)
    if type(key) ~= "string" then
        error("Key parameter must be a string.", 2)
    end
    local lkey = caseinsensitive ~= false and slower(key) or nil
    local fields = self._fields
    -- Walk backwards so removal keeps the remaining order and indices.
    for i = #fields, 1, -1 do
        if name_matches(fields[i][1], key, lkey) then
            tremove(fields, i)
        end
    end
end

--- Copy of the fields as an array of {name, value-as-string} pairs.
function HTTPHeaders:to_list()
    local list = {}
    for i, field in ipairs(self._fields) do
        list[i] = { field[1], tostring(field[2]) }
    end
    return list
end

function HTTPHeaders:set_uri(uri)
    check_string(uri, "argument #1")
    self.uri = uri
end

function HTTPHeaders:get_uri() return self.uri end

-- Turbo's HTTPHeaders only spells it "uri"; HTTPParser spells it "url".
-- Accept both everywhere.
HTTPHeaders.get_url = HTTPHeaders.get_uri
HTTPHeaders.set_url = HTTPHeaders.set_uri

function HTTPHeaders:set_method(method)
    check_string(method, "argument #1")
    self.method = method
end

function HTTPHeaders:get_method() return self.method end

--- Set the HTTP version string, e.g. "HTTP/1.1".
function HTTPHeaders:set_version(version)
    check_string(version, "argument #1")
    self.version = version
end

function HTTPHeaders:get_version() return self.version end

--- Set the status code; it must be a known HTTP status code.
function HTTPHeaders:set_status_code(code)
    if type(code) ~= "number" then
        error("argument #1 not a number.", 2)
    end
    if not status_codes[code] then
        error(sformat("Invalid HTTP status code given: %d", code), 2)
    end
    self.status_code = code
end

--- Status code and its reason phrase (nil, nil when unset).
function HTTPHeaders:get_status_code()
    return self.status_code, status_codes[self.status_code]
end

-- "Name: value\r\n" for every field, in order.
local function field_lines(fields)
    local buf, n = {}, 0
    for i = 1, #fields do
        n = n + 1
        buf[n] = fields[i][1] .. ": " .. tostring(fields[i][2]) .. "\r\n"
    end
    return concat(buf, "", 1, n)
end

--- Request line + fields + the blank line that ends the header block.
function HTTPHeaders:stringify_as_request()
    return sformat("%s %s %s\r\n%s\r\n",
        tostring(self.method), tostring(self.uri), tostring(self.version),
        field_lines(self._fields))
end

--- Status line + fields, WITHOUT the final blank line (as in Turbo).
-- Adds a Date field first if there is none.
function HTTPHeaders:stringify_as_response()
    if type(self.status_code) ~= "number" then
        error("stringify_as_response: no status code set.", 2)
    end
    if not self:get("Date") then
        self:add("Date", http_date())
    end
    return sformat("%s %d %s\r\n%s",
        tostring(self.version), self.status_code,
        status_codes[self.status_code] or "", field_lines(self._fields))
end

function HTTPHeaders:__tostring()
    return self:stringify_as_response()
end

--------------------------------------------------------------------------
-- URL parsing: what http-parser's http_parser_parse_url gave Turbo, from
-- the parts turbo_ws.core.split_url gives. A request target ("/path?query"
-- or "*"), or an absolute URL with a host; as http-parser, empty parts are
-- left out and a colon without a port is refused.

--- Split `url` into a table indexed by httputil.UF values; nil when the
-- URL cannot be parsed.
function httputil.parse_url_fields(url)
    if type(url) ~= "string" then return nil end
    local parts = split_url(url)
    if not parts then return nil end
    local UF, fields = httputil.UF, {}
    if parts.scheme then
        local host, port = parts.host, parts.port
        if not host or host == "" or port == "" then return nil end
        fields[UF.SCHEMA], fields[UF.USERINFO] = parts.scheme, parts.userinfo
        fields[UF.HOST], fields[UF.PORT] = host, port
    elseif ssub(parts.path, 1, 1) ~= "/" and url ~= "*" then
        return nil
    end
    if parts.path ~= "" then fields[UF.PATH] = parts.path end
    if parts.query ~= "" then fields[UF.QUERY] = parts.query end
    if parts.fragment ~= "" then fields[UF.FRAGMENT] = parts.fragment end
    return fields
end

--------------------------------------------------------------------------
-- Query / form arguments, parsed the way Turbo does: only "k=v" pairs
-- count ("k=" gives an empty string, as in Turbo 2.1.5), values (not keys)
-- are '+'- and %XX-decoded, at most 256 pairs, a repeated key turns into a
-- table of values.

local MAX_ARGUMENTS = 256

local function hex_to_char(hex) return schar(tonumber(hex, 16)) end

-- The pair in one '&'-separated field as Turbo's gmatch("([^&=]+)=([^&]*)")
-- reads it: the first '=' after a run of other bytes ends the name (a
-- leading run of '=' is skipped), the rest is the value. Found field by
-- field, in linear time: that gmatch retried from every byte of a long run
-- without '=' (a JSON body sent as a form), seconds of blocked loop per
-- 20 KB.
local function field_pair(field)
    local last_of_name = sfind(field, "[^=]=")
    if not last_of_name then return nil end
    local lead = #smatch(field, "^=*")
    return ssub(field, lead + 1, last_of_name), ssub(field, last_of_name + 2)
end

local function parse_arguments(data)
    local arguments = {}
    if not data then return arguments end
    local count, start, n = 0, 1, #data
    while start <= n + 1 and count < MAX_ARGUMENTS do
        local amp = sfind(data, "&", start, true) or n + 1
        local k, v = field_pair(ssub(data, start, amp - 1))
        start = amp + 1
        if k then
            count = count + 1
            v = sgsub(sgsub(v, "%+", " "), "%%(%x%x)", hex_to_char)
            local existing = arguments[k]
            if existing == nil then
                arguments[k] = v
            elseif type(existing) == "string" then
                arguments[k] = { existing, v }
            else
                existing[#existing + 1] = v
            end
        end
    end
    return arguments
end

--- Parse application/x-www-form-urlencoded data into a table.
function httputil.parse_post_arguments(data)
    if type(data) ~= "string" then
        error("data argument not a string.", 2)
    end
    return parse_arguments(data)
end

--------------------------------------------------------------------------
-- HTTPParser: headers received from the network.

httputil.HTTPParser = class("HTTPParser", HTTPHeaders)
local HTTPParser = httputil.HTTPParser

local function normalise_version(version)
    if version == nil then return nil end
    version = tostring(version)
    if not sfind(version, "^HTTP/") then version = "HTTP/" .. version end
    return version
end

--- HTTPParser(hdr_str, hdr_t) parses a raw header block like Turbo;
-- HTTPParser(tbl) takes an array of {name, value} pairs with optional
-- `method`, `url`, `version`, `status_code` (response) fields, and
-- `names_lowered` when the names are the core's (lower case).
function HTTPParser:initialize(src, hdr_t)
    HTTPHeaders.initialize(self)
    self._arguments_parsed = false
    if type(src) == "string" and hdr_t then
        if hdr_t == httputil.hdr_t.HTTP_REQUEST then
            self:parse_request_header(src)
        elseif hdr_t == httputil.hdr_t.HTTP_RESPONSE then
            self:parse_response_header(src)
        end
    elseif type(src) == "table" then
        self:_fill(src)
    end
end

function HTTPParser:_fill(src)
    for _, pair in ipairs(src) do
        self:add(pair[1], pair[2])
    end
    self.version = normalise_version(src.version)
    -- Fields read off the network have their names lower-cased; marked,
    -- as a program may add (and remove) fields of its own spelling later.
    if src.names_lowered then
        self._lowered = true
        for _, field in ipairs(self._fields) do field.lowered = true end
    end
    if src.status_code ~= nil then
        self.hdr_t = httputil.hdr_t.HTTP_RESPONSE
        self.status_code = tonumber(src.status_code)
    else
        self.hdr_t = httputil.hdr_t.HTTP_REQUEST
        self.method = src.method
        self.url = src.url or src.uri
    end
    self._parsed = true
end

--- Like HTTPHeaders:get, but case-insensitive unless `caseinsensitive`
-- is false (Turbo's HTTPParser default).
function HTTPParser:get(key, caseinsensitive)
    if caseinsensitive ~= false or not self._lowered then
        return HTTPHeaders.get(self, key, caseinsensitive ~= false)
    end
    -- Names read off the network arrive lower-cased (the spelling the peer
    -- sent is not kept): an exact-case lookup of those is a lower-case
    -- one; fields the program added keep the exact comparison.
    check_string(key, "Key parameter")
    local lkey = slower(key)
    local value, count = nil, 0
    local fields = self._fields
    for i = 1, #fields do
        local field = fields[i]
        if field[1] == (field.lowered and lkey or key) then
            count = count + 1
            value = httputil._gather(value, count, field[2])
        end
    end
    return value, count
end

--- The request target, e.g. "/ws?room=1".
function HTTPParser:get_url()
    if self.url then return self.url end
    if not self._parsed then
        error("No URL or header has been parsed. Can not return URL.", 2)
    end
    error("No URL available for request headers.", 2)
end
HTTPParser.get_uri = HTTPParser.get_url

--- Replace the request target (drops any cached URL parts / arguments).
function HTTPParser:set_url(url)
    check_string(url, "argument #1")
    self.url = url
    self._url_fields = nil
    self._arguments_parsed = false
end
HTTPParser.set_uri = HTTPParser.set_url

function HTTPParser:get_method()
    if not self._parsed then
        error("No header has been parsed. Can not return method.", 2)
    end
    return self.method
end

--- Version as "HTTP/x.y".
function HTTPParser:get_version()
    return self.version
end

--- Status code and reason phrase of a parsed response.
function HTTPParser:get_status_code()
    if not self._parsed then
        error("No header has been parsed. Can not return status code.", 2)
    elseif self.hdr_t ~= httputil.hdr_t.HTTP_RESPONSE then
        error("Parsed header not a HTTP response header.", 2)
    end
    return self.status_code, self.reason or status_codes[self.status_code]
end

--- Parse a standalone URL; read its parts with get_url_field.
function HTTPParser:parse_url(url)
    if type(url) ~= "string" then
        error("URL parameter is not a string", 2)
    end
    local fields = httputil.parse_url_fields(url)
    if not fields then error("Could not parse URL", 2) end
    self._url_fields = fields
    if not self.url then self.url = url end
end

--- One part of the URL (httputil.UF.*) as a string, nil when absent.
function HTTPParser:get_url_field(UF_prop)
    if not self._url_fields then
        self:parse_url(self:get_url())
    end
    return self._url_fields[UF_prop]
end

--- All query arguments: name -> string, or table of strings if repeated.
function HTTPParser:get_arguments()
    if not self._arguments_parsed then
        local query = self.url and self:get_url_field(httputil.UF.QUERY)
        self._arguments = parse_arguments(query)
        self._arguments_parsed = true
    end
    return self._arguments
end

--- Values of query argument `name` as a table (even for one value), or nil.
function HTTPParser:get_argument(name)
    local value = self:get_arguments()[name]
    if type(value) == "string" then return { value } end
    return value
end

-- Split a raw header block into its first line and {name, value} fields.
-- Stops at the blank line ending the block; folded continuation lines are
-- joined to the previous value with a space.
-- Without leading and trailing spaces and tabs, in linear time (a lazy
-- capture before "[ \t]*$" retried the whole blank run at every byte of
-- it: seconds for a peer's header value padded with blanks).
local function trim_blanks(s)
    local first = sfind(s, "[^ \t]")
    if not first then return "" end
    local _, last = sfind(s, ".*[^ \t]", first)
    return ssub(s, first, last)
end

local function split_header_block(raw)
    local lines, n = {}, 0
    for line in (raw .. "\n"):gmatch("([^\n]*)\n") do
        line = sgsub(line, "\r$", "")
        if line == "" then
            if n > 0 then break end
        else
            n = n + 1; lines[n] = line
        end
    end
    if n == 0 then return nil, "empty header" end
    local fields, f = {}, 0
    for i = 2, n do
        local line = lines[i]
        if sfind(line, "^[ \t]") and f > 0 then
            fields[f][2] = fields[f][2] .. " " .. trim_blanks(line)
        else
            local name, value = smatch(line, "^([^%s:]+):(.*)$")
            if not name then return nil, "malformed header line: " .. line end
            f = f + 1; fields[f] = { name, trim_blanks(value) }
        end
    end
    return lines[1], fields
end

local function parse_failure(msg)
    error("could not parse HTTP header. " .. msg, 3)
end

--- Parse a raw request header block ("GET /x HTTP/1.1\r\nHost: ...").
function HTTPParser:parse_request_header(raw)
    check_string(raw, "argument #1")
    local first, fields = split_header_block(raw)
    if not first then parse_failure(fields) end
    local method, url, version = smatch(first, "^(%u+) (%S+) (HTTP/%d+%.%d+)$")
    if not method then parse_failure("bad request line: " .. first) end
    self:_fill({ method = method, url = url, version = version })
    for _, field in ipairs(fields) do self:add(field[1], field[2]) end
end

--- Parse a raw response header block ("HTTP/1.1 101 Switching ...").
function HTTPParser:parse_response_header(raw)
    check_string(raw, "argument #1")
    local first, fields = split_header_block(raw)
    if not first then parse_failure(fields) end
    local version, code, reason = smatch(first, "^(HTTP/%d+%.%d+) (%d%d%d) ?(.*)$")
    if not version then parse_failure("bad status line: " .. first) end
    self:_fill({ version = version, status_code = tonumber(code) })
    self.reason = reason ~= "" and reason or nil
    for _, field in ipairs(fields) do self:add(field[1], field[2]) end
end

return httputil
