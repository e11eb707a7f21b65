--- turbo_ws.toolkit -- the Lua helpers every face shares (Turbo,
-- coro-websocket, evlua), so that each face file keeps only the
-- translation to its API's shape: calling program code and reporting
-- errors nobody caught, the message queue a connection's reader takes
-- from, the host as it is written in a URL, and CLOSE frame payloads.
--
-- The protocol rules themselves are the core's (`core.split_url`,
-- `core.valid_close_code`, `core.websocket_key`). This module loads only
-- the standard library: the coro-websocket and evlua faces use it
-- without loading the Turbo face, and it defines no globals.
-- Internal: not part of any face's documented API.

local tostring, setmetatable, select, xpcall = tostring, setmetatable, select, xpcall
local unpack = rawget(table, "unpack") or unpack
local byte, char, sub, floor = string.byte, string.char, string.sub, math.floor
local traceback = debug.traceback
local co_status, co_resume = coroutine.status, coroutine.resume

local toolkit = {}

--- tostring(err) for an error a program raised, which may be an object
-- whose __tostring raises itself: reporting it must not fail too.
function toolkit.describe(err)
  local ok, text = pcall(tostring, err)
  if ok and type(text) == "string" then return text end
  return "(a " .. type(err) .. " error whose __tostring failed)"
end
local describe = toolkit.describe

--- Writes "<source>: <what>: <err>" on stderr, for an error nobody else
-- can be told of (the loop goes on). io.stderr is read at each call, so a
-- program or test that swaps it is honoured.
function toolkit.report(source, what, err)
  io.stderr:write(source, ": ", what, ": ", describe(err), "\n")
end

--- An xpcall handler that keeps the message and the traceback:
-- `{message = tostring(err), trace = traceback}`.
function toolkit.caught(err)
  local message = describe(err)
  return { message = message, trace = traceback(message, 2) }
end

-- Does xpcall pass extra arguments on to the function (LuaJIT, 5.2+)?
-- Then no closure is needed per call, which matters for on_message.
local XPCALL_ARGS = select(2, xpcall(function(a) return a end, function() end, true)) == true

--- xpcall(fn, handler, ...), also where xpcall passes no arguments (Lua 5.1).
-- Two versions chosen here, not one with a branch: LuaJIT does not compile
-- a function that makes a closure, and on_message runs through this.
if XPCALL_ARGS then
  toolkit.xpcall = xpcall
else
  function toolkit.xpcall(fn, handler, ...)
    local n, args = select("#", ...), { ... }
    return xpcall(function() return fn(unpack(args, 1, n)) end, handler)
  end
end

local function report_uncaught(source, co, err)
  toolkit.report(source, "uncaught error in a coroutine", traceback(co, describe(err)))
end

--- Resumes `co` with `...` if it is suspended (someone else may have
-- resumed it already). An error in it is the program's: reported under
-- `source` with the coroutine's traceback, so other connections go on.
function toolkit.resume(source, co, ...)
  if co_status(co) ~= "suspended" then return end
  local ok, err = co_resume(co, ...)
  if not ok then report_uncaught(source, co, err) end
end

--- The reason in an error a core function raised for misuse ("turbo_ws.f:
-- bad argument ..."), on one line, for a face's own error message.
function toolkit.core_reason(err)
  return (tostring(err):match("^[^\n]*"))
end

--- toolkit.core_reason without the core function's own name in front
-- ("turbo_ws.<name>: "): what a face puts after its function's name when
-- it raises a refusal of `turbo_ws.<name>` (a bad option, a port in use).
function toolkit.core_refusal(err, name)
  local reason = toolkit.core_reason(err)
  local prefix = "turbo_ws." .. name .. ": "
  if reason:sub(1, #prefix) == prefix then reason = reason:sub(#prefix + 1) end
  return reason
end

--- toolkit.resume with no values: a reader woken for a message. Without
-- `...` LuaJIT compiles the path into the resume (a vararg call there
-- aborts the trace, and every message then runs interpreted up to it).
function toolkit.wake(source, co)
  if co_status(co) ~= "suspended" then return end
  local ok, err = co_resume(co)
  if not ok then report_uncaught(source, co, err) end
end

--- The host as it is written in a URL: an IPv6 address in brackets.
function toolkit.url_host(host)
  if host:find(":", 1, true) and host:sub(1, 1) ~= "[" then return "[" .. host .. "]" end
  return host
end

--- The payload of a CLOSE frame for the code and reason a connection was
-- closed with: empty for 1005 (no status code was sent).
function toolkit.close_payload(code, reason)
  if code == 1005 then return "" end
  return char(floor(code / 256) % 256, code % 256) .. (reason or "")
end

--- The code and reason in a CLOSE frame's payload; nil when it has no code.
function toolkit.split_close_payload(payload)
  if #payload < 2 then return nil end
  return byte(payload, 1) * 256 + byte(payload, 2), sub(payload, 3)
end

---------------------------------------------------------------------------
-- A first-in first-out queue: what a connection received and its reader
-- has not taken yet. Given the core connection, it also holds back the
-- connection's reading while something waits in it (`hold_back`), as the
-- originals left a socket alone that nobody read from: the peer is held
-- back by TCP instead of piling messages up here. Reading resumes once the
-- queue is empty again.

local Queue = {}
Queue.__index = Queue

--- A new, empty queue; `conn` (optional) is the core connection it fills from.
function toolkit.queue(conn)
  return setmetatable({ first = 1, last = 0, conn = conn, paused = false }, Queue)
end

function Queue:push(item)
  local last = self.last + 1
  self.last = last
  self[last] = item
end

--- Pauses the connection's reading if an item still waits (call it after
-- offering the newest item to a waiting reader).
function Queue:hold_back()
  if self.conn and not self.paused and self.first <= self.last then
    self.paused = true
    self.conn:pause_reading()
  end
end

--- The oldest item, removed; nil when empty.
function Queue:pop()
  local first = self.first
  local item
  if first <= self.last then
    item = self[first]
    self[first] = nil
    first = first + 1
    self.first = first
  end
  if self.paused and first > self.last then
    self.paused = false
    self.conn:resume_reading()
  end
  return item
end

function Queue:is_empty() return self.first > self.last end

return toolkit
