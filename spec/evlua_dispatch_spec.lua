-- The evlua face's server side after the upgrade: frames from a raw client
-- dispatched to handler modules (handle_message, handle_ping, handle_pong),
-- one at a time, and the connection failed with the RFC 6455 close code on
-- a bad frame. Shared helpers: spec/support/evlua.lua.
local ffi = require "ffi"
local E = require "spec.support.evlua"
local ws, ws_util, ws_const, sleep = E.ws, E.ws_util, E.ws_const, E.sleep
local run_async, capture_stderr = E.run_async, E.capture_stderr
local assert_error_with, frame, cframe, probe = E.assert_error_with, E.frame, E.cframe, E.probe
local reset_probe, start_server, raw_upgraded = E.reset_probe, E.start_server, E.raw_upgraded

describe("frame dispatch to handler modules (server side)", function()
  before_each(reset_probe)

  it("calls handle_message with evlua's msg table; replies go out unmasked", function()
    run_async(function()
      local seen
      probe.handle_message = function(msg)
        seen = msg
        ws_util.send_msg({ _ss = msg._ss }, "hello", { msg_type = "TEXT" })
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "hello"))
      local reply = raw:read_frame()
      assert.are.equal("\129\005hello", reply.raw) -- FIN|TEXT, no mask bit, no key
      local own = {}
      for k in pairs(seen) do own[#own + 1] = k end
      table.sort(own)
      -- flags, use_mask and mask come from the metatable (mask made when read)
      assert.are.same({ "_ss", "buf", "op_code", "payload_len" }, own)
      assert.are.equal(5, seen.payload_len)
      assert.are.equal(ws_const.FRAME_OP_TEXT, seen.op_code)
      assert.are.equal(0x81, seen.flags)
      assert.is_true(seen.use_mask)
      assert.is_true(ffi.istype("unsigned char[4]", seen.mask))
      assert.is_true(ffi.istype("unsigned char[?]", seen.buf))
      assert.are.equal(6, ffi.sizeof(seen.buf)) -- payload_len + 1
      assert.are.equal(0, seen.buf[5]) -- the trailing NUL
      assert.are.equal("hello", ffi.string(seen.buf))
      assert.are.equal("userdata", type(seen._ss))
      assert.truthy(tostring(seen._ss):match("^streamsocket:%d+$"))
    end)
  end)

  it("delivers binary messages with every byte, NULs included", function()
    run_async(function()
      local seen
      probe.handle_message = function(msg)
        seen = { op = msg.op_code, flags = msg.flags, len = msg.payload_len,
                 data = ffi.string(msg.buf, msg.payload_len), nul = msg.buf[msg.payload_len] }
        ws_util.send_msg({ _ss = msg._ss }, seen.data)
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x82, "a\0b\0"))
      assert.are.equal("\130\004a\0b\0", raw:read_frame().raw)
      assert.are.same({ op = 2, flags = 0x82, len = 4, data = "a\0b\0", nul = 0 }, seen)
    end)
  end)

  it("reassembles fragments into one handle_message; a PING between them goes to handle_ping", function()
    run_async(function()
      local messages, pings = {}, {}
      probe.handle_message = function(msg)
        messages[#messages + 1] = { ffi.string(msg.buf), msg.flags, msg.payload_len }
      end
      probe.handle_ping = function(msg)
        pings[#pings + 1] = { ffi.string(msg.buf), msg.op_code, msg.flags, msg.use_mask }
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x01, "hel") .. cframe(0x89, "p") .. cframe(0x80, "lo"))
      assert.are.equal("\138\001p", raw:read_frame().raw) -- the PONG
      raw:send(cframe(0x81, "next"))
      raw:wait_for(function() return #messages == 2 or nil end)
      assert.are.same({ { "hello", 0x81, 5 }, { "next", 0x81, 4 } }, messages)
      assert.are.same({ { "p", ws_const.FRAME_OP_PING, 0x89, true } }, pings)
    end)
  end)

  it("answers a PING with the same payload when the handler has no handle_ping", function()
    run_async(function()
      local _, port = start_server()
      local raw = raw_upgraded(port, "/evspec/bare")
      raw:send(cframe(0x89, "are you there"))
      assert.are.equal("\138\013are you there", raw:read_frame().raw)
      raw:send(cframe(0x8A, "unasked")) -- a PONG without handle_pong: ignored
      raw:send(cframe(0x81, "after"))
      raw:wait_for(function() return probe.bare_seen end)
      assert.are.equal("after", probe.bare_seen)
    end)
  end)

  it("calls handle_pong for a PONG and sends nothing back", function()
    run_async(function()
      local pongs = {}
      probe.handle_pong = function(msg)
        pongs[#pongs + 1] = { ffi.string(msg.buf), msg.op_code, msg.flags }
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x8A, "pong!"))
      raw:send(cframe(0x81, "echo"))
      -- the first frame back is the echo: nothing was sent for the PONG
      assert.are.equal("\129\004echo", raw:read_frame().raw)
      assert.are.same({ { "pong!", ws_const.FRAME_OP_PONG, 0x8A } }, pongs)
    end)
  end)

  it("dispatches one message at a time, in order, each in its own coroutine", function()
    run_async(function()
      local log, threads = {}, {}
      probe.handle_message = function(msg)
        local text = ffi.string(msg.buf)
        threads[text] = coroutine.running()
        log[#log + 1] = "start " .. text
        if text == "slow" then sleep(0.1) end
        log[#log + 1] = "end " .. text
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x81, "slow") .. cframe(0x81, "a") .. cframe(0x81, "b"))
      raw:wait_for(function() return #log == 6 or nil end)
      assert.are.same({ "start slow", "end slow", "start a", "end a", "start b", "end b" }, log)
      assert.are_not.equal(threads.slow, threads.a) -- not run inside the waiting one
    end)
  end)

  it("gives every message its own msg, buf and mask: a handler may keep them", function()
    run_async(function()
      local kept = {}
      probe.handle_message = function(msg)
        kept[#kept + 1] = msg
        if #kept == 1 then sleep(0.05) end -- the next two wait in the queue
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      local big = ("0123456789abcdef"):rep(300) -- 4800 bytes
      raw:send(cframe(0x81, "one") .. cframe(0x82, big) .. cframe(0x81, "three"))
      raw:wait_for(function() return #kept == 3 or nil end)
      local texts = { "one", big, "three" }
      for i, msg in ipairs(kept) do
        assert.are.equal(#texts[i], msg.payload_len)
        assert.are.equal(#texts[i] + 1, ffi.sizeof(msg.buf))
        assert.are.equal(texts[i], ffi.string(msg.buf, msg.payload_len))
        assert.are.equal(0, msg.buf[msg.payload_len])
        assert.is_true(ffi.istype("unsigned char[4]", msg.mask))
        for j = 1, i - 1 do
          assert.are_not.equal(kept[j], msg)
          assert.is_false(rawequal(kept[j].buf, msg.buf))
          assert.is_false(rawequal(kept[j].mask, msg.mask))
        end
      end
      -- Writing into one kept buf leaves the others alone.
      kept[1].buf[0] = 0x21
      assert.are.equal("!ne", ffi.string(kept[1].buf))
      assert.are.equal("three", ffi.string(kept[3].buf))
    end)
  end)

  -- An error object whose __tostring raises too must not stop the report.
  local bomb = setmetatable({}, { __tostring = function() error("tostring broke") end })
  for _, case in ipairs({
    { "an error", "handler broke", "handler broke" },
    { "an error object whose __tostring raises", bomb, "__tostring failed" },
  }) do
    it("logs " .. case[1] .. " in a handler and goes on with the next message", function()
      run_async(function()
        probe.handle_message = function(msg)
          if ffi.string(msg.buf) == "bad" then error(case[2]) end
          ws_util.send_msg({ _ss = msg._ss }, "ok", { msg_type = "TEXT" })
        end
        local _, port = start_server()
        local raw = raw_upgraded(port)
        local logged = capture_stderr(function()
          raw:send(cframe(0x81, "bad") .. cframe(0x81, "good"))
          assert.are.equal("ok", raw:read_frame().payload)
        end)
        assert.truthy(logged:find("evspec.probe", 1, true), logged)
        assert.truthy(logged:find(case[3], 1, true), logged)
      end)
    end)
  end

  it("echoes a CLOSE with its code and closes the TCP connection", function()
    run_async(function()
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x88, "\3\233bye"))
      local close = raw:read_frame()
      assert.are.equal(0x88, close.byte0)
      assert.is_false(close.masked)
      assert.are.equal("\3\233", close.payload:sub(1, 2)) -- 1001
      assert.is_true(raw:wait_eof())
    end)
  end)

  local failures = {
    { "an unmasked client frame", frame(0x81, "plain"), 1002 },
    { "a reserved opcode", cframe(0x83, "x"), 1002 },
    { "RSV bits without an extension", cframe(0xC1, "x"), 1002 },
    { "a fragmented control frame", cframe(0x09, "x"), 1002 },
    { "a continuation without a start", cframe(0x80, "x"), 1002 },
    { "invalid UTF-8 in a text message", cframe(0x81, "\255\254"), 1007 },
  }
  for _, case in ipairs(failures) do
    it("closes with " .. case[3] .. " on " .. case[1] .. ", without dispatching it", function()
      run_async(function()
        local called = false
        probe.handle_message = function() called = true end
        local _, port = start_server()
        local raw = raw_upgraded(port)
        raw:send(case[2])
        local close = raw:read_frame()
        assert.are.equal(0x88, close.byte0)
        assert.are.equal(case[3], close.payload:byte(1) * 256 + close.payload:byte(2))
        assert.is_true(raw:wait_eof())
        assert.is_false(called)
      end)
    end)
  end

  it("closes with 1009 past serve's max_message_size", function()
    run_async(function()
      local _, port = start_server(nil, { max_message_size = 8 })
      local raw = raw_upgraded(port)
      raw:send(cframe(0x82, ("x"):rep(9)))
      local close = raw:read_frame()
      assert.are.equal("\3\241", close.payload:sub(1, 2))
    end)
  end)

  it("runs ws.handle_msg for every frame (evlua's per-message entry)", function()
    run_async(function()
      local calls, original = {}, ws.handle_msg
      ws.handle_msg = function(request, response)
        calls[#calls + 1] = { tostring(request), tostring(response) }
        return original(request, response)
      end
      local ok, err = pcall(function()
        local _, port = start_server()
        local raw = raw_upgraded(port)
        raw:send(cframe(0x89, "") .. cframe(0x81, "x"))
        assert.are.equal(0x8A, raw:read_frame().byte0)
        assert.are.equal("x", raw:read_frame().payload)
      end)
      ws.handle_msg = original
      assert(ok, err)
      assert.are.same({ { "httpsreq", "httpsresp" }, { "httpsreq", "httpsresp" } }, calls)
    end)
  end)

  -- The request is kept in a smaller form once upgraded (http.lua,
  -- keep_for_connection): its methods answer as before the upgrade.
  it("gives ws.handle_msg a request whose methods still answer after the upgrade", function()
    run_async(function()
      local seen, original = nil, ws.handle_msg
      ws.handle_msg = function(request, response)
        seen = seen or {
          method = request:get_method(), uri = request:get_uri(), version = request:get_version(),
          key = request:get_hdr_field("sec-websocket-key"), host = request:get_host(),
          room = request:get_query_parameters().room, body = request:get_message_body_str(),
        }
        return original(request, response)
      end
      local ok, err = pcall(function()
        local _, port = start_server()
        local raw = raw_upgraded(port, "/evspec/probe?room=7")
        raw:send(cframe(0x81, "x"))
        assert.are.equal("x", raw:read_frame().payload)
        assert.are.same({ method = "GET", uri = "/evspec/probe?room=7", version = "HTTP/1.1",
                          key = E.SAMPLE_KEY, host = "127.0.0.1:" .. port, room = "7", body = "" },
                        seen)
      end)
      ws.handle_msg = original
      assert(ok, err)
    end)
  end)

  it("a wrapped ws.handle_msg that waits first still handles its own frame", function()
    run_async(function()
      local original = ws.handle_msg
      ws.handle_msg = function(request, response)
        sleep(0.05) -- the other connection's frame is dispatched meanwhile
        return original(request, response)
      end
      local ok, err = pcall(function()
        probe.handle_message = function(msg)
          ws_util.send_msg({ _ss = msg._ss }, "echo:" .. ffi.string(msg.buf, msg.payload_len))
        end
        local _, port = start_server()
        local a, b = raw_upgraded(port), raw_upgraded(port)
        a:send(cframe(0x82, "first"))
        b:send(cframe(0x82, "second"))
        assert.are.equal("echo:first", a:read_frame().payload)
        assert.are.equal("echo:second", b:read_frame().payload)
      end)
      ws.handle_msg = original
      assert(ok, err)
    end)
  end)

  it("ws.handle_msg raises when a handler module calls it (only the loop's dispatch hands it a frame)", function()
    run_async(function()
      local err
      probe.handle_message = function(msg)
        err = select(2, pcall(ws.handle_msg, nil, nil))
        ws_util.send_msg({ _ss = msg._ss }, "done")
      end
      local _, port = start_server()
      local raw = raw_upgraded(port)
      raw:send(cframe(0x82, "x"))
      assert.are.equal("done", raw:read_frame().payload)
      assert.truthy(tostring(err):match("no incoming frame"))
    end)
  end)

  it("ws.handle_msg raises outside a frame dispatch", function()
    run_async(function()
      assert_error_with("no incoming frame", ws.handle_msg, nil, nil)
    end)
  end)
end)
