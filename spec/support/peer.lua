-- Programs a spec file runs: shell commands and child luajits (exit status
-- and output), independent peers (the Python servers in spec/support/), and
-- the temporary files around them; not a spec itself.
-- Loaded with `local P = require "spec.support.peer"`.
local core = require("turbo_ws").core

local P = {}

--- Runs a shell command (stderr too); returns its exit status and its
-- output, which ends with a line "exit=N".
function P.run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("exit=(%d+)%s*$")), out
end

--- Runs a Lua program in a child luajit with this tree's build; its exit
-- status and output (stdout and stderr).
function P.run_luajit(program)
  local path = os.tmpname()
  P.write_file(path, program)
  local status, out = P.run("LUA_CPATH='./build/?.so;;' luajit " .. path)
  os.remove(path)
  return status, out
end

--- Runs a shell command; its output (stdout and stderr).
function P.output(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

--- The whole file, or nil when it cannot be opened.
function P.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local data = f:read("*a")
  f:close()
  return data
end

function P.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

--- A fresh temporary directory.
function P.tmpdir()
  local path = os.tmpname()
  os.remove(path)
  local rc = os.execute("mkdir -p '" .. path .. "'")
  assert(rc == 0 or rc == true, "cannot make a temporary directory")
  return path
end

--- Starts `command DIR/ports [args]` (output to DIR/peer.log); the peer
-- writes its ports to that file once it listens. Waits for it up to `ms`
-- (15000) and fails with the peer's log if it did not come. Returns the
-- handle (the peer's stdin: closing it stops the peer) and the ports text.
function P.start(command, dir, args, ms)
  local port_file = dir .. "/ports"
  local handle = io.popen(("%s '%s'%s >'%s/peer.log' 2>&1")
    :format(command, port_file, args or "", dir), "w")
  local deadline = core.gettimemonotonic() + (ms or 15000)
  local ports
  repeat
    ports = P.read_file(port_file)
    if not ports then os.execute("sleep 0.05") end
  until ports or core.gettimemonotonic() > deadline
  assert(ports, "the Python peer did not start: " .. tostring(P.read_file(dir .. "/peer.log")))
  return handle, ports
end

return P
