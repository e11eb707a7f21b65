-- The evlua face (turbo_ws.evlua) as a program sees it: the module tables
-- (web_socket, ws_util, ws_const, serve) and their service_utils.WS.* aliases,
-- and whole programs run in a child luajit (top-level client calls, the
-- examples). Shared helpers: spec/support/evlua.lua.
local E = require "spec.support.evlua"
local turbo_ws, evlua, ws, ws_util, ws_const = E.turbo_ws, E.evlua, E.ws, E.ws_util, E.ws_const
local run_async, start_server = E.run_async, E.start_server

describe("evlua face: modules", function()
  it("is require('turbo_ws').evlua = {web_socket, ws_util, ws_const, serve}", function()
    assert.are.equal(evlua, turbo_ws.evlua)
    assert.are.equal(require "turbo_ws.evlua.web_socket", evlua.web_socket)
    assert.are.equal(require "turbo_ws.evlua.ws_util", evlua.ws_util)
    assert.are.equal(require "turbo_ws.evlua.ws_const", evlua.ws_const)
    assert.are.equal("function", type(evlua.serve))
    for _, name in ipairs{ "accept", "connect", "handle_msg" } do
      assert.are.equal("function", type(ws[name]), name)
    end
    for _, name in ipairs{ "send_msg", "recv_frame", "send_frame", "ping", "close",
                           "add_ws_to_pool", "get_ws_from_pool" } do
      assert.are.equal("function", type(ws_util[name]), name)
    end
  end)

  it("aliases service_utils.WS.* in turbo_ws.compat to the same tables", function()
    require "turbo_ws.compat"
    assert.are.equal(ws, require "service_utils.WS.web_socket")
    assert.are.equal(ws_util, require "service_utils.WS.ws_util")
    assert.are.equal(ws_const, require "service_utils.WS.ws_const")
  end)

  it("has evlua's GUID and version", function()
    assert.are.equal("258EAFA5-E914-47DA-95CA-C5AB0DC85B11", ws.WEBSOCKET_GUID)
    assert.are.equal("13", ws.WEBSOCKET_VERSION)
  end)

  it("has every ws_const value of evlua", function()
    assert.are.same({
      FRAME_FLAG_MASK = 0x80, FRAME_FLAG_FIN = 0x80, FRAME_FLAG_RSV1 = 0x40,
      FRAME_FLAG_RSV2 = 0x20, FRAME_FLAG_RSV3 = 0x10,
      FRAME_OP_CONT = 0, FRAME_OP_TEXT = 1, FRAME_OP_BINARY = 2, FRAME_OP_CLOSE = 8,
      FRAME_OP_PING = 9, FRAME_OP_PONG = 0xA, FRAME_OP_BITMASK = 0xF, FRAME_OP_SETRAW = 0x100,
      FRAME_TEXT = 0x81, FRAME_BINARY = 0x82, MAX_HEADER_LENGTH = 14,
      WS_SERVER = 0, WS_CLIENT = 1,
      WS_NORMAL_CLOSE = 1000, WS_ENDPOINT_GOING_AWAY = 1001, WS_PROTOCOL_ERROR = 1002,
      WS_PAYLOAD_NOT_ACCEPTABLE = 1003, WS_RESERVED = 1004, WS_RESERVED_NO_STATUS_CODE = 1005,
      WS_RESERVED_ABNORMAL_CLOSE = 1006, WS_MALFORMED_PAYLOAD = 1007,
      WS_POLICY_VIOLATION = 1008, WS_PAYLOAD_TOO_BIG = 1009, WS_EXTENSION_REQUIRED = 1010,
      WS_UNEXPECTED_CONDITION = 1011, WS_RESERVED_TLS_FAILURE = 1015,
      WS_ERR_NO_HANDSHAKE = 1, WS_ERR_HANDSHAKE_NO_VERSION = 2,
      WS_ERR_HANDSHAKE_UNSUPPORTED_VERSION = 3, WS_ERR_HANDSHAKE_NO_KEY = 4,
      WS_ERR_HANDSHAKE_ACCEPT = 5, WS_ERR_UNAUTHORIZED = 6, WS_ERR_PAYLOAD_TOO_BIG = 10,
      WS_ERR_INCOMPLETE_FRAME = 11, TO_BE_CLOSED = -1,
    }, ws_const)
  end)
end)

describe("evlua programs", function()
  -- The environment child processes need to load this build (and, in
  -- development, the faces from lua/).
  local ENV = "LUA_CPATH='./build/?.so;;' "

  local P = require "spec.support.peer"
  local function read_file(path) return P.read_file(path) or "" end

  -- Runs a Lua program in a child luajit (bounded by `timeout`); returns
  -- its exit status and output.
  local function run_program(args)
    return P.run(ENV .. "timeout 20 luajit " .. args)
  end

  it("run client calls from top-level code (the main thread runs the loop while waiting)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local turbo_ws = require "turbo_ws"
      local evlua = require "turbo_ws.evlua"
      local ffi = require "ffi"
      local ws, ws_util = evlua.web_socket, evlua.ws_util
      package.preload["main_echo"] = function() return {
        init = function() return true end,
        handle_message = function(msg)
          ws_util.send_msg({ _ss = msg._ss }, ffi.string(msg.buf):upper(), { msg_type = "TEXT" })
        end } end
      local server = evlua.serve{ host = "127.0.0.1", port = 0, handle_request = function(rq, rs)
        ws.accept(rq, rs, {}) end }
      local conn = ws.connect{ url = "http://127.0.0.1:" .. server:port() .. "/main_echo",
                               hdrs = {}, external = false, timeout = 5 }
      conn._recv_timeout = 5
      ws_util.send_msg(conn, "shout", { msg_type = "TEXT" })
      print("reply=" .. ffi.string(ws_util.recv_frame(conn).buf))
      evlua.platform.ev_hibernate(0.05)
      ws_util.close(conn)
      server:close()
      turbo_ws.run()
      print("done")
    ]])
    f:close()
    local status, out = run_program(path)
    os.remove(path)
    assert.are.equal(0, status, out)
    assert.truthy(out:find("reply=SHOUT\n", 1, true), out)
    assert.truthy(out:find("done\n", 1, true), out)
  end)

  -- evlua writes before send_msg/send_frame/ping return; a script may end
  -- right after (evpoco's samples do): nothing may stay queued.
  it("hands a top-level script's frames to the socket before its sends return", function()
    local path = os.tmpname()
    P.write_file(path, [[
      require "turbo_ws"
      local evlua = require "turbo_ws.evlua"
      local ffi = require "ffi"
      local ws, ws_util = evlua.web_socket, evlua.ws_util
      package.preload["sink"] = function() return {
        init = function() return true end, handle_message = function() end } end
      local server = evlua.serve{ host = "127.0.0.1", port = 0, handle_request = function(rq, rs)
        ws.accept(rq, rs, {}) end }
      local conn = ws.connect{ url = "http://127.0.0.1:" .. server:port() .. "/sink",
                               hdrs = {}, external = false, timeout = 5 }
      ws_util.send_msg(conn, "last words", { msg_type = "TEXT" })
      print("after send_msg: " .. ws_util.buffered_amount(conn))
      ws_util.ping(conn, "p")
      print("after ping: " .. ws_util.buffered_amount(conn))
      local buf = ffi.new("unsigned char[3]", "abc")
      ws_util.send_frame{ ss = conn._ss, size = 3, flags = 0x82, buf = buf }
      print("after send_frame: " .. ws_util.buffered_amount(conn))
    ]])
    local status, out = run_program(path)
    os.remove(path)
    assert.are.equal(0, status, out)
    assert.truthy(out:find("after send_msg: 0\nafter ping: 0\nafter send_frame: 0\n"), out)
  end)

  it("examples/evlua_server.lua serves examples/evlua_client.lua", function()
    local out_path, pid_path = os.tmpname(), os.tmpname()
    os.execute(("(%s exec timeout 20 luajit examples/evlua_server.lua 0 > %s 2>&1) & echo $! > %s")
               :format(ENV, out_path, pid_path))
    local pid = tonumber(read_file(pid_path))
    local ok, err = pcall(function()
      assert(pid, "the example server did not start")
      local port
      for _ = 1, 100 do -- up to 5 s
        port = read_file(out_path):match("127%.0%.0%.1:(%d+)/")
        if port then break end
        os.execute("sleep 0.05")
      end
      assert(port, "the example server printed no port: " .. read_file(out_path))
      local url = "http://127.0.0.1:" .. port .. "/evlua_handlers/echo"
      local status, out = run_program("-l turbo_ws -l turbo_ws.compat examples/evlua_client.lua " .. url)
      assert.are.equal(0, status, out)
      assert.truthy(out:find("connected: 101, handler echo", 1, true), out)
      assert.truthy(out:find("echo: hello from evlua", 1, true), out)
      assert.truthy(out:find("binary echo of 7 bytes, opcode 2", 1, true), out)
      assert.truthy(out:find("pong: true KEEP ALIVE", 1, true), out)
      assert.truthy(out:find("closed", 1, true), out)
    end)
    if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
    os.remove(out_path)
    os.remove(pid_path)
    assert(ok, err)
  end)

  it("the example handler refuses through init", function()
    run_async(function()
      package.path = "examples/?.lua;" .. package.path
      require "turbo_ws.compat"
      local _, port = start_server()
      local conn, msg = ws.connect{ url = "http://127.0.0.1:" .. port .. "/evlua_handlers/echo",
                                    hdrs = { ["X-Refuse"] = "1" }, external = false }
      assert.is_nil(conn)
      assert.are.equal('{"error_message":"refused on request"}', msg)
    end)
  end)
end)
