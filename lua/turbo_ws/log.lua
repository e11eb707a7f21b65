--- turbo_ws.log -- Turbo.lua's turbo.log: levelled, timestamped, coloured
-- command-line logging.
--
-- Output format is Turbo's, byte for byte:
--   success  "\27[32m[S 2024/01/31 12:00:00] msg\27[0m\n"  stdout, green
--   notice   "[I 2024/01/31 12:00:00] msg\n"              stdout
--   warning  "\27[33m[W ...] msg\27[0m\n"                  stderr, yellow
--   error    "\27[31m[E ...] msg\27[0m\n"                  stderr, red
--   debug    "[D ...] msg\n"                               stdout
--   devel    "\27[36m[d ...] msg\27[0m\n"                  stdout, cyan
--   stacktrace "msg\n"                                     stderr
-- Timestamps are local time. A category is silenced by setting its entry in
-- `log.categories` to false (nil counts as enabled, as in Turbo); the table
-- may be edited or replaced at any time.
--
-- Differences from Turbo, on purpose: any message value is accepted
-- (tostring'd; Turbo raised on non-strings), every line is flushed at once
-- (so a supervisor reading a pipe sees it), long warnings/errors still go
-- to stderr (Turbo sent those over 4 KiB to stdout), disable_all() also
-- silences stacktrace, and enable_all() exists.

local type, tostring, pairs, ipairs, next = type, tostring, pairs, ipairs, next
local sformat, srep = string.format, string.rep
local concat, sort = table.concat, table.sort
local os_date = os.date

local log = {}

local CATEGORY_NAMES = {
    "success", "notice", "warning", "error", "debug", "development",
    "stacktrace",
}

--- Category switches. All enabled by default, like Turbo 2.x.
log.categories = {}
for _, name in ipairs(CATEGORY_NAMES) do log.categories[name] = true end

local RESET = "\27[0m"

-- Write one line and flush it. The stream is looked up on every call so a
-- program (or a test) that swaps io.stdout / io.stderr is honoured.
local function emit(to_stderr, line)
    local stream = to_stderr and io.stderr or io.stdout
    stream:write(line)
    stream:flush()
end

local function as_text(msg)
    if type(msg) == "string" then return msg end
    return tostring(msg)
end

-- Build a logging function for one level.
local function level(category, letter, colour, to_stderr)
    local prefix_format = "[" .. letter .. " %Y/%m/%d %H:%M:%S] "
    local suffix = colour and (RESET .. "\n") or "\n"
    colour = colour or ""
    return function(msg)
        local categories = log.categories
        if categories and categories[category] == false then return end
        emit(to_stderr, colour .. os_date(prefix_format) .. as_text(msg) .. suffix)
    end
end

--- Successful events. Green, stdout.
log.success = level("success", "S", "\27[32m", false)
--- Non-critical hints. Plain, stdout.
log.notice = level("notice", "I", nil, false)
--- Warnings. Yellow, stderr.
log.warning = level("warning", "W", "\27[33m", true)
--- Critical errors. Red, stderr.
log.error = level("error", "E", "\27[31m", true)
--- Debug messages. Plain, stdout.
log.debug = level("debug", "D", nil, false)
--- Development messages ("development" category). Cyan, stdout.
log.devel = level("development", "d", "\27[36m", false)

--- Write a stack trace (or any text) to stderr, unformatted.
function log.stacktrace(str)
    local categories = log.categories
    if categories and categories.stacktrace == false then return end
    emit(true, as_text(str) .. "\n")
end

local function set_all(enabled)
    local categories = log.categories
    if type(categories) ~= "table" then
        categories = {}
        log.categories = categories
    end
    for _, name in ipairs(CATEGORY_NAMES) do categories[name] = enabled end
end

--- Silence every category.
function log.disable_all() set_all(false) end

--- Enable every category.
function log.enable_all() set_all(true) end

--------------------------------------------------------------------------
-- Table pretty printer (log.stringify / log.dump).

local function scalar_text(value)
    local t = type(value)
    if t == "number" or t == "boolean" or t == "nil" then
        return tostring(value)
    end
    return sformat("%q", tostring(value))
end

-- Sort keys so output is stable: numbers first (numerically), then the
-- rest by their printed form.
local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    sort(keys, function(a, b)
        local ta, tb = type(a) == "number", type(b) == "number"
        if ta and tb then return a < b end
        if ta ~= tb then return ta end
        return tostring(a) < tostring(b)
    end)
    return keys
end

local function stringify_into(buf, value, path, field, indent, seen)
    if type(value) ~= "table" then
        buf[#buf + 1] = indent .. field .. " = " .. scalar_text(value) .. ";\n"
        return
    end
    if seen[value] then
        buf[#buf + 1] = indent .. field .. " = {}; -- " .. seen[value]
            .. " (self reference)\n"
        return
    end
    seen[value] = path
    if next(value) == nil then
        buf[#buf + 1] = indent .. field .. " = {};\n"
        return
    end
    buf[#buf + 1] = indent .. field .. " = {\n"
    for _, k in ipairs(sorted_keys(value)) do
        local key = "[" .. scalar_text(k) .. "]"
        stringify_into(buf, value[k], path .. key, key, indent .. "   ", seen)
    end
    buf[#buf + 1] = indent .. "};\n"
end

--- Readable dump of a Lua value. `name` labels it (default "__unnamed__"),
-- `indent` is a number of spaces or a prefix string.
function log.stringify(t, name, indent)
    name = name or "__unnamed__"
    if type(t) ~= "table" then
        return name .. " = " .. scalar_text(t)
    end
    if type(indent) == "number" then indent = srep(" ", indent) end
    local buf = {}
    stringify_into(buf, t, name, name, indent or "", {})
    return concat(buf)
end

--- Print log.stringify(stuff, description) to stdout.
function log.dump(stuff, description)
    emit(false, log.stringify(stuff, description) .. "\n")
end

return log
