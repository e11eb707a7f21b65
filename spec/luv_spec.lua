-- turbo_ws and libuv (luv) in one process, whichever loop the program
-- starts: each case is a separate program (spec/support/luv/), since
-- attaching luv changes the process's loop for good.
local function have_luv()
  local p = io.popen("luajit -e 'require \"luv\"' 2>&1; echo $?")
  local out = p:read("*a")
  p:close()
  return out:match("(%d+)%s*$") == "0"
end

-- Runs a program (bounded in time); its output lines and whether it exited 0.
local function run(program, ...)
  local cmd = ("LUA_CPATH='./build/?.so;;' timeout 30 luajit spec/support/luv/%s %s 2>&1; echo \"exit $?\"")
    :format(program, table.concat({ ... }, " "))
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  local lines = {}
  for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
  return lines, out
end

local function has(lines, want)
  for _, l in ipairs(lines) do if l == want then return true end end
  return false
end

-- The number the first output line matching `pattern` captures; fails
-- when no line does.
local function number_in(lines, out, pattern)
  for _, l in ipairs(lines) do
    local n = tonumber(l:match(pattern))
    if n then return n end
  end
  error("no line matching '" .. pattern .. "' in:\n" .. out)
end

-- Fails unless every line of `wants` is in the program's output.
local function expect_lines(lines, out, wants)
  for _, want in ipairs(wants) do
    assert.is_true(has(lines, want), "missing '" .. want .. "' in:\n" .. out)
  end
end

describe("luv", function()
  if not have_luv() then
    pending("lua-luv is not installed (scripts/deps.sh test installs it)")
    return
  end

  it("owns the loop: the coro face connects, reads, writes, closes, beats and fails under uv.run()", function()
    local lines, out = run("luv_owns_the_loop.lua")
    expect_lines(lines, out, { "code 101", "sessions 20", "timer ticked true", "heartbeat ok",
                               "refused true", "uv.run returned", "exit 0" })
  end)

  it("runs inside turbo_ws.run(): libuv timers and fs callbacks fire, and run() ends", function()
    local lines, out = run("turbo_owns_the_loop.lua")
    expect_lines(lines, out, { "echo x", "timer fired 5", "fs_stat true", "exit 0" })
  end)

  it("uv.run() ends when libuv's last work ends in its first turn (a closing handle), each time", function()
    local lines, out = run("run_ends_after_close.lua")
    expect_lines(lines, out, { "first uv.run returned, closed 1", "second uv.run returned, closed 2", "exit 0" })
  end)

  it("counts a libuv timer from when it starts, after a wait on turbo_ws alone", function()
    local lines, out = run("timer_after_a_wait.lua")
    local took = number_in(lines, out, "^uv timer of 300 ms took (%d+) ms$")
    assert.is_true(took >= 290, "fired after " .. tostring(took) .. " ms:\n" .. out)
    assert.is_true(has(lines, "exit 0"), out)
  end)

  it("uv.stop() makes uv.run() return, from a libuv or a turbo_ws callback, with luv's value", function()
    local lines, out = run("uv_stop.lua")
    expect_lines(lines, out, { "first uv.run returned true, ticks 3", "second uv.run returned true",
                               "third uv.run returned false", "exit 0" })
  end)

  it("fires an unref'd libuv timer while only turbo_ws keeps the loop alive, which it does not hold", function()
    local lines, out = run("unref_timer.lua")
    local fired = number_in(lines, out, "^unref'd timer fired (%d+) times")
    -- every 50 ms for 500 ms; allow scheduling noise
    assert.is_true(fired >= 7 and fired <= 10, "fired " .. tostring(fired) .. " times:\n" .. out)
    expect_lines(lines, out, { "work over", "loop alive false", "exit 0" })
  end)

  for _, owner in ipairs({ "luv", "turbo_ws" }) do
    it("costs no CPU while idle with " .. owner .. " owning the loop", function()
      local lines, out = run("idle.lua", owner)
      local ticks
      for _, l in ipairs(lines) do ticks = ticks or tonumber(l:match("^idle ticks (%d+)$")) end
      assert.is_number(ticks, out)
      -- 3 s idle: a busy loop would be ~300 ticks; allow scheduling noise.
      assert.is_true(ticks <= 3, "used " .. tostring(ticks) .. " ticks idling:\n" .. out)
      assert.is_true(has(lines, "exit 0"), out)
    end)
  end
end)
