-- The evlua face's client handshake: ws.connect against our server and
-- against raw TCP servers that answer with every kind of refusal, over TLS,
-- and its errors. Shared helpers: spec/support/evlua.lua.
local ffi = require "ffi"
local E = require "spec.support.evlua"
local ws, ws_util, NO_CONNECTION, NO_UPGRADE = E.ws, E.ws_util, E.NO_CONNECTION, E.NO_UPGRADE
local BAD_ACCEPT, SAMPLE_ACCEPT, on_cleanup = E.BAD_ACCEPT, E.SAMPLE_ACCEPT, E.on_cleanup
local run_async, spawn, assert_error_with = E.run_async, E.spawn, E.assert_error_with
local frame, raw_listen, accept_for, probe = E.frame, E.raw_listen, E.accept_for, E.probe
local reset_probe, start_server, connect = E.reset_probe, E.start_server, E.connect

describe("ws.connect", function()
  before_each(reset_probe)

  it("returns conn, 101 and the response fields; sends hdrs; fills evlua's fields into hdrs", function()
    run_async(function()
      local token, uri
      probe.init = function(request, response)
        token, uri = request:get_hdr_field("X-Token"), request:get_uri()
        response:set_hdr_field("X-Init", "yes")
        return true
      end
      local _, port = start_server()
      local hdrs = { ["X-Token"] = "t1" }
      local conn, status, resp = ws.connect{
        url = "http://127.0.0.1:" .. port .. "/evspec/probe?x=1", hdrs = hdrs, external = true }
      on_cleanup(function() pcall(ws_util.close, conn) end, true)
      assert.are.equal("t1", token)
      assert.are.equal("/evspec/probe?x=1", uri)
      assert.are.equal(101, status)
      assert.are.equal("number", type(status))
      assert.are.equal("yes", resp["X-Init"])
      assert.are.equal("websocket", resp["Upgrade"])
      assert.are.equal(resp["sec-websocket-accept"], resp["Sec-WebSocket-Accept"])
      assert.are.equal(28, #resp["Sec-WebSocket-Accept"])
      assert.are.equal("userdata", type(conn._ss))
      assert.truthy(tostring(conn._ss):match("^streamsocket:%d+$"))
      assert.are.equal("127.0.0.1:" .. port, conn._host)
      assert.are.equal(40, conn._send_timeout)
      assert.are.equal(40, conn._recv_timeout)
      assert.is_nil(conn.msg_handler)
      assert.are.equal("GET", hdrs.method)
      assert.are.equal("Upgrade", hdrs.Connection)
      assert.are.equal("websocket", hdrs.Upgrade)
      assert.are.equal(13, hdrs["Sec-WebSocket-Version"])
    end)
  end)

  it("takes ws:// URLs, a timeout, and reuses a hdrs table evlua already filled", function()
    run_async(function()
      local _, port = start_server()
      local hdrs = { method = "GET", Connection = "Upgrade", Upgrade = "websocket",
                     ["Sec-WebSocket-Version"] = 13, ["Sec-WebSocket-Key"] = "stale" }
      local conn, status = connect(port, "/evspec/probe", { hdrs = hdrs, timeout = 7 })
      assert.are.equal(101, status)
      assert.are.equal(7, conn._recv_timeout)
      assert.are.equal(7, conn._send_timeout)
      local conn2 = ws.connect{ url = "ws://127.0.0.1:" .. port .. "/evspec/probe",
                                hdrs = {}, external = false, secure = false }
      on_cleanup(function() pcall(ws_util.close, conn2) end, true)
      assert.is_table(conn2)
    end)
  end)

  it("sends evlua's handshake request on the wire", function()
    run_async(function()
      local listener = raw_listen()
      local request
      local join = spawn(function()
        local peer = listener:accept()
        request = peer:read_request()
        peer:send("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
      end)
      local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/a/b?x=1&y=2",
                               hdrs = { ["X-Token"] = "t1", Count = 3 }, external = false }
      join()
      assert.is_nil(conn)
      assert.are.equal("GET /a/b?x=1&y=2 HTTP/1.1", request.first)
      local f = request.fields
      assert.are.equal("127.0.0.1:" .. listener.port, f["host"])
      assert.are.equal("upgrade", f["connection"]:lower())
      assert.are.equal("websocket", f["upgrade"]:lower())
      assert.are.equal("13", f["sec-websocket-version"])
      assert.truthy(f["sec-websocket-key"]:match("^[%w+/]+==$"))
      assert.are.equal(24, #f["sec-websocket-key"])
      assert.are.equal("t1", f["x-token"])
      assert.are.equal("3", f["count"])
      assert.is_nil(f["method"])
      local keys = 0
      for _, pair in ipairs(request.all) do
        if pair[1] == "sec-websocket-key" then keys = keys + 1 end
      end
      assert.are.equal(1, keys)
    end)
  end)

  -- ws.connect's results for a failure of `kind`: nil and
  -- "ws.connect: <the core's message> (<kind>)".
  local function assert_failure(kind, conn, msg)
    assert.is_nil(conn)
    assert.are.equal("string", type(msg))
    assert.truthy(msg:find("^ws%.connect: .+ %(" .. kind .. "%)$"), msg)
  end

  -- A raw server answering the handshake with `answer(key)`.
  local function connect_to_raw(answer)
    local listener = raw_listen()
    local join = spawn(function()
      local peer = listener:accept()
      local request = peer:read_request()
      peer:send(answer(request.fields["sec-websocket-key"]))
      -- answer the client's closing handshake, if it got that far
      local close = peer:read_frame(2)
      if close and close.op == 8 then peer:send(frame(0x88, close.payload)) end
      peer:close()
    end)
    local conn, msg, extra = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/h",
                                         hdrs = {}, external = false, timeout = 3 }
    if conn then ws_util.close(conn) end
    join()
    return conn, msg, extra
  end

  local function response(first, fields)
    return first .. "\r\n" .. table.concat(fields, "\r\n") .. (#fields > 0 and "\r\n" or "")
           .. "Content-Length: 0\r\n\r\n"
  end

  local refusals = {
    { "a 200 without Connection", { "HTTP/1.1 200 OK", {} }, NO_CONNECTION },
    { "a 200 with Connection but no Upgrade",
      { "HTTP/1.1 200 OK", { "Connection: Upgrade" } }, NO_UPGRADE },
    { "a 200 with both (not a WebSocket answer)",
      { "HTTP/1.1 200 OK", { "Connection: Upgrade", "Upgrade: websocket" } }, BAD_ACCEPT },
    { "a 101 without Connection", { "HTTP/1.1 101 Switching Protocols",
      { "Upgrade: websocket", "Sec-WebSocket-Accept: x" } }, NO_CONNECTION },
    { "a 101 without Upgrade", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Sec-WebSocket-Accept: x" } }, NO_UPGRADE },
    { "a 101 with a wrong accept", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Accept: " .. SAMPLE_ACCEPT } },
      BAD_ACCEPT },
    { "a 101 without accept", { "HTTP/1.1 101 Switching Protocols",
      { "Connection: Upgrade", "Upgrade: websocket" } }, BAD_ACCEPT },
  }
  for _, case in ipairs(refusals) do
    it("returns nil, '" .. case[3] .. "' for " .. case[1], function()
      run_async(function()
        local conn, msg = connect_to_raw(function() return response(case[2][1], case[2][2]) end)
        assert.is_nil(conn)
        assert.are.equal(case[3], msg)
      end)
    end)
  end

  it("returns nil and the X-msg field for another status", function()
    run_async(function()
      local conn, msg = connect_to_raw(function()
        return response("HTTP/1.1 403 Forbidden", { 'X-msg: {"error_message":"denied"}' })
      end)
      assert.is_nil(conn)
      assert.are.equal('{"error_message":"denied"}', msg)
      local conn2, msg2, extra = connect_to_raw(function()
        return response("HTTP/1.1 404 Not Found", {})
      end)
      assert.is_nil(conn2)
      assert.is_nil(msg2)
      assert.is_nil(extra)
    end)
  end)

  -- init refusing with a message, and without one ({} as evlua's JSON
  -- encoder writes a table whose only field is nil).
  for _, case in ipairs({ { "go away", '{"error_message":"go away"}' }, { nil, "{}" } }) do
    it("returns evlua's X-msg " .. case[2] .. " when our server's accept refuses", function()
      run_async(function()
        probe.init = function() return false, case[1] end
        local _, port = start_server()
        local conn, msg = ws.connect{ url = "http://127.0.0.1:" .. port .. "/evspec/probe",
                                      hdrs = {}, external = false }
        assert.is_nil(conn)
        assert.are.equal(case[2], msg)
      end)
    end)
  end

  it("agrees the subprotocol init sets; takes an answer choosing none", function()
    run_async(function()
      probe.init = function(request, response)
        local offered = request:get_hdr_field("Sec-WebSocket-Protocol")
        if offered and offered:find("chat", 1, true) then
          response:set_hdr_field("Sec-WebSocket-Protocol", "chat")
        end
        return true
      end
      local _, port = start_server()
      local url = "http://127.0.0.1:" .. port .. "/evspec/probe"
      local conn, status, fields = ws.connect{ url = url, external = false,
                                               hdrs = { ["Sec-WebSocket-Protocol"] = "chat, superchat" } }
      assert.are.equal(101, status)
      assert.are.equal("chat", fields["Sec-WebSocket-Protocol"])
      ws_util.close(conn)
      local conn2, status2, fields2 = ws.connect{ url = url, external = false,
                                                  hdrs = { ["Sec-WebSocket-Protocol"] = "other" } }
      assert.are.equal(101, status2)
      assert.is_nil(fields2["Sec-WebSocket-Protocol"])
      ws_util.close(conn2)
    end)
  end)

  -- A failure that comes with the 101 is not lost while a top-level script
  -- waits in ws.connect (the main thread runs the loop until connected):
  -- recv_frame raises with it at once, not after its timeout (3 s here).
  it("recv_frame raises at once, naming the fault, when the server breaks the protocol", function()
    assert.is_nil(coroutine.running()) -- the main thread, as a top-level script
    local listener = raw_listen()
    local join = spawn(function()
      local peer = listener:accept()
      local request = peer:read_request()
      peer:send("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                .. "Sec-WebSocket-Accept: " .. accept_for(request.fields["sec-websocket-key"]) .. "\r\n\r\n")
      peer:send(frame(0x81, "masked", "abcd")) -- a server must not mask
      peer:read_frame(2) -- the client's close (1002)
      peer:close()
    end)
    local conn = ws.connect{ url = "http://127.0.0.1:" .. listener.port .. "/h", hdrs = {},
                             external = false, timeout = 3 }
    local ok, err = pcall(ws_util.recv_frame, conn)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("^ws_util.recv_frame: protocol: "), err)
    join()
    listener:close()
  end)

  it("accepts a valid 101 from a raw server (case-insensitive field values)", function()
    run_async(function()
      local conn, status, hdrs = connect_to_raw(function(key)
        return "HTTP/1.1 101 Switching Protocols\r\nconnection: UPGRADE\r\nupgrade: WebSocket\r\n"
               .. "sec-websocket-accept: " .. accept_for(key) .. "\r\nx-msg: none\r\n\r\n"
      end)
      assert.is_table(conn)
      assert.are.equal(101, status)
      assert.are.equal("none", hdrs["X-msg"])
      assert.are.equal("UPGRADE", hdrs["Connection"])
    end)
  end)

  -- A CA and a certificate for 127.0.0.1 it signed (openssl), or nil.
  local function make_certs()
    local dir = os.tmpname()
    os.remove(dir)
    local ok = os.execute("mkdir -p " .. dir .. " && cd " .. dir .. " && ("
      .. "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
      .. " -subj /CN=evspec-ca -addext basicConstraints=critical,CA:TRUE"
      .. " -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem"
      .. " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
      .. " -subj /CN=127.0.0.1 -keyout key.pem -out leaf.csr"
      .. " && printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf"
      .. " && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1"
      .. " -extfile ext.cnf -out cert.pem) >/dev/null 2>&1")
    if ok ~= true and ok ~= 0 then return nil end
    return { ca = dir .. "/ca.pem", cert = dir .. "/cert.pem", key = dir .. "/key.pem", dir = dir }
  end

  it("uses TLS when secure = true, whatever the URL's scheme", function()
    local certs = make_certs()
    if not certs then return pending("openssl is needed to make test certificates") end
    run_async(function()
      local _, port = start_server(nil, { tls = { cert_file = certs.cert, key_file = certs.key } })
      local url = "http://127.0.0.1:" .. port .. "/evspec/probe"
      local conn, status = ws.connect{ url = url, hdrs = {}, external = true, secure = true,
                                       tls = { ca_file = certs.ca } }
      on_cleanup(function() pcall(ws_util.close, conn) end, true)
      assert.are.equal(101, status)
      ws_util.send_msg(conn, "over tls", { msg_type = "TEXT" })
      assert.are.equal("over tls", ffi.string(ws_util.recv_frame(conn).buf))
      -- verification is on by default: our test CA is not trusted
      assert_failure("tls", ws.connect{ url = url, hdrs = {}, external = true, secure = true })
    end)
    os.execute("rm -rf " .. certs.dir)
  end)

  -- evlua's documentation: "In case of any error connection will be
  -- returned as nil and the second return value will have the message"
  -- (evlua's code raises; turbo_ws follows the documentation). Only
  -- misuse raises: wrong input types, a URL that cannot be used.
  it("returns nil and a message naming the kind on network failures; raises for a bad URL", function()
    run_async(function()
      local listener = raw_listen()
      local port = listener.port
      listener.close() -- nobody listens there any more
      local url = "http://127.0.0.1:" .. port .. "/x"
      assert_failure("refused", ws.connect{ url = url, hdrs = {}, external = false })
      -- a name that cannot resolve (RFC 2606 .invalid); a resolver that
      -- does not answer at all makes it a timeout instead
      local conn, msg = ws.connect{ url = "http://turbo-ws-evspec.invalid/x", hdrs = {},
                                    external = false, timeout = 2 }
      assert.is_nil(conn)
      local kind = tostring(msg):match("^ws%.connect: .+ %(([%w_]+)%)$")
      assert.truthy(({ dns = true, handshake_timeout = true, connect_timeout = true })[kind], msg)
      assert_error_with("unsupported URL", ws.connect,
                        { url = "ftp://127.0.0.1/x", hdrs = {}, external = false })
      assert_error_with("bad URL", ws.connect,
                        { url = "http://127.0.0.1:99999/x", hdrs = {}, external = false })
      -- a field the core cannot send, named as this call names it
      assert_error_with("ws.connect: bad field 'hdrs' (bad value for 'X-A')", ws.connect,
                        { url = url, hdrs = { ["X-A"] = "a\r\nb" }, external = false })
    end)
  end)

  it("returns nil, message on a network failure from top-level code too", function()
    assert.is_nil(coroutine.running()) -- the main thread, as a top-level script
    local listener = raw_listen()
    local port = listener.port
    listener.close()
    local conn, msg = ws.connect{ url = "http://127.0.0.1:" .. port .. "/x", hdrs = {},
                                  external = false }
    assert.is_nil(conn)
    assert.truthy(tostring(msg):find("^ws%.connect: .*%(refused%)$"), msg)
  end)

  it("returns nil, message on a handshake that takes longer than timeout", function()
    run_async(function()
      local listener = raw_listen()
      local join = spawn(function()
        local peer = listener:accept()
        peer:read_request()
        peer:wait_eof(2) -- never answers
      end)
      assert_failure("handshake_timeout", ws.connect{
        url = "http://127.0.0.1:" .. listener.port .. "/x", hdrs = {}, external = false,
        timeout = 0.2 })
      join()
    end)
  end)

  -- The server closes without answering, or answers with what is not HTTP.
  for _, case in ipairs({ { "no_response", nil }, { "bad_response", "SSH-2.0-nope\r\n\r\n" } }) do
    it("returns nil, message (" .. case[1] .. ") when the server's answer is not HTTP or missing", function()
      run_async(function()
        local listener = raw_listen()
        local join = spawn(function()
          local peer = listener:accept()
          peer:read_request()
          if case[2] then peer:send(case[2]) end
          peer:close()
        end)
        assert_failure(case[1], ws.connect{
          url = "http://127.0.0.1:" .. listener.port .. "/x", hdrs = {}, external = false,
          timeout = 3 })
        join()
      end)
    end)
  end

  it("asserts its inputs", function()
    local good = { url = "http://127.0.0.1:1/x", hdrs = {}, external = false }
    local function with(k, v)
      local t = {}
      for key, value in pairs(good) do t[key] = value end
      t[k] = v
      return t
    end
    assert_error_with("inputs (table)", ws.connect, nil)
    assert_error_with("url (string)", ws.connect, with("url", nil))
    assert_error_with("hdrs (table)", ws.connect, with("hdrs", nil))
    assert_error_with("external (boolean)", ws.connect, with("external", nil))
    assert_error_with("secure must be a boolean", ws.connect, with("secure", "yes"))
    assert_error_with("timeout must be a number", ws.connect, with("timeout", "1"))
    assert_error_with("msg_handler must be a string", ws.connect, with("msg_handler", 1))
    assert_error_with("credentials must be a table", ws.connect, with("credentials", "c"))
  end)
end)
