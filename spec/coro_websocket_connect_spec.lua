-- The coro-websocket face's connect against turbo_ws's own server: its
-- options and the handshake request it sends, the Response it returns, every
-- way it fails (with a message, never raising), and wss.
-- Shared helpers: spec/support/coro_websocket.lua.
local C = require "spec.support.coro_websocket"
-- need_certs() and need_peer() mark a spec pending through busted's pending.
C.pending = function(why) pending(why) end
local cws, core, run_loop, opened, cleanup = C.cws, C.core, C.run_loop, C.opened, C.cleanup
local connect, co_run, assert_error_with = C.connect, C.co_run, C.assert_error_with
local test_server, header, need_certs = C.test_server, C.header, C.need_certs
local stop_peer = C.stop_peer

describe("turbo_ws.coro_websocket", function()
  teardown(stop_peer)
  after_each(cleanup)

  describe("connect to a turbo_ws server", function()
    it("raises outside a coroutine", function()
      local server, port = test_server()
      assert_error_with("connect: must be called inside a coroutine", cws.connect,
        { host = "127.0.0.1", port = port })
      server:close()
      run_loop()
    end)

    it("raises for wrong option types", function()
      local cases = {
        { nil, "bad argument #1 'options' (table expected, got nil)" },
        { "ws://h/", "table expected, got string" },
        { {}, "must set either options.path or options.port" },
        { { host = "h" }, "options.port is required" },
        { { host = 5, port = 1 }, "bad option 'host'" },
        { { port = "x" }, "bad option 'port'" },
        { { port = 70000 }, "bad option 'port'" },
        { { port = 1, timeout = -1 }, "bad option 'timeout'" },
        { { port = 1, timeout = "10" }, "bad option 'timeout'" },
        { { port = 1, timeout = 1e300 }, "bad option 'timeout'" },
        { { port = 1, heartbeat = true }, "bad option 'heartbeat'" },
        { { port = 1, headers = "x" }, "bad option 'headers'" },
        { { port = 1, headers = { { "a" } } }, "bad header #1" },
        { { port = 1, headers = { { "X-A", "a\r\nb" } } },
          "turbo_ws.coro_websocket.connect: bad option 'headers' (bad value for 'X-A')" },
        { { port = 1, subprotocol = 1 }, "bad option 'subprotocol'" },
        { { port = 1, subprotocol = "a\r\nX-Injected: yes" }, "bad option 'subprotocol'" },
        { { port = 1, subprotocol = "a, b" }, "bad option 'subprotocol'" },
        { { port = 1, pathname = 1 }, "bad option 'pathname'" },
        { { port = 1, tls = "yes" }, "bad option 'tls'" },
        { { port = 1, tls = { ca = 5 } }, "bad tls option 'ca'" },
      }
      co_run(function()
        for _, c in ipairs(cases) do
          assert_error_with(c[2], cws.connect, c[1])
        end
      end)
    end)

    it("names the caller's line in every option error", function()
      co_run(function()
        for _, options in ipairs({ {}, { path = "" }, { host = "h" }, { port = "x" } }) do
          local ok, err = pcall(function()
            cws.connect(options) -- the line the message must name
          end)
          assert.is_false(ok)
          assert.truthy(err:find("^[^:]*coro_websocket_connect_spec.lua:%d+: turbo_ws.coro_websocket.connect"), err)
        end
      end)
    end)

    it("returns res, read, write; res is the original's Response", function()
      local server, port = test_server(nil, { headers = { { "X-Extra", "1" } } })
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = port, pathname = "/" })
        assert.is_table(res)
        assert.are.equal("function", type(read))
        assert.are.equal("function", type(write))
        assert.are.equal(101, res.code)
        assert.are.equal("Switching Protocols", res.reason)
        assert.are.equal(1.1, res.version)
        assert.is_false(res.keepAlive)
        assert.truthy(#res >= 3)
        for i = 1, #res do
          assert.are.equal("string", type(res[i][1]))
          assert.are.equal("string", type(res[i][2]))
        end
        assert.are.equal("websocket", header(res, "upgrade"))
        assert.are.equal("1", header(res, "x-extra"))
        assert.are.equal("function", type(res.socket.shutdown))
        assert.are.equal("function", type(res.socket.close))
        assert.is_false(res.socket:is_closing())
        write({ payload = "sync" }) -- a round trip: the core knows the peer by now
        read()
        assert.are.same({ ip = "127.0.0.1", port = port, family = "inet" }, res.socket:getpeername())
        write()
        assert.is_nil(read())
        assert.is_true(res.socket:is_closing())
        server:close()
      end)
    end)

    it("sends the pathname verbatim, query included; empty means /", function()
      local server, port, seen = test_server()
      co_run(function()
        for _, case in ipairs({ { "/gateway/?v=10&encoding=json", "/gateway/?v=10&encoding=json" },
                                { "", "/" }, { nil, "/" }, { "?v=6", "/?v=6" } }) do
          local res, read, write = connect({ host = "127.0.0.1", port = port, pathname = case[1] })
          assert.is_table(res, tostring(case[1]))
          assert.are.equal(case[2], seen.info.uri)
          write()
          assert.is_nil(read())
        end
        server:close()
      end)
    end)

    it("sends Host with the port, the subprotocol and the headers in order", function()
      local server, port, seen = test_server(nil, { protocol = "chat" })
      co_run(function()
        local res, read, write = connect({
          host = "127.0.0.1", port = port, pathname = "/h", subprotocol = "chat",
          headers = { { "Authorization", "Bot abc" }, { "X-Num", 5 }, { "X-Dup", "a" }, { "X-Dup", "b" } },
        })
        assert.is_table(res)
        local h = seen.info.headers
        assert.are.equal("127.0.0.1:" .. port, header(h, "host"))
        assert.are.equal("chat", header(h, "sec-websocket-protocol"))
        assert.are.equal("chat", header(res, "sec-websocket-protocol"))
        assert.are.equal("Bot abc", header(h, "authorization"))
        assert.are.equal("5", header(h, "x-num"))
        local dups = {}
        for _, pair in ipairs(h) do
          if pair[1] == "x-dup" then dups[#dups + 1] = pair[2] end
        end
        assert.are.same({ "a", "b" }, dups)
        write()
        read()
        server:close()
      end)
    end)

    it("speaks permessage-deflate when a Sec-WebSocket-Extensions header of its own offers it", function()
      local server, port, seen = test_server()
      co_run(function()
        local res, read, write = connect({
          host = "127.0.0.1", port = port, pathname = "/",
          headers = { { "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=10" } },
        })
        assert(res, read)
        assert.are.equal("permessage-deflate; server_max_window_bits=10",
          header(seen.info.headers, "sec-websocket-extensions"))
        assert.truthy(header(res, "sec-websocket-extensions"):find("permessage-deflate", 1, true))
        local big = string.rep("compress me ", 1000)
        write({ opcode = 1, payload = big })
        local echo = read()
        assert.are.equal(big, echo and echo.payload)
        write()
        read()
        server:close()
      end)
    end)

    it("accepts parseUrl's table with extra keys, and host defaulting to 127.0.0.1", function()
      local server, port = test_server()
      co_run(function()
        local options = assert(cws.parseUrl("ws://127.0.0.1:" .. port))
        options.pathname = "/?v=10&encoding=json"
        options.unknown = { 1, 2 }
        options.reconnect = true
        local res, read, write = connect(options)
        assert.are.equal(101, res and res.code)
        write()
        read()
        res, read, write = connect({ port = port })
        assert.are.equal(101, res and res.code)
        write()
        read()
        server:close()
      end)
    end)

    it("connects to an IPv6 literal", function()
      local ok, server = pcall(core.listen, { host = "::1", port = 0 }, function(req)
        assert(req:upgrade()):set_callbacks{}
      end)
      if not ok then pending("no IPv6 loopback here: " .. tostring(server)) end
      opened.servers[#opened.servers + 1] = server
      co_run(function()
        local res, read, write = connect(assert(cws.parseUrl("ws://[::1]:" .. server:port() .. "/")))
        assert.are.equal(101, res and res.code)
        write()
        assert.is_nil(read())
        server:close()
      end)
    end)

    it("fails with 'ECONNREFUSED' when nothing listens", function()
      local server, port = test_server()
      server:close()
      co_run(function()
        local res, err = connect({ host = "127.0.0.1", port = port })
        assert.is_nil(res)
        assert.are.equal("ECONNREFUSED", err)
      end)
    end)

    it("fails with a message, never raising, when the server does not answer 101", function()
      local server, port = test_server()
      co_run(function()
        local res, err = connect({ host = "127.0.0.1", port = port, pathname = "/forbidden" })
        assert.is_nil(res)
        assert.are.equal("response must be code 101", err)
        local kind, _, response = cws.last_error()
        assert.are.equal("bad_status", kind)
        assert.are.equal(403, response.status)
        server:close()
      end)
    end)

    it("fails with 'timeout' when the handshake exceeds options.timeout", function()
      local server = core.listen({ host = "127.0.0.1", port = 0, handshake_timeout = 3 }, function(req)
        -- never answers the upgrade request
      end)
      opened.servers[#opened.servers + 1] = server
      co_run(function()
        local t0 = core.gettimemonotonic()
        local res, err = connect({ host = "127.0.0.1", port = server:port(), timeout = 200 })
        local took = core.gettimemonotonic() - t0
        assert.is_nil(res)
        assert.are.equal("timeout", err)
        assert.truthy(took >= 150 and took < 2000, "took " .. took .. " ms")
        server:close()
      end, 8000)
    end)

    it("fails with a message for a host that does not resolve or a path it cannot send", function()
      local server, port = test_server()
      co_run(function()
        local res, err = connect({ host = "no-such-host.invalid", port = 80, timeout = 3000 })
        assert.is_nil(res)
        assert.are.equal("string", type(err))
        res, err = connect({ host = "127.0.0.1", port = port, pathname = "/a b" })
        assert.is_nil(res)
        assert.truthy(err:find("bad_url", 1, true), err)
        server:close()
      end, 8000)
    end)

    it("fails when the server refuses the subprotocol", function()
      local server, port = test_server()
      co_run(function()
        local res, err = connect({ host = "127.0.0.1", port = port, subprotocol = "chat" })
        assert.is_nil(res)
        assert.are.equal("protocol missing or mistmatched", err) -- the original's text
        server:close()
      end)
    end)

    describe("over TLS", function()
      it("connects to wss with the CA given as PEM (ca) or as a file (ca_file)", function()
        local c = need_certs()
        local server, port = test_server({ tls = { cert_file = c.cert_file, key_file = c.key_file } })
        co_run(function()
          for _, tls in ipairs({ { ca = c.ca_pem }, { ca = { c.ca_pem } }, { ca_file = c.ca_file } }) do
            local res, read, write = connect({ host = "127.0.0.1", port = port, tls = tls })
            assert.are.equal(101, res and res.code)
            write({ opcode = 1, payload = "secure" })
            assert.are.equal("secure", read().payload)
            write()
            assert.is_nil(read())
          end
          -- by name, as in a parseUrl table
          local options = cws.parseUrl("wss://localhost:" .. port .. "/")
          options.tls = { ca = c.ca_pem }
          local res, _, write = connect(options)
          assert.are.equal(101, res and res.code)
          write()
          server:close()
        end)
      end)

      it("verifies certificates by default (tls = true) and skips only when asked", function()
        local c = need_certs()
        local server, port = test_server({ tls = { cert_file = c.cert_file, key_file = c.key_file } })
        co_run(function()
          local res, err = connect({ host = "127.0.0.1", port = port, tls = true })
          assert.is_nil(res)
          assert.truthy(err:find("tls", 1, true), err)
          for _, tls in ipairs({ { insecure = true }, { verify = false } }) do
            local res2, read, write = connect({ host = "127.0.0.1", port = port, tls = tls })
            assert.are.equal(101, res2 and res2.code)
            write()
            read()
          end
          server:close()
        end)
      end)
    end)
  end)
end)
