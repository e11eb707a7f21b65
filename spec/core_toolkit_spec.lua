-- What the faces share: the core's split_url and websocket_key (the
-- rules themselves are pinned in src/engine/url_parts.rs's tests; here
-- their Lua shape), and the Lua helpers of turbo_ws.toolkit.
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"

describe("core.split_url", function()
  it("gives every part as written, and only the parts the URL has", function()
    assert.are.same({ scheme = "WSS", userinfo = "u:p", host = "Ex.COM", port = "0443",
                      path = "/A/%7e", query = "q=1", fragment = "F" },
      core.split_url("WSS://u:p@Ex.COM:0443/A/%7e?q=1#F"))
    assert.are.same({ scheme = "ws", host = "::1", path = "" }, core.split_url("ws://[::1]"))
    assert.are.same({ scheme = "ws", host = "h", port = "", path = "", query = "" }, core.split_url("ws://h:?"))
    assert.are.same({ path = "//a/b", query = "c" }, core.split_url("//a/b?c"))
    assert.are.same({ path = "" }, core.split_url(""))
  end)

  it("answers nil, bad_url, a message with the URL and the part at fault", function()
    local cases = { ["ws://h:99999/"] = "port", ["ws://[zz]/"] = "host", ["/a b"] = "character",
                    ["1x://h"] = "scheme" }
    for url, part in pairs(cases) do
      local parts, kind, message, detail = core.split_url(url)
      assert.is_nil(parts, url)
      assert.are.equal("bad_url", kind)
      assert.truthy(message:find(url, 1, true), message)
      assert.are.equal(part, detail, url)
    end
  end)

  it("keeps bytes that are not UTF-8", function()
    assert.are.equal("/\255\254", core.split_url("ws://h/\255\254").path)
    assert.are.equal("character", select(4, core.split_url("ws://h/\0")))
  end)

  it("raises for a URL that is not a string", function()
    for value, got in pairs({ [1] = "number", [{}] = "table", [false] = "boolean" }) do
      local ok, err = pcall(core.split_url, value)
      assert.is_false(ok)
      local expected = "turbo_ws.split_url: bad argument #1 'url' (string expected, got " .. got .. ")"
      assert.truthy(tostring(err):find(expected, 1, true), tostring(err))
    end
  end)
end)

describe("core.valid_token", function()
  it("is true for an HTTP token, false for anything else, and raises for a non-string", function()
    for _, ok in ipairs({ "chat", "v2.json", "X-Trace", "a!#$%&'*+-.^_`|~9" }) do
      assert.is_true(core.valid_token(ok), ok)
    end
    for _, bad in ipairs({ "", "a b", "a,b", "a\r\nX: 1", "caf\195\169", "(x)" }) do
      assert.is_false(core.valid_token(bad), bad)
    end
    assert.has_error(function() core.valid_token(5) end,
      "turbo_ws.valid_token: bad argument #1 's' (string expected, got number)")
  end)
end)

describe("core.websocket_key", function()
  it("is 16 random bytes in base64, new each time", function()
    local seen = {}
    for _ = 1, 50 do
      local key = core.websocket_key()
      assert.are.equal(24, #key)
      assert.truthy(key:match("^[%w+/]+==$"), key)
      assert.is_nil(seen[key])
      seen[key] = true
    end
  end)
end)

describe("turbo_ws.toolkit", function()
  local function capture_stderr(fn)
    local saved, text = io.stderr, {}
    io.stderr = { write = function(_, ...) for _, s in ipairs{ ... } do text[#text + 1] = s end end }
    local ok, err = pcall(fn)
    io.stderr = saved
    assert(ok, err)
    return table.concat(text)
  end

  it("queues first in, first out", function()
    local q = toolkit.queue()
    assert.is_true(q:is_empty())
    assert.is_nil(q:pop())
    for i = 1, 5 do q:push(i) end
    assert.are.equal(1, q:pop())
    q:push(6)
    local out = {}
    while not q:is_empty() do out[#out + 1] = q:pop() end
    assert.are.same({ 2, 3, 4, 5, 6 }, out)
    assert.is_nil(q:pop())
  end)

  it("makes a CLOSE payload from a code and reason, empty for 1005", function()
    assert.are.equal("\3\232bye", toolkit.close_payload(1000, "bye"))
    assert.are.equal("\15\160", toolkit.close_payload(4000))
    assert.are.equal("", toolkit.close_payload(1005, ""))
  end)

  it("reads the code and reason of a CLOSE payload, nil without a code", function()
    assert.are.same({ 1000, "bye" }, { toolkit.split_close_payload("\3\232bye") })
    assert.are.same({ 4000, "" }, { toolkit.split_close_payload("\15\160") })
    assert.is_nil(toolkit.split_close_payload("\3"))
    assert.is_nil(toolkit.split_close_payload(""))
  end)

  it("brackets IPv6 hosts for URLs, once", function()
    assert.are.equal("[::1]", toolkit.url_host("::1"))
    assert.are.equal("[::1]", toolkit.url_host("[::1]"))
    assert.are.equal("example.com", toolkit.url_host("example.com"))
  end)

  it("calls with arguments and keeps the message and traceback of an error", function()
    assert.are.same({ true, 3 }, { toolkit.xpcall(function(a, b) return a + b end, toolkit.caught, 1, 2) })
    local ok, err = toolkit.xpcall(function(x) error("boom " .. x, 0) end, toolkit.caught, "here")
    assert.is_false(ok)
    assert.are.equal("boom here", err.message)
    assert.truthy(err.trace:find("stack traceback", 1, true))
  end)

  it("resumes a suspended coroutine and reports its error, and leaves others alone", function()
    local co = coroutine.create(function(v) coroutine.yield(v); error("late failure", 0) end)
    local logged = capture_stderr(function()
      toolkit.resume("spec", co, 1)
      toolkit.resume("spec", co)
      toolkit.resume("spec", co) -- dead: nothing happens
    end)
    assert.are.equal("dead", coroutine.status(co))
    assert.truthy(logged:find("^spec: uncaught error in a coroutine: late failure"), logged)
    assert.truthy(logged:find("stack traceback", 1, true))
  end)

  it("loads no face and defines no global", function()
    local p = assert(io.popen([[LUA_CPATH='./build/?.so;;' luajit -e '
      require "turbo_ws.compat"
      local before = {}
      for k in pairs(_G) do before[k] = true end
      for k in pairs(package.loaded) do before[k] = true end
      require "turbo_ws.toolkit"
      local new = {}
      for k in pairs(_G) do if not before[k] then new[#new + 1] = k end end
      for k in pairs(package.loaded) do
        if not before[k] and k ~= "turbo_ws.toolkit" then new[#new + 1] = k end
      end
      print(#new == 0 and "clean" or table.concat(new, ","))' 2>&1]]))
    local out = p:read("*a")
    p:close()
    assert.are.equal("clean", (out:gsub("%s+$", "")))
  end)
end)
