-- The evlua face's ws_util on an open connection: send_msg, recv_frame,
-- send_frame, ping, close and the socket pool, on the client and the server
-- side. Shared helpers: spec/support/evlua.lua.
local ffi = require "ffi"
local bit = require "bit"
local E = require "spec.support.evlua"
local ws, ws_util, ws_const = E.ws, E.ws_util, E.ws_const
local RECV_WITH_HANDLER, now, sleep = E.RECV_WITH_HANDLER, E.now, E.sleep
local run_async, spawn, assert_error_with = E.run_async, E.spawn, E.assert_error_with
local frame, cframe, raw_listen, accept_for = E.frame, E.cframe, E.raw_listen, E.accept_for
local probe, reset_probe, start_server = E.probe, E.reset_probe, E.start_server
local raw_upgraded, connect = E.raw_upgraded, E.connect
local core = E.core

describe("ws_util", function()
  before_each(reset_probe)

  it("send_msg sends text or binary (default) and describes the frame", function()
    run_async(function()
      local got = {}
      probe.handle_message = function(msg)
        got[#got + 1] = { msg.op_code, ffi.string(msg.buf, msg.payload_len) }
      end
      local _, port = start_server()
      local conn = connect(port)
      local d = ws_util.send_msg(conn, "hello", { msg_type = "TEXT" })
      assert.are.equal(5, d.size)
      assert.are.equal(0x81, d.flags)
      assert.are.equal("hello", ffi.string(d.buf, d.size))
      assert.is_true(d.use_mask) -- client frames are masked
      assert.are.equal(6 + 5, d.total_len)
      local b = ws_util.send_msg(conn, "a\0b")
      assert.are.equal(0x82, b.flags)
      assert.are.equal(3, b.size)
      assert.are.equal(0x82, ws_util.send_msg(conn, "bin", { msg_type = "BINARY" }).flags)
      local conn_wait = function() return #got == 3 or nil end
      while not conn_wait() do sleep(0.005) end
      assert.are.same({ { 1, "hello" }, { 2, "a\0b" }, { 2, "bin" } }, got)
    end)
  end)

  it("send_msg describes messages of every size: buf is a NUL-terminated copy, the same on every read", function()
    run_async(function()
      local got = {}
      probe.handle_message = function(msg) got[#got + 1] = ffi.string(msg.buf, msg.payload_len) end
      local _, port = start_server()
      local conn = connect(port)
      local sent = {}
      for i, n in ipairs{ 0, 1, 255, 256, 257, 70000 } do
        local payload = (string.char(i) .. "x\0y"):rep(n):sub(1, n)
        local d = ws_util.send_msg(conn, payload)
        assert.are.equal(payload, d.payload)
        assert.is_nil(rawget(d, "buf")) -- made when first read
        assert.are.equal(n, d.size)
        assert.are.equal(0x82, d.flags)
        assert.is_true(d.use_mask)
        assert.are.equal(d.hdr_len + n, d.total_len)
        assert.is_true(ffi.istype("unsigned char[?]", d.buf))
        assert.are.equal(n + 1, ffi.sizeof(d.buf))
        assert.are.equal(payload, ffi.string(d.buf, d.size))
        assert.are.equal(0, d.buf[n])
        assert.is_true(rawequal(d.buf, d.buf))
        assert.is_nil(d.nothing)
        sent[i] = payload
      end
      -- A buf assigned before it was read replaces the one to be made.
      local d = ws_util.send_msg(conn, ("z"):rep(300))
      d.buf = nil
      assert.is_nil(d.buf)
      d = ws_util.send_msg(conn, "w")
      d.buf = "mine"
      assert.are.equal("mine", d.buf)
      sent[#sent + 1] = ("z"):rep(300)
      sent[#sent + 1] = "w"
      while #got < #sent do sleep(0.005) end
      assert.are.same(sent, got)
    end)
  end)

  it("send_msg on a closed connection raises 'ws_util.send_msg: the websocket is closed'", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      ws_util.close(conn)
      local ok, err = pcall(ws_util.send_msg, conn, "x")
      assert.is_false(ok)
      assert.are.equal("ws_util.send_msg: the websocket is closed", err)
      ok, err = pcall(ws_util.send_msg, conn, ("x"):rep(1000), { msg_type = "TEXT" })
      assert.are.equal("ws_util.send_msg: the websocket is closed", err)
    end)
  end)

  it("send_msg masks on the client and checks its arguments", function()
    run_async(function()
      local listener = raw_listen()
      local frames = {}
      local join = spawn(function()
        local peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n")
        for i = 1, 3 do frames[i] = peer:read_frame() end
        peer:send(frame(0x88, frames[3].payload))
        peer:close()
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      ws_util.send_msg(conn, "hi", { msg_type = "TEXT" })
      ws_util.send_frame{ ss = conn._ss, size = 3, flags = 0, buf = ffi.cast("const char *", "raw"),
                          use_mask = false } -- use_mask is the socket's role, not the caller's
      ws_util.close(conn)
      join()
      assert.are.equal(0x81, frames[1].byte0)
      assert.is_true(frames[1].masked)
      assert.are.equal("hi", frames[1].payload)
      assert.are.equal(0x82, frames[2].byte0)
      assert.is_true(frames[2].masked)
      assert.are.equal("raw", frames[2].payload)
      assert.are.equal(0x88, frames[3].byte0)
      assert.are.equal("\3\232", frames[3].payload)
      assert_error_with("connection (table) expected", ws_util.send_msg, nil, "x")
      assert_error_with("no websocket (_ss)", ws_util.send_msg, {}, "x")
      assert_error_with("message (string) expected", ws_util.send_msg, conn, 1)
      assert_error_with("options (table) expected", ws_util.send_msg, conn, "x", "TEXT")
    end)
  end)

  it("send_msg refuses invalid UTF-8 as text (RFC 6455)", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      assert_error_with("UTF-8", ws_util.send_msg, conn, "\255", { msg_type = "TEXT" })
      -- In ws_util's error form, on one line.
      local _, err = pcall(ws_util.send_msg, conn, "\255", { msg_type = "TEXT" })
      assert.truthy(tostring(err):find("^ws_util.send_msg: "), err)
      assert.falsy(tostring(err):find("\n", 1, true), err)
      assert.are.equal(0x82, ws_util.send_msg(conn, "\255").flags)
    end)
  end)

  it("recv_frame returns every kind of frame with evlua's msg fields (client side)", function()
    run_async(function()
      probe.handle_message = function(msg)
        local s = { _ss = msg._ss }
        ws_util.send_msg(s, "text", { msg_type = "TEXT" })
        ws_util.send_msg(s, "bi\0n")
        ws_util.ping(s, "from server")
      end
      local _, port = start_server()
      local conn = connect(port)
      ws_util.send_msg(conn, "go")
      local t = ws_util.recv_frame(conn)
      assert.are.equal(1, t.op_code)
      assert.are.equal(0x81, t.flags)
      assert.are.equal(4, t.payload_len)
      assert.is_false(t.use_mask)
      assert.is_nil(t.mask)
      assert.are.equal("text", ffi.string(t.buf))
      assert.are.equal(0, t.buf[4])
      assert.are.equal(conn._ss, t._ss)
      local b = ws_util.recv_frame(conn)
      assert.are.same({ 2, 0x82, 4, "bi\0n", 0 },
                      { b.op_code, b.flags, b.payload_len, ffi.string(b.buf, 4), b.buf[4] })
      local p = ws_util.recv_frame(conn)
      assert.are.same({ 9, 0x89, "from server" }, { p.op_code, p.flags, ffi.string(p.buf) })
    end)
  end)

  it("recv_frame raises when the connection has a message handler", function()
    run_async(function()
      local _, port = start_server()
      package.preload["evspec.client_handler"] = function() return { handle_message = print } end
      local conn = connect(port, nil, { msg_handler = "evspec.client_handler" })
      assert.are.equal("evspec.client_handler", conn.msg_handler)
      local ok, err = pcall(ws_util.recv_frame, conn)
      assert.is_false(ok)
      assert.truthy(tostring(err):find(RECV_WITH_HANDLER, 1, true))
      -- also for a table naming one over a socket without
      local plain = connect(port)
      ok, err = pcall(ws_util.recv_frame, { _ss = plain._ss, msg_handler = "x" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find(RECV_WITH_HANDLER, 1, true))
    end)
  end)

  it("dispatches a client's frames to its msg_handler module", function()
    run_async(function()
      local seen = {}
      package.preload["evspec.client_probe"] = function()
        return {
          handle_message = function(msg)
            seen[#seen + 1] = { ffi.string(msg.buf), msg.op_code, msg.use_mask, msg.mask }
          end,
          handle_pong = function(msg) seen[#seen + 1] = { ffi.string(msg.buf), msg.op_code } end,
        }
      end
      local _, port = start_server()
      local conn = connect(port, nil, { msg_handler = "evspec.client_probe" })
      ws_util.send_msg(conn, "one", { msg_type = "TEXT" })
      ws_util.ping(conn, "p1")
      ws_util.send_msg(conn, "two")
      while #seen < 3 do sleep(0.005) end
      assert.are.same({ { "one", 1, false }, { "p1", 10 }, { "two", 2, false } }, seen)
    end)
  end)

  it("ping sends PING (default payload 'PING'); the PONG comes back", function()
    run_async(function()
      local pings = {}
      probe.handle_ping = function(msg) pings[#pings + 1] = ffi.string(msg.buf) end
      local _, port = start_server()
      local conn = connect(port)
      local d = ws_util.ping(conn)
      assert.are.same({ 4, 0x89 }, { d.size, d.flags })
      local pong = ws_util.recv_frame(conn)
      assert.are.same({ 10, 0x8A, "PING" }, { pong.op_code, pong.flags, ffi.string(pong.buf) })
      ws_util.ping(conn, "custom")
      assert.are.equal("custom", ffi.string(ws_util.recv_frame(conn).buf))
      assert.are.same({ "PING", "custom" }, pings)
      assert_error_with("at most 125 bytes", ws_util.ping, conn, ("x"):rep(126))
      assert_error_with("payload (string) expected", ws_util.ping, conn, 5)
    end)
  end)

  it("close sends CLOSE 1000, waits for the closing handshake; later calls raise", function()
    run_async(function()
      local _, port = start_server()
      local raw_conn = connect(port)
      local d = ws_util.close(raw_conn)
      assert.are.same({ 2, 0x88, "\3\232" }, { d.size, d.flags, ffi.string(d.buf, 2) })
      assert_error_with("closed", ws_util.send_msg, raw_conn, "x")
      assert_error_with("closed", ws_util.ping, raw_conn)
      assert_error_with("closed", ws_util.recv_frame, raw_conn)
      assert_error_with("closed", ws_util.close, raw_conn)
    end)
  end)

  -- Messages send_msg accepted (queued) that never went out are reported:
  -- the handler's close raises with the core's count, instead of
  -- returning as if they had been sent.
  it("close raises, naming what was not sent, when the closing handshake times out with messages queued", function()
    run_async(function()
      local result = {}
      probe.handle_message = function(msg)
        local conn = { _ss = msg._ss }
        for i = 1, 32 do ws_util.send_msg(conn, ("%08d:"):format(i) .. ("s"):rep(262144 - 9)) end
        local t0 = now()
        result.ok, result.err = pcall(ws_util.close, conn)
        result.waited = now() - t0
        result.later = select(2, pcall(ws_util.send_msg, conn, "x"))
      end
      -- 8 MiB queued (max_buffered 16 MiB: no send waits), more than the
      -- kernel's buffers hold for a peer that reads nothing.
      local _, port = start_server(nil, { close_timeout = 0.3, max_buffered = 16 * 1048576 })
      local raw = raw_upgraded(port, nil, 4096)
      raw:send(cframe(0x81, "go"))
      local deadline = now() + 4000
      while result.ok == nil and now() < deadline do sleep(0.01) end
      assert.is_false(result.ok, "ws_util.close returned though messages were not sent")
      assert.truthy(tostring(result.err):find(
        "^ws_util%.close: closed: %d+ queued bytes were not sent: the connection closed first$"), result.err)
      assert.truthy(result.waited >= 250, result.waited) -- after the close timeout
      assert.truthy(tostring(result.later):find(
        "^ws_util%.send_msg: the websocket is closed %(closed: %d+ queued bytes were not sent"), result.later)
    end)
  end)

  it("close raises on the client when the peer resets the connection before taking what was queued", function()
    run_async(function()
      local listener = raw_listen(4096)
      local peer
      local join = spawn(function()
        peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n")
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      join()
      conn._send_timeout = 1
      for i = 1, 8 do -- what the queue (1 MiB) takes after the kernel's buffers
        if not pcall(ws_util.send_msg, conn, ("%08d:"):format(i) .. ("s"):rep(262144 - 9)) then break end
      end
      assert.truthy(ws_util.buffered_amount(conn) > 0)
      -- The peer goes away without reading: a reset, during the close.
      core.add_timeout(now() + 200, function() peer:close() end)
      local ok, err = pcall(ws_util.close, conn)
      assert.is_false(ok, "ws_util.close returned though the queue was not sent")
      assert.truthy(tostring(err):find("^ws_util%.close: %a+: "), err)
      listener:close()
    end)
  end)

  it("send_msg names why the core closed the connection: close_slow_readers' 1008", function()
    run_async(function()
      local errs = {}
      probe.handle_message = function(msg)
        local conn = { _ss = msg._ss }
        for _ = 1, 64 do
          local ok, err = pcall(ws_util.send_msg, conn, ("s"):rep(262144))
          if not ok then
            errs[#errs + 1] = err
            if #errs == 2 then break end
          end
        end
        errs.done = true
      end
      local _, port = start_server(nil, { close_slow_readers = true, close_timeout = 0.3 })
      local raw = raw_upgraded(port, nil, 4096)
      raw:send(cframe(0x81, "go"))
      local deadline = now() + 3000
      while not errs.done and now() < deadline do sleep(0.01) end
      assert.are.equal(2, #errs)
      -- The send refused, and the next one.
      for i = 1, 2 do
        assert.truthy(tostring(errs[i]):find("^ws_util%.send_msg: the websocket is closed %(too_big: "
                                             .. "closed with 1008: the peer did not read"), errs[i])
      end
    end)
  end)

  it("recv_frame returns the server's CLOSE, then raises", function()
    run_async(function()
      probe.handle_message = function(msg) ws_util.close({ _ss = msg._ss }) end
      local _, port = start_server()
      local conn = connect(port)
      ws_util.send_msg(conn, "close me")
      local c = ws_util.recv_frame(conn)
      assert.are.same({ 8, 0x88, 2, "\3\232" },
                      { c.op_code, c.flags, c.payload_len, ffi.string(c.buf, 2) })
      assert_error_with("closed", ws_util.recv_frame, conn)
      assert_error_with("closed", ws_util.send_msg, conn, "x")
    end)
  end)

  it("recv_frame returns the server's CLOSE as it arrives, though the server holds TCP open", function()
    run_async(function()
      local listener = raw_listen()
      local peer
      local join = spawn(function()
        peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n"
                  .. frame(0x88, "\15\160bye"))
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      join()
      -- TCP stays open (the RFC wants the server to close it first): the
      -- CLOSE must not wait for that, nor for the client's close timeout.
      conn._recv_timeout = 1
      local c = ws_util.recv_frame(conn)
      assert.are.equal(8, c.op_code) -- CLOSE
      assert.are.equal("\15\160bye", ffi.string(c.buf, c.payload_len))
      peer:close()
      listener:close()
    end)
  end)

  it("recv_frame raises when the server drops the connection", function()
    run_async(function()
      local listener = raw_listen()
      local join = spawn(function()
        local peer = listener:accept()
        local key = peer:read_request().fields["sec-websocket-key"]
        peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                  .. "Upgrade: websocket\r\nSec-WebSocket-Accept: " .. accept_for(key) .. "\r\n\r\n"
                  .. frame(0x81, "last words"))
        peer:close()
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/", hdrs = {},
                               external = false }
      join()
      assert.are.equal("last words", ffi.string(ws_util.recv_frame(conn).buf))
      assert_error_with("without a closing handshake", ws_util.recv_frame, conn)
    end)
  end)

  it("recv_frame raises after _recv_timeout and closes the connection", function()
    run_async(function()
      probe.handle_message = function() end -- never answers
      local _, port = start_server()
      local conn = connect(port)
      conn._recv_timeout = 0.1
      local t0 = now()
      assert_error_with("no frame within 0.1 seconds", ws_util.recv_frame, conn)
      assert.is_true(now() - t0 >= 90)
      assert_error_with("closed", ws_util.send_msg, conn, "x")
    end)
  end)

  -- A top-level script (main thread, no loop running, as evlua's client
  -- samples) sending to a peer that reads nothing: the socket takes what
  -- it can, then each send returns at once, queued, while the queue is
  -- under max_buffered (1 MiB); past it a send waits _send_timeout for room
  -- and raises. No send says "sent" after waiting, nor for what the core
  -- refused.
  it("send_msg from top-level code returns once the socket took the frame, else raises after _send_timeout", function()
    assert.is_nil(coroutine.running())
    local TIMEOUT = 1
    local listener = raw_listen()
    local peer
    local join = spawn(function()
      peer = listener:accept()
      local request = peer:read_request()
      peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                .. "Sec-WebSocket-Accept: " .. accept_for(request.fields["sec-websocket-key"]) .. "\r\n\r\n")
    end)
    local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/h", hdrs = {},
                             external = false, timeout = TIMEOUT }
    join()
    local chunk = string.rep("s", 65536)
    local sent, err, waited = 0, nil, nil
    for _ = 1, 1000 do -- the kernel's buffers take a few MiB first
      local t0 = now()
      local ok, e = pcall(ws_util.send_msg, conn, chunk)
      if not ok then err, waited = e, now() - t0; break end
      sent = sent + 1
      -- returned: written, as evlua's blocking write (not left queued)
      assert.are.equal(0, ws_util.buffered_amount(conn))
    end
    peer:close() -- unread data: the client's connection is reset
    listener:close()
    assert.truthy(sent > 0)
    assert.truthy(err and tostring(err):find("^ws_util.send_msg: timed out waiting to send"),
                  ("after %d sends: %s"):format(sent, tostring(err)))
    assert.truthy(waited >= TIMEOUT * 1000 - 50, waited)
    sleep(0.1)
    assert_error_with("closed", ws_util.send_msg, conn, "x")
  end)

  -- A client connection to a raw peer on `listener` that answers the
  -- upgrade and then reads only when the test says: the connection and
  -- the peer's end.
  local function connect_to_raw_peer(listener)
    local peer
    local join = spawn(function()
      peer = listener:accept()
      local request = peer:read_request()
      peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                .. "Sec-WebSocket-Accept: " .. accept_for(request.fields["sec-websocket-key"]) .. "\r\n\r\n")
    end)
    local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/h", hdrs = {},
                             external = false, timeout = 3 }
    join()
    return conn, peer
  end

  -- A send from top-level code that times out part-way: the frame's head
  -- is in the kernel's buffer (it cannot be recalled), the rest in the
  -- queue. The connection is aborted, so the peer gets a frame cut short,
  -- never the message: a program that sends it again after the error
  -- does not send it twice.
  it("send_msg from top-level code that times out aborts the connection: the message never arrives", function()
    assert.is_nil(coroutine.running())
    local SIZE = 8 * 1048576
    local listener = raw_listen(4096) -- the peer's window stays small
    local conn, peer = connect_to_raw_peer(listener)
    conn._send_timeout = 0.5
    local ok, err = pcall(ws_util.send_msg, conn, ("m"):rep(SIZE))
    assert.is_false(ok)
    -- The peer reads now (the loop runs while it waits): what arrives ends
    -- before the frame does (2 + 8 bytes of head, a 4-byte mask).
    local got, eof = peer:count_until_eof(3)
    assert.is_true(eof, "the connection was not closed")
    assert.truthy(got < SIZE + 14, ("the peer got %d bytes: the whole frame"):format(got))
    assert.truthy(tostring(err):find("^ws_util%.send_msg: timed out waiting to send %(%d+ bytes not taken "
                                     .. "by the socket in 0%.5 s%); the connection was aborted"), err)
    assert_error_with("ws_util.send_msg: the websocket is closed (timeout: the connection was aborted "
                      .. "after a send timed out (", ws_util.send_msg, conn, "again")
    assert_error_with("ws_util.close: the websocket is closed (timeout: ", ws_util.close, conn)
    listener:close()
  end)

  -- Top-level code: a connection that ends while a send waits for the
  -- socket (the peer resets it) is an error of that send, not a return.
  it("send_msg from top-level code raises, naming the fault, when the connection fails before the socket took the message", function()
    assert.is_nil(coroutine.running())
    local listener = raw_listen(4096)
    local conn, peer = connect_to_raw_peer(listener)
    conn._send_timeout = 3
    -- The peer goes away unread while the send waits: a reset.
    core.add_timeout(now() + 200, function() peer:close() end)
    local ok, err = pcall(ws_util.send_msg, conn, ("m"):rep(8 * 1048576))
    assert.is_false(ok, "send_msg returned for a message the socket did not take")
    assert.truthy(tostring(err):find("^ws_util%.send_msg: the websocket is closed %(%a+: "), err)
    listener:close()
  end)

  it("send_frame sends data frames; fragments arrive as one message", function()
    run_async(function()
      local got, pings = {}, {}
      probe.handle_message = function(msg)
        got[#got + 1] = { msg.op_code, ffi.string(msg.buf, msg.payload_len) }
      end
      probe.handle_ping = function(msg) pings[#pings + 1] = ffi.string(msg.buf) end
      local _, port = start_server()
      local conn = connect(port)
      local function cbuf(s) return ffi.cast("const unsigned char *", s) end
      local d = ws_util.send_frame{ ss = conn._ss, size = 2, flags = 0, buf = cbuf("ab"),
                                    use_mask = true }
      assert.are.equal(0x82, d.flags)
      assert.are.equal(2, d.size)
      -- flags 0 means FIN|BINARY (as in evlua), so a middle continuation
      -- frame carries an RSV bit to be non-zero; RSV bits are not sent.
      ws_util.send_frame{ ss = conn._ss, size = 3, flags = ws_const.FRAME_OP_TEXT, buf = cbuf("fra") }
      ws_util.send_frame{ ss = conn._ss, size = 1, flags = ws_const.FRAME_OP_PING, buf = cbuf("p") }
      ws_util.send_frame{ ss = conn._ss, size = 2, flags = ws_const.FRAME_FLAG_RSV3, buf = cbuf("gm") }
      local last = ws_util.send_frame{ conn = conn, size = 4, buf = cbuf("ents"),
        flags = bit.bor(ws_const.FRAME_FLAG_FIN, ws_const.FRAME_OP_CONT) }
      assert.are.equal(0x80, last.flags)
      local ping = ws_util.send_frame{ ss = conn._ss, size = 0, flags = ws_const.FRAME_OP_PING }
      assert.are.equal(0x89, ping.flags) -- control frames always get FIN
      while #got < 2 or #pings < 2 do sleep(0.005) end
      assert.are.same({ { 2, "ab" }, { 1, "fragments" } }, got)
      assert.are.same({ "p", "" }, pings)
    end)
  end)

  it("send_frame refuses what cannot be sent", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      local buf = ffi.cast("const unsigned char *", "x")
      assert_error_with("without a message to continue", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = ws_const.FRAME_FLAG_FIN, buf = buf })
      assert_error_with("reserved opcode 0x3", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = 0x83, buf = buf })
      assert_error_with("'ss'", ws_util.send_frame, { size = 1, flags = 0, buf = buf })
      assert_error_with("'size'", ws_util.send_frame, { ss = conn._ss, size = 1.5, flags = 0, buf = buf })
      assert_error_with("'flags'", ws_util.send_frame, { ss = conn._ss, size = 1, buf = buf })
      assert_error_with("'buf'", ws_util.send_frame, { ss = conn._ss, size = 1, flags = 0, buf = "x" })
      assert_error_with("at most 125", ws_util.send_frame, { ss = conn._ss, size = 126,
        flags = ws_const.FRAME_OP_PING, buf = ffi.new("unsigned char[126]") })
      -- Never past what a sized buffer holds: that would send (or crash on)
      -- the process's memory.
      for _, b in ipairs({ ffi.new("char[4]"), ffi.new("unsigned char[?]", 4) }) do
        for _, flags in ipairs({ 0x82, 0x89 }) do
          assert_error_with("'size' (5) is more than 'buf' holds (4 bytes)", ws_util.send_frame,
                            { ss = conn._ss, size = 5, flags = flags, buf = b })
        end
      end
      assert_error_with("'size' (1000000000) is more than", ws_util.send_frame,
                        { ss = conn._ss, size = 1e9, flags = 0x82, buf = ffi.new("char[4]") })
      ws_util.send_frame{ ss = conn._ss, size = 1, flags = ws_const.FRAME_OP_TEXT, buf = buf }
      assert_error_with("before the fragmented one was finished", ws_util.send_frame,
                        { ss = conn._ss, size = 1, flags = ws_const.FRAME_TEXT, buf = buf })
    end)
  end)

  it("send_frame with CLOSE sends its code, or 1000 for evlua's free-text payload", function()
    run_async(function()
      local _, port = start_server()
      for _, case in ipairs{ { "\15\160done", 4000 }, { "CLOSING WEBSOCKET", 1000 } } do
        local raw_peer = raw_upgraded(port) -- to see the server's side of the wire
        -- the server-side socket sends the CLOSE: capture its _ss
        local ss
        probe.handle_message = function(msg) ss = msg._ss end
        raw_peer:send(cframe(0x81, "hi"))
        while not ss do sleep(0.005) end
        local payload = case[1]
        ws_util.send_frame{ ss = ss, size = #payload, flags = ws_const.FRAME_OP_CLOSE,
                            buf = ffi.cast("const unsigned char *", payload) }
        local close = raw_peer:read_frame()
        assert.are.equal(0x88, close.byte0)
        assert.are.equal(case[2], close.payload:byte(1) * 256 + close.payload:byte(2))
        raw_peer:close()
      end
    end)
  end)

  it("keeps a process-wide pool of live sockets", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-room"))
      ws_util.add_ws_to_pool(conn, "evspec-room")
      local pooled = ws_util.get_ws_from_pool("evspec-room")
      assert.are.same({ _ss = conn._ss, shared = true }, pooled)
      ws_util.send_msg(pooled, "via pool", { msg_type = "TEXT" })
      assert.are.equal("via pool", ffi.string(ws_util.recv_frame(conn).buf))
      ws_util.add_ws_to_pool(pooled, "evspec-other") -- a shared conn is not added
      assert.is_nil(ws_util.get_ws_from_pool("evspec-other"))
      ws_util.close(conn)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-room"))
      assert_error_with("name (string) expected", ws_util.add_ws_to_pool, conn, 1)
      assert_error_with("name (string) expected", ws_util.get_ws_from_pool, nil)
    end)
  end)

  it("reads nothing more while a frame waits for recv_frame, instead of piling frames up", function()
    -- A blocking evlua client that does not call recv_frame does not read
    -- its socket: the server streams 30 MiB meanwhile, and it stays in
    -- TCP's buffers and the server's queue, not in the Lua heap.
    run_async(function()
      local core = E.core
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req)
        require("spec.support.loop").stream(req:upgrade(), 480)
      end)
      local conn = connect(server:port(), "/")
      assert.are.equal(64 * 1024, ws_util.recv_frame(conn).payload_len)
      sleep(0.5)
      collectgarbage()
      assert.is_true(collectgarbage("count") < 8 * 1024, collectgarbage("count") .. " KiB in the Lua heap")
      for _ = 1, 20 do assert.are.equal(64 * 1024, ws_util.recv_frame(conn).payload_len) end
      server:close()
    end)
  end)

  it("hands out several sockets pooled under one name in turn, as evpoco's pool queue", function()
    run_async(function()
      local _, port = start_server()
      local a, b = connect(port), connect(port)
      ws_util.add_ws_to_pool(a, "evspec-members")
      ws_util.add_ws_to_pool(b, "evspec-members")
      local order = {}
      for i = 1, 4 do order[i] = ws_util.get_ws_from_pool("evspec-members")._ss end
      assert.are.same({ a._ss, b._ss, a._ss, b._ss }, order)
      ws_util.close(a) -- a closed socket leaves the pool
      assert.are.equal(b._ss, ws_util.get_ws_from_pool("evspec-members")._ss)
      assert.are.equal(b._ss, ws_util.get_ws_from_pool("evspec-members")._ss)
      ws_util.close(b)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-members"))
    end)
  end)

  it("wakes every coroutine waiting in recv_frame on one connection", function()
    run_async(function()
      local _, port = start_server()
      local conn = connect(port)
      local got = {}
      for i = 1, 2 do
        coroutine.wrap(function()
          local ok, frame = pcall(ws_util.recv_frame, conn)
          got[#got + 1] = ok and ffi.string(frame.buf) or tostring(frame)
        end)()
      end
      ws_util.send_msg(conn, "one", { msg_type = "TEXT" })
      ws_util.send_msg(conn, "two", { msg_type = "TEXT" })
      local waited = 0
      while #got < 2 and waited < 2 do sleep(0.01); waited = waited + 0.01 end
      table.sort(got)
      assert.are.same({ "one", "two" }, got)
      ws_util.close(conn)
    end)
  end)

  it("lets a server handler pool its socket for other code to send on", function()
    run_async(function()
      probe.handle_message = function(msg)
        ws_util.add_ws_to_pool({ _ss = msg._ss }, "evspec-subscriber")
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "subscribe"))
      local conn
      while not conn do
        sleep(0.005)
        conn = ws_util.get_ws_from_pool("evspec-subscriber")
      end
      ws_util.send_msg(conn, "event", { msg_type = "TEXT" })
      assert.are.equal("\129\005event", raw:read_frame().raw)
      raw:send(cframe(0x88, "\3\232"))
      assert.is_true(raw:wait_eof())
      sleep(0.02)
      assert.is_nil(ws_util.get_ws_from_pool("evspec-subscriber"))
    end)
  end)
end)
