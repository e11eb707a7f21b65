-- bin/turbo_ws-run gives a luvit-style program luvit's globals `args` and
-- `process` (the part plain LuaJIT can give: argv, env, pid, cwd, exit,
-- exitCode), as luvi and luvit's deps/process.lua define them. Each
-- program runs in a child luajit on the launcher, from a temporary
-- directory; its output and exit status are checked.
local P = require "spec.support.peer"

local ROOT = os.getenv("PWD") or "."
local LAUNCHER = ROOT .. "/bin/turbo_ws-run"

describe("bin/turbo_ws-run", function()
  local dir, home

  setup(function()
    dir = P.tmpdir()
    home = P.tmpdir()
  end)
  teardown(function()
    os.execute("rm -rf '" .. dir .. "' '" .. home .. "'")
  end)

  -- Runs `source` as program.lua with `arguments` from `dir`, HOME set to
  -- `home`; returns its exit status and output.
  local function run(source, arguments)
    P.write_file(dir .. "/program.lua", source)
    return P.run(("cd '%s' && env HOME='%s' LUA_CPATH='%s/build/?.so;;' timeout 20 luajit '%s' program.lua %s")
      :format(dir, home, ROOT, LAUNCHER, arguments or ""))
  end

  it("defines luvit's args and process.argv, process.env and process.exit(code)", function()
    local status, out = run([[
print("args[1]", args[1])
print("#args", #args)
print("argv", process.argv[0], process.argv[1], process.argv[2], process.argv[3])
print("same table", process.argv == args)
print("HOME", process.env.HOME)
io.write("exiting\n")
process.exit(3)
print("not reached")
]], "one two")
    assert.are.equal(3, status, out)
    assert.truthy(out:find("args[1]\tprogram.lua\n", 1, true), out)
    assert.truthy(out:find("#args\t3\n", 1, true), out)
    assert.truthy(out:find("argv\t" .. LAUNCHER .. "\tprogram.lua\tone\ttwo\n", 1, true), out)
    assert.truthy(out:find("same table\ttrue\n", 1, true), out)
    assert.truthy(out:find("HOME\t" .. home .. "\n", 1, true), out)
    assert.truthy(out:find("exiting\n", 1, true), out)
    assert.falsy(out:find("not reached", 1, true), out)
  end)

  it("exits from a loop callback, with luvit's process:exit(code) too", function()
    local status, out = run([[
local core = require("turbo_ws").core
core.add_timeout(core.gettimemonotonic() + 20, function()
  print("in a callback")
  process:exit(4)
end)
core.add_timeout(core.gettimemonotonic() + 5000, function() print("too late") end)
]])
    assert.are.equal(4, status, out)
    assert.truthy(out:find("in a callback", 1, true), out)
    assert.falsy(out:find("too late", 1, true), out)
  end)

  it("exits with process.exitCode once the loop is done, 0 by default", function()
    local status, out = run([[
print("exitCode", process.exitCode)
process.exitCode = 5
]])
    assert.are.equal(5, status, out)
    assert.truthy(out:find("exitCode\t0\n", 1, true), out)
    status, out = run("process.exit()\n")
    assert.are.equal(0, status, out)
  end)

  it("reports an error in the main chunk with its traceback and exits 1, before or after it waits", function()
    local status, out = run([[
local x
print("before")
x.y = 1
]])
    assert.are.equal(1, status, out)
    assert.truthy(out:find("before\n", 1, true), out)
    assert.truthy(out:find("Uncaught exception:\nprogram.lua:3: attempt to index", 1, true), out)
    assert.truthy(out:find("program.lua:?%d*: in main chunk"), out)
    -- Resumed by the coro face once connected: the face would report an
    -- error in a coroutine it resumes and go on.
    status, out = run([[
local core = require("turbo_ws").core
local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req) req:upgrade() end)
local ws = require "coro-websocket"
local res = ws.connect({ host = "127.0.0.1", port = server:port(), pathname = "/" })
print("connected", res.code)
error("fails after a wait")
]])
    assert.are.equal(1, status, out)
    assert.truthy(out:find("connected\t101\n", 1, true), out)
    assert.truthy(out:find("Uncaught exception:\nprogram.lua:6: fails after a wait\nstack traceback:", 1, true), out)
    assert.truthy(out:find("program.lua:6: in main chunk", 1, true), out)
    assert.falsy(out:find("turbo_ws-run:", 1, true), out) -- none of the launcher's frames
    -- Resumed by a loop callback of the program's own.
    status, out = run([[
local core = require("turbo_ws").core
local co = coroutine.running()
core.add_timeout(core.gettimemonotonic() + 20, function() core.resume(co) end)
coroutine.yield()
error("fails after a timeout")
]])
    assert.are.equal(1, status, out)
    assert.truthy(out:find("Uncaught exception:\nprogram.lua:5: fails after a timeout\n", 1, true), out)
  end)

  it("gives process.pid, process.cwd(), and process.env get, assignment and iterate", function()
    local status, out = run([[
local stat = io.open("/proc/self/stat")
print("pid", process.pid, stat and stat:read("*n") or process.pid)
print("cwd", process.cwd())
print("get", process.env.get("HOME"), process.env.TURBO_WS_RUN_UNSET)
process.env.TURBO_WS_RUN_X = "x1"
print("set", os.getenv("TURBO_WS_RUN_X"))
local seen
for name, value in process.env.iterate() do
  if name == "TURBO_WS_RUN_X" then seen = value end
end
print("iterate", seen)
process.env.TURBO_WS_RUN_X = nil
print("unset", os.getenv("TURBO_WS_RUN_X"))
-- The launcher's own declarations leave the program free to make these.
local ffi = require "ffi"
ffi.cdef "int getpid(void);"
print("own cdef", ffi.C.getpid() == process.pid)
]])
    assert.are.equal(0, status, out)
    local pid, own = out:match("pid\t(%d+)\t(%d+)\n")
    assert.truthy(pid, out)
    assert.are.equal(pid, own)
    local cwd = P.output("cd '" .. dir .. "' && pwd -P"):gsub("%s+$", "")
    assert.truthy(out:find("cwd\t" .. cwd .. "\n", 1, true), out)
    assert.truthy(out:find("get\t" .. home .. "\tnil\n", 1, true), out)
    assert.truthy(out:find("set\tx1\n", 1, true), out)
    assert.truthy(out:find("iterate\tx1\n", 1, true), out)
    assert.truthy(out:find("unset\tnil\n", 1, true), out)
    assert.truthy(out:find("own cdef\ttrue\n", 1, true), out)
  end)
end)
