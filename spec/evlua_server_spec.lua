-- The evlua face's server side up to the upgrade: evlua.serve's requests
-- and responses (evlua's request/response methods, keep-alive, errors) and
-- ws.accept's handshake checks, answered to raw TCP peers that look at the
-- bytes on the wire. Shared helpers: spec/support/evlua.lua.
local E = require "spec.support.evlua"
local evlua, ws, SAMPLE_ACCEPT, sleep = E.evlua, E.ws, E.SAMPLE_ACCEPT, E.sleep
local run_async, capture_stderr = E.run_async, E.capture_stderr
local assert_error_with, raw_connect, cframe = E.assert_error_with, E.raw_connect, E.cframe
local upgrade_request, probe, reset_probe = E.upgrade_request, E.probe, E.reset_probe
local start_server = E.start_server

describe("evlua.serve: requests and responses", function()
  before_each(reset_probe)

  it("gives handle_request evlua's request methods", function()
    run_async(function()
      local seen
      local _, port = start_server(function(request, response)
        local fields = request:get_hdr_fields()
        local names = {}
        for name in pairs(fields) do names[name] = true end
        seen = {
          req = tostring(request), resp = tostring(response),
          method = request:get_method(), uri = request:get_uri(),
          version = request:get_version(), host = request:get_host(),
          custom = request:get_hdr_field("X-CUSTOM"),
          custom2 = request:get_hdr_field(request, "x-custom"),
          absent = request:get_hdr_field("X-Absent"),
          no_name = select(2, pcall(request.get_hdr_field, request))
                    :match("get_hdr_field: .*"),
          key = fields["Sec-WebSocket-Key"], key_lower = fields["sec-websocket-key"],
          names = names, query = request:get_query_parameters(),
          body = request:get_message_body_str(),
        }
      end)
      local raw = raw_connect(port)
      raw:send("POST /p/q?a=1&b=x%20y&c HTTP/1.1\r\nHost: 127.0.0.1:" .. port
               .. "\r\nx-custom: v\r\nsec-websocket-key: abc\r\nContent-Length: 7\r\n\r\npayload")
      local res = raw:read_response()
      assert.are.equal(200, res.status)
      assert.are.same({
        req = "httpsreq", resp = "httpsresp", method = "POST", uri = "/p/q?a=1&b=x%20y&c",
        version = "HTTP/1.1", host = "127.0.0.1:" .. port, custom = "v", custom2 = "v",
        absent = "", key = "abc", key_lower = "abc",
        no_name = "get_hdr_field: header name (string) expected, got nil",
        names = { Host = true, ["X-Custom"] = true, ["Sec-WebSocket-Key"] = true,
                  ["Content-Length"] = true },
        query = { a = "1", b = "x y", c = "" }, body = "payload",
      }, seen)
    end)
  end)

  it("sends what the response methods set: status, fields, body", function()
    run_async(function()
      local _, port = start_server(function(_, response)
        response:set_status(201)
        response:set_hdr_field("X-One", "1")
        response:set_hdr_field("x-one", "2") -- replaces, whatever the case
        response:set_hdr_field("X-Num", 42)
        response:set_content_type("text/plain")
        response:set_content_length(5)
        response:set_chunked_trfencoding(false)
        response:send()
        response:write("he")
        sleep(0.01) -- handle_request may yield
        response:write("llo")
      end)
      local raw = raw_connect(port)
      raw:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = raw:read_response()
      assert.are.equal("HTTP/1.1 201 Created", res.first)
      assert.are.equal("2", res.fields["x-one"])
      assert.are.equal("42", res.fields["x-num"])
      assert.are.equal("text/plain", res.fields["content-type"])
      assert.are.equal("hello", res.body)
      local ones = 0
      for _, pair in ipairs(res.all) do if pair[1] == "x-one" then ones = ones + 1 end end
      assert.are.equal(1, ones)
    end)
  end)

  it("keeps the connection alive between requests unless set_keep_alive(false)", function()
    run_async(function()
      local calls = 0
      local _, port = start_server(function(request, response)
        calls = calls + 1
        if request:get_uri() == "/last" then response:set_keep_alive(false) end
        response:write(request:get_uri())
      end)
      local raw = raw_connect(port)
      raw:send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal("/first", raw:read_response().body)
      raw:send("GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = raw:read_response()
      assert.are.equal("/last", res.body)
      assert.are.equal("close", res.fields["connection"])
      assert.is_true(raw:wait_eof())
      assert.are.equal(2, calls)
    end)
  end)

  it("answers an error in handle_request with 500 and evlua's error document, and goes on", function()
    run_async(function()
      local _, port = start_server(function(request, response)
        if request:get_uri() == "/boom" then error("boom \"quoted\" é\n", 0) end
        response:write("fine")
      end)
      local raw = raw_connect(port)
      local logged = capture_stderr(function()
        raw:send("GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        local res = raw:read_response()
        assert.are.equal(500, res.status)
        assert.are.equal("application/json", res.fields["content-type"])
        local json = '{"error_message":"boom \\"quoted\\" \\u00e9\\n"}'
        assert.are.equal(json, res.fields["x-msg"])
        assert.are.equal(json, res.body)
      end)
      assert.truthy(logged:find("handle_request", 1, true))
      raw:send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal("fine", raw:read_response().body)
    end)
  end)

  -- The core could not send them: refused at the call, the error goes the
  -- usual way (500 with evlua's error document), not a plain 500 later.
  it("refuses a status or header field the core cannot send, at the call", function()
    run_async(function()
      local raised = {}
      local function try(what, fn, ...)
        local ok, err = pcall(fn, ...)
        raised[what] = not ok and tostring(err):match("set_[%w_]+: .*") or false
      end
      local _, port = start_server(function(request, response)
        if request:get_uri() == "/status" then response:set_status(99) end
        if request:get_uri() == "/field" then response:set_hdr_field("X-Bad", "a\r\nInjected: 1") end
        try("99", response.set_status, response, 99)
        try("1000", response.set_status, response, 1000)
        try("200.5", response.set_status, response, 200.5)
        try("100", response.set_status, response, 100)
        try("199", response.set_status, response, 199)
        try("101", response.set_status, response, 101)
        try("200", response.set_status, response, 200)
        try("999", response.set_status, response, 999)
        try("space", response.set_hdr_field, response, "X Bad", "v")
        try("colon", response.set_hdr_field, response, "X:Bad", "v")
        try("empty", response.set_hdr_field, response, "", "v")
        try("lf", response.set_hdr_field, response, "X-Bad", "a\nb")
        try("nul", response.set_hdr_field, response, "X-Bad", "a\0b")
        try("type", response.set_content_type, response, "text/plain\r\nX: y")
        try("token", response.set_hdr_field, response, "X-Odd!#$%&'*+.^_`|~1", "tab\tand \1 bytes")
        response:set_status(200)
        response:write("fine")
      end)
      local raw = raw_connect(port)
      raw:send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
      local res = raw:read_response()
      assert.are.equal(200, res.status)
      assert.are.equal("tab\tand \1 bytes", res.fields["x-odd!#$%&'*+.^_`|~1"])
      assert.are.same({
        ["99"] = "set_status: status must be 101 or a whole number from 200 to 999, got 99",
        ["1000"] = "set_status: status must be 101 or a whole number from 200 to 999, got 1000",
        ["200.5"] = "set_status: status must be 101 or a whole number from 200 to 999, got 200.5",
        -- An interim 1xx cannot end a request (RFC 9110 15.2); 101 is the upgrade's.
        ["100"] = "set_status: status must be 101 or a whole number from 200 to 999, got 100",
        ["199"] = "set_status: status must be 101 or a whole number from 200 to 999, got 199",
        ["101"] = false, ["200"] = false, ["999"] = false,
        space = "set_hdr_field: bad header name 'X Bad' (a token expected)",
        colon = "set_hdr_field: bad header name 'X:Bad' (a token expected)",
        empty = "set_hdr_field: bad header name '' (a token expected)",
        lf = "set_hdr_field: bad value for header 'X-Bad' (CR, LF or NUL)",
        nul = "set_hdr_field: bad value for header 'X-Bad' (CR, LF or NUL)",
        type = "set_hdr_field: bad value for header 'Content-Type' (CR, LF or NUL)",
        token = false,
      }, raised)
      for _, case in ipairs({ { "/status", "set_status: status must be 101 or a whole number" },
                              { "/field", "set_hdr_field: bad value for header 'X-Bad'" } }) do
        capture_stderr(function()
          raw:send("GET " .. case[1] .. " HTTP/1.1\r\nHost: x\r\n\r\n")
          res = raw:read_response()
        end)
        assert.are.equal(500, res.status)
        assert.are.equal("application/json", res.fields["content-type"])
        -- the message names the handler's line (error level 2), then the call's reason
        assert.truthy(res.body:find('^{"error_message":"spec/evlua_server_spec%.lua:%d+: '), res.body)
        assert.truthy(res.body:find(case[2], 1, true), res.body)
        assert.are.equal(res.body, res.fields["x-msg"])
        assert.is_nil(res.fields["injected"])
      end
    end)
  end)

  it("runs each request in its own coroutine: one that waits does not hold up others", function()
    run_async(function()
      local order = {}
      local _, port = start_server(function(request, response)
        if request:get_uri() == "/slow" then sleep(0.2) end
        order[#order + 1] = request:get_uri()
        response:write("x")
      end)
      local slow, fast = raw_connect(port), raw_connect(port)
      slow:send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      sleep(0.02)
      fast:send("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.are.equal(200, fast:read_response().status)
      assert.are.equal(200, slow:read_response().status)
      assert.are.same({ "/fast", "/slow" }, order)
    end)
  end)

  it("checks its options", function()
    assert_error_with("handle_request", evlua.serve, { host = "127.0.0.1", port = 0 })
    assert_error_with("options table expected", evlua.serve, nil)
    assert_error_with("app_base_path", evlua.serve,
                      { port = 0, handle_request = print, app_base_path = 1 })
  end)
end)

describe("ws.accept", function()
  before_each(reset_probe)

  -- Sends an upgrade request and returns the response (and the raw peer).
  local function try_upgrade(port, path, fields)
    local raw = raw_connect(port)
    raw:send(upgrade_request(path, fields, port))
    return raw:read_response(), raw
  end

  local function assert_rejected(res, msg)
    local json = '{"error_message":"' .. msg .. '"}'
    assert.are.equal(400, res.status)
    assert.are.equal("application/json", res.fields["content-type"])
    assert.are.equal(json, res.fields["x-msg"])
    assert.are.equal(json, res.body)
    assert.is_false(probe.accepted)
  end

  local rejections = {
    { "no version (checked first)", "/evspec/probe",
      { ["Sec-WebSocket-Version"] = false, ["Sec-WebSocket-Key"] = false },
      "Missing Sec-WebSocket-Version in handshake request" },
    { "another version", "/evspec/probe", { ["Sec-WebSocket-Version"] = "8" },
      "Unsupported WebSocket version requested" },
    { "no key", "/evspec/probe", { ["Sec-WebSocket-Key"] = false },
      "Missing Sec-WebSocket-Key in handshake request" },
    { "a blank key", "/evspec/probe", { ["Sec-WebSocket-Key"] = "   " },
      "Missing Sec-WebSocket-Key in handshake request" },
    { "the root path", "/", {}, "Path empty: Unable to deduce message handler" },
    { "a path with only a query", "/?evspec=probe", {},
      "Path empty: Unable to deduce message handler" },
    { "a path naming no module", "/evspec/../probe", {},
      "Invalid path: Unable to deduce message handler" },
  }
  for _, case in ipairs(rejections) do
    it("refuses " .. case[1] .. " with 400 '" .. case[4] .. "'", function()
      run_async(function()
        local init_called = false
        probe.init = function() init_called = true return true end
        local _, port = start_server()
        local res = try_upgrade(port, case[2], case[3])
        assert_rejected(res, case[4])
        assert.is_false(init_called)
        -- RFC 6455 §4.2.2: a version refusal names the version we speak.
        local about_version = case[4]:find("ersion", 1, true) ~= nil
        assert.are.equal(about_version and "13" or nil, res.fields["sec-websocket-version"])
      end)
    end)
  end

  it("refuses with the message of a handler's init that returns false", function()
    run_async(function()
      probe.init = function() return false, "not allowed here" end
      local _, port = start_server()
      assert_rejected(try_upgrade(port, "/evspec/probe"), "not allowed here")
    end)
  end)

  it("answers 101 with the accept key and the fields init set; passes request, response, uc", function()
    run_async(function()
      local got
      probe.uc = { user = "u1" }
      probe.init = function(request, response, uc)
        got = { req = tostring(request), resp = tostring(response), uc = uc,
                uri = request:get_uri() }
        response:set_hdr_field("X-Init", "done")
        return true
      end
      local _, port = start_server()
      local res, raw = try_upgrade(port, "/evspec/probe?room=1",
                                   { ["Sec-WebSocket-Version"] = " 13 " })
      assert.are.equal("HTTP/1.1 101 Switching Protocols", res.first)
      assert.are.equal("websocket", res.fields["upgrade"]:lower())
      assert.are.equal("upgrade", res.fields["connection"]:lower())
      assert.are.equal(SAMPLE_ACCEPT, res.fields["sec-websocket-accept"])
      assert.are.equal("done", res.fields["x-init"])
      assert.are.equal("", res.body)
      assert.is_true(probe.accepted)
      assert.are.same({ req = "httpsreq", resp = "httpsresp", uc = probe.uc,
                        uri = "/evspec/probe?room=1" }, got)
      assert.are.equal(probe.uc, got.uc)
      -- the connection now speaks WebSocket
      raw:send(cframe(0x81, "hi"))
      assert.are.equal("hi", raw:read_frame().payload)
    end)
  end)

  it("finds the handler module under the server's app_base_path", function()
    run_async(function()
      local _, port = start_server(nil, { app_base_path = "evspec" })
      local res, raw = try_upgrade(port, "/probe")
      assert.are.equal(101, res.status)
      raw:send(cframe(0x81, "based"))
      assert.are.equal("based", raw:read_frame().payload)
    end)
  end)

  it("raises when the handler module cannot be loaded (serve answers 500)", function()
    run_async(function()
      local _, port = start_server()
      local res
      capture_stderr(function() res = try_upgrade(port, "/evspec/missing") end)
      assert.are.equal(500, res.status)
      assert.truthy(res.fields["x-msg"]:find("handler module 'evspec.missing' not found", 1, true))
      -- package.path's places searched would tell a client the server's directories
      assert.is_nil(res.fields["x-msg"]:find("no file", 1, true))
      assert.is_nil(res.body:find("no file", 1, true))
    end)
  end)

  it("lets init's bad header field raise at the call (serve answers 500 with evlua's document)", function()
    run_async(function()
      probe.init = function(_, response)
        response:set_hdr_field("X-Init", "a\r\nInjected: 1")
        return true
      end
      local _, port = start_server()
      local res
      capture_stderr(function() res = try_upgrade(port, "/evspec/probe") end)
      assert.are.equal(500, res.status)
      assert.are.equal("application/json", res.fields["content-type"])
      assert.truthy(res.fields["x-msg"]:find("set_hdr_field: bad value for header 'X-Init' (CR, LF or NUL)",
                                             1, true), res.fields["x-msg"])
      assert.is_nil(res.fields["injected"])
      assert.is_nil(probe.accepted)
    end)
  end)

  it("agrees on the subprotocol init set when offered; raises before answering when not", function()
    run_async(function()
      probe.init = function(_, response)
        response:set_hdr_field("Sec-WebSocket-Protocol", "chat")
        return true
      end
      local _, port = start_server()
      local res = try_upgrade(port, "/evspec/probe", { ["Sec-WebSocket-Protocol"] = "superchat, chat" })
      assert.are.equal(101, res.status)
      assert.are.equal("chat", res.fields["sec-websocket-protocol"])
      probe.accepted = nil
      capture_stderr(function() res = try_upgrade(port, "/evspec/probe") end)
      assert.are.equal(500, res.status)
      assert.are.equal("application/json", res.fields["content-type"])
      assert.truthy(res.fields["x-msg"]:find("init chose subprotocol 'chat', which the client did not offer",
                                             1, true), res.fields["x-msg"])
      assert.is_nil(probe.accepted)
    end)
  end)

  it("returns false when the core finds the handshake invalid (RFC 6455 key)", function()
    run_async(function()
      local _, port = start_server()
      local res = try_upgrade(port, "/evspec/probe", { ["Sec-WebSocket-Key"] = "short" })
      assert.are.equal(400, res.status)
      assert.is_false(probe.accepted)
    end)
  end)

  it("checks its arguments", function()
    run_async(function()
      local errors = {}
      local _, port = start_server(function(request, response)
        for _, args in ipairs{ { {}, response, {} }, { request, {}, {} },
                               { request, response, nil }, { request, response, "uc" } } do
          local ok, err = pcall(ws.accept, args[1], args[2], args[3])
          errors[#errors + 1] = not ok and tostring(err) or "no error"
        end
        response:write("checked")
      end)
      local raw = raw_connect(port)
      raw:send(upgrade_request("/evspec/probe", nil, port))
      assert.are.equal("checked", raw:read_response().body)
      assert.are.equal(4, #errors)
      assert.truthy(errors[1]:find("request (httpsreq) expected", 1, true))
      assert.truthy(errors[2]:find("response (httpsresp) expected", 1, true))
      assert.truthy(errors[3]:find("uc (table) expected", 1, true))
      assert.truthy(errors[4]:find("uc (table) expected", 1, true))
    end)
  end)
end)

describe("evlua.platform", function()
  it("ev_hibernate raises for seconds that are not a non-negative number", function()
    for _, bad in ipairs{ { "x", "got string" }, { -1, "got -1" }, { 0 / 0, "got nan" }, { nil, "got nil" } } do
      assert_error_with("platform.ev_hibernate: bad argument #1 'seconds' (non-negative number expected, "
                        .. bad[2], evlua.platform.ev_hibernate, bad[1])
    end
  end)
end)
