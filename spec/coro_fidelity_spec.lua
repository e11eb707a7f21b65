-- Drop-in fidelity of the coro-websocket face (issue 18), each point against
-- an independent peer: a raw server in Python's standard library
-- (spec/support/coro_fidelity_peer.py) on TCP and on a Unix socket, or, for
-- wrapIo, the program-supplied functions themselves.
--   * response headers as the server spelled and ordered them (and the
--     other faces still finding them in any spelling);
--   * connect's failures: exactly `nil, message` with the original's texts,
--     the kind through last_error();
--   * options.path: a Unix domain socket, as coro-net;
--   * wrapIo with the original's semantics over the program's frames.
local turbo_ws = require "turbo_ws"
local cws = require "turbo_ws.coro_websocket"
local loop = require "spec.support.loop"
local P = require "spec.support.peer"
local core = turbo_ws.core

local co_run, assert_error_with = loop.co_run, loop.assert_error_with
local unpack = rawget(table, "unpack") or unpack

---------------------------------------------------------------------------
-- The Python peer
---------------------------------------------------------------------------

local ROOT = os.getenv("PWD") or "."

local function succeeded(status) return status == true or status == 0 end

local peer -- {tcp = port, socket = path, dir, handle} or false (no python3)

-- Starts the peer once; the spec is pending where python3 is missing.
local function need_peer()
  if peer == nil then
    peer = false
    if succeeded(os.execute("python3 -c 'import socket, threading' >/dev/null 2>&1")) then
      local dir = P.tmpdir()
      local socket_path = dir .. "/ws.sock"
      local handle, ports = P.start(("python3 '%s/spec/support/coro_fidelity_peer.py'"):format(ROOT), dir,
        (" '%s'"):format(socket_path), 10000)
      peer = { tcp = tonumber(ports:match("tcp=(%d+)")), socket = socket_path, dir = dir, handle = handle }
    end
  end
  if not peer then pending("python3 is needed for the raw peer (scripts/deps.sh installs it)") end
  return peer
end

local function stop_peer()
  if peer then
    peer.handle:close()
    os.execute("rm -rf '" .. peer.dir .. "'")
  end
  peer = nil
end

-- Sockets a spec opened, closed after it even when it failed midway.
local sockets = {}
local function connect(options)
  local res, read, write = cws.connect(options)
  if res then sockets[#sockets + 1] = res.socket end
  return res, read, write
end

local function close_sockets()
  for _, s in ipairs(sockets) do
    if not s:is_closing() then s:close() end
  end
  sockets = {}
  loop.run_bounded(2000)
end

-- The value of header `name` in a raw request head.
local function request_header(head, name)
  for line in head:gmatch("[^\r\n]+") do
    local n, v = line:match("^([^:]+):%s*(.-)%s*$")
    if n and n:lower() == name then return v end
  end
  return nil
end

-- The response headers the peer sends on /spelling, in its order.
local SPELLING = { "Upgrade", "CONNECTION", "sec-websocket-accept", "X-Custom-Header", "set-cookie", "Set-Cookie" }

-- Reads the rest of a /spelling session: the request head the peer got
-- (sent back as text), the peer's close, then the end.
local function finish_spelling_session(read)
  local head = read().payload
  local close = read()
  assert.are.same({ 8, "\3\232bye" }, { close.opcode, close.payload })
  assert.is_nil(read())
  return head
end

---------------------------------------------------------------------------

describe("coro-websocket fidelity", function()
  teardown(stop_peer)
  after_each(close_sockets)

  describe("response headers", function()
    it("res[i] = {name, value} keeps the server's spelling and order", function()
      local p = need_peer()
      co_run(function()
        local res, read = connect({ host = "127.0.0.1", port = p.tcp, pathname = "/spelling" })
        assert.are.equal(101, res and res.code)
        assert.are.equal(#SPELLING, #res)
        for i, name in ipairs(SPELLING) do assert.are.equal(name, res[i][1]) end
        assert.are.same({ "X-Custom-Header", "Mixed Case Value" }, res[4])
        assert.are.same({ { "set-cookie", "a=1" }, { "Set-Cookie", "b=2" } }, { res[5], res[6] })
        -- keepAlive comes from "CONNECTION: Upgrade" whatever its spelling
        assert.is_false(res.keepAlive)
        finish_spelling_session(read)
      end)
    end)

    it("the core's response keeps them too, and the Turbo face's on_headers finds any spelling", function()
      local p = need_peer()
      local core_headers, turbo_headers, closed
      core.connect("ws://127.0.0.1:" .. p.tcp .. "/spelling", nil, function(conn, res)
        core_headers = res.headers
        conn:abort()
      end)
      turbo_ws.websocket.WebSocketClient("ws://127.0.0.1:" .. p.tcp .. "/spelling", {
        on_headers = function(_, headers) turbo_headers = headers end,
        on_close = function() closed = true end,
        on_error = function() closed = true end,
      })
      loop.run_until(function() return core_headers and closed end, 5000, "both clients")
      for i, name in ipairs(SPELLING) do assert.are.equal(name, core_headers[i][1]) end
      assert.are.equal("Mixed Case Value", turbo_headers:get("x-custom-header"))
      assert.are.equal("Mixed Case Value", turbo_headers:get("X-Custom-Header", false))
      assert.is_nil(turbo_headers:get("x-custom-header", false)) -- case-sensitive when asked
      assert.are.equal("Upgrade", turbo_headers:get("connection"))
    end)

    it("the evlua face's header table answers any spelling", function()
      local p = need_peer()
      local evlua = turbo_ws.evlua
      co_run(function()
        local conn, status, hdrs = evlua.web_socket.connect({
          url = "http://127.0.0.1:" .. p.tcp .. "/spelling", hdrs = {}, external = false })
        assert.is_table(conn, tostring(status))
        assert.are.equal(101, status)
        assert.are.equal("Mixed Case Value", hdrs["X-Custom-Header"])
        assert.are.equal("Mixed Case Value", hdrs["x-custom-header"])
        assert.are.equal("a=1, b=2", hdrs["Set-Cookie"])
        evlua.ws_util.close(conn)
      end)
    end)
  end)

  describe("connect failures", function()
    -- Connects in the running coroutine; returns every value connect gave.
    local function results(options)
      return table.pack and table.pack(cws.connect(options))
        or (function(...) return { n = select("#", ...), ... } end)(cws.connect(options))
    end

    it("a refused connection: exactly nil, 'ECONNREFUSED' (luv's error name); kind 'refused'", function()
      local port = loop.free_port()
      co_run(function()
        local r = results({ host = "127.0.0.1", port = port })
        assert.are.same({ n = 2, nil, "ECONNREFUSED" }, r)
        local kind, message, response = cws.last_error()
        assert.are.equal("refused", kind)
        assert.truthy(message:find(tostring(port), 1, true), message)
        assert.is_nil(response)
      end)
    end)

    it("a 400: exactly nil, 'Invalid request: ' and the body, as the original reads it", function()
      local p = need_peer()
      co_run(function()
        local cases = {
          { "/status/400", "Invalid request: no such room" },
          { "/status/400-empty", "Invalid request: " },           -- a body known to be empty
          { "/status/400-eof", "Invalid request: Bad Request" },  -- none before EOF: the reason
        }
        for _, case in ipairs(cases) do
          local r = results({ host = "127.0.0.1", port = p.tcp, pathname = case[1] })
          assert.are.same({ n = 2, nil, case[2] }, r)
          local kind, _, response = cws.last_error()
          assert.are.equal("bad_status", kind)
          assert.are.equal(400, response.status)
        end
      end)
    end)

    it("another status: exactly nil, 'response must be code 101'; the response via last_error", function()
      local p = need_peer()
      co_run(function()
        local r = results({ host = "127.0.0.1", port = p.tcp, pathname = "/status/403" })
        assert.are.same({ n = 2, nil, "response must be code 101" }, r)
        local kind, message, response = cws.last_error()
        assert.are.equal("bad_status", kind)
        assert.are.equal("string", type(message))
        assert.are.same({ 403, "go away" }, { response.status, response.body })
        -- programs concatenate the message
        assert.are.equal("failed: response must be code 101", "failed: " .. r[2])
      end)
    end)

    it("a 101 that fails a check: exactly nil and the original's text for that check", function()
      local p = need_peer()
      co_run(function()
        for _, case in ipairs({
          { "/bad/connection", "Invalid or missing connection upgrade header in response" },
          { "/bad/accept", "challenge key missing or mismatched" },
          { "/bad/protocol", "protocol missing or mistmatched", "chat" },
        }) do
          local r = results({ host = "127.0.0.1", port = p.tcp, pathname = case[1], protocol = case[3] })
          assert.are.same({ n = 2, nil, case[2] }, r)
          local kind, _, response = cws.last_error()
          assert.are.equal("bad_handshake", kind)
          assert.are.equal(101, response and response.status) -- the answer that failed
        end
      end)
    end)

    it("last_error() is per coroutine and cleared by a connect that succeeds", function()
      local p = need_peer()
      local port = loop.free_port()
      local seen = {}
      co_run(function()
        local failing = coroutine.wrap(function()
          connect({ host = "127.0.0.1", port = port })
          seen.failing = cws.last_error()
        end)
        failing()
        assert.is_nil(cws.last_error()) -- none made here yet
        connect({ host = "127.0.0.1", port = p.tcp, pathname = "/status/403" })
        assert.are.equal("bad_status", cws.last_error())
        local res, read = connect({ host = "127.0.0.1", port = p.tcp, pathname = "/spelling" })
        assert.is_table(res)
        assert.is_nil(cws.last_error())
        finish_spelling_session(read)
      end)
      assert.are.equal("refused", seen.failing)
      assert.is_nil(cws.last_error()) -- the main thread made none
    end)
  end)

  describe("options.path (a Unix domain socket)", function()
    it("connects over the socket; the request has an empty Host, as no host name exists", function()
      local p = need_peer()
      co_run(function()
        local res, read = connect({ path = p.socket, pathname = "/spelling" })
        assert.are.equal(101, res and res.code)
        assert.are.equal("CONNECTION", res[2][1])
        assert.are.equal(p.socket, res.socket:getpeername())
        local head = finish_spelling_session(read)
        assert.truthy(head:find("^GET /spelling HTTP/1.1\r\n"), head)
        assert.are.equal("", request_header(head, "host"))
        local hosts = select(2, head:lower():gsub("\nhost:", ""))
        assert.are.equal(1, hosts)
      end)
    end)

    it("sends the program's own Host instead", function()
      local p = need_peer()
      co_run(function()
        local res, read = connect({ path = p.socket, pathname = "/spelling", headers = { { "Host", "app.local" } } })
        assert.are.equal(101, res and res.code)
        local head = finish_spelling_session(read)
        assert.are.equal("app.local", request_header(head, "host"))
        assert.are.equal(1, select(2, head:lower():gsub("\nhost:", "")))
      end)
    end)

    it("fails like the other connects: a socket nobody listens on, a missing one, a 403", function()
      local p = need_peer()
      -- A socket file whose listener is gone: made and closed by Python.
      local stale = p.dir .. "/stale.sock"
      assert(succeeded(os.execute(("python3 -c \"import socket; s = socket.socket(socket.AF_UNIX);"
        .. " s.bind('%s'); s.close()\""):format(stale))))
      co_run(function()
        local res, err = connect({ path = stale })
        assert.is_nil(res)
        assert.are.equal("ECONNREFUSED", err)
        assert.are.equal("refused", cws.last_error())
        res, err = connect({ path = p.dir .. "/missing.sock" })
        assert.is_nil(res)
        assert.are.equal("connect", cws.last_error())
        assert.truthy(err:find("missing.sock", 1, true), err)
        res, err = connect({ path = p.socket, pathname = "/status/403" })
        assert.are.same({ nil, "response must be code 101" }, { res, err })
      end)
    end)

    it("is used only when neither host nor port is given (coro-net's rule)", function()
      local p = need_peer()
      co_run(function()
        local res, read = connect({ path = "/nonexistent/ws.sock", host = "127.0.0.1", port = p.tcp,
          pathname = "/spelling" })
        assert.are.equal(101, res and res.code)
        local head = finish_spelling_session(read)
        assert.are.equal("127.0.0.1:" .. p.tcp, request_header(head, "host"))
      end)
    end)

    it("raises for a bad path, and for TLS over a socket, which turbo_ws cannot do", function()
      co_run(function()
        assert_error_with("bad option 'path' (non-empty string expected, got number)",
          function() cws.connect({ path = 5 }) end)
        assert_error_with("bad option 'path' (non-empty string expected, got an empty one)",
          function() cws.connect({ path = "" }) end)
        assert_error_with("option 'tls' cannot be used with option 'path'",
          function() cws.connect({ path = "/x.sock", tls = true }) end)
        assert_error_with("must set either options.path or options.port",
          function() cws.connect({ pathname = "/" }) end)
      end)
    end)
  end)

  describe("wrapIo over the program's frames", function()
    -- A program's stream: rawRead hands out `incoming` frames (then nil),
    -- rawWrite records what it gets ("<end>" for rawWrite()) and returns
    -- `answer`.
    local function stream(incoming, answer)
      local s = { written = {}, reads = 0 }
      function s.rawRead()
        s.reads = s.reads + 1
        return incoming[s.reads]
      end
      function s.rawWrite(frame)
        s.written[#s.written + 1] = frame == nil and "<end>" or frame
        if answer ~= nil then return answer end
        return true
      end
      return s
    end

    local function f(opcode, payload, extra)
      local t = { fin = true, opcode = opcode, payload = payload or "", mask = false }
      for k, v in pairs(extra or {}) do t[k] = v end
      return t
    end

    it("raises for wrong argument types, needs no coroutine", function()
      local fn = function() end
      local function wrap(...)
        local args = { n = select("#", ...), ... }
        return function() cws.wrapIo(unpack(args, 1, args.n)) end
      end
      assert_error_with("wrapIo: bad argument #1 'rawRead'", wrap(nil, fn, {}))
      assert_error_with("wrapIo: bad argument #2 'rawWrite'", wrap(fn, 5, {}))
      assert_error_with("wrapIo: bad argument #3 'options'", wrap(fn, fn, "x"))
      assert_error_with("wrapIo: bad option 'heartbeat'", wrap(fn, fn, { heartbeat = 0 }))
      local s = stream({ "bytes" })
      local read, write = cws.wrapIo(s.rawRead, s.rawWrite)
      assert_error_with("read: rawRead must return frame tables", read)
      assert_error_with("write: bad argument #1 'message' (table or nil expected, got string)",
        function() write("x") end)
    end)

    it("hands the program's frames on as they are: masked or not, whatever options.mask", function()
      for _, mask in ipairs({ true, false }) do
        local frames = { f(1, "masked", { mask = true }), f(2, "plain", { mask = false }), f(1, "no mask field") }
        frames[3].mask = nil
        local s = stream(frames)
        local read = cws.wrapIo(s.rawRead, s.rawWrite, { mask = mask })
        for i = 1, 3 do assert.are.equal(frames[i], read()) end -- the same tables
        assert.is_nil(read())
        assert.are.equal(0, #s.written) -- nothing refused, nothing closed
      end
    end)

    it("makes no RFC 6455 checks: fragments, RSV bits, reserved opcodes, bad UTF-8 come through", function()
      local frames = {
        f(1, "Hel", { fin = false }), f(9, "mid"), f(0, "lo", { fin = true }),
        f(1, "x", { rsv1 = true }), f(3, "reserved"), f(1, "\255\254"), f(2, ("z"):rep(300)),
      }
      local s = stream(frames)
      local read = cws.wrapIo(s.rawRead, s.rawWrite, { mask = true })
      for i = 1, #frames do assert.are.equal(frames[i], read()) end
      assert.is_nil(read())
      -- only the ping was answered
      assert.are.equal(1, #s.written)
      assert.are.same({ 10, "mid", true }, { s.written[1].opcode, s.written[1].payload, s.written[1].mask })
    end)

    it("a received close is echoed and returned; then data frames still come, control frames are swallowed", function()
      local s = stream({
        f(1, "before"), f(8, "\3\232done"), f(1, "late 1"), f(9, "ping after"), f(10, "pong after"),
        f(8, "\3\232again"), f(2, "late 2"),
      })
      local read, write = cws.wrapIo(s.rawRead, s.rawWrite, { mask = true })
      assert.are.equal("before", read().payload)
      local close = read()
      assert.are.same({ 8, "\3\232done" }, { close.opcode, close.payload })
      assert.are.equal(2, #s.written)
      assert.are.same({ 8, "\3\232done", true }, { s.written[1].opcode, s.written[1].payload, s.written[1].mask })
      assert.are.equal("<end>", s.written[2])
      assert.are.equal("late 1", read().payload)
      assert.are.equal("late 2", read().payload) -- ping, pong and close in between not shown
      assert.is_nil(read())
      assert.are.equal(2, #s.written) -- nor answered
      -- after the end, nil at once, without asking rawRead again
      local reads = s.reads
      assert.is_nil(read())
      assert.are.equal(reads, s.reads)
      -- writes still go to rawWrite, which decides (as the original)
      assert.is_true(write({ opcode = 1, payload = "x" }))
      assert.are.equal("x", s.written[3].payload)
    end)

    it("after our own close, control frames are swallowed and data frames shown until rawRead ends", function()
      local s = stream({ f(9, "x"), f(1, "late data"), f(8, "\3\232") })
      local read, write = cws.wrapIo(s.rawRead, s.rawWrite, { mask = true })
      assert.is_true(write())
      assert.are.same({ 8, "", true }, { s.written[1].opcode, s.written[1].payload, s.written[1].mask })
      assert.are.equal("<end>", s.written[2])
      assert.are.equal("late data", read().payload)
      assert.is_nil(read())
      assert.are.equal(2, #s.written) -- the ping was not answered
    end)

    it("write: the program's table goes to rawWrite with mask = options.mask; rawWrite's answer returns", function()
      local s = stream({}, "answer")
      local _, write = cws.wrapIo(s.rawRead, s.rawWrite, {})
      local msg = { opcode = 1, payload = "t", mask = true, fin = false }
      assert.are.equal("answer", write(msg))
      assert.are.equal(msg, s.written[1]) -- the same table
      assert.is_nil(msg.mask) -- options.mask (nil) overrides the caller's, as the original
      assert.is_false(msg.fin)
      -- a close: the frame, then the end of the stream; rawWrite()'s answer returns
      assert.are.equal("answer", write({ opcode = 8, payload = "\15\160x" }))
      assert.are.same({ 8, "\15\160x" }, { s.written[2].opcode, s.written[2].payload })
      assert.are.equal("<end>", s.written[3])
      -- write() after the close ends the stream again rather than sending another close
      write()
      assert.are.equal("<end>", s.written[4])
      assert.are.equal(4, #s.written)
    end)

    it("heartbeat: empty pongs with the mask asked, does not keep the loop alive, stops at close", function()
      local s = stream({})
      local _, write = cws.wrapIo(s.rawRead, s.rawWrite, { mask = true, heartbeat = 30 })
      core.add_timeout(core.gettimemonotonic() + 200, function() end)
      loop.run_bounded(2000) -- ends with the 200 ms timeout: the heartbeat does not hold it
      local beats = #s.written
      assert.truthy(beats >= 3, beats .. " beats")
      for i = 1, beats do
        assert.are.same({ 10, "", true }, { s.written[i].opcode, s.written[i].payload, s.written[i].mask })
      end
      write()
      core.add_timeout(core.gettimemonotonic() + 120, function() end)
      loop.run_bounded(2000)
      assert.are.equal(beats + 2, #s.written) -- close + end, no more pongs
    end)
  end)
end)
