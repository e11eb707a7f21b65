-- turbo.async: HTTPClient:fetch and task, yielded from loop callbacks and
-- from turbo_ws request handlers, against an independent HTTP server
-- (spec/support/http_peer.py, Python's http.server: it reports what it
-- received) and against turbo_ws servers (plain and TLS).
local turbo = require "turbo_ws"
local core = turbo.core
local async = turbo.async
local escape = turbo.escape
local S = require "spec.turbo_support"
local P = require "spec.support.peer"
local unpack = unpack or table.unpack

local PYTHON = os.getenv("PYTHON") or "python3"
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

---------------------------------------------------------------------------
-- The Python peer

local peer

-- Starts spec/support/http_peer.py once: {a, b, full} ports.
local function need_peer()
  if peer then return peer end
  local dir = S.tmpdir()
  local handle, ports = P.start(("'%s' '%s/spec/support/http_peer.py'"):format(PYTHON, ROOT), dir)
  peer = {
    handle = handle, dir = dir,
    a = tonumber(ports:match("a=(%d+)")),
    b = tonumber(ports:match("b=(%d+)")),
    full = tonumber(ports:match("full=(%d+)")),
  }
  return peer
end

local function stop_peer()
  if peer then
    peer.handle:close()
    S.rmdir(peer.dir)
  end
  peer = nil
end

local function url_a(path) return "http://127.0.0.1:" .. need_peer().a .. path end
local function url_b(path) return "http://127.0.0.1:" .. need_peer().b .. path end

---------------------------------------------------------------------------
-- Running fetches

-- Runs body(done) in a loop callback (where it may yield) for at most ms.
local function in_loop(body, ms)
  assert.is_true(S.loop(body, ms or 10000), "the loop did not finish in time")
end

-- Fetches from inside the loop; returns the HTTPResponse.
local function fetch(url, kwargs, client)
  local res
  in_loop(function(done)
    res = coroutine.yield((client or async.HTTPClient()):fetch(url, kwargs))
    done()
  end)
  return res
end

-- What the peer's /echo received: {method, target, headers, body, peer}.
local function echoed(res)
  assert.is_nil(res.error, res.error and res.error.message)
  assert.are.equal(200, res.code)
  return escape.json_decode(res.body)
end

-- The value of a header in a list of {name, value} pairs, any case.
local function header(list, name)
  for _, pair in ipairs(list) do
    if pair[1]:lower() == name:lower() then return pair[2] end
  end
end

-- Every request the peer received so far.
local function peer_log()
  return escape.json_decode(fetch(url_a("/log")).body)
end

local function received(target)
  for _, entry in ipairs(peer_log()) do
    if entry.target == target then return true end
  end
  return false
end

---------------------------------------------------------------------------

describe("turbo.async", function()
  setup(S.quiet)
  teardown(function()
    stop_peer()
    S.loud()
    S.cleanup_tls()
  end)

  describe("module", function()
    it("is turbo.async and require 'turbo.async' under compat", function()
      assert.are.equal(require("turbo_ws.async"), async)
      require "turbo_ws.compat"
      assert.are.equal(async, require("turbo.async"))
    end)

    it("shares Turbo's error codes with turbo.websocket", function()
      assert.are.equal(turbo.websocket.errors, async.errors)
      assert.are.equal(-1, async.errors.INVALID_URL)
      assert.are.equal(-3, async.errors.COULD_NOT_CONNECT)
      assert.are.equal(-5, async.errors.CONNECT_TIMEOUT)
      assert.are.equal(-6, async.errors.REQUEST_TIMEOUT)
      assert.are.equal(-13, async.errors.REDIRECT_MAX)
    end)
  end)

  describe("task", function()
    it("resumes with what the callback was given, after its argument", function()
      local got
      in_loop(function(done)
        local function callback_style(x, y, callback, arg)
          core.add_callback(function() callback(arg, x + y, "two", nil, 4) end)
        end
        got = { n = 0 }
        local function pack(...) return { n = select("#", ...), ... } end
        got = pack(coroutine.yield(async.task(callback_style, 40, 2)))
        done()
      end)
      assert.are.same({ n = 4, 42, "two", nil, 4 }, got)
    end)

    it("resumes when the callback ran before the yield", function()
      local got
      in_loop(function(done)
        got = coroutine.yield(async.task(function(callback, arg) callback(arg, "early") end))
        done()
      end)
      assert.are.equal("early", got)
    end)

    it("lets a callback yield a function: resumed with its results", function()
      local a, b
      in_loop(function(done)
        a, b = coroutine.yield(function() return "x", "y" end)
        done()
      end)
      assert.are.same({ "x", "y" }, { a, b })
    end)

    it("raises for a func that is not a function", function()
      assert.has_error(function() async.task(42) end,
        "async.task: bad argument #1 'func' (function expected, got number)")
    end)
  end)

  describe("HTTPClient:fetch against http.server", function()
    it("GETs with params in the query, Turbo's request headers and a full response", function()
      local res = fetch(url_a("/echo"), { params = { b = "x", a = "1 2" } })
      local got = echoed(res)
      assert.are.equal("GET", got.method)
      assert.are.equal("/echo?a=1%202&b=x", got.target)
      assert.are.equal("127.0.0.1:" .. peer.a, header(got.headers, "Host"))
      assert.are.equal("Turbo Client v2.1.5", header(got.headers, "User-Agent"))
      assert.are.equal("OK", res.reason)
      assert.are.equal("a", res.headers:get("x-peer"))
      assert.are.equal(200, res.headers:get_status_code())
      assert.are.equal(url_a("/echo?a=1%202&b=x"), res.url)
      assert.is_number(res.request_time)
      assert.are.equal("GET", res.request:get_method())
      assert.are.equal("/echo?a=1%202&b=x", res.request:get_uri())
    end)

    it("POSTs a body as given", function()
      local body = "line1\r\nbinary\0byte"
      local got = echoed(fetch(url_a("/echo"), { method = "POST", body = body }))
      assert.are.equal("POST", got.method)
      assert.are.equal(body, got.body)
      assert.are.equal(tostring(#body), header(got.headers, "Content-Length"))
    end)

    it("POSTs params as a form when there is no body", function()
      local got = echoed(fetch(url_a("/echo"), { method = "post", params = { q = "a&b", n = 1 } }))
      assert.are.equal("POST", got.method)
      assert.are.equal("/echo", got.target)
      assert.are.equal("n=1&q=a%26b", got.body)
      assert.are.equal("application/x-www-form-urlencoded", header(got.headers, "Content-Type"))
    end)

    it("sends cookie, Basic auth, user_agent and headers added in on_headers", function()
      local seen_method
      local got = echoed(fetch(url_a("/echo"), {
        cookie = { b = "2", a = "1" },
        auth_username = "user", auth_password = "pass",
        user_agent = "spec-agent",
        on_headers = function(headers)
          seen_method = headers:get_method()
          headers:add("X-Custom", "yes")
        end,
      }))
      assert.are.equal("GET", seen_method)
      assert.are.equal("a=1; b=2", header(got.headers, "Cookie"))
      assert.are.equal("Basic dXNlcjpwYXNz", header(got.headers, "Authorization"))
      assert.are.equal("spec-agent", header(got.headers, "User-Agent"))
      assert.are.equal("yes", header(got.headers, "X-Custom"))
    end)

    it("answers non-2xx statuses as responses, not errors", function()
      for _, code in ipairs({ 404, 500 }) do
        local res = fetch(url_a("/status/" .. code))
        assert.is_nil(res.error)
        assert.are.equal(code, res.code)
        assert.are.equal("status " .. code, res.body)
      end
    end)

    it("reads HEAD answers without a body, and chunked bodies", function()
      local res = fetch(url_a("/status/200"), { method = "HEAD" })
      assert.are.same({ 200, "" }, { res.code, res.body })
      assert.are.equal("chunk1chunk2", fetch(url_a("/chunked")).body)
    end)

    it("asks for gzip and decodes it unless use_gzip is false", function()
      assert.are.equal("compressed hello", fetch(url_a("/gzip")).body)
      assert.are.equal("plain hello", fetch(url_a("/gzip"), { use_gzip = false }).body)
    end)

    it("sends HTTP/1.0 when http_version asks for it", function()
      local got = echoed(fetch(url_a("/echo"), { http_version = "HTTP/1.0" }))
      assert.are.equal("GET", got.method)
      assert.has_error(function() async.HTTPClient():fetch(url_a("/echo"), { http_version = "HTTP/2" }) end)
    end)
  end)

  describe("HTTPClient:fetch errors", function()
    local codes = async.errors

    it("COULD_NOT_CONNECT for a refused connection and an unknown host", function()
      local server = core.listen({ host = "127.0.0.1", port = 0 }, function() end)
      local closed_port = server:port()
      server:close()
      S.drain(50)
      local res = fetch("http://127.0.0.1:" .. closed_port .. "/")
      assert.are.equal(codes.COULD_NOT_CONNECT, res.error.code)
      assert.matches("refused", res.error.message)
      assert.is_nil(res.code)
      assert.is_number(res.request_time)
      res = fetch("http://no-such-host.invalid/", { request_timeout = 5 })
      assert.are.equal(codes.COULD_NOT_CONNECT, res.error.code)
      assert.matches("resolve", res.error.message)
    end)

    it("CONNECT_TIMEOUT when the connect hangs, REQUEST_TIMEOUT when the answer does", function()
      local t0 = core.gettimemonotonic()
      local res = fetch("http://127.0.0.1:" .. need_peer().full .. "/", { connect_timeout = 0.3 })
      assert.are.equal(codes.CONNECT_TIMEOUT, res.error.code)
      assert.is_true(core.gettimemonotonic() - t0 < 2000)
      t0 = core.gettimemonotonic()
      res = fetch(url_a("/slow"), { request_timeout = 0.4 })
      assert.are.equal(codes.REQUEST_TIMEOUT, res.error.code)
      assert.is_true(core.gettimemonotonic() - t0 < 2000)
    end)

    it("INVALID_URL, INVALID_SCHEMA and INVALID_BODY as answers", function()
      assert.are.equal(codes.INVALID_URL, fetch("not a url").error.code)
      assert.are.equal(codes.INVALID_URL, fetch(42).error.code)
      assert.are.equal(codes.INVALID_SCHEMA, fetch("ftp://127.0.0.1/").error.code)
      assert.are.equal(codes.INVALID_SCHEMA, fetch("ws://127.0.0.1/").error.code)
      assert.are.equal(codes.INVALID_BODY, fetch(url_a("/echo"), { method = "POST", body = {} }).error.code)
    end)

    it("SOCKET_ERROR for a body over max_buffer_size", function()
      local res = fetch(url_a("/big"), nil, async.HTTPClient(nil, nil, 1000))
      assert.are.equal(codes.SOCKET_ERROR, res.error.code)
      assert.matches("max_body_size", res.error.message)
      assert.are.equal(100000, #fetch(url_a("/big"), nil, async.HTTPClient(nil, nil, 100000)).body)
    end)

    it("BUSY for a second fetch on a client that is fetching", function()
      local first, second
      in_loop(function(done)
        local client = async.HTTPClient()
        local t1 = client:fetch(url_a("/echo"))
        second = coroutine.yield(client:fetch(url_a("/echo")))
        first = coroutine.yield(t1)
        done()
      end)
      assert.are.equal(codes.BUSY, second.error.code)
      assert.is_nil(first.error)
      assert.are.equal(200, first.code)
    end)

    it("raises for kwargs of the wrong type", function()
      local client = async.HTTPClient()
      assert.has_error(function() client:fetch(url_a("/"), "x") end,
        "HTTPClient:fetch: kwargs must be a table, got string")
      assert.has_error(function() client:fetch(url_a("/"), { request_timeout = "1" }) end,
        "HTTPClient:fetch: kwarg 'request_timeout' must be a number, got string")
      assert.has_error(function() client:fetch(url_a("/"), { on_headers = 1 }) end,
        "HTTPClient:fetch: kwarg 'on_headers' must be a function, got number")
      assert.has_error(function() async.HTTPClient("x") end)
      -- Out of range is misuse too, raised at the call (both Turbo clients).
      for _, bad in ipairs({ { max_redirects = -1 }, { max_redirects = 1e9 }, { max_redirects = 1.5 },
                             { connect_timeout = -1 }, { request_timeout = 0 / 0 },
                             { allow_redirects = "yes" } }) do
        local name = next(bad)
        assert.has_error(function() client:fetch(url_a("/"), bad) end)
        local ok, err = pcall(turbo.websocket.WebSocketClient, "ws://127.0.0.1:1/", bad)
        assert.is_false(ok)
        assert.truthy(tostring(err):find("WebSocketClient: kwarg '" .. name .. "' must be", 1, true), err)
      end
    end)

    -- The message of the error fn() raised, checked to point at this file
    -- (the caller), not at the face or the core.
    local function raised(fn)
      local ok, err = pcall(fn)
      assert.is_false(ok, "expected an error")
      err = tostring(err)
      assert.matches("^[^:]*turbo_async_spec%.lua:%d+: ", err)
      return (err:gsub("^[^:]*:%d+: ", ""))
    end

    it("raises for a timeout the core cannot take, naming fetch and the kwarg", function()
      local client = async.HTTPClient()
      for _, name in ipairs({ "request_timeout", "connect_timeout" }) do
        for _, bad in ipairs({ 1e300, 1e9 + 1, math.huge, -1, 0 / 0 }) do
          assert.are.equal(
            ("HTTPClient:fetch: kwarg '%s' must be a number of seconds from 0 to 1e9, got %s"):format(name, tostring(bad)),
            raised(function() local t = client:fetch("http://127.0.0.1:1/", { [name] = bad }); return t end))
        end
      end
      -- Any number of seconds Turbo took, fractions too, up to the core's
      -- 1e9, is a request (refused here: nothing listens on port 1).
      for _, good in ipairs({ 0, 0.25, 30, 1e9 }) do
        local res = fetch("http://127.0.0.1:1/", { request_timeout = good, connect_timeout = good })
        assert.are.equal(codes.COULD_NOT_CONNECT, res.error.code)
      end
    end)

    it("raises for ssl_options the core would refuse, at the constructor", function()
      local function refused(ssl_options)
        return raised(function() local c = async.HTTPClient(ssl_options); return c end)
      end
      for _, bad in ipairs({ "no", 0, {} }) do
        assert.are.equal("HTTPClient: ssl_options.verify_ca must be a boolean, got " .. type(bad),
          refused({ verify_ca = bad }))
      end
      assert.are.equal("HTTPClient: ssl_options.ca_path must be a string, got number", refused({ ca_path = 5 }))
      assert.are.equal("HTTPClient: ssl_options.cert_file must come with 'priv_file' (a client certificate needs its key)",
        refused({ cert_file = "/c.pem" }))
      assert.are.equal("HTTPClient: ssl_options.priv_file must come with 'cert_file' (a client certificate needs its key)",
        refused({ priv_file = "/k.pem" }))
      for _, good in ipairs({ true, false }) do
        assert.are.equal(good, async.HTTPClient({ verify_ca = good }).ssl_options.verify_ca)
      end
      assert.is_true(async.HTTPClient({}).ssl_options.verify_ca)
      assert.is_true(async.HTTPClient().ssl_options.verify_ca)
    end)
  end)

  describe("HTTPClient:fetch against peers that break HTTP (raw TCP)", function()
    local codes = async.errors

    -- A raw server answering every request with `answer` (a string, or a
    -- function of the fd), for this spec only.
    local function raw_peer(answer)
      local port, stop = S.raw_server(function(fd)
        if type(answer) == "function" then answer(fd) else S.raw.send(fd, answer) end
      end)
      S.finally(stop)
      return "http://127.0.0.1:" .. port .. "/"
    end

    it("PARSE_ERROR_HEADERS for an answer that is not HTTP", function()
      local res = fetch(raw_peer("SSH-2.0-OpenSSH\r\n\r\n"), { request_timeout = 5 })
      assert.are.equal(codes.PARSE_ERROR_HEADERS, res.error.code)
    end)

    it("NO_HEADERS when the server closes without answering", function()
      local res = fetch(raw_peer(function(fd) S.raw.close(fd) end), { request_timeout = 5 })
      assert.are.equal(codes.NO_HEADERS, res.error.code)
    end)

    it("SOCKET_ERROR when the body ends early", function()
      local url = raw_peer(function(fd)
        S.raw.send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        S.raw.close(fd)
      end)
      local res = fetch(url, { request_timeout = 5 })
      assert.are.equal(codes.SOCKET_ERROR, res.error.code)
    end)

    it("keeps the reason phrase the server sent and repeated headers", function()
      local res = fetch(raw_peer("HTTP/1.1 299 Fine Thanks\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nok"))
      assert.are.same({ 299, "Fine Thanks", "ok" }, { res.code, res.reason, res.body })
      assert.are.same({ "1", "2" }, res.headers:get("X-A"))
    end)
  end)

  describe("core.http_request", function()
    it("raises for misuse, naming the function and the argument", function()
      local fn = function() end
      local cases = {
        { { 1, {}, fn }, "turbo_ws.http_request: bad argument #1 'url' (string expected, got number)" },
        { { "http://h/", 1, fn }, "turbo_ws.http_request: bad argument #2 'options' (table expected, got number)" },
        { { "http://h/", {}, nil }, "turbo_ws.http_request: bad argument #3 'on_done' (function expected, got nil)" },
        { { "http://h/", { method = "GE T" }, fn }, "turbo_ws.http_request: bad option 'method' ('GE T' is not an HTTP method)" },
        { { "http://h/", { body = 1 }, fn }, "turbo_ws.http_request: bad option 'body' (string expected, got number)" },
        { { "http://h/", { version = "HTTP/2" }, fn }, "turbo_ws.http_request: bad option 'version'" },
        { { "http://h/", { timeout = "1" }, fn }, "turbo_ws.http_request: bad option 'timeout'" },
        { { "http://h/", { max_redirects = -1 }, fn }, "turbo_ws.http_request: bad option 'max_redirects'" },
        { { "http://h/", { headers = { ["a b"] = "1" } }, fn }, "turbo_ws.http_request: bad option 'headers'" },
        { { "http://h/", { tls = { cert_file = "x" } }, fn }, "cert_file and key_file go together" },
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(core.http_request, unpack(case[1], 1, 3))
        assert.is_false(ok)
        assert.truthy(tostring(err):find(case[2], 1, true), "error was: " .. tostring(err))
      end
    end)

    it("reports a bad URL and an unknown scheme through on_done", function()
      local got = {}
      in_loop(function(done)
        core.http_request("nope", nil, function(res, kind) got[#got + 1] = kind end)
        core.http_request("ws://127.0.0.1/", nil, function(res, kind)
          got[#got + 1] = kind
          done()
        end)
      end)
      assert.are.same({ "bad_url", "bad_scheme" }, got)
    end)

    it("hands over status, reason, version, headers in order, body and url", function()
      local res
      in_loop(function(done)
        core.http_request(url_a("/status/404"), { method = "GET" }, function(r) res = r; done() end)
      end)
      assert.are.same({ 404, "Not Found", "HTTP/1.1", "status 404", url_a("/status/404") },
        { res.status, res.reason, res.version, res.body, res.url })
      -- http.server sends Server, Date, then what the handler added.
      assert.are.same({ "server", "date", "content-length", "x-peer" },
        { res.headers[1][1], res.headers[2][1], res.headers[3][1], res.headers[4][1] })
      assert.are.equal("a", header(res.headers, "x-peer"))
    end)

    it("keeps one idle connection per origin in a session until closed", function()
      local session = core.http_session()
      local ports = {}
      in_loop(function(done)
        local pending = 0
        local function get(url)
          pending = pending + 1
          core.http_request(url, { session = session }, function(r)
            ports[#ports + 1] = escape.json_decode(r.body).client_port
            pending = pending - 1
            if pending == 0 then done() end
          end)
        end
        get(url_a("/echo"))
        get(url_b("/echo"))
      end)
      assert.are.equal(2, session:idle())
      session:close()
      assert.are.equal(0, session:idle())
      local ok, err = pcall(core.http_request, url_a("/"), { session = {} }, function() end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("bad option 'session' (http_session expected, got table)", 1, true))
    end)

    it("returns a redirect as the response without max_redirects, the last one with the error past it", function()
      local res, kind, answer
      in_loop(function(done)
        core.http_request(url_a("/redirect/302?to=/echo"), {}, function(r) res = r; done() end)
      end)
      assert.are.equal(302, res.status)
      in_loop(function(done)
        core.http_request(url_a("/loop"), { max_redirects = 3 }, function(r, k, _, a)
          kind, answer = k, a
          done()
        end)
      end)
      assert.are.equal("redirects", kind)
      assert.are.equal(302, answer.status)
    end)
  end)

  describe("keep_alive", function()
    -- Two fetches in a row on one client; the peer's view of both.
    local function twice(kwargs, first_path)
      local one, two
      in_loop(function(done)
        local client = async.HTTPClient()
        one = coroutine.yield(client:fetch(url_a(first_path or "/echo"), kwargs))
        two = coroutine.yield(client:fetch(url_a("/echo"), kwargs))
        done()
      end)
      return one, echoed(two)
    end

    it("reuses the client's connection for the next fetch", function()
      local one, two = twice({ keep_alive = true })
      assert.are.equal(escape.json_decode(one.body).client_port, two.client_port)
      assert.is_nil(header(two.headers, "Connection"))
    end)

    it("opens a new connection per fetch without it", function()
      local one, two = twice({})
      assert.are_not.equal(escape.json_decode(one.body).client_port, two.client_port)
      assert.are.equal("close", header(two.headers, "Connection"))
    end)

    it("opens a new connection when the server closed the kept one", function()
      local one, two = twice({ keep_alive = true }, "/close")
      assert.are.same({ 200, "closing" }, { one.code, one.body })
      assert.are.equal("GET", two.method)
      -- A server that closes right after each answer, without saying so.
      local count = 0
      local port, stop = S.raw_server(function(fd)
        count = count + 1
        S.raw.send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" .. count)
        S.raw.close(fd)
      end)
      S.finally(stop)
      local bodies = {}
      in_loop(function(done)
        local client = async.HTTPClient()
        for i = 1, 3 do
          local res = coroutine.yield(client:fetch("http://127.0.0.1:" .. port .. "/", { keep_alive = true }))
          bodies[i] = res.body or res.error.message
        end
        done()
      end)
      assert.are.same({ "1", "2", "3" }, bodies)
    end)
  end)

  describe("redirects", function()
    local codes = async.errors
    local secrets = {
      auth_username = "user", auth_password = "pass", cookie = "session=1",
      on_headers = function(h) h:add("X-Custom", "kept") end,
    }

    it("follow a same-origin redirect with Authorization and Cookie", function()
      local res = fetch(url_a("/redirect/302?to=/echo%3Fhop%3D1"), secrets)
      local got = echoed(res)
      assert.are.equal("/echo?hop=1", got.target)
      assert.are.equal("a", got.peer)
      assert.are.equal("Basic dXNlcjpwYXNz", header(got.headers, "Authorization"))
      assert.are.equal("session=1", header(got.headers, "Cookie"))
      assert.are.equal(url_a("/echo?hop=1"), res.url)
    end)

    it("drop Authorization and Cookie across origins, keep other headers", function()
      local to = escape.escape(url_b("/echo?hop=2"))
      local got = echoed(fetch(url_a("/redirect/301?to=" .. to), secrets))
      assert.are.equal("b", got.peer)
      assert.are.equal("/echo?hop=2", got.target)
      assert.is_nil(header(got.headers, "Authorization"))
      assert.is_nil(header(got.headers, "Cookie"))
      assert.are.equal("kept", header(got.headers, "X-Custom"))
      assert.are.equal("127.0.0.1:" .. peer.b, header(got.headers, "Host"))
    end)

    it("turn a POST into a GET on 303, keep it on 307", function()
      local got = echoed(fetch(url_a("/redirect/303?to=/echo"), { method = "POST", body = "data" }))
      assert.are.same({ "GET", "" }, { got.method, got.body })
      got = echoed(fetch(url_a("/redirect/307?to=/echo"), { method = "POST", body = "data" }))
      assert.are.same({ "POST", "data" }, { got.method, got.body })
    end)

    it("are not followed with allow_redirects = false", function()
      local res = fetch(url_a("/redirect/302?to=/echo"), { allow_redirects = false })
      assert.is_nil(res.error)
      assert.are.equal(302, res.code)
      assert.are.equal("/echo", res.headers:get("Location"))
    end)

    it("stop at max_redirects with REDIRECT_MAX", function()
      local inner = escape.escape("/redirect/302?to=/echo")
      local res = fetch(url_a("/redirect/302?to=" .. inner), { max_redirects = 1 })
      assert.are.equal(codes.REDIRECT_MAX, res.error.code)
      assert.are.equal(200, fetch(url_a("/redirect/302?to=" .. inner), { max_redirects = 2 }).code)
    end)

    it("refuse a loop at once", function()
      local before = 0
      for _, e in ipairs(peer_log()) do if e.target == "/loop" then before = before + 1 end end
      local res = fetch(url_a("/loop"), { max_redirects = 10 })
      assert.are.equal(codes.REDIRECT_MAX, res.error.code)
      assert.matches("loop", res.error.message)
      local after = 0
      for _, e in ipairs(peer_log()) do if e.target == "/loop" then after = after + 1 end end
      -- /loop answers "go to /loop": already visited, so it is not asked again.
      assert.are.equal(1, after - before)
    end)
  end)

  describe("with turbo_ws servers", function()
    local App, Handler = turbo.web.Application, turbo.web.RequestHandler

    local function listen(routes, kwargs)
      local server = App(routes):listen(0, "127.0.0.1", kwargs)
      S.finally(function() server:close() end)
      return server:port()
    end

    it("lets a request handler yield fetches (twice) and answer with them", function()
      local Proxy = class("Proxy", Handler)
      function Proxy:get()
        local first = coroutine.yield(async.HTTPClient():fetch(url_a("/echo?n=1")))
        local second = coroutine.yield(async.HTTPClient():fetch(url_b("/status/201")))
        self:write(escape.json_decode(first.body).target .. " " .. second.code)
      end
      local port = listen({ { "^/proxy$", Proxy } })
      local res = fetch("http://127.0.0.1:" .. port .. "/proxy")
      assert.are.same({ 200, "/echo?n=1 201" }, { res.code, res.body })
      assert.are.equal("turbo_ws", res.headers:get("Server"))
    end)

    it("answers 500 when a handler raises after a yield", function()
      local Broken = class("Broken", Handler)
      function Broken:get()
        coroutine.yield(async.HTTPClient():fetch(url_a("/echo")))
        error("after the yield")
      end
      local port = listen({ { "^/broken$", Broken } })
      assert.are.equal(500, fetch("http://127.0.0.1:" .. port .. "/broken").code)
    end)

    it("reaches an https server with its CA, refuses it without", function()
      local tls = S.tls_files()
      local Hello = class("Hello", Handler)
      function Hello:get() self:write("over tls") end
      local port = listen({ { "^/hello$", Hello } }, { ssl_options = { cert_file = tls.cert, key_file = tls.key } })
      local url = "https://127.0.0.1:" .. port .. "/hello"
      local res = fetch(url, nil, async.HTTPClient({ ca_path = tls.cert }))
      assert.are.same({ 200, "over tls" }, { res.code, res.body })
      res = fetch(url, nil, async.HTTPClient({ ca_path = tls.ca_dir }))
      assert.are.equal("over tls", res.body)
      res = fetch(url, { request_timeout = 5 })
      assert.are.equal(async.errors.SSL_ERROR, res.error.code)
      res = fetch(url, nil, async.HTTPClient({ verify_ca = false }))
      assert.are.equal("over tls", res.body)
    end)

    it("never follows https to http: the target is not contacted", function()
      local tls = S.tls_files()
      local target = "/echo?from=tls-" .. core.gettimemonotonic()
      local Away = class("Away", Handler)
      function Away:get() self:redirect(url_a(target)) end
      local port = listen({ { "^/away$", Away } }, { ssl_options = { cert_file = tls.cert, key_file = tls.key } })
      local res = fetch("https://127.0.0.1:" .. port .. "/away", nil, async.HTTPClient({ ca_path = tls.cert }))
      assert.are.equal(async.errors.INSECURE_REDIRECT, res.error.code)
      assert.is_false(received(target))
      -- The same redirect over plain http is followed (the check can see it).
      local plain = listen({ { "^/away$", Away } })
      assert.are.equal(200, fetch("http://127.0.0.1:" .. plain .. "/away").code)
      assert.is_true(received(target))
    end)
  end)
end)
