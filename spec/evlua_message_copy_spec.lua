-- The evlua face's incoming messages copied straight into msg.buf
-- (turbo_ws.message_copy, no Lua string on the way) and send_frame from a
-- byte buffer (fast_send reading the buffer itself): bytes exact at every
-- size, against a raw peer that frames and reads the wire itself; a buf a
-- handler keeps stays its own; the copy entry refuses outside a message's
-- call. Shared helpers: spec/support/evlua.lua.
local ffi = require "ffi"
local bit = require "bit"
local E = require "spec.support.evlua"
local ws_util, ws_const = E.ws_util, E.ws_const
local run_async, sleep, assert_error_with = E.run_async, E.sleep, E.assert_error_with
local probe, reset_probe, start_server = E.probe, E.reset_probe, E.start_server
local raw_upgraded, connect = E.raw_upgraded, E.connect

-- Sizes around every frame-length encoding, the core's direct-write
-- threshold (8 KiB) and the 64 KiB boundary.
local SIZES = { 0, 1, 125, 126, 127, 8191, 8192, 16384, 65535, 65536, 70001 }

-- `n` bytes that differ from message to message (`seed`), NULs included.
local function payload_of(n, seed)
  local b = ffi.new("unsigned char[?]", n)
  for i = 0, n - 1 do b[i] = (i * 7 + seed * 13) % 256 end
  return ffi.string(b, n)
end

-- A masked client frame of any length (8-byte length above 64 KiB).
local KEY = { 0x37, 0xFA, 0x21, 0x3D }
local function client_frame(byte0, payload)
  local n = #payload
  local head
  if n < 126 then
    head = string.char(byte0, 0x80 + n)
  elseif n < 65536 then
    head = string.char(byte0, 0x80 + 126, bit.rshift(n, 8), bit.band(n, 0xFF))
  else
    head = string.char(byte0, 0x80 + 127, 0, 0, 0, 0,
                       bit.band(bit.rshift(n, 24), 0xFF), bit.band(bit.rshift(n, 16), 0xFF),
                       bit.band(bit.rshift(n, 8), 0xFF), bit.band(n, 0xFF))
  end
  local masked = ffi.new("unsigned char[?]", n)
  ffi.copy(masked, payload, n)
  for i = 0, n - 1 do masked[i] = bit.bxor(masked[i], KEY[i % 4 + 1]) end
  return head .. string.char(unpack(KEY)) .. ffi.string(masked, n)
end

describe("evlua messages copied into msg.buf", function()
  before_each(reset_probe)

  it("reach the handler byte-exact at every size, in their own NUL-terminated buf, and echo back exact", function()
    run_async(function()
      local seen = {}
      probe.handle_message = function(msg)
        local n = msg.payload_len
        seen[#seen + 1] = {
          n = n, op = msg.op_code, bytes = ffi.string(msg.buf, n),
          vla = ffi.istype("unsigned char[?]", msg.buf), size = ffi.sizeof(msg.buf), nul = msg.buf[n],
        }
        if msg.op_code == ws_const.FRAME_OP_TEXT then
          ws_util.send_msg({ _ss = msg._ss }, ffi.string(msg.buf, n), { msg_type = "TEXT" })
        else
          -- From the buffer itself (no ffi.string): the fast path of send_frame.
          local d = ws_util.send_frame{ ss = msg._ss, size = n, flags = ws_const.FRAME_BINARY, buf = msg.buf }
          assert(rawequal(d.buf, msg.buf) and d.size == n and d.flags == 0x82)
        end
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      for i, n in ipairs(SIZES) do
        local binary = i % 2 == 0
        local payload = binary and payload_of(n, i) or ("t%d-"):format(i):rep(n):sub(1, n)
        raw:send(client_frame(binary and 0x82 or 0x81, payload))
        local echo = raw:read_frame(5)
        assert.is_not_nil(echo, "no echo of " .. n .. " bytes")
        assert.are.equal(binary and 0x82 or 0x81, echo.byte0)
        assert.is_false(echo.masked)
        assert.are.equal(n, #echo.payload)
        assert.is_true(echo.payload == payload, "echo of " .. n .. " bytes differs")
        local s = seen[i]
        assert.are.equal(n, s.n)
        assert.are.equal(binary and 2 or 1, s.op)
        assert.is_true(s.bytes == payload, "msg.buf of " .. n .. " bytes differs")
        assert.is_true(s.vla)
        assert.are.equal(n + 1, s.size)
        assert.are.equal(0, s.nul)
      end
    end, 20000)
  end)

  it("a buf kept after the handler returned keeps its bytes, also through queueing and collections", function()
    run_async(function()
      local kept = {}
      probe.handle_message = function(msg)
        kept[#kept + 1] = { buf = msg.buf, n = msg.payload_len }
        -- The first handler waits: the messages behind it are queued meanwhile.
        if #kept == 1 then sleep(0.05) end
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      local sent = {}
      for i = 1, 40 do
        local n = ({ 3, 300, 20000, 0 })[i % 4 + 1]
        sent[i] = payload_of(n, i)
        raw:send(client_frame(0x82, sent[i]))
      end
      local deadline = E.now() + 5000
      while #kept < #sent and E.now() < deadline do sleep(0.005) end
      collectgarbage("collect")
      collectgarbage("collect")
      assert.are.equal(#sent, #kept)
      for i, k in ipairs(kept) do
        assert.are.equal(#sent[i], k.n)
        assert.is_true(ffi.string(k.buf, k.n) == sent[i], "kept buf " .. i .. " changed")
        assert.are.equal(0, k.buf[k.n])
      end
    end, 10000)
  end)

  it("a client without handler gets every size byte-exact from recv_frame", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      for i, n in ipairs(SIZES) do
        local payload = payload_of(n, i)
        ws_util.send_msg(conn, payload)
        local msg = ws_util.recv_frame(conn)
        assert.are.equal(ws_const.FRAME_OP_BINARY, msg.op_code)
        assert.are.equal(n, msg.payload_len)
        assert.is_false(msg.use_mask)
        assert.are.equal(n + 1, ffi.sizeof(msg.buf))
        assert.is_true(ffi.string(msg.buf, n) == payload, "recv_frame of " .. n .. " bytes differs")
        assert.are.equal(0, msg.buf[n])
      end
    end, 20000)
  end)

  it("the copy entry copies nothing outside a message's call, or for another length", function()
    local message_copy = require "turbo_ws.message_copy"
    assert.are.equal("cdata", type(message_copy))
    local buf = ffi.new("unsigned char[8]", 9)
    assert.are.equal(1, message_copy(buf, 4))
    assert.are.equal(9, buf[0]) -- untouched
    run_async(function()
      local answers = {}
      probe.handle_message = function(msg)
        local mine = ffi.new("unsigned char[8]")
        answers[#answers + 1] = message_copy(mine, msg.payload_len + 1) -- another length
        answers[#answers + 1] = message_copy(mine, msg.payload_len)     -- the message again
        answers[#answers + 1] = ffi.string(mine, msg.payload_len)
        sleep(0.001)
        answers[#answers + 1] = message_copy(mine, msg.payload_len)     -- after a wait: over
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(client_frame(0x81, "abc"))
      while #answers < 4 do sleep(0.005) end
      assert.are.same({ 1, 0, "abc", 1 }, answers)
    end)
  end)

  it("send_frame from a byte buffer refuses and raises as before", function()
    run_async(function()
      local got = {}
      probe.handle_message = function(msg) got[#got + 1] = ffi.string(msg.buf, msg.payload_len) end
      local _, port = start_server()
      local conn = connect(port)
      local bad = ffi.new("unsigned char[?]", 2, 0xC3, 0x28) -- not UTF-8, the fast path's type
      assert_error_with("UTF-8", ws_util.send_frame,
                        { ss = conn._ss, size = 2, flags = 0x81, buf = bad })
      -- Other cdata still go through ffi.string: a uint16_t array, a struct.
      local words = ffi.new("uint16_t[2]", 0x6968, 0x2121)
      ws_util.send_frame{ ss = conn._ss, size = 4, flags = 0x82, buf = words }
      local rec = ffi.new("struct { char a, b; }", 104, 105)
      ws_util.send_frame{ ss = conn._ss, size = 2, flags = 0x82, buf = rec }
      local d = ws_util.send_frame{ ss = conn._ss, size = 0, flags = 0x82 }
      assert.are.equal(1, ffi.sizeof(d.buf))
      while #got < 3 do sleep(0.005) end
      assert.are.same({ ffi.string(words, 4), "hi", "" }, got)
      ws_util.close(conn)
      assert_error_with("the websocket is closed", ws_util.send_frame,
                        { ss = conn._ss, size = 2, flags = 0x82, buf = ffi.new("unsigned char[?]", 2) })
    end)
  end)
end)
