-- Every close code an endpoint may send (RFC 6455 §7.4 and the IANA
-- registry: 1000-1003, 1007-1014, 3000-4999) both ways through each
-- face's client, against a raw Python peer (spec/support/close_peer.py):
-- a code the peer sends reaches the program unchanged and is echoed; a
-- code the program sends is what the peer receives.
local ffi = require "ffi"
local L = require "spec.support.loop"

local CODES = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999 }

local function be16(n) return string.char(math.floor(n / 256), n % 256) end

local peer, port
local function peer_says() return peer:read("*l") end

setup(function()
  require("turbo_ws.log").disable_all()
  peer = assert(io.popen("python3 spec/support/close_peer.py", "r"))
  port = tonumber(peer:read("*l"):match("^port (%d+)$"))
end)
teardown(function()
  require("turbo_ws.log").enable_all()
  -- The peer gives up 60 s after its last connection; do not wait for it.
  os.execute("pkill -f spec/support/close_peer.py")
  peer:close()
end)

local function url(path) return "ws://127.0.0.1:" .. port .. path end

describe("close codes, coro-websocket face", function()
  local cws = require("turbo_ws").coro_websocket
  local function session(path, fn)
    local done = false
    coroutine.wrap(function()
      local res, read, write = cws.connect({ host = "127.0.0.1", port = port, pathname = path })
      assert(res, read)
      fn(read, write)
      done = true
    end)()
    L.run_until(function() return done end, 5000, path)
  end

  for _, code in ipairs(CODES) do
    it("receives and echoes " .. code .. ", and sends it", function()
      session("/peer/" .. code, function(read)
        local msg = read()
        assert.are.same({ 8, be16(code) .. "r" }, { msg.opcode, msg.payload })
        assert.is_nil(read())
      end)
      assert.are.equal("echoed " .. code, peer_says())
      session("/client", function(read, write)
        assert.is_true(write({ opcode = 8, payload = be16(code) }))
        while read() do end
      end)
      assert.are.equal("sent " .. code, peer_says())
    end)
  end
end)

describe("close codes, Turbo face WebSocketClient", function()
  local ws = require "turbo_ws.websocket"
  local function client(path, kwargs)
    local closed
    kwargs.on_close = function(_, code, reason) closed = { code, reason } end
    ws.WebSocketClient(url(path), kwargs)
    L.run_until(function() return closed ~= nil end, 5000, path)
    return closed
  end

  for _, code in ipairs(CODES) do
    it("receives and echoes " .. code .. ", and sends it", function()
      assert.are.same({ code, "r" }, client("/peer/" .. code, {}))
      assert.are.equal("echoed " .. code, peer_says())
      local got = client("/client", { on_connect = function(self) self:close(code) end })
      assert.are.equal(code, got[1])
      assert.are.equal("sent " .. code, peer_says())
    end)
  end
end)

describe("close codes, evlua face", function()
  local web_socket = require "turbo_ws.evlua.web_socket"
  local ws_util = require "turbo_ws.evlua.ws_util"
  local C = require "turbo_ws.evlua.ws_const"
  local function connect(path)
    return assert(web_socket.connect({ url = "http://127.0.0.1:" .. port .. path, hdrs = {}, external = false }))
  end

  for _, code in ipairs(CODES) do
    it("receives and echoes " .. code .. ", and sends it", function()
      local conn = connect("/peer/" .. code)
      local msg = ws_util.recv_frame(conn)
      assert.are.equal(C.FRAME_OP_CLOSE, bit.band(msg.flags, C.FRAME_OP_BITMASK))
      assert.are.equal(be16(code) .. "r", ffi.string(msg.buf, msg.size))
      assert.are.equal("echoed " .. code, peer_says())
      conn = connect("/client")
      local payload = be16(code)
      local buf = ffi.new("char[2]")
      ffi.copy(buf, payload, 2)
      ws_util.send_frame({ ss = conn._ss, size = 2, flags = C.FRAME_OP_CLOSE, buf = buf })
      -- Until the closing handshake is over (nothing else is pending).
      L.run_bounded(5000)
      assert.are.equal("sent " .. code, peer_says())
    end)
  end
end)
