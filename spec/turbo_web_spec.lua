-- The Turbo face's turbo.web: Application routing, RequestHandler input and
-- output, cookies (plain and signed), HTTPError, StaticFileHandler,
-- RedirectHandler. Plain HTTP is spoken over a raw socket (spec support),
-- on 127.0.0.1 and port 0, under a guard timer.
local turbo = require "turbo_ws"
local S = require "spec.turbo_support"
local web = turbo.web

-- An Application on a free port, closed when the spec ends.
local function serve(routes, app_kwargs)
  local app = web.Application(routes, app_kwargs)
  local server = app:listen(0, "127.0.0.1")
  S.finally(function() app:close(); S.drain(100) end)
  return server:port(), app
end

-- Sends raw HTTP requests (strings) to port; returns their responses.
local function fetch_all(port, requests)
  local responses = {}
  local ok = S.loop(function(done)
    local left = #requests
    for i, request in ipairs(requests) do
      S.raw.http(port, request, function(res)
        responses[i] = res
        left = left - 1
        if left == 0 then done() end
      end)
    end
  end)
  assert(ok, "no complete response in time")
  return responses
end

local function fetch(port, request) return fetch_all(port, { request })[1] end
local function get(port, path, headers) return fetch(port, S.raw.get(path, headers)) end

-- A handler class whose `get` is fn.
local function handler(fn, method)
  local H = class("H", web.RequestHandler)
  H[method or "get"] = fn
  return H
end

describe("turbo.web", function()
  setup(S.quiet)
  teardown(S.loud)

  describe("Application", function()
    it("routes by Lua pattern and passes the captures to the method", function()
      local port = serve({
        { "^/item/(%d+)/(%a+)$", handler(function(self, id, name) self:write(id .. ":" .. name) end) },
        { "^/item/.*$", handler(function(self, whole) self:write("fallback " .. whole) end) },
      })
      local r = fetch_all(port, { S.raw.get("/item/42/abc"), S.raw.get("/item/x"), S.raw.get("/other") })
      assert.same({ 200, "42:abc" }, { r[1].status, r[1].body })
      -- Without captures the whole match is passed, as string.match gives it.
      assert.same({ 200, "fallback /item/x" }, { r[2].status, r[2].body })
      assert.equal(404, r[3].status)
    end)

    it("takes the first matching route, ignores the query and gives self.options", function()
      local port = serve({
        { "^/a", handler(function(self) self:write("first " .. self.options.name) end), { name = "one" } },
        { "^/a", handler(function(self) self:write("second") end) },
      })
      assert.equal("first one", get(port, "/a?x=1").body)
    end)

    it("redirects unmatched requests to default_host", function()
      local port = serve({}, { default_host = "http://example.test/" })
      local r = get(port, "/nothing")
      assert.equal(301, r.status)
      assert.equal("http://example.test/", r.headers["location"])
    end)

    it("listen refuses ssl_options that are not a table instead of serving plain text, and bad options", function()
      local app = web.Application({})
      for _, bad in ipairs({ true, "x", 1 }) do
        local ok, err = pcall(app.listen, app, 0, "127.0.0.1", { ssl_options = bad })
        assert.is_false(ok)
        assert.truthy(tostring(err):find("Application:listen: bad argument #3 'kwargs' (ssl_options: table expected", 1, true), err)
      end
      local ok, err = pcall(app.listen, app, 0, "127.0.0.1", true)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("Application:listen: bad argument #3 'kwargs' (table expected, got boolean)", 1, true), err)
      -- The core's refusals too, in listen's words.
      ok, err = pcall(app.listen, app, 0, "127.0.0.1", { max_connections = "x" })
      assert.is_false(ok)
      assert.truthy(tostring(err):find("Application:listen: bad option 'max_connections'", 1, true), err)
      assert.same({}, app.servers)
    end)

    it("add_handler, settings, and the server name", function()
      local seen
      local port, app = serve({}, { settings = { level = 3 }, application_name = "MyApp/1" })
      app:add_handler("^/s$", handler(function(self)
        seen = { self:settings(), self.application.settings, self.application }
      end))
      local r = get(port, "/s")
      assert.equal(200, r.status)
      assert.same({ level = 3 }, seen[1])
      assert.equal(seen[1], seen[2])
      assert.equal(app, seen[3])
      assert.equal("MyApp/1", r.headers["server"])
      app:set_server_name("Other")
      assert.equal("Other", app:get_server_name())
    end)

    it("names itself on error answers and the default_host redirect too", function()
      local port = serve({
        { "^/teapot$", handler(function() error(web.HTTPError(418)) end) },
        { "^/broken$", handler(function() error("oops") end) },
      }, { application_name = "MyApp/1" })
      assert.equal("MyApp/1", get(port, "/teapot").headers["server"])
      assert.equal("MyApp/1", get(port, "/broken").headers["server"])
      assert.equal("MyApp/1", get(port, "/nothere").headers["server"])
      local other = serve({}, { application_name = "Other", default_host = "http://example.com/" })
      local r = get(other, "/x")
      assert.equal(301, r.status)
      assert.equal("Other", r.headers["server"])
      assert.equal("http://example.com/", r.headers["location"])
    end)

    it("finds a request header with an exact-case get(name, false)", function()
      local found
      local port = serve({ { "^/h$", handler(function(self)
        local h = self.request.headers
        h:add("X-Added", "mine")
        found = { h:get("X-Token", false), h:get("x-token", false), h:get("X-Added", false),
          (h:get("x-added", false)) }
      end) } })
      get(port, "/h", { "X-Token: abc" })
      -- What the program added itself keeps the exact comparison.
      assert.same({ "abc", "abc", "mine" }, found)
    end)
  end)

  describe("RequestHandler", function()
    it("dispatches GET, POST, PUT, DELETE, HEAD, PATCH and OPTIONS; others get 405", function()
      local H = class("H", web.RequestHandler)
      for _, m in ipairs({ "get", "post", "put", "delete", "patch", "options" }) do
        H[m] = function(self) self:write(m) end
      end
      function H:head() self:set_header("X-Head", "yes") end
      local port = serve({ { "^/m$", H }, { "^/none$", web.RequestHandler } })
      local r = fetch_all(port, {
        S.raw.get("/m"), S.raw.get("/m", nil, "POST", "x"), S.raw.get("/m", nil, "PUT", "x"),
        S.raw.get("/m", nil, "DELETE"), S.raw.get("/m", nil, "PATCH", "x"),
        S.raw.get("/m", nil, "OPTIONS"), S.raw.get("/m", nil, "HEAD"),
        S.raw.get("/none"), S.raw.get("/none", nil, "POST", ""),
      })
      local bodies = {}
      for i = 1, 6 do bodies[i] = r[i].body end
      assert.same({ "get", "post", "put", "delete", "patch", "options" }, bodies)
      assert.same({ 200, "yes", "" }, { r[7].status, r[7].headers["x-head"], r[7].body })
      assert.equal(405, r[8].status)
      assert.equal(405, r[9].status)
    end)

    it("answers HEAD without a body", function()
      local H = class("H", web.RequestHandler)
      function H:head() self:write("invisible") end
      local port = serve({ { "^/h$", H } })
      local r = fetch(port, S.raw.get("/h", nil, "HEAD"))
      assert.equal(200, r.status)
      assert.equal("", r.body)
      assert.equal("9", r.headers["content-length"])
    end)

    it("writes strings, tables as JSON, and finish(chunk)", function()
      local port = serve({
        { "^/s$", handler(function(self) self:write("a"); self:write("b"); self:finish("c") end) },
        { "^/j$", handler(function(self) self:write({ ok = true, n = { 1, 2 } }) end) },
      })
      local r = fetch_all(port, { S.raw.get("/s"), S.raw.get("/j") })
      assert.equal("abc", r[1].body)
      assert.equal("text/html; charset=UTF-8", r[1].headers["content-type"])
      assert.same({ ok = true, n = { 1, 2 } }, turbo.escape.json_decode(r[2].body))
      assert.equal("application/json; charset=UTF-8", r[2].headers["content-type"])
    end)

    it("refuses write after finish, finish twice, and unsupported types", function()
      local results
      local port = serve({ { "^/x$", handler(function(self)
        local number_write = { pcall(self.write, self, 42) }
        self:finish("done")
        results = {
          number = number_write[1],
          write = pcall(self.write, self, "more"),
          finish = pcall(self.finish, self),
          finished = self:finished(),
        }
      end) } })
      assert.equal("done", get(port, "/x").body)
      assert.same({ number = false, write = false, finish = false, finished = true }, results)
    end)

    it("keeps the Server a set_default_headers() sets (Turbo's docs: the place for it)", function()
      local H = class("H", web.RequestHandler)
      function H:set_default_headers() self:set_header("Server", "MyApp/1.0") end
      function H:get() self:write("x") end
      local r = get(serve({ { "^/x$", H } }), "/x")
      assert.equal("MyApp/1.0", r.headers["server"])
    end)

    it("sets the status and the headers", function()
      local seen
      local port = serve({ { "^/x$", handler(function(self)
        self:set_status(201)
        self:set_header("X-One", "1")
        self:set_header("X-One", "one")
        self:add_header("X-Many", "a")
        self:add_header("X-Many", "b")
        self:set_header("X-Gone", "soon")
        self:clear_header("X-Gone")
        seen = { self:get_header("x-one"), self:get_status(), pcall(self.set_status, self, "200") }
      end) } })
      local r = get(port, "/x")
      assert.equal(201, r.status)
      assert.equal("one", r.headers["x-one"])
      assert.equal("a\nb", r.headers["x-many"])
      assert.is_nil(r.headers["x-gone"])
      assert.same({ "one", 201, false }, { seen[1], seen[2], seen[3] })
    end)

    it("reads arguments from the query and from a form body", function()
      local seen
      local H = class("H", web.RequestHandler)
      local function collect(self)
        seen = {
          a = self:get_argument("a"), all = self:get_arguments("a"),
          default = self:get_argument("missing", "dflt"),
          stripped = self:get_argument("pad", "", true),
          none = self:get_arguments("missing"),
          form = self:get_argument("f", "none"),
          decoded = self:get_argument("enc", ""),
          raw_args = self.request.arguments,
        }
      end
      H.get, H.post = collect, collect
      local port = serve({ { "^/args$", H } })
      get(port, "/args?a=1&a=2&pad=%20x%20&enc=a+b%21")
      assert.same({ "1", "2" }, seen.all)
      assert.equal("1", seen.a)
      assert.equal("dflt", seen.default)
      assert.equal("x", seen.stripped)
      assert.same({}, seen.none)
      assert.equal("a b!", seen.decoded)
      assert.same({ "1", "2" }, seen.raw_args.a)
      fetch(port, S.raw.get("/args?a=q", { "Content-Type: application/x-www-form-urlencoded" },
        "POST", "a=body&f=form+value"))
      assert.same({ "q", "body" }, seen.all)
      assert.equal("form value", seen.form)
    end)

    it("answers 400 when a required argument is missing", function()
      local port = serve({ { "^/x$", handler(function(self) self:write(self:get_argument("nick")) end) } })
      local r = get(port, "/x")
      assert.equal(400, r.status)
      assert.equal("Missing required argument.", r.body)
    end)

    it("decodes a JSON body with get_json", function()
      local seen
      local H = class("H", web.RequestHandler)
      function H:post() seen = { self:get_json(), self:get_json(true) } end
      local port = serve({ { "^/j$", H } })
      fetch(port, S.raw.get("/j", { "Content-Type: application/json" }, "POST", '{"a":[1,2]}'))
      assert.same({ a = { 1, 2 } }, seen[1])
      fetch(port, S.raw.get("/j", { "Content-Type: text/plain" }, "POST", '{"b":1}'))
      assert.is_nil(seen[1])
      assert.same({ b = 1 }, seen[2])
    end)

    it("exposes the request: method, path, uri, arguments, body, remote_ip, headers", function()
      local seen
      local H = class("H", web.RequestHandler)
      function H:put()
        local r = self.request
        seen = { r.method, r.path, r.uri, r.query, r.arguments.k, r.body, r.remote_ip,
                 (r.headers:get("x-test")), (r.headers:get("X-TEST")), r.host,
                 type(r:request_time()), r:supports_http_1_1(), r:full_url() }
      end
      local port = serve({ { "^/r", H } })
      fetch(port, S.raw.get("/r/x?k=v", { "X-Test: yes" }, "PUT", "payload"))
      assert.same({ "PUT", "/r/x", "/r/x?k=v", "k=v", "v", "payload", "127.0.0.1", "yes", "yes",
                    "127.0.0.1", "number", true, "http://127.0.0.1/r/x?k=v" }, seen)
    end)

    it("redirects with 302, or 301 when permanent", function()
      local port = serve({
        { "^/tmp$", handler(function(self) self:redirect("/elsewhere") end) },
        { "^/perm$", handler(function(self) self:redirect("http://example.test/", true) end) },
      })
      local r = fetch_all(port, { S.raw.get("/tmp"), S.raw.get("/perm") })
      assert.same({ 302, "/elsewhere" }, { r[1].status, r[1].headers["location"] })
      assert.same({ 301, "http://example.test/" }, { r[2].status, r[2].headers["location"] })
    end)

    it("lets prepare() answer on its own; the method is then not called", function()
      local called = false
      local H = class("H", web.RequestHandler)
      function H:prepare() self:set_status(403); self:finish("stop") end
      function H:get() called = true end
      local port = serve({ { "^/p$", H } })
      local r = get(port, "/p")
      assert.same({ 403, "stop" }, { r.status, r.body })
      assert.is_false(called)
    end)

    it("finishes later with set_async(true)", function()
      local H = class("H", web.RequestHandler)
      function H:get()
        self:set_async(true)
        S.after(30, function() self:write("later"); self:finish() end)
      end
      local port = serve({ { "^/a$", H } })
      assert.equal("later", get(port, "/a").body)
    end)

    it("runs Turbo's table form of a method: pre, main, post", function()
      local H = class("H", web.RequestHandler)
      H.get = {
        pre = function(self, id) self:write("pre" .. id .. " ") end,
        main = { function(self) self:write("main ") end },
        post = function(self) self:write("post") end,
      }
      local port = serve({ { "^/t/(%d)$", H } })
      assert.equal("pre7 main post", get(port, "/t/7").body)
    end)

    it("on_create receives the options; on_finish runs after finish", function()
      local order = {}
      local H = class("H", web.RequestHandler)
      function H:on_create(options) order[#order + 1] = "create " .. options end
      function H:prepare() order[#order + 1] = "prepare" end
      function H:get() order[#order + 1] = "get" end
      function H:on_finish() order[#order + 1] = "finish" end
      local port = serve({ { "^/o$", H, "opts" } })
      get(port, "/o")
      assert.same({ "create opts", "prepare", "get", "finish" }, order)
    end)
  end)

  describe("cookies", function()
    it("reads request cookies, with a default", function()
      local seen
      local port = serve({ { "^/c$", handler(function(self)
        seen = { self:get_cookie("a"), self:get_cookie("b"), self:get_cookie("zz", "none"),
                 self:get_cookie("sp") }
      end) } })
      get(port, "/c", { "Cookie: a=1; b=two", "Cookie: sp=x%20y" })
      assert.same({ "1", "two", "none", "x y" }, seen)
    end)

    it("sets, expires and clears cookies", function()
      local port = serve({ { "^/c$", handler(function(self)
        self:set_cookie("plain", "v 1")
        self:set_cookie("scoped", "v", "example.test", 2)
        self:clear_cookie("old")
      end) } })
      local cookies = get(port, "/c").headers["set-cookie"]
      local lines = {}
      for line in cookies:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(3, #lines)
      assert.truthy(lines[1]:find("^plain=v%%201; Path=/; Expires="))
      assert.truthy(lines[2]:find("^scoped=v; Path=/; Domain=example.test; Expires="))
      assert.truthy(lines[3]:find("^old=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT$"))
      -- An HTTP date (not util.time_format_cookie's dashed date), an hour on.
      local expires = lines[1]:match("Expires=(.*)$")
      assert.truthy(expires:find("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"), expires)
      local t = os.time() + 3600
      local near = {}
      for d = 0, 2 do near[turbo.util.time_format_http_header((t - d) * 1000)] = true end
      assert.truthy(near[expires], expires)
    end)

    it("signs cookies with the cookie_secret and verifies them", function()
      local secret = "0123456789abcdef"
      local results = {}
      local H = class("H", web.RequestHandler)
      function H:get()
        results[#results + 1] = { pcall(self.get_secure_cookie, self, "user", "anon") }
        self:set_secure_cookie("user", "alice")
      end
      local port = serve({ { "^/s$", H } }, { cookie_secret = secret })
      local first = get(port, "/s")
      local cookie = first.headers["set-cookie"]:match("^user=([^;]+)")
      local value = turbo.escape.unescape(cookie)
      -- hmac|length|timestamp_ms|value, the hmac over "name|length|timestamp|value"
      -- (Turbo 2.1.5's: cookies it signed verify here and the other way round)
      local mac, rest = value:match("^(%x+)|(.*)$")
      assert.equal(turbo.hash.HMAC(secret, "user|" .. rest), mac)
      assert.truthy(rest:find("^5|%d+|alice$"))
      get(port, "/s", { "Cookie: user=" .. cookie })
      assert.same({ true, "anon" }, results[1])
      assert.same({ true, "alice" }, results[2])
    end)

    it("raises on a forged, malformed or expired secure cookie", function()
      local secret = "s"
      local results = {}
      local H = class("H", web.RequestHandler)
      function H:get()
        local ok, err = pcall(self.get_secure_cookie, self, "u", nil, 60)
        results[#results + 1] = ok or tostring(err)
      end
      local port = serve({ { "^/s$", H } }, { cookie_secret = secret })
      -- As Turbo 2.1.5 signs them: the name is part of the signed message.
      local function signed(value, timestamp, name)
        local payload = string.format("%d|%d|%s", #value, timestamp, value)
        return turbo.escape.escape(turbo.hash.HMAC(secret, (name or "u") .. "|" .. payload) .. "|" .. payload)
      end
      local now = turbo.util.gettimeofday()
      local forged = signed("bob", now):gsub("bob$", "eve")
      get(port, "/s", { "Cookie: u=" .. signed("bob", now) })
      get(port, "/s", { "Cookie: u=" .. forged })
      get(port, "/s", { "Cookie: u=garbage" })
      get(port, "/s", { "Cookie: u=" .. signed("bob", now - 3600 * 1000) })
      get(port, "/s", { "Cookie: u=" .. signed("bob", now, "session") }) -- replayed under another name
      assert.is_true(results[1])
      assert.truthy(results[2]:find("does not match", 1, true))
      assert.truthy(results[3]:find("malformed", 1, true))
      assert.truthy(results[4]:find("expired", 1, true))
      assert.truthy(results[5]:find("does not match", 1, true))
    end)

    it("refuses set_secure_cookie without a cookie_secret", function()
      local ok
      local port = serve({ { "^/s$", handler(function(self)
        ok = pcall(self.set_secure_cookie, self, "a", "b")
      end) } })
      get(port, "/s")
      assert.is_false(ok)
    end)
  end)

  describe("HTTPError", function()
    it("answers with its code and message, or the reason phrase", function()
      local port = serve({
        { "^/e1$", handler(function() error(web.HTTPError(418, "short and stout")) end) },
        { "^/e2$", handler(function() error(web.HTTPError(404)) end) },
        { "^/e3$", handler(function(self) self:send_error(409, "conflict!") end) },
      })
      local r = fetch_all(port, { S.raw.get("/e1"), S.raw.get("/e2"), S.raw.get("/e3") })
      assert.same({ 418, "short and stout" }, { r[1].status, r[1].body })
      assert.same({ 404, "Not Found" }, { r[2].status, r[2].body })
      assert.same({ 409, "conflict!" }, { r[3].status, r[3].body })
    end)

    it("answers 500 for any other error, without leaking it", function()
      local port = serve({ { "^/boom$", handler(function() error("secret detail") end) } })
      local r = get(port, "/boom")
      assert.equal(500, r.status)
      assert.is_nil(r.body:find("secret detail", 1, true))
    end)

    it("sends a table message as JSON, as Turbo's ErrorHandler writes it", function()
      local port = serve({ { "^/e$", handler(function() error(web.HTTPError(400, { error = "invalid" })) end) } })
      local r = get(port, "/e")
      assert.same({ 400, '{"error":"invalid"}' }, { r.status, r.body })
      assert.truthy(r.headers["content-type"]:find("^application/json"))
    end)

    it("with a status code Turbo does not know answers 500", function()
      local port = serve({
        { "^/e$", handler(function() error(web.HTTPError(299)) end) },
        { "^/s$", handler(function(self) self:set_status(299); self:write("x") end) },
      })
      local r = fetch_all(port, { S.raw.get("/e"), S.raw.get("/s") })
      assert.same({ 500, 500 }, { r[1].status, r[2].status })
    end)

    it("needs a number", function()
      assert.has_error(function() web.HTTPError("404") end)
      local e = web.HTTPError(400)
      assert.same({ 400, "Bad Request" }, { e.code, e.message })
      assert.is_true(e:isInstanceOf(web.HTTPError))
    end)
  end)

  describe("StaticFileHandler", function()
    local dir
    setup(function()
      dir = S.tmpdir()
      S.sh("mkdir -p '" .. dir .. "/site/sub'")
      S.write_file(dir .. "/site/index.html", "<h1>hi</h1>")
      S.write_file(dir .. "/site/app.js", "var a = 1;")
      S.write_file(dir .. "/site/style.css", "body{}")
      S.write_file(dir .. "/site/data.json", "{}")
      S.write_file(dir .. "/site/img.png", "\137PNG\r\n\26\n\0\0")
      S.write_file(dir .. "/site/blob.nosuchtype", "?")
      S.write_file(dir .. "/site/sub/deep.txt", "deep")
      S.write_file(dir .. "/secret.txt", "do not serve")
    end)
    teardown(function() S.rmdir(dir) end)

    it("serves one file, or the files of a directory, with their content types", function()
      local port = serve({
        { "^/$", web.StaticFileHandler, dir .. "/site/index.html" },
        { "^/static/(.*)$", web.StaticFileHandler, dir .. "/site/" },
      })
      local r = fetch_all(port, {
        S.raw.get("/"), S.raw.get("/static/app.js"), S.raw.get("/static/style.css"),
        S.raw.get("/static/data.json"), S.raw.get("/static/img.png"),
        S.raw.get("/static/blob.nosuchtype"), S.raw.get("/static/sub/deep.txt"),
        S.raw.get("/static/sub%2Fdeep.txt"),
      })
      assert.same({ 200, "<h1>hi</h1>", "text/html; charset=UTF-8" },
        { r[1].status, r[1].body, r[1].headers["content-type"] })
      assert.equal("application/javascript; charset=UTF-8", r[2].headers["content-type"])
      assert.equal("text/css; charset=UTF-8", r[3].headers["content-type"])
      assert.equal("application/json", r[4].headers["content-type"])
      assert.same({ "image/png", "\137PNG\r\n\26\n\0\0" }, { r[5].headers["content-type"], r[5].body })
      assert.equal("application/octet-stream", r[6].headers["content-type"])
      assert.same({ 200, "deep" }, { r[7].status, r[7].body })
      assert.same({ 200, "deep" }, { r[8].status, r[8].body })
    end)

    it("knows common types beyond its table from the system's /etc/mime.types", function()
      assert.equal("application/xhtml+xml", web.content_type("a.XHTML"))
      assert.equal("text/calendar; charset=UTF-8", web.content_type("b.ics"))
      local system = io.open("/etc/mime.types")
      if not system then return pending("no /etc/mime.types on this machine") end
      system:close()
      assert.equal("application/vnd.oasis.opendocument.text", web.content_type("c.odt"))
      assert.equal("application/octet-stream", web.content_type("d.nosuchtype"))
    end)

    it("answers 404 for missing files and directories", function()
      local port = serve({ { "^/static/(.*)$", web.StaticFileHandler, dir .. "/site/" } })
      local r = fetch_all(port, { S.raw.get("/static/nope.html"), S.raw.get("/static/sub"),
                                  S.raw.get("/static/") })
      assert.same({ 404, 404, 404 }, { r[1].status, r[2].status, r[3].status })
    end)

    it("never serves a file outside its directory", function()
      local port = serve({ { "^/static/(.*)$", web.StaticFileHandler, dir .. "/site/" } })
      local r = fetch_all(port, {
        S.raw.get("/static/../secret.txt"), S.raw.get("/static/%2e%2e/secret.txt"),
        S.raw.get("/static/sub/..%2f..%2fsecret.txt"), S.raw.get("/static/%2Fetc%2Fpasswd"),
      })
      for i = 1, 4 do
        assert.equal(403, r[i].status)
        assert.is_nil(r[i].body:find("do not serve", 1, true))
      end
    end)

    it("answers HEAD with the headers only", function()
      local port = serve({ { "^/static/(.*)$", web.StaticFileHandler, dir .. "/site/" } })
      local r = fetch(port, S.raw.get("/static/app.js", nil, "HEAD"))
      assert.same({ 200, "", "10" }, { r.status, r.body, r.headers["content-length"] })
    end)
  end)

  describe("ErrorHandler", function()
    it("answers the request at once with a code and a message or the reason phrase", function()
      local after, logged = {}, {}
      local log_error = turbo.log.error
      turbo.log.error = function(msg) logged[#logged + 1] = msg end
      S.finally(function() turbo.log.error = log_error end)
      local port = serve({
        { "^/teapot$", handler(function(self)
          web.ErrorHandler(self.application, self.request, 418, "short and stout")
          after[#after + 1] = self:finished()
        end) },
        { "^/gone$", handler(function(self)
          local h = web.ErrorHandler(self.application, self.request, 410)
          after[#after + 1] = h:finished() and h:get_status()
        end) },
      }, { application_name = "EH" })
      local r = fetch_all(port, { S.raw.get("/teapot"), S.raw.get("/gone") })
      assert.same({ 418, "short and stout", "EH" }, { r[1].status, r[1].body, r[1].headers["server"] })
      assert.same({ 410, "Gone" }, { r[2].status, r[2].body })
      -- The handler that made it is not finished, and does not answer again
      -- (nor fails trying).
      assert.same({ false, 410 }, after)
      assert.same({}, logged)
      assert.is_true(subclassOf(web.RequestHandler, web.ErrorHandler))
    end)
  end)

  describe("RedirectHandler", function()
    it("redirects permanently to the route's URL", function()
      local port = serve({ { "^/old$", web.RedirectHandler, "http://example.test/new" } })
      local r = get(port, "/old")
      assert.same({ 301, "http://example.test/new" }, { r.status, r.headers["location"] })
    end)
  end)
end)
