-- The coro-websocket face (turbo_ws.coro_websocket): parseUrl, connect with
-- every option and error path against turbo_ws's own server, an independent
-- Python `websockets` server and a raw peer that breaks RFC 6455, the
-- launcher. wrapIo, pipes, header spelling and failure messages are pinned
-- in spec/coro_fidelity_spec.lua.
-- Every network test runs the loop under a guard that fails instead of hanging.
local turbo_ws = require "turbo_ws"
-- In development mode (TURBO_WS_LUA_DIR) faces are found through
-- package.path, so load ours by name before checking the `turbo_ws` field.
local cws = require "turbo_ws.coro_websocket"
local core = turbo_ws.core

local ROOT = os.getenv("PWD") or "."
local PYTHON = ROOT .. "/tests/conformance/.venv/py3/bin/python"

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- Runs the loop until idle or `ms` passed; returns whether it timed out.
local function run_bounded(ms)
  local timed_out = false
  local guard = core.set_interval(ms or 5000, function()
    timed_out = true
    core.close()
  end, nil, false)
  turbo_ws.run()
  core.clear_interval(guard)
  return timed_out
end

-- Runs the loop until idle; a guard stops it and fails the spec after `ms`.
local function run_loop(ms)
  assert.is_false(run_bounded(ms), "the loop did not become idle in time")
end

-- What a spec opened, so that a failing spec does not leave connections
-- that keep the next specs' loops busy.
local opened = { servers = {}, conns = {}, sockets = {} }
local function cleanup()
  for _, s in ipairs(opened.servers) do s:close() end
  for _, c in ipairs(opened.conns) do if not c:closed() then c:abort() end end
  for _, s in ipairs(opened.sockets) do if not s:is_closing() then s:close() end end
  opened = { servers = {}, conns = {}, sockets = {} }
  run_bounded(2000)
end

-- cws.connect, remembering the socket for cleanup().
local function connect(options)
  local res, read, write = cws.connect(options)
  if res then opened.sockets[#opened.sockets + 1] = res.socket end
  return res, read, write
end

-- Runs body in a coroutine (as a luvit program does) and the loop until
-- idle; an error or failed assertion in the body fails the spec.
local function co_run(body, ms)
  local err, finished
  local co = coroutine.create(function()
    local ok, e = xpcall(body, debug.traceback)
    if not ok then err = e end
    finished = true
  end)
  local ok, e = coroutine.resume(co)
  if not ok then err = e end
  local timed_out = run_bounded(ms)
  if err then error(err, 0) end
  assert.is_true(finished, "the coroutine did not finish in time")
  assert.is_false(timed_out, "the loop did not become idle in time")
end

local function assert_error_with(expected, fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  local text = tostring(err)
  assert.truthy(text:find(expected, 1, true), "error was: " .. text)
end

local function sleep(co_ms)
  local co = coroutine.running()
  core.add_timeout(core.gettimemonotonic() + co_ms, function() coroutine.resume(co) end)
  coroutine.yield()
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- One frame as the raw peer sends it, built here rather than with the code
-- under test: unmasked unless extra.mask (then with the all-zero key, so the
-- payload bytes stay as they are).
local function frame(opcode, payload, extra)
  extra, payload = extra or {}, payload or ""
  local b1 = (extra.fin == false and 0 or 128) + (extra.rsv1 and 64 or 0) + opcode
  local m, len = extra.mask and 128 or 0, #payload
  assert(len < 65536, "frame(): payloads up to 64 KiB")
  local head = len < 126 and string.char(b1, m + len)
    or string.char(b1, m + 126, math.floor(len / 256), len % 256)
  return head .. (extra.mask and "\0\0\0\0" or "") .. payload
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- A turbo_ws server for one spec. Echoes, and obeys text commands:
--   "cmd:ping:DATA", "cmd:close:CODE:REASON", "cmd:abort", "cmd:burst:N".
-- `seen` records the request, pongs and the close code the server got.
local function test_server(listen_opts, upgrade_opts)
  local seen = { pongs = {}, pings = {}, requests = {} }
  local opts = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(listen_opts or {}) do opts[k] = v end
  local server = core.listen(opts, function(req, info)
    seen.requests[#seen.requests + 1] = info
    seen.info = info
    if info.path == "/forbidden" then return req:respond(403, nil, "nope") end
    local conn = assert(req:upgrade(upgrade_opts))
    opened.conns[#opened.conns + 1] = conn
    conn:set_callbacks{
      on_message = function(data, binary)
        local cmd, arg1, arg2 = data:match("^cmd:(%w+):?([^:]*):?(.*)$")
        if cmd == "ping" then conn:ping(arg1)
        elseif cmd == "close" then conn:close(tonumber(arg1), arg2)
        elseif cmd == "abort" then conn:abort()
        elseif cmd == "burst" then
          for i = 1, tonumber(arg1) do conn:send("m" .. i) end
        else conn:send(data, binary) end
      end,
      on_pong = function(data) seen.pongs[#seen.pongs + 1] = data end,
      on_ping = function(data) seen.pings[#seen.pings + 1] = data end,
      on_close = function(code, reason) seen.close = { code, reason } end,
    }
  end)
  opened.servers[#opened.servers + 1] = server
  return server, server:port(), seen
end

local function header(res_or_list, name)
  for _, h in ipairs(res_or_list) do
    if h[1]:lower() == name then return h[2] end
  end
end

---------------------------------------------------------------------------
-- External peers: certificates (openssl) and the Python peer
---------------------------------------------------------------------------

local tmpdir
local function temp_dir()
  if not tmpdir then
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir -p " .. tmpdir))
  end
  return tmpdir
end

local certs -- {ca_file, cert_file, key_file, ca_pem} or false
local function need_certs()
  if certs == nil then
    local d = temp_dir()
    local cmd = "(" .. table.concat({
      "cd " .. d,
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        .. " -subj /CN=turbo-ws-test-ca -addext basicConstraints=critical,CA:TRUE"
        .. " -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem",
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost"
        .. " -keyout key.pem -out leaf.csr",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
        .. "extendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf",
      "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        .. " -extfile ext.cnf -out cert.pem",
    }, " && ") .. ") >/dev/null 2>&1"
    local ok = os.execute(cmd)
    if (ok == true or ok == 0) and read_file(d .. "/cert.pem") then
      certs = { ca_file = d .. "/ca.pem", cert_file = d .. "/cert.pem", key_file = d .. "/key.pem",
        ca_pem = read_file(d .. "/ca.pem") }
    else
      certs = false
    end
  end
  if not certs then pending("openssl is needed to make test certificates") end
  return certs
end

local peer -- {ws, raw, mtls, handle} or false
local function python_ok()
  local ok = os.execute("'" .. PYTHON .. "' -c 'import websockets' >/dev/null 2>&1")
  return ok == true or ok == 0
end

-- Starts spec/support/coro_peer.py once; pending when Python is missing.
local function need_peer()
  if peer == nil then
    peer = false
    if python_ok() then
      local d = temp_dir()
      local port_file = d .. "/ports"
      local cert_args = ""
      local openssl = os.execute("openssl version >/dev/null 2>&1")
      if openssl == true or openssl == 0 then
        local c = need_certs()
        cert_args = (" '%s' '%s' '%s'"):format(c.ca_file, c.cert_file, c.key_file)
      end
      -- Writing to its stdin keeps it alive; closing it stops the peer.
      local handle = io.popen(("'%s' '%s/spec/support/coro_peer.py' '%s'%s >%s/peer.log 2>&1")
        :format(PYTHON, ROOT, port_file, cert_args, d), "w")
      local deadline = core.gettimemonotonic() + 15000
      local ports
      repeat
        ports = read_file(port_file)
        if not ports then os.execute("sleep 0.05") end
      until ports or core.gettimemonotonic() > deadline
      assert(ports, "the Python peer did not start: " .. tostring(read_file(d .. "/peer.log")))
      peer = {
        handle = handle,
        ws = tonumber(ports:match("ws=(%d+)")),
        raw = tonumber(ports:match("raw=(%d+)")),
        mtls = tonumber(ports:match("mtls=(%d+)")),
      }
    end
  end
  if not peer then
    pending("skipped: " .. PYTHON .. " with `websockets` is missing (see tests/conformance/install.sh)")
  end
  return peer
end

local function stop_peer()
  if peer then peer.handle:close() end
  peer = nil
  if tmpdir then os.execute("rm -rf '" .. tmpdir .. "'") end
end

---------------------------------------------------------------------------

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
  describe("parseUrl", function()
    local parse = cws.parseUrl

    it("gives host, port 80, tls false and the path for ws://", function()
      assert.are.same({ host = "example.com", port = 80, tls = false, pathname = "/chat" },
        parse("ws://example.com/chat"))
    end)

    it("gives port 443 and tls true for wss://", function()
      assert.are.same({ host = "gateway.discord.gg", port = 443, tls = true, pathname = "/" },
        parse("wss://gateway.discord.gg/"))
    end)

    it("takes an explicit port", function()
      assert.are.same({ host = "127.0.0.1", port = 8080, tls = true, pathname = "/a/b" },
        parse("wss://127.0.0.1:8080/a/b"))
      assert.are.same({ host = "h", port = 80, tls = false, pathname = "/p" }, parse("ws://h:/p"))
    end)

    it("gives an empty pathname when the URL has no path, as the original", function()
      assert.are.same({ host = "h", port = 9, tls = false, pathname = "" }, parse("ws://h:9"))
    end)

    it("drops the query and the fragment from the pathname", function()
      assert.are.equal("/a/b", parse("ws://h/a/b?x=1&y=2#frag").pathname)
      local t = parse("ws://h?v=6")
      assert.are.equal("h", t.host)
      assert.are.equal("", t.pathname)
    end)

    it("handles IPv6 literals: bare host, with or without a port", function()
      assert.are.same({ host = "::1", port = 9000, tls = false, pathname = "/x" }, parse("ws://[::1]:9000/x"))
      assert.are.same({ host = "2001:db8::7", port = 443, tls = true, pathname = "" }, parse("wss://[2001:db8::7]"))
      assert.are.same({ host = "::ffff:127.0.0.1", port = 80, tls = false, pathname = "/" },
        parse("ws://[::ffff:127.0.0.1]/"))
    end)

    it("returns a new table with exactly host, port, tls and pathname", function()
      local a, b = parse("ws://h/"), parse("ws://h/")
      assert.are_not.equal(a, b)
      local keys = {}
      for k in pairs(a) do keys[#keys + 1] = k end
      table.sort(keys)
      assert.are.same({ "host", "pathname", "port", "tls" }, keys)
    end)

    it("refuses other schemes with the original's message", function()
      for _, url in ipairs({ "http://h/", "WS://h/", "wss:/h", "ftp://h", "", "ws://", "ws:///x", "ws://:80/" }) do
        local t, err = parse(url)
        assert.is_nil(t, url)
        assert.are.equal("Sorry, only ws:// or wss:// protocols supported", err)
      end
    end)

    it("refuses what the original mis-parsed: bad ports and junk after the host", function()
      for _, url in ipairs({ "ws://h:abc/", "ws://h:80x", "ws://h:99999/", "ws://h:0/",
                             "ws://[::1/", "ws://[zz]/", "ws://[::1]x", "ws://[127.0.0.1]/" }) do
        local t, err = parse(url)
        assert.is_nil(t, url)
        assert.are.equal("string", type(err))
      end
    end)

    it("raises for a URL that is not a string", function()
      assert_error_with("parseUrl: bad argument #1 'url' (string expected, got nil)", parse)
      assert_error_with("string expected, got table", parse, {})
    end)
  end)

  ---------------------------------------------------------------------------
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
        { { port = 1, heartbeat = true }, "bad option 'heartbeat'" },
        { { port = 1, headers = "x" }, "bad option 'headers'" },
        { { port = 1, headers = { { "a" } } }, "bad header #1" },
        { { port = 1, subprotocol = 1 }, "bad option 'subprotocol'" },
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
        assert_error_with("write:", write, { opcode = 1, payload = "\255\254" })
        assert_error_with("write:", write, { opcode = 8, payload = "\3\237" }) -- 1005
        assert.is_true(write({ opcode = 1, payload = "still open" }))
        assert.are.equal("still open", read().payload)
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
        sleep(150)
        assert.are.equal(n, #seen.pongs)
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

  ---------------------------------------------------------------------------
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

  ---------------------------------------------------------------------------
  describe("programs", function()
    -- Runs a shell command with a time bound; returns exit status and output.
    local function run_cmd(cmd)
      local p = assert(io.popen("timeout 20 " .. cmd .. " 2>&1; echo \"exit=$?\""))
      local out = p:read("*a")
      p:close()
      return tonumber(out:match("exit=(%d+)%s*$")), out
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
