-- Programs as users run them: the echo examples in examples/, and a
-- program written for Turbo.lua (`require "turbo"`) started with
-- `luajit -l turbo_ws.compat`. Each runs in its own luajit, bounded by
-- `timeout`; the server gets port 0 and prints the one it got.
local S = require "spec.turbo_support"

-- Environment for a child luajit: this build, and in development mode the
-- Lua files on disk (the Lua searcher must find turbo_ws/compat.lua too).
local function env()
  local parts = { "LUA_CPATH='./build/?.so;;'" }
  local dir = os.getenv("TURBO_WS_LUA_DIR")
  if dir then
    parts[#parts + 1] = "TURBO_WS_LUA_DIR='" .. dir .. "'"
    parts[#parts + 1] = "LUA_PATH='" .. dir .. "/?.lua;;'"
  end
  return table.concat(parts, " ")
end

-- Runs a command; returns its exit status and output.
local run = require("spec.support.peer").run

-- Starts the example server on port 0; returns its port and a stop function.
local function start_server()
  local dir = S.tmpdir()
  local out = dir .. "/server.out"
  local pid_file = dir .. "/server.pid"
  local script = dir .. "/server.sh"
  -- The shell records its id, then becomes `timeout` (which passes a TERM
  -- on to luajit).
  S.write_file(script, "echo $$ > '" .. pid_file .. "'\nexec env " .. env()
    .. " timeout 30 luajit examples/turbo_echo_server.lua 0\n")
  assert(S.sh("sh '" .. script .. "' > '" .. out .. "' 2>&1 &"))
  local port
  for _ = 1, 100 do
    local f = io.open(out)
    local text = f and f:read("*a") or ""
    if f then f:close() end
    port = tonumber(text:match("listening on (%d+)"))
    if port then break end
    os.execute("sleep 0.05")
  end
  local pid = io.open(pid_file):read("*l")
  return port, function()
    -- Only the process this spec started, by its id.
    if pid and pid:match("^%d+$") then os.execute("kill " .. pid .. " 2>/dev/null") end
    S.rmdir(dir)
  end
end

describe("examples", function()
  it("turbo_echo_server and turbo_echo_client talk to each other", function()
    local port, stop = start_server()
    S.finally(stop)
    assert.is_number(port, "the server did not print its port")
    local status, out = run(env() .. " timeout 20 luajit examples/turbo_echo_client.lua ws://127.0.0.1:" .. port .. "/ws/spec")
    assert.equal(0, status, out)
    assert.truthy(out:find("upgraded: 101", 1, true), out)
    assert.truthy(out:find("received: hello spec", 1, true), out)
    assert.truthy(out:find("received: Hello\n", 1, true), out)
    assert.truthy(out:find('received: {"json":"too"}', 1, true), out)
    assert.truthy(out:find("closed", 1, true), out)
  end)

  it("runs a program written for Turbo.lua unchanged with -l turbo_ws.compat", function()
    local port, stop = start_server()
    S.finally(stop)
    local dir = S.tmpdir()
    S.finally(function() S.rmdir(dir) end)
    -- The client example from Turbo's documentation, plus an exit.
    S.write_file(dir .. "/turbo_program.lua", [[
_G.TURBO_SSL = true
local turbo = require "turbo"
turbo.log.disable_all()
turbo.ioloop.instance():add_callback(function()
    turbo.websocket.WebSocketClient("ws://127.0.0.1:]] .. port .. [[/ws", {
        on_headers = function(self, headers) end,
        modify_headers = function(self, headers) end,
        on_connect = function(self)
            self:write_message("Hello World!")
        end,
        on_message = function(self, msg)
            print(msg)
            self:close()
        end,
        on_close = function(self)
            turbo.ioloop.instance():close()
        end,
        on_error = function(self, code, reason)
            print("error", code, reason)
            turbo.ioloop.instance():close()
        end
    })
end):start()
]])
    local status, out = run(env() .. " timeout 20 luajit -l turbo_ws.compat " .. dir .. "/turbo_program.lua")
    assert.equal(0, status, out)
    assert.equal("Hello World!\n", out:gsub("exit=%d+%s*$", ""))
  end)
end)
