-- Ctrl-C under the Lua interpreter (`luajit program.lua`): lua.c installs
-- its own SIGINT handler while the program runs, which raises
-- "interrupted!" in the next Lua code (under turbo_ws, a protected
-- callback: printed, and the loop went on) and which a handler registered
-- later still called. turbo_ws gives SIGINT its default action back at load.
local P = require "spec.support.peer"

-- A program that sends itself SIGINT 100 ms into its loop, after `setup`.
local function interrupted(setup)
  return P.run_luajit([[
local ffi = require "ffi"
ffi.cdef "int kill(int pid, int sig); int getpid(void);"
local core = require("turbo_ws").core
]] .. setup .. [[
core.add_timeout(core.gettimemonotonic() + 100, function() ffi.C.kill(ffi.C.getpid(), 2) end)
core.add_timeout(core.gettimemonotonic() + 3000, function() print("still running"); core.close() end)
core.start()
print("start returned")
]])
end

describe("SIGINT under the luajit interpreter", function()
  it("runs the program's on_signal handler", function()
    local status, out = interrupted([[
core.on_signal("SIGINT", function() print("handled SIGINT"); core.close() end)
]])
    assert.are.equal(0, status, out)
    assert.truthy(out:find("handled SIGINT\nstart returned", 1, true), out)
    assert.falsy(out:find("interrupted", 1, true), out)
  end)

  it("ends the program when it has no handler", function()
    local status, out = interrupted("")
    assert.are.equal(130, status, out)
    assert.falsy(out:find("still running", 1, true), out)
    assert.falsy(out:find("interrupted", 1, true), out)
  end)
end)
