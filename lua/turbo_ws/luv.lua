--- turbo_ws.luv -- libuv's loop (luv, luvit's `uv`) inside turbo_ws's.
--
-- One process has one loop. When a program uses luv as well, turbo_ws's
-- loop runs libuv's work: it watches libuv's backend fd (readable whenever
-- libuv has an event), runs `uv.run("nowait")` when it is, before every
-- wait asks libuv when its next timer is due, and after every wait updates
-- libuv's loop time. `uv.run()` itself is
-- made to run turbo_ws's loop, so a luvit-style program — whose loop is
-- `uv.run()` after the main chunk — runs both, unchanged, and ends when
-- neither has work left. Nothing here keeps a loop alive by itself.
--
-- `attach(uv)` does it for one luv module table; `turbo_ws.compat` and the
-- coro-websocket face call it when luv is (or later gets) loaded.
local core = require "turbo_ws.core"

local M = {}

local attached -- the luv table we run, once attached

--- Runs libuv's loop inside turbo_ws's; idempotent. Returns `uv`.
function M.attach(uv)
  if type(uv) ~= "table" or type(uv.run) ~= "function" or type(uv.backend_fd) ~= "function" then
    error("turbo_ws.luv.attach: bad argument #1 'uv' (the luv module expected, got " .. type(uv) .. ")", 2)
  end
  if attached == uv then return uv end
  if attached then
    error("turbo_ws.luv.attach: another luv module is already attached", 2)
  end
  attached = uv
  local run_libuv = uv.run
  local timer, timer_at -- our timeout for libuv's next timer

  local function run_ready()
    run_libuv("nowait")
  end

  local function on_timer()
    timer, timer_at = nil, nil
    run_ready()
  end

  -- Before turbo_ws waits: let libuv apply what the program asked of it
  -- since (libuv only registers new fds while it runs), then wait no
  -- longer than libuv's next timer. Returns whether libuv has work left.
  -- This runs at every loop turn: when libuv has nothing alive, uv_run
  -- would return at once, so it is not called.
  local function before_block()
    local alive, due = uv.loop_alive(), nil
    if alive then
      run_ready()
      alive = uv.loop_alive()
    end
    if alive then
      uv.update_time()
      local ms = uv.backend_timeout()
      if ms >= 0 then due = core.gettimemonotonic() + ms end
    end
    if due ~= timer_at and not (due and timer_at and timer_at <= due) then
      if timer then core.remove_timeout(timer) end
      timer, timer_at = nil, nil
      if due then
        timer_at = due
        timer = core.add_timeout(due, on_timer, nil, false)
      end
    end
    return alive
  end

  local watcher, err = core.watch_fd(uv.backend_fd(), core.READ, run_ready, false)
  if not watcher then
    attached = nil
    error("turbo_ws.luv.attach: cannot watch libuv's backend fd: " .. tostring(err), 2)
  end
  -- After each wait, libuv's loop time is brought up to date, as libuv
  -- does at the start of each turn: a timer the program starts next counts
  -- from now, not from when libuv last ran (maybe long before, while only
  -- turbo_ws had work).
  core.set_foreign_loop({ before_block = before_block, after_block = uv.update_time, alive = uv.loop_alive })

  -- uv.run() (default mode) is the program's whole loop: run turbo_ws's,
  -- which now runs libuv's too. "once" and "nowait" stay libuv's own.
  uv.run = function(mode)
    if mode ~= nil and mode ~= "default" then return run_libuv(mode) end
    if core.running() then
      error("uv.run: the loop is already running (turbo_ws runs libuv's callbacks)", 2)
    end
    core.run()
    return false
  end
  return uv
end

--- The luv module the process has loaded (as `luv` or as luvit's `uv`), if any.
function M.loaded()
  return package.loaded.luv or package.loaded.uv
end

-- Runs the real loader of `name`, skipping package.preload.
local function load_without_preload(name)
  local searchers = package.searchers or package.loaders
  local tried = {}
  for i = 2, #searchers do
    local loader, extra = searchers[i](name)
    if type(loader) == "function" then return loader(name, extra) end
    if type(loader) == "string" then tried[#tried + 1] = loader end
  end
  error("module '" .. name .. "' not found:" .. table.concat(tried), 3)
end

-- Loads luv under `name`; luvit's `uv` is luv itself, so where no module
-- is named `uv` (luv installed as such), `require "uv"` gives luv. Both
-- names then give the same table.
local function load_luv(name)
  local ok, uv = pcall(load_without_preload, name)
  if not ok then
    if name ~= "uv" then error(uv, 0) end
    uv = package.loaded.luv or load_without_preload("luv")
  end
  package.loaded.luv = package.loaded.luv or uv
  package.loaded.uv = package.loaded.uv or uv
  return uv
end

--- Attaches now if luv is loaded, else as soon as it is required.
function M.attach_when_loaded()
  local uv = M.loaded()
  if uv then return M.attach(uv) end
  for _, name in ipairs({ "luv", "uv" }) do
    if package.preload[name] == nil then
      package.preload[name] = function()
        package.preload.luv, package.preload.uv = nil, nil
        return M.attach(load_luv(name))
      end
    end
  end
end

return M
