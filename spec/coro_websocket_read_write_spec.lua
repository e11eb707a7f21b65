-- The coro-websocket face on an open connection to turbo_ws's own server:
-- read and write (messages, fragments, pings, pongs, the close handshake,
-- drops), res.socket, heartbeat, and many coroutines on one loop.
-- Shared helpers: spec/support/coro_websocket.lua.
local C = require "spec.support.coro_websocket"
local core, run_loop, cleanup, connect = C.core, C.run_loop, C.cleanup, C.connect
local co_run, assert_error_with, sleep = C.co_run, C.assert_error_with, C.sleep
local test_server, stop_peer = C.test_server, C.stop_peer

describe("turbo_ws.coro_websocket", function()
  teardown(stop_peer)
  after_each(cleanup)

  describe("connect to a turbo_ws server", function()
    it("writes binary by default and text with opcode 1; reads message tables", function()
      local server, port = test_server()
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = port })
        assert.is_true(write({ payload = "\0\1\2bin" }))
        assert.is_true(write({ opcode = 1, payload = "héllo" }))
        assert.is_true(write({ opcode = 2 })) -- no payload: empty
        assert.are.same({ fin = true, rsv1 = false, rsv2 = false, rsv3 = false, opcode = 2,
                          mask = false, len = 6, payload = "\0\1\2bin" }, read())
        local text = read()
        assert.are.equal(1, text.opcode)
        assert.are.equal("héllo", text.payload)
        assert.are.equal(#"héllo", text.len)
        assert.are.equal("", read().payload)
        write()
        assert.is_nil(read())
        server:close()
      end)
    end)

    it("sends frames written with fin = false as one message when the last comes", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        assert.is_true(write({ opcode = 1, fin = false, payload = "frag" }))
        assert.is_true(write({ opcode = 0, fin = false, payload = "ment" }))
        assert.is_true(write({ opcode = 0, payload = "ed" }))
        local m = read()
        assert.are.equal(1, m.opcode)
        assert.are.equal("fragmented", m.payload)
        assert_error_with("continuation frame without a started message", write, { opcode = 0, payload = "x" })
        write({ opcode = 2, fin = false, payload = "a" })
        assert_error_with("unfinished", write, { opcode = 2, payload = "b" })
        write()
        read()
        server:close()
      end)
    end)

    it("queues messages that arrive before read() is called", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:burst:50" })
        sleep(100)
        for i = 1, 50 do assert.are.equal("m" .. i, read().payload) end
        write()
        read()
        server:close()
      end)
    end)

    it("stops reading while a message waits unread, instead of piling messages up", function()
      -- As luvit's coro-channel. The server streams 30 MiB while the
      -- program does not read: it stays in TCP's buffers and the server's
      -- queue, not in the Lua heap (where unread messages were queued).
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:stream:480" })
        assert.are.equal(64 * 1024, #read().payload)
        sleep(500)
        collectgarbage()
        assert.is_true(collectgarbage("count") < 8 * 1024, collectgarbage("count") .. " KiB in the Lua heap")
        for _ = 1, 20 do assert.are.equal(64 * 1024, #read().payload) end
        write()
        server:close()
      end, 8000)
    end)

    it("returns pings (already answered with the same payload) and pongs", function()
      local server, port, seen = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:ping:are you there" })
        local ping = read()
        assert.are.equal(9, ping.opcode)
        assert.are.equal("are you there", ping.payload)
        assert.is_true(write({ opcode = 9, payload = "p" })) -- the server pongs
        local pong = read()
        assert.are.equal(10, pong.opcode)
        assert.are.equal("p", pong.payload)
        assert.is_true(write({ opcode = 10, payload = "unsolicited" }))
        write({ opcode = 1, payload = "sync" })
        assert.are.equal("sync", read().payload)
        assert.are.same({ "are you there", "unsolicited" }, seen.pongs)
        write()
        read()
        server:close()
      end)
    end)

    it("after write() closed, swallows the control frames waiting unread too; data still comes", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:ping:p1" })
        write({ opcode = 9, payload = "p2" }) -- the server pongs
        write({ opcode = 1, payload = "t1" }) -- and echoes
        sleep(100) -- all came: the ping waits unread, the rest is held back
        assert.is_true(write())
        assert.are.equal("t1", read().payload) -- neither the ping nor the pong
        assert.is_nil(read())
        server:close()
      end)
    end)

    it("returns the server's close frame, echoes it, then nil for every read", function()
      local server, port, seen = test_server()
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:close:4000:bye" })
        local close = read()
        assert.are.equal(8, close.opcode)
        assert.are.equal("\15\160bye", close.payload) -- 4000 + reason
        assert.are.equal(5, close.len)
        assert.is_nil(read())
        assert.is_nil(read())
        assert.are.same({ 4000, "bye" }, seen.close)
        assert.is_true(res.socket:is_closing())
        local ok, err = write({ opcode = 1, payload = "late" })
        assert.is_false(ok)
        assert.are.equal("already shutdown", err)
        ok, err = write()
        assert.is_false(ok)
        assert.are.equal("string", type(err))
        server:close()
      end)
    end)

    it("write() and write(nil) send a close; the reply is not shown; read gives nil", function()
      local server, port, seen = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        assert.is_true(write(nil))
        assert.is_nil(read())
        -- An empty close frame, as the original sends: the server sees 1005 (no status).
        assert.are.equal(1005, seen.close[1])
        assert.is_false((write({ payload = "x" })))
        server:close()
      end)
    end)

    it("write{opcode = 8} sends that close code and reason", function()
      local server, port, seen = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        assert.is_true(write({ opcode = 8, payload = "\15\160reconnect" }))
        assert.is_nil(read())
        assert.are.same({ 4000, "reconnect" }, seen.close)
        local ok, err = write({ opcode = 8, payload = "\3\232" })
        assert.is_false(ok)
        assert.are.equal("already shutdown", err)
        server:close()
      end)
    end)

    it("read gives nil when the connection drops, and again without hanging", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "cmd:abort" })
        local msg, err = read()
        assert.is_nil(msg)
        assert.is_nil(read())
        assert.is_nil(read())
        assert.is_false((write({ payload = "x" })))
        server:close()
      end)
    end)

    it("ends `for msg in read` after res.socket:shutdown(), as the documented example", function()
      local server, port, seen = test_server()
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = port })
        write({ payload = "Hello There!" })
        local got = {}
        for msg in read do
          got[#got + 1] = msg.payload
          res.socket:shutdown()
        end
        assert.are.same({ "Hello There!" }, got)
        assert.are.equal(1000, seen.close[1])
        server:close()
      end)
    end)

    it("res.socket:close() drops the connection and wakes a pending read with nil", function()
      local server, port, seen = test_server()
      local closed_cb = false
      co_run(function()
        local res, read = connect({ host = "127.0.0.1", port = port })
        local woke
        coroutine.wrap(function()
          woke = { read() }
        end)()
        res.socket:close(function() closed_cb = true end)
        assert.is_true(res.socket:is_closing())
        sleep(100)
        assert.are.same({}, woke)
        assert.is_nil(read())
        server:close()
      end)
      assert.is_true(closed_cb)
      assert.are.equal(1006, seen.close[1])
    end)

    it("wakes every coroutine waiting in read() with nil when the connection ends", function()
      local server, port = test_server()
      co_run(function()
        local res, read = connect({ host = "127.0.0.1", port = port })
        local woke = {}
        for i = 1, 3 do
          coroutine.wrap(function() woke[i] = { n = select("#", read()) } end)()
        end
        res.socket:close()
        assert.is_nil(read())
        assert.are.same({ { n = 2 }, { n = 2 }, { n = 2 } }, woke)
        server:close()
      end)
    end)

    it("serves two coroutines reading one connection in turn", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        local got = {}
        for i = 1, 2 do
          coroutine.wrap(function() got[i] = read().payload end)()
        end
        write({ payload = "a" })
        write({ payload = "b" })
        sleep(100)
        assert.are.same({ "a", "b" }, got)
        write()
        read()
        server:close()
      end)
    end)

    it("raises for misuse of write and read", function()
      local server, port = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        assert_error_with("table or nil expected, got string", write, "text")
        assert_error_with("bad field 'opcode'", write, { opcode = 3, payload = "" })
        assert_error_with("bad field 'opcode'", write, { opcode = "1", payload = "" })
        assert_error_with("bad field 'payload'", write, { payload = 5 })
        assert_error_with("RSV bits", write, { payload = "", rsv1 = true })
        assert_error_with("at most 125 bytes", write, { opcode = 9, payload = ("x"):rep(126) })
        assert_error_with("2-byte code", write, { opcode = 8, payload = "x" })
        -- The core's reason, one line: no traceback inside the message.
        for _, frame in ipairs({ { opcode = 1, payload = "\255\254" }, { opcode = 8, payload = "\3\237" } }) do
          local ok, err = pcall(write, frame)
          assert.is_false(ok)
          assert.truthy(tostring(err):find("turbo_ws.coro_websocket.write: ", 1, true), err)
          assert.falsy(tostring(err):find("traceback", 1, true), err)
          assert.falsy(tostring(err):find("runtime error", 1, true), err)
        end
        assert.is_true(write({ opcode = 1, payload = "still open" }))
        assert.are.equal("still open", read().payload)
        -- res.socket's callbacks are optional functions, as luv's.
        local res = select(1, connect({ host = "127.0.0.1", port = port }))
        assert_error_with("socket:shutdown: bad argument #1 'callback' (function expected, got number)",
                          res.socket.shutdown, res.socket, 5)
        assert_error_with("socket:close: bad argument #1 'callback' (function expected, got string)",
                          res.socket.close, res.socket, "x")
        assert.is_true(res.socket:shutdown())
        write()
        assert.is_nil(read())
        server:close()
      end)
    end)

    it("raises when read is called outside a coroutine", function()
      local server, port = test_server()
      local read_fn, write_fn
      coroutine.wrap(function()
        local _
        _, read_fn, write_fn = connect({ host = "127.0.0.1", port = port })
        core.close()
      end)()
      local guard = core.add_timeout(core.gettimemonotonic() + 3000, function() core.close() end)
      core.start()
      core.remove_timeout(guard)
      assert.is_function(read_fn)
      assert_error_with("read: must be called inside a coroutine", read_fn)
      co_run(function()
        write_fn()
        read_fn()
        server:close()
      end)
    end)

    it("heartbeat: an empty pong every N ms while open, stopping at close", function()
      local server, port, seen = test_server()
      co_run(function()
        local _, read, write = connect({ host = "127.0.0.1", port = port, heartbeat = 40 })
        sleep(230)
        local n = #seen.pongs
        assert.truthy(n >= 3 and n <= 7, n .. " heartbeats")
        for _, p in ipairs(seen.pongs) do assert.are.equal("", p) end
        write()
        assert.is_nil(read())
        -- One heartbeat may have been on its way while the close was sent;
        -- after the close none may follow.
        local at_close = #seen.pongs
        assert.truthy(at_close <= n + 1, at_close .. " heartbeats at close, " .. n .. " before")
        sleep(150)
        assert.are.equal(at_close, #seen.pongs)
        server:close()
      end)
    end)

    it("works from a loop callback, which already runs in a coroutine", function()
      local server, port = test_server()
      local got
      core.add_timeout(core.gettimemonotonic() + 10, function()
        local _, read, write = connect({ host = "127.0.0.1", port = port })
        write({ opcode = 1, payload = "from a timer" })
        got = read().payload
        write()
        read()
        server:close()
      end)
      run_loop()
      assert.are.equal("from a timer", got)
    end)

    it("runs many connections, each in its own coroutine, on one loop", function()
      local server, port = test_server()
      local results, finished = {}, 0
      local N = 40
      for i = 1, N do
        coroutine.wrap(function()
          local _, read, write = connect({ host = "127.0.0.1", port = port })
          local got = {}
          for k = 1, 5 do
            write({ opcode = 1, payload = i .. ":" .. k })
            got[k] = read().payload
          end
          write()
          read()
          results[i] = table.concat(got, ",")
          finished = finished + 1
          if finished == N then server:close() end
        end)()
      end
      run_loop(10000)
      for i = 1, N do
        assert.are.equal(("%d:1,%d:2,%d:3,%d:4,%d:5"):format(i, i, i, i, i), results[i])
      end
    end)
  end)
end)
