-- The coro-websocket face (turbo_ws.coro_websocket) as a program gets and
-- runs it: the module and require "coro-websocket", bin/turbo_ws-run with an
-- unmodified luvit-style program, and examples/coro_client.lua.
-- Shared helpers: spec/support/coro_websocket.lua.
local C = require "spec.support.coro_websocket"
local P = require "spec.support.peer"
local turbo_ws, cws, core, ROOT, run_loop = C.turbo_ws, C.cws, C.core, C.ROOT, C.run_loop
local cleanup, read_file, write_file = C.cleanup, C.read_file, C.write_file
local test_server, temp_dir, stop_peer = C.test_server, C.temp_dir, C.stop_peer

describe("turbo_ws.coro_websocket", function()
  teardown(stop_peer)
  after_each(cleanup)

  describe("module", function()
    it("is turbo_ws.coro_websocket with connect, wrapIo and parseUrl", function()
      assert.are.equal(cws, turbo_ws.coro_websocket)
      assert.are.equal("function", type(cws.connect))
      assert.are.equal("function", type(cws.wrapIo))
      assert.are.equal("function", type(cws.parseUrl))
    end)

    it("is what require 'coro-websocket' gives after turbo_ws.compat", function()
      require "turbo_ws.compat"
      assert.are.equal(cws, require("coro-websocket"))
    end)
  end)

  ---------------------------------------------------------------------------
  describe("programs", function()
    -- Runs a shell command with a time bound; returns exit status and output.
    local function run_cmd(cmd)
      return P.run("timeout 20 " .. cmd)
    end
    local env = "env LUA_CPATH='" .. ROOT .. "/build/?.so;;' "
      .. (os.getenv("TURBO_WS_LUA_DIR") and ("TURBO_WS_LUA_DIR='" .. ROOT .. "/lua' ") or "")

    it("bin/turbo_ws-run runs an unmodified luvit-style program with its arguments", function()
      local program = temp_dir() .. "/luvit_style.lua"
      write_file(program, [[
local connect = require("coro-websocket").connect
local core = require("turbo_ws").core
print("args", ...)
print("arg", arg[0] ~= nil, arg[1], arg[2])
local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
  local conn = req:upgrade()
  conn:set_callbacks{ on_message = function(d, b) conn:send(d, b) end }
end)
coroutine.wrap(function()
  local res, read, write = connect({ host = "127.0.0.1", port = server:port() })
  write({ opcode = 1, payload = "implicit loop" })
  print("got", read().payload)
  write()
  read()
  server:close()
end)()
]])
      local status, out = run_cmd(env .. "luajit " .. ROOT .. "/bin/turbo_ws-run " .. program .. " one two")
      assert.are.equal(0, status, out)
      assert.truthy(out:find("args\tone\ttwo", 1, true), out)
      assert.truthy(out:find("arg\ttrue\tone\ttwo", 1, true), out)
      assert.truthy(out:find("got\timplicit loop", 1, true), out)
    end)

    -- luvit loads `uv` on the main thread; luv runs callbacks on the thread
    -- that loaded it, so a timer may resume the main chunk's coroutine.
    it("bin/turbo_ws-run gives a program `uv` (luv) loaded as under luvit", function()
      local program = temp_dir() .. "/uv_timer.lua"
      write_file(program, [[
local uv = require "uv"
local co = coroutine.running()
local timer = uv.new_timer()
timer:start(20, 0, function() assert(coroutine.resume(co, "woken")) end)
print("main chunk", coroutine.yield(), uv == require "luv")
timer:close()
]])
      local status, out = run_cmd(env .. "luajit " .. ROOT .. "/bin/turbo_ws-run " .. program)
      assert.are.equal(0, status, out)
      assert.truthy(out:find("main chunk\twoken\ttrue", 1, true), out)
    end)

    it("bin/turbo_ws-run reports a program's error and exits non-zero", function()
      local program = temp_dir() .. "/broken.lua"
      write_file(program, "error('boom')\n")
      local status, out = run_cmd(env .. "luajit " .. ROOT .. "/bin/turbo_ws-run " .. program)
      assert.are_not.equal(0, status)
      assert.truthy(out:find("boom", 1, true), out)
      status, out = run_cmd(env .. "luajit " .. ROOT .. "/bin/turbo_ws-run")
      assert.are_not.equal(0, status)
      assert.truthy(out:find("usage", 1, true), out)
    end)

    it("examples/coro_client.lua talks to a server and ends when it closes", function()
      local server, port = test_server()
      local out_file = temp_dir() .. "/example.out"
      os.remove(out_file)
      os.execute(("timeout 20 %s luajit %s/examples/coro_client.lua ws://127.0.0.1:%d/example > %s 2>&1 &")
        :format(env, ROOT, port, out_file))
      -- serve until the example has come and gone
      local guard = core.set_interval(100, function()
        local out = read_file(out_file) or ""
        if out:find("Connection closed", 1, true) or out:find("rror") then core.close() end
      end, nil, false)
      local deadline = core.add_timeout(core.gettimemonotonic() + 15000, function() core.close() end)
      core.start()
      core.clear_interval(guard)
      core.remove_timeout(deadline)
      server:close()
      run_loop()
      local out = read_file(out_file) or ""
      assert.truthy(out:find("Connection closed", 1, true), out)
      assert.truthy(out:find("Hello There!", 1, true), out)
    end)
  end)
end)
