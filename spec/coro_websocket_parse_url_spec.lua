-- The coro-websocket face's parseUrl: what it gives for ws:// and wss://
-- URLs, and what it refuses (with the original's message where it had one).
-- Shared helpers: spec/support/coro_websocket.lua.
local C = require "spec.support.coro_websocket"
local cws, cleanup, assert_error_with = C.cws, C.cleanup, C.assert_error_with
local stop_peer = C.stop_peer

describe("turbo_ws.coro_websocket", function()
  teardown(stop_peer)
  after_each(cleanup)

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
end)
