-- The coroutine that runs callbacks is visible to them (coroutine.running).
-- A program that keeps it and resumes it itself must not be able to make
-- the binding's message call -- which turns a pointer and a length into a
-- string -- read memory it names: the call's mark is a value only the
-- binding holds. And the next message is still delivered afterwards.
local P = require "spec.support.peer"

local PROGRAM = [[
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local kept
local got = {}
local function spy(...) got[#got + 1] = select("#", ...) .. ":" .. tostring((...)) end

-- One echo exchange; the server's callback keeps its coroutine.
local function exchange(text)
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
    local conn = req:upgrade()
    conn:set_callbacks{ on_message = function(msg)
      kept = coroutine.running()
      conn:send("echo " .. msg)
    end }
  end)
  core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(client)
    client:set_callbacks{ on_message = function(m)
      print("answer: " .. m)
      client:close(); server:close()
    end }
    client:send(text)
  end)
  local guard = core.set_interval(5000, function() core.close() end, nil, false)
  turbo_ws.run()
  core.clear_interval(guard)
end

exchange("first")
-- Between runs the kept coroutine is idle: forge calls shaped as the
-- binding's (old marks: false, a light userdata) with a pointer and length.
for _, forged in ipairs({
  { false, spy, "x", 64, true },
  { core._send_entry or false, spy, "x", 2 ^ 30, true },
}) do
  local ok, err = coroutine.resume(kept, unpack(forged))
  print("forged resume: " .. tostring(ok) .. " " .. tostring(err))
end
print("spy calls: " .. table.concat(got, ","))
exchange("second")
]]

describe("the callback coroutine, resumed by the program", function()
  local status, out
  setup(function() status, out = P.run_luajit(PROGRAM) end)

  it("never reads memory a forged call names", function()
    assert.are.equal(0, status, out)
    -- spy is called as an ordinary function (with its arguments as given)
    -- or not at all, never with a string made from "x" and a length
    for calls in out:gmatch("spy calls: ([^\n]*)") do
      for one in calls:gmatch("[^,]+") do
        assert.is_nil(one:match("^%d+:x."), out)
      end
    end
  end)

  it("still delivers the next message", function()
    assert.truthy(out:find("answer: echo first", 1, true), out)
    assert.truthy(out:find("answer: echo second", 1, true), out)
  end)
end)
