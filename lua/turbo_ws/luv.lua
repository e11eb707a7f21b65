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
  local run_libuv, stop_libuv = uv.run, uv.stop
  local timer, timer_at -- our timeout for libuv's next timer
  local in_run = false -- inside our uv.run(), which uv.stop() ends

  -- libuv's uv_run does nothing, not even run a due timer, while no ref'd
  -- handle is active, and then its backend timeout is 0: an unref'd timer
  -- (a heartbeat) would never fire while only turbo_ws keeps the process
  -- alive. Around our own runs of libuv in that state, this ref'd timer of
  -- ours, due in ~24 days, holds libuv alive; stopped at once after, it
  -- never counts in uv.loop_alive() (our alive hook) otherwise.
  local KEEPER_MS = 2 ^ 31 - 1 -- libuv's timeouts are ints
  local keeper, keeper_due

  local function keeper_noop() end

  local function hold_libuv()
    -- A program's shutdown idiom (uv.walk closing every handle) may have
    -- closed it.
    if not keeper or uv.is_closing(keeper) then keeper = uv.new_timer() end
    keeper:start(KEEPER_MS, 0, keeper_noop)
    keeper_due = uv.now() + KEEPER_MS
  end

  -- The moment libuv's next timer is due (turbo_ws's clock), given its
  -- backend timeout; nil for none, or for the keeper's own.
  local function due_at(ms)
    if ms < 0 or (keeper_due and uv.now() + ms >= keeper_due) then return nil end
    return core.gettimemonotonic() + ms
  end

  -- Runs libuv's ready work while it is not alive by itself; returns when
  -- its next (unref'd) timer is due.
  local function run_held()
    hold_libuv()
    run_libuv("nowait")
    uv.update_time()
    local due = due_at(uv.backend_timeout())
    keeper:stop()
    keeper_due = nil
    return due
  end

  -- Whether libuv has an active handle (an unref'd one, when it is not
  -- alive). Walking is cheap when it has few handles, and costs nothing
  -- to a program that has none (turbo_ws-run loads luv for every program).
  local active_seen = false
  local function note_active(handle)
    if not active_seen and uv.is_active(handle) then active_seen = true end
  end
  local function has_active_handle()
    active_seen = false
    uv.walk(note_active)
    return active_seen
  end

  -- libuv's fd is readable or its timer is due: run it. When it is not
  -- alive, what is ready belongs to unref'd handles (or the fd is stale,
  -- which only a libuv poll clears), so it is held alive for the run.
  local function run_ready()
    if uv.loop_alive() then run_libuv("nowait") else run_held() end
  end

  local function on_timer()
    timer, timer_at = nil, nil
    run_ready()
  end

  -- Before turbo_ws waits: let libuv apply what the program asked of it
  -- since (libuv only registers new fds while it runs), then wait no
  -- longer than libuv's next timer. Returns whether libuv has work left.
  -- This runs at every loop turn: when libuv has nothing alive, it is run
  -- (held alive) only if some unref'd handle is active.
  local function before_block()
    local alive, due = uv.loop_alive(), nil
    if alive then
      run_libuv("nowait")
      alive = uv.loop_alive()
    end
    if alive then
      uv.update_time()
      due = due_at(uv.backend_timeout())
    elseif has_active_handle() then
      due = run_held()
      alive = uv.loop_alive() -- its callbacks may have started work
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
  -- As luv's, it returns whether libuv still has work (after uv.stop()).
  uv.run = function(mode)
    if mode ~= nil and mode ~= "default" then return run_libuv(mode) end
    if core.running() then
      error("uv.run: the loop is already running (turbo_ws runs libuv's callbacks)", 2)
    end
    in_run = true
    core.run()
    in_run = false
    return uv.loop_alive()
  end
  -- uv.stop() makes uv.run() return: ours is turbo_ws's loop, closed after
  -- the current callback. libuv's own stop still ends a run of libuv's
  -- (ours, or the program's uv.run("once")) at once.
  uv.stop = function()
    stop_libuv()
    if in_run and core.running() then core.close() end
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
