-- Shared spec helpers for running the loop without ever hanging, and for
-- checking error texts. Loaded with require "spec.support.loop".
local core = require("turbo_ws").core
-- busted's assert lives in the specs' environment, not in this module's.
local assert = require "luassert"

local M = {}

--- Asserts that fn(...) raises an error whose text contains `expected`.
function M.assert_error_with(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  local text = tostring(err)
  assert.truthy(text:find(expected, 1, true), "error was: " .. text)
end

--- Runs the loop until nothing is pending or `ms` (5000) passed; returns
-- whether it timed out (for cleanups, where a busy loop is no failure).
function M.run_guarded(ms)
  local timed_out = false
  local guard = core.set_interval(ms or 5000, function()
    timed_out = true
    core.close()
  end, nil, false)
  core.run()
  core.clear_interval(guard)
  return timed_out
end

--- Runs the loop until nothing is pending; fails after `ms` (5000).
function M.run_bounded(ms)
  assert.is_false(M.run_guarded(ms), "the loop did not become idle in time")
end

--- Runs the loop until `done()` is true; fails after `ms` (5000).
function M.run_until(done, ms, what)
  local guard = core.set_interval(ms or 5000, function() core.close() end, nil, false)
  local check = core.set_interval(5, function() if done() then core.close() end end, nil, false)
  if not done() then core.start() end
  core.clear_interval(guard)
  core.clear_interval(check)
  assert.truthy(done(), "timed out waiting for " .. (what or "a condition"))
end

--- A core server on a free port whose connection gets `callbacks` (and
-- `context`) at the upgrade, kept in server_conn[1]; and a client
-- connected to it. Returns the client connection and the server.
function M.connected(callbacks, context, server_conn)
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
    local conn = req:upgrade()
    if conn then
      conn:set_callbacks(callbacks, context)
      server_conn[1] = conn
    end
  end)
  local client
  core.connect("ws://127.0.0.1:" .. server:port() .. "/", nil, function(conn) client = conn end)
  M.run_until(function() return client and server_conn[1] end)
  return client, server
end

--- Sends `n` distinct binary messages of 64 KiB on core connection
-- `conn`, 16 every 10 ms (distinct: equal Lua strings would be one object,
-- and the specs that use this count what piles up in the Lua heap).
function M.stream(conn, n)
  local left, filler = n, string.rep("s", 64 * 1024 - 8)
  local timer
  timer = core.set_interval(10, function()
    for _ = 1, math.min(16, left) do
      conn:send(("%8d"):format(left) .. filler, true)
      left = left - 1
    end
    if left == 0 then core.clear_interval(timer) end
  end)
end

--- Runs body in a coroutine, as a luvit program does, then the loop until
-- nothing is pending. An error in body fails the spec with its traceback; so
-- does a body that has not finished, or a loop still busy, after `ms` (5000).
function M.co_run(body, ms)
  local err, finished
  local co = coroutine.create(function()
    local ok, e = xpcall(body, debug.traceback)
    if not ok then err = e end
    finished = true
  end)
  local ok, e = coroutine.resume(co)
  if not ok then err = e end
  local timed_out = M.run_guarded(ms)
  if err then error(err, 0) end
  assert.is_true(finished, "the coroutine did not finish in time")
  assert.is_false(timed_out, "the loop did not become idle in time")
end

--- A free TCP port on 127.0.0.1 (bound, then released).
function M.free_port()
  local s = core.listen({ host = "127.0.0.1", port = 0 }, function() end)
  local port = s:port()
  s:close()
  M.run_bounded(2000)
  return port
end

return M
