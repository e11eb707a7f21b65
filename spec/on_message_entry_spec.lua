-- How a message reaches its on_message callback (src/binding/callback.rs,
-- the per-message path): whatever the callback does -- return, raise a
-- Lua error, raise through a Rust method, yield values -- is reported as
-- for every other callback, and the next message is delivered as usual.
-- Run in a child luajit so that its stderr (the error reports) is read.
local P = require "spec.support.peer"

-- A server whose on_message does what each message says, and a client of
-- it in the same program sending those messages; the server echoes
-- "after <what>" once each has been handled, the client prints those.
local PROGRAM = [[
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
core.on_yield(function(co, value)
  io.stderr:write("on_yield: ", tostring(value), "\n")
  core.add_callback(function() core.resume(co, "resumed") end)
end)
local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
  local conn = req:upgrade()
  local function handler(msg)
    if msg == "error" then
      local function deep() error("deliberate failure") end
      deep()
    elseif msg == "table" then
      error(setmetatable({}, { __tostring = function() return "a table error" end }))
    elseif msg == "method" then
      conn.close(42) -- a Rust method's error: self is not a connection
    elseif msg == "yield" then
      local got = coroutine.yield("yielded value")
      conn:send("after yield: " .. got)
      return
    end
    conn:send("after " .. msg)
  end
  conn:set_callbacks{ on_message = handler }
end)
local steps = { "plain", "error", "next1", "table", "next2", "method", "next3", "yield", "last" }
local answers = {}
core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(client)
  client:set_callbacks{ on_message = function(m)
    answers[#answers + 1] = m
    print("answer: " .. m)
    if m == "after last" then client:close(); server:close() end
  end }
  for _, s in ipairs(steps) do client:send(s) end
end)
local guard = core.set_interval(5000, function() core.close() end, nil, false)
turbo_ws.run()
core.clear_interval(guard)
print("answers " .. #answers)
]]

describe("on_message's entry", function()
  local status, out
  setup(function() status, out = P.run_luajit(PROGRAM) end)

  it("delivers every later message after a callback raised or yielded", function()
    assert.are.equal(0, status, out)
    for _, a in ipairs({ "after plain", "after next1", "after next2", "after next3", "after last" }) do
      assert.truthy(out:find("answer: " .. a, 1, true), out)
    end
    assert.truthy(out:find("answers 6", 1, true), out)
  end)

  it("reports a Lua error with its message and the callback's traceback", function()
    local report = out:match("uncaught error in on_message: [^\n]*deliberate failure.-\n[^\n]*\n[^\n]*\n[^\n]*\n")
    assert.truthy(report, out)
    assert.truthy(report:find("stack traceback:", 1, true), report)
    assert.truthy(report:find("in local 'deep'", 1, true), report)
  end)

  it("reports a non-string error through its __tostring, with a traceback", function()
    assert.truthy(out:find("uncaught error in on_message: a table error\nstack traceback:", 1, true), out)
  end)

  it("reports an error raised by a Rust method as that method's error", function()
    assert.truthy(out:find("uncaught error in on_message: turbo_ws connection:close: bad argument #1 'self' "
      .. "(connection expected, got number; call it with ':')", 1, true), out)
  end)

  it("hands a callback that yields values to on_yield, which may resume it", function()
    assert.truthy(out:find("on_yield: yielded value", 1, true), out)
    assert.truthy(out:find("answer: after yield: resumed", 1, true), out)
  end)
end)
