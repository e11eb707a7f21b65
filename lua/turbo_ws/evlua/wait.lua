--- turbo_ws.evlua.wait -- blocking-style waits for the evlua face.
--
-- evlua's calls (`ws.connect`, `ws_util.recv_frame`, ...) block the calling
-- Lua code until the network answers. Here they wait on the one event loop:
-- inside a coroutine they yield and a loop callback resumes them; on the
-- main thread (a plain top-level script, as evpoco's client samples are)
-- they run the loop until the answer arrives.
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"

local unpack = unpack or table.unpack -- luacheck: ignore

local M = {}

-- Runs the loop until `is_done()`; for waits on the main thread.
local function run_until(is_done, has_timer)
  if core.running() then
    error("turbo_ws.evlua: cannot wait outside a coroutine while the loop runs", 3)
  end
  while not is_done() do
    core.run()
    -- run() also returns when nothing is pending; without a timer of ours
    -- nothing can finish the wait any more.
    if not is_done() and not has_timer then
      error("turbo_ws.evlua: nothing left to wait for (the loop went idle)", 3)
    end
  end
end

--- Calls `start(finish)` and waits until `finish(...)` is called; returns
-- the values it was first called with. With `seconds`, gives up after that
-- long and returns nil, "timeout".
function M.wait(start, seconds)
  local co = coroutine.running()
  local done, yielded, results, timer = false, false, nil, nil
  local function finish(...)
    if done then return end
    done = true
    results = { n = select("#", ...), ... }
    if timer then core.remove_timeout(timer) end
    if co and yielded then
      -- An uncaught error in it has nobody else to go to.
      toolkit.resume("turbo_ws.evlua", co)
    elseif not co and core.running() then
      core.close()
    end
  end
  if seconds then
    timer = core.add_timeout(core.gettimemonotonic() + seconds * 1000,
                             function() finish(nil, "timeout") end)
  end
  start(finish)
  if not done then
    if co then
      yielded = true
      -- Someone else may resume us early (a user's coroutine.wrap driver);
      -- only `finish` ends the wait.
      repeat coroutine.yield() until done
    else
      run_until(function() return done end, seconds ~= nil)
    end
  end
  return unpack(results, 1, results.n)
end

--- Waits `seconds` (evlua's platform.ev_hibernate).
function M.sleep(seconds)
  if type(seconds) ~= "number" or not (seconds >= 0) then
    error("platform.ev_hibernate: bad argument #1 'seconds' (non-negative number expected, got "
          .. (type(seconds) == "number" and tostring(seconds) or type(seconds)) .. ")", 2)
  end
  M.wait(function() end, seconds)
end

return M
