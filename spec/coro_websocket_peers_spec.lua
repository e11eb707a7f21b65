-- The coro-websocket face against peers independent of turbo_ws
-- (spec/support/coro_peer.py): the Python `websockets` server, and a raw peer
-- that breaks RFC 6455. Pending when that Python is missing.
-- Shared helpers: spec/support/coro_websocket.lua.
local C = require "spec.support.coro_websocket"
-- need_certs() and need_peer() mark a spec pending through busted's pending.
C.pending = function(why) pending(why) end
local cws, cleanup, connect, co_run, hex = C.cws, C.cleanup, C.connect, C.co_run, C.hex
local frame, read_file, header, need_certs = C.frame, C.read_file, C.header, C.need_certs
local need_peer, stop_peer = C.need_peer, C.stop_peer

describe("turbo_ws.coro_websocket", function()
  teardown(stop_peer)
  after_each(cleanup)

  describe("connect to Python websockets", function()
    local function url(path) return "ws://127.0.0.1:" .. need_peer().ws .. path end

    it("echoes text and binary through the reference echo handler", function()
      local options = assert(cws.parseUrl(url("/echo")))
      co_run(function()
        local res, read, write = connect(options)
        assert.are.equal(101, res and res.code)
        write({ opcode = 1, payload = "ünïcode" })
        write({ opcode = 2, payload = ("\0\255"):rep(40000) })
        local t, b = read(), read()
        assert.are.same({ 1, "ünïcode" }, { t.opcode, t.payload })
        assert.are.same({ 2, 80000, true }, { b.opcode, b.len, b.payload == ("\0\255"):rep(40000) })
        write()
        assert.is_nil(read())
      end)
    end)

    it("sends the path with its query, Host with the port, and headers", function()
      local options = assert(cws.parseUrl(url("")))
      options.pathname = "/headers?v=10&encoding=json"
      options.headers = { { "User-Agent", "DiscordBot (x, 1)" } }
      co_run(function()
        local _, read, write = connect(options)
        local info = read().payload:lower() -- header names may come in any case
        assert.truthy(info:find('"path": "/headers?v=10&encoding=json"', 1, true), info)
        assert.truthy(info:find('["host", "127.0.0.1:' .. options.port .. '"]', 1, true), info)
        assert.truthy(info:find('["user-agent", "discordbot (x, 1)"]', 1, true), info)
        write()
        read()
      end)
    end)

    it("shows the server's ping, then goes on", function()
      local options = assert(cws.parseUrl(url("/ping")))
      co_run(function()
        local _, read, write = connect(options)
        local ping = read()
        assert.are.same({ 9, "hello" }, { ping.opcode, ping.payload })
        assert.are.equal("after-ping", read().payload)
        write({ opcode = 1, payload = "still here" })
        assert.are.equal("still here", read().payload)
        write()
        read()
      end)
    end)

    it("delivers a fragmented message reassembled, with fin = true", function()
      local options = assert(cws.parseUrl(url("/fragments")))
      co_run(function()
        local _, read, write = connect(options)
        local m = read()
        assert.are.same({ true, 1, "fragmented", 10 }, { m.fin, m.opcode, m.payload, m.len })
        write()
        read()
      end)
    end)

    it("returns the server's close (4000 bye), then nil", function()
      local options = assert(cws.parseUrl(url("/close")))
      co_run(function()
        local _, read = connect(options)
        local close = read()
        assert.are.same({ 8, "\15\160bye" }, { close.opcode, close.payload })
        assert.is_nil(read())
      end)
    end)

    it("negotiates a subprotocol and fails when it is refused", function()
      local options = assert(cws.parseUrl(url("/echo")))
      co_run(function()
        options.subprotocol = "chat"
        local res, read, write = connect(options)
        assert.are.equal("chat", header(res, "sec-websocket-protocol"))
        write()
        read()
        options.subprotocol = "other"
        local res2, err = connect(options)
        assert.is_nil(res2)
        assert.are.equal("string", type(err))
      end)
    end)

    it("fails with a message on 403", function()
      local options = assert(cws.parseUrl(url("/forbidden")))
      co_run(function()
        local res, err = connect(options)
        assert.is_nil(res)
        assert.are.equal("response must be code 101", err)
        assert.are.equal(403, select(3, cws.last_error()).status)
      end)
    end)

    it("presents a client certificate (tls.cert/key) to a server that requires one", function()
      local p = need_peer()
      local c = need_certs()
      if not p.mtls then pending("the Python peer has no TLS port") end
      co_run(function()
        local base = { host = "127.0.0.1", port = p.mtls, pathname = "/echo" }
        base.tls = { ca = c.ca_pem, cert = read_file(c.cert_file), key = read_file(c.key_file) }
        local res, read, write = connect(base)
        assert.are.equal(101, res and res.code)
        write({ opcode = 1, payload = "mutual" })
        assert.are.equal("mutual", read().payload)
        write()
        read()
        -- and with the core's names
        base.tls = { ca_file = c.ca_file, cert_file = c.cert_file, key_file = c.key_file }
        res, read, write = connect(base)
        assert.are.equal(101, res and res.code)
        write()
        read()
        -- without a certificate the server refuses
        base.tls = { ca = c.ca_pem }
        local err
        res, err = connect(base)
        assert.is_nil(res)
        assert.are.equal("string", type(err))
      end)
    end)
  end)

  ---------------------------------------------------------------------------
  describe("connect to a peer that breaks RFC 6455", function()
    -- Connects to the raw peer, which sends `bytes` right after its 101.
    local function raw_session(kind, bytes, body)
      local p = need_peer()
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = p.raw,
          pathname = "/" .. kind .. "/" .. hex(bytes) })
        assert.are.equal(101, res and res.code)
        body(read, write)
      end, 8000)
    end

    it("delivers frames that came in the same TCP segment as the 101", function()
      raw_session("raw", frame(1, "one") .. frame(2, "two") .. frame(8, "\3\232"), function(read)
        assert.are.equal("one", read().payload)
        assert.are.equal("two", read().payload)
        assert.are.equal(8, read().opcode)
        assert.is_nil(read())
      end)
    end)

    local violations = {
      { "a reserved opcode", frame(3, "x") },
      { "a reserved control opcode", frame(11, "") },
      { "RSV1 without an extension", frame(1, "x", { rsv1 = true }) },
      { "a continuation with no message", frame(0, "x") },
      { "a new message inside a fragmented one", frame(1, "a", { fin = false }) .. frame(1, "b") },
      { "a fragmented ping", frame(9, "x", { fin = false }) },
      { "invalid UTF-8 in a text message", frame(1, "\206\177\255") },
      { "invalid UTF-8 across fragments", frame(1, "\206", { fin = false }) .. frame(0, "\40") },
      { "an invalid close code", frame(8, "\3\237") },
      { "a 1-byte close payload", frame(8, "\3") },
      { "a masked server frame", frame(1, "x", { mask = true }) },
    }
    for _, v in ipairs(violations) do
      it("fails the connection on " .. v[1] .. " instead of handing it over", function()
        raw_session("raw", frame(1, "before") .. v[2] .. frame(1, "after"), function(read, write)
          assert.are.equal("before", read().payload)
          local msg, err = read()
          assert.is_nil(msg)
          assert.are.equal("string", type(err))
          assert.is_nil(read())
          assert.is_false((write({ payload = "x" })))
        end)
      end)
    end

    it("gives the messages, then nil, when the server drops the connection", function()
      raw_session("rawdrop", frame(1, "last words"), function(read)
        assert.are.equal("last words", read().payload)
        assert.is_nil(read())
        assert.is_nil(read())
      end)
    end)

    it("returns the server's close even when the server resets before the echo goes out", function()
      -- The client's message is never read: the server's close then resets
      -- TCP, and the core cannot send its echo of the close frame.
      local p = need_peer()
      co_run(function()
        local res, read, write = connect({ host = "127.0.0.1", port = p.resetter })
        assert.are.equal(101, res and res.code)
        assert.is_true((write({ opcode = 1, payload = '{"token":"bad"}' })))
        local msg = read()
        assert.are.equal(8, msg and msg.opcode)
        assert.are.equal("\15\164Authentication failed.", msg.payload)
        assert.is_nil(read())
      end, 8000)
    end)

    it("returns the server's close as it arrives, though the server holds TCP open after it", function()
      -- The peer closes TCP 2 s after its close frame: only the end of the
      -- stream (read() -> nil) waits for that.
      local p = need_peer()
      local core = require("turbo_ws").core
      co_run(function()
        local res, read = connect({ host = "127.0.0.1", port = p.holder })
        assert.are.equal(101, res and res.code)
        local t0 = core.gettimemonotonic()
        local msg = read()
        local waited = core.gettimemonotonic() - t0
        assert.are.equal(8, msg and msg.opcode)
        assert.are.equal("\15\160bye", msg.payload)
        assert.truthy(waited < 1000, ("the close frame came after %d ms"):format(waited))
        assert.is_nil(read())
      end, 8000)
    end)

    it("fails with a message, never raising, on a bad handshake, a 400 or no answer", function()
      local p = need_peer()
      co_run(function()
        local expected = { ["/badaccept"] = "challenge key missing or mismatched", ["/status/400"] = "Invalid request: bad",
          ["/eof"] = "Missing server response" }
        for path, text in pairs(expected) do
          local ok, res, err = pcall(cws.connect, { host = "127.0.0.1", port = p.raw, pathname = path })
          assert.is_true(ok, path .. ": raised " .. tostring(res))
          assert.is_nil(res, path)
          assert.are.equal(text, err:sub(1, #text), path)
        end
        local res, err = connect({ host = "127.0.0.1", port = p.raw, pathname = "/silent", timeout = 300 })
        assert.is_nil(res)
        assert.are.equal("timeout", err)
      end, 8000)
    end)
  end)
end)
