-- The plain tables the core hands Lua: a request's `info` (docs/core.md,
-- on_request) and an HTTP answer (core.http_request's response), field
-- by field, with a field left out when it has no value.
local core = require("turbo_ws").core
local L = require "spec.support.loop"

-- Serves one request with `answer(req, info)`; sends it with
-- core.http_request(path, options); returns info, response, err.
local function exchange(path, options, answer)
  local info, response, err
  local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, i)
    info = i
    answer(req, i)
  end)
  core.http_request("http://127.0.0.1:" .. server:port() .. path, options, function(r, kind, message)
    response, err = r, kind and (kind .. ": " .. tostring(message))
    server:close()
  end)
  L.run_until(function() return response or err end)
  return info, response, err
end

describe("core request info", function()
  it("has every documented field of a request with a query and a body", function()
    local info, response, err = exchange("/chat/room?x=1&y=%20", {
      method = "POST",
      headers = { { "X-One", "a" }, { "X-Two", "b\tc\200" }, { "X-One", "d" } },
      body = "payload\0bytes",
    }, function(req) req:respond(200) end)
    assert.is_nil(err)
    assert.are.equal(200, response.status)
    assert.are.equal("POST", info.method)
    assert.are.equal("/chat/room?x=1&y=%20", info.uri)
    assert.are.equal("/chat/room", info.path)
    assert.are.equal("x=1&y=%20", info.query)
    assert.are.equal("HTTP/1.1", info.version)
    assert.are.equal("127.0.0.1", info.remote_ip)
    assert.are.equal("number", type(info.remote_port))
    assert.is_true(info.remote_port > 0)
    assert.are.equal("payload\0bytes", info.body)
    assert.is_false(info.websocket)
    -- Header fields in the order sent (a repeated name's fields together,
    -- where it first came: hyper's header map), names lower-case, values
    -- as bytes.
    local seen = {}
    for i, pair in ipairs(info.headers) do
      assert.are.equal(2, #pair)
      if pair[1]:match("^x%-") then seen[#seen + 1] = pair[1] .. "=" .. pair[2] end
      assert.are.equal(pair[1]:lower(), pair[1], "header " .. i)
    end
    assert.are.same({ "x-one=a", "x-one=d", "x-two=b\tc\200" }, seen)
  end)

  it("leaves query out without one; an empty body is an empty string", function()
    local info = exchange("/plain", {}, function(req) req:respond(204) end)
    assert.are.equal("GET", info.method)
    assert.are.equal("/plain", info.uri)
    assert.is_nil(info.query)
    assert.are.equal("", info.body)
  end)
end)

describe("request header values", function()
  it("core.connect sends the bytes given, not a UTF-8 reading of them", function()
    local value, conn, err
    local server = core.listen({ host = "127.0.0.1", port = 0 }, function(req, info)
      for _, pair in ipairs(info.headers) do
        if pair[1] == "x-raw" then value = pair[2] end
      end
      req:upgrade()
    end)
    core.connect("ws://127.0.0.1:" .. server:port() .. "/", { headers = { ["X-Raw"] = "caf\233 \200" } },
      function(c, kind, message)
        conn = c
        if not c then err = tostring(kind) .. ": " .. tostring(message) end
        if c then c:close() end
        server:close()
      end)
    L.run_until(function() return conn or err end)
    assert.is_nil(err)
    assert.are.equal("caf\233 \200", value)
  end)
end)

describe("core HTTP answer", function()
  it("has status, reason, version, headers in order, body and url; no protocol", function()
    local _, response, err = exchange("/a?b", {}, function(req)
      req:respond(201, { { "X-First", "1" }, { "X-Second", "2" } }, "made")
    end)
    assert.is_nil(err)
    assert.are.equal(201, response.status)
    assert.are.equal("Created", response.reason)
    assert.are.equal("HTTP/1.1", response.version)
    assert.are.equal("made", response.body)
    assert.are.equal("http://127.0.0.1:" .. response.url:match(":(%d+)/") .. "/a?b", response.url)
    assert.is_nil(response.protocol)
    local names = {}
    for _, pair in ipairs(response.headers) do
      if pair[1]:lower():match("^x%-") then names[#names + 1] = pair[1] .. "=" .. pair[2] end
    end
    assert.are.equal(2, #names)
    assert.truthy(names[1]:lower() == "x-first=1" and names[2]:lower() == "x-second=2", table.concat(names, ","))
  end)
end)

describe("core req:respond's status", function()
  -- A 1xx is an interim answer (RFC 9110 §15.2): respond() raises, and the
  -- raise answers 500 (docs/core.md: "an error while answering answers").
  for _, status in ipairs({ 100, 101, 199, 1000, 99.5 }) do
    it("raises for " .. status .. ", and the client gets 500", function()
      local raised
      local _, response, err = exchange("/", {}, function(req)
        local ok, e = pcall(req.respond, req, status)
        raised = not ok and e
      end)
      assert.are.equal("turbo_ws request:respond: bad argument #1 'status' "
        .. "(whole number from 200 to 999 expected, got number)", raised)
      assert.is_nil(err)
      assert.are.equal(500, response.status)
    end)
  end

  it("takes 200 and 999", function()
    for _, status in ipairs({ 200, 999 }) do
      local _, response = exchange("/", {}, function(req) req:respond(status) end)
      assert.are.equal(status, response.status)
    end
  end)
end)
