-- Specs for turbo_ws.escape: Turbo's JSON, URL escaping, base64, HTML
-- escaping and trimming.

local escape = require "turbo_ws.escape"
local enc, dec = escape.json_encode, escape.json_decode

describe("turbo_ws.escape", function()
  describe("json_encode", function()
    it("encodes scalars", function()
      assert.are.equal("null", enc(nil))
      assert.are.equal("true", enc(true))
      assert.are.equal("false", enc(false))
      assert.are.equal("42", enc(42))
      assert.are.equal("-7", enc(-7))
      assert.are.equal("0.5", enc(0.5))
      assert.are.equal('"hi"', enc("hi"))
      assert.are.equal('""', enc(""))
    end)

    it("writes integral floats without a fraction or exponent", function()
      assert.are.equal("3", enc(3.0))
      assert.are.equal("1000", enc(1e3))
      assert.are.equal("100000000000000", enc(1e14))
      assert.are.equal("[1700000000000]", enc({ 1.7e12 }))
    end)

    it("keeps full number precision", function()
      assert.are.equal(0.1 + 0.2, dec(enc(0.1 + 0.2)))
      assert.are.equal(2 ^ 53, dec(enc(2 ^ 53)))
      assert.are.equal(1e300, dec(enc(1e300)))
      assert.are.equal(-1.5e-300, dec(enc(-1.5e-300)))
      assert.are.equal(123456789012, dec(enc(123456789012)))
    end)

    it("writes NaN as null and infinities as Turbo does", function()
      assert.are.equal("null", enc(0 / 0))
      assert.are.equal("1e+9999", enc(math.huge))
      assert.are.equal("-1e+9999", enc(-math.huge))
    end)

    it("escapes quotes, backslashes and control characters only", function()
      assert.are.equal([["a\"b\\c"]], enc('a"b\\c'))
      assert.are.equal([["\n\r\t\b\f"]], enc("\n\r\t\b\f"))
      assert.are.equal([["\u0000\u0001\u001f"]], enc("\0\1\31"))
      assert.are.equal('"/ é ☃ 😀 \127"', enc("/ é ☃ 😀 \127"))
    end)

    it("encodes sequences as arrays", function()
      assert.are.equal("[1,2,3]", enc({ 1, 2, 3 }))
      assert.are.equal('["a",["b",[]]]', enc({ "a", { "b", {} } }))
    end)

    it("encodes an empty table as an empty array, like Turbo", function()
      assert.are.equal("[]", enc({}))
    end)

    it("fills holes in sparse arrays with null", function()
      assert.are.equal('["one",null,"three"]', enc({ "one", nil, "three" }))
      assert.are.equal("[null,null,3]", enc({ [3] = 3 }))
    end)

    -- Turbo 2.1.5's JSON.lua (20170927.26): such tables become objects,
    -- their numeric keys strings after the sorted string keys.
    it("writes numeric keys <= 0 or infinite, and mixed keys, as an object like Turbo", function()
      assert.are.equal('{"0":"zero"}', enc({ [0] = "zero" }))
      assert.are.equal('{"0":"zero","1":1}', enc({ [0] = "zero", 1 }))
      assert.are.equal('{"-1":"n","1":"a"}', enc({ [-1] = "n", "a" }))
      assert.are.equal('{"status":"ok","1":"first-item"}', enc({ status = "ok", "first-item" }))
      assert.are.equal('{"b":3,"2":1,"10":2}', enc({ [2] = 1, [10] = 2, b = 3 }))
      assert.are.equal('{"inf":1}', enc({ [math.huge] = 1 }))
    end)

    it("encodes string-keyed tables as objects with sorted keys", function()
      assert.are.equal('{"a":1,"b":[true],"c":{"d":null}}',
        enc({ c = { d = 0 / 0 }, b = { true }, a = 1 }))
    end)

    it("encodes nested structures", function()
      local value = { users = { { name = "x", tags = { "a", "b" } } }, n = 1 }
      assert.are.equal('{"n":1,"users":[{"name":"x","tags":["a","b"]}]}',
        enc(value))
    end)

    it("refuses a key both as string and number, odd key types and unsupported values", function()
      assert.has_error(function() enc({ [1] = 1, ["1"] = 2 }) end)
      assert.has_error(function() enc({ [true] = 1 }) end)
      assert.has_error(function() enc({ [{}] = 1 }) end)
      assert.has_error(function() enc(print) end)
      assert.has_error(function() enc({ f = print }) end)
      assert.has_error(function() enc(coroutine.create(print)) end)
    end)

    it("reports the unsupported type", function()
      local ok, err = pcall(enc, { f = print })
      assert.is_false(ok)
      assert.matches("can't convert function to JSON", err, 1, true)
    end)

    it("refuses cycles but allows shared subtables", function()
      local t = {}
      t.self = t
      assert.has_error(function() enc(t) end)
      local shared = { 1 }
      assert.are.equal('{"a":[1],"b":[1]}', enc({ a = shared, b = shared }))
    end)

    it("does not use metamethods of the value", function()
      local t = setmetatable({ a = 1 }, { __tostring = function() return "x" end })
      assert.are.equal('{"a":1}', enc(t))
    end)
  end)

  describe("json_decode", function()
    it("decodes scalars", function()
      assert.are.equal(true, dec("true"))
      assert.are.equal(false, dec("false"))
      assert.is_nil(dec("null"))
      assert.are.equal(12, dec("12"))
      assert.are.equal(-0.25, dec("-0.25"))
      assert.are.equal(1.5e10, dec("1.5E+10"))
      assert.are.equal(2e-3, dec("2e-3"))
      assert.are.equal(0, dec("0"))
      assert.are.equal("x", dec('"x"'))
    end)

    it("decodes objects and arrays with whitespace", function()
      assert.are.same({ a = { 1, 2, { b = "c" } }, d = {} },
        dec(' { "a" : [ 1 , 2 , { "b" : "c" } ] ,\n\t"d" : { } } '))
      assert.are.same({}, dec("[]"))
      assert.are.same({ {}, { {} } }, dec("[[],[[]]]"))
    end)

    it("drops null members of objects", function()
      assert.are.same({ a = 1 }, dec('{"a":1,"b":null}'))
    end)

    it("keeps the position of null array elements", function()
      local t = dec("[1,null,3]")
      assert.are.equal(1, t[1])
      assert.is_nil(t[2])
      assert.are.equal(3, t[3])
      assert.are.equal("[1,null,3]", enc(t))
    end)

    it("lets the last duplicate key win", function()
      assert.are.same({ a = 2 }, dec('{"a":1,"a":2}'))
    end)

    it("decodes string escapes", function()
      assert.are.equal('"\\/\b\f\n\r\t', dec([["\"\\\/\b\f\n\r\t"]]))
      assert.are.equal("A", dec([["\u0041"]]))
      assert.are.equal("é", dec([["\u00e9"]]))
      assert.are.equal("☃", dec([["\u2603"]]))
      assert.are.equal("\0", dec([["\u0000"]]))
    end)

    it("joins UTF-16 surrogate pairs", function()
      assert.are.equal("😀", dec([["\ud83d\ude00"]]))
      assert.are.equal("😀", dec([["\uD83D\uDE00"]]))
      assert.are.equal("x\240\144\128\128y", dec([["x\ud800\udc00y"]]))
    end)

    it("turns lone surrogates into '?' like Turbo", function()
      assert.are.equal("?", dec([["\ud83d"]]))
      assert.are.equal("?x", dec([["\ud83dx"]]))
      assert.are.equal("?", dec([["\ude00"]]))
      assert.are.equal("??", dec([["\ud83d\ud83d"]]))
    end)

    it("keeps the character after an unknown escape", function()
      assert.are.equal("q", dec([["\q"]]))
      assert.are.equal("uzz", dec([["\uzz"]]))
    end)

    it("passes UTF-8 through untouched", function()
      assert.are.equal("héllo ☃ 😀", dec('"héllo ☃ 😀"'))
    end)

    it("round-trips nested data", function()
      local value = {
        name = "chat", n = 3, ok = true, list = { 1, "two", { three = 3 } },
        text = "line1\nline2\t\"quoted\" \\ \1",
        deep = { a = { b = { c = { d = { "e" } } } } },
      }
      assert.are.same(value, dec(enc(value)))
    end)

    it("round-trips every byte value in a string", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local s = table.concat(bytes)
      assert.are.equal(s, dec(enc(s)))
    end)

    it("returns nil for blank input", function()
      assert.is_nil(dec(""))
      assert.is_nil(dec("  \n\t "))
    end)

    it("refuses text after the first value but blanks, like Turbo 2.1.5", function()
      for _, text in ipairs({ "1 2", "[1] trailing", "1.e5", "012", "0x10", "truex", '{"a":1} x' }) do
        assert.has_error(function() dec(text) end, nil, text)
      end
      assert.are.same({ 1 }, dec("[1] \n\t "))
    end)

    local function decode_error(text)
      local ok, err = pcall(dec, text)
      assert.is_false(ok, "expected an error for " .. tostring(text))
      assert.is_string(err)
      return err
    end

    it("raises on malformed JSON", function()
      for _, bad in ipairs({
        "{", "[", "[1,", "[1 2]", "[1,]", '{"a"}', '{"a":}', '{"a":1,}',
        '{"a" 1}', "{a:1}", '{"a":1 "b":2}', '"unclosed', '"bad\\', "tru",
        "nul", "-", "+1", ".5", "[-]", "'x'", "{]", "[}",
      }) do
        decode_error(bad)
      end
    end)

    it("describes where the error is", function()
      assert.matches("expected comma or ']' at char 4 of: [1 2]",
        decode_error("[1 2]"), 1, true)
      assert.matches("unclosed string", decode_error('"abc'), 1, true)
    end)

    it("shortens long input in error messages", function()
      local err = decode_error("[" .. string.rep("1,", 5000) .. "x]")
      assert.is_true(#err < 200)
    end)

    it("refuses nil, non-strings, HTML and UTF-16", function()
      assert.matches("nil passed", decode_error(nil), 1, true)
      assert.matches("got number", decode_error(12), 1, true)
      assert.matches("html passed", decode_error("  <html>"), 1, true)
      decode_error("\0[\0]")
      decode_error("[\0]")
    end)

    it("decodes deep nesting", function()
      local depth = 200
      local t = dec(string.rep("[", depth) .. string.rep("]", depth))
      for _ = 1, depth - 1 do t = t[1] end
      assert.are.same({}, t)
    end)

    it("decodes a long string full of escapes in linear time", function()
      -- A decoder that rescans to the closing quote after every escape
      -- would take minutes here.
      local s = string.rep('ab\n"\\', 100000)
      assert.are.equal(s, dec(enc(s)))
      assert.are.equal(string.rep("é", 100000),
        dec('"' .. string.rep("\\u00e9", 100000) .. '"'))
    end)

    it("handles a large document", function()
      local items = {}
      for i = 1, 10000 do
        items[i] = { id = i, name = "item" .. i, tags = { "x", "y" } }
      end
      local text = enc(items)
      local back = dec(text)
      assert.are.equal(10000, #back)
      assert.are.same(items[9999], back[9999])
    end)
  end)

  describe("escape / unescape", function()
    it("percent-encodes everything but [A-Za-z0-9_] in lower-case hex", function()
      assert.are.equal("a%20b%2fc_D9%c3%a9", (escape.escape("a b/c_D9é")))
    end)

    it("returns gsub's count as a second value, like Turbo", function()
      local s, n = escape.escape("a b")
      assert.are.equal("a%20b", s)
      assert.are.equal(1, n)
      local u, m = escape.unescape("%41%42c")
      assert.are.equal("ABc", u)
      assert.are.equal(2, m)
    end)

    it("decodes upper- and lower-case hex and leaves the rest", function()
      assert.are.equal("a b+/é%zz%", (escape.unescape("a%20b+%2F%c3%A9%zz%")))
    end)

    it("round-trips arbitrary bytes", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local s = table.concat(bytes)
      assert.are.equal(s, (escape.unescape((escape.escape(s)))))
    end)
  end)

  describe("html_escape", function()
    it("replaces the characters Turbo replaces", function()
      assert.are.equal("&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#47;{}&lt;&#47;a&gt;",
        escape.html_escape([[<a href="x">'&/{}</a>]]))
    end)

    it("returns a single value", function()
      assert.are.equal(1, select("#", escape.html_escape("<")))
    end)

    it("raises for anything but a string, as Turbo", function()
      assert.has_error(function() escape.html_escape(42) end,
        "escape.html_escape: bad argument #1 (string expected, got number)")
      assert.has_error(function() escape.html_escape(nil) end)
    end)
  end)

  describe("trimming", function()
    it("trim removes whitespace at both ends", function()
      assert.are.equal("a b", escape.trim(" \t\r\n a b \n\v\f"))
      assert.are.equal("", escape.trim("   "))
      assert.are.equal("", escape.trim(""))
      assert.are.equal("x", escape.trim("x"))
    end)

    it("ltrim and rtrim remove one side only", function()
      assert.are.equal("a ", escape.ltrim("  a "))
      assert.are.equal("  a", escape.rtrim("  a \t\n"))
      assert.are.equal("", escape.ltrim("  "))
      assert.are.equal("", escape.rtrim("  "))
    end)

    it("stays fast on long whitespace runs", function()
      local s = string.rep(" ", 100000) .. "x" .. string.rep(" ", 100000)
      assert.are.equal("x", escape.trim(s))
      assert.are.equal("x" .. string.rep(" ", 100000), escape.ltrim(s))
    end)
  end)

  describe("base64", function()
    local vectors = {
      { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
      { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
      { "foobar", "Zm9vYmFy" }, { "\0\255\254", "AP/+" },
    }

    it("encodes the RFC 4648 test vectors", function()
      for _, v in ipairs(vectors) do
        assert.are.equal(v[2], escape.base64_encode(v[1]))
      end
    end)

    it("decodes the RFC 4648 test vectors", function()
      for _, v in ipairs(vectors) do
        assert.are.equal(v[1], escape.base64_decode(v[2]))
      end
    end)

    it("computes a WebSocket accept key", function()
      -- RFC 6455 section 1.3 example; the SHA-1 digest written out here.
      local digest = "\179\122\79\44\192\98\79\22\144\246\70\6\207\56\89\69\178\190\196\234"
      assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", escape.base64_encode(digest))
    end)

    it("breaks lines every 76 characters with CRLF unless told not to", function()
      local data = string.rep("x", 120)        -- 160 encoded characters
      local broken = escape.base64_encode(data)
      local lines = {}
      for line in (broken .. "\r\n"):gmatch("(.-)\r\n") do lines[#lines + 1] = line end
      assert.are.same({ 76, 76, 8 }, { #lines[1], #lines[2], #lines[3] })
      assert.is_nil(broken:find("\r\n$"))
      local flat = escape.base64_encode(data, nil, true)
      assert.are.equal(160, #flat)
      assert.are.equal(flat, (broken:gsub("\r\n", "")))
      assert.are.equal(76, #escape.base64_encode(string.rep("y", 57)))
    end)

    it("honours an explicit size", function()
      assert.are.equal("Zm8=", escape.base64_encode("foobar", 2))
      assert.are.equal("foo", escape.base64_decode("Zm9vYmFy", 4))
    end)

    it("skips characters outside the alphabet when decoding", function()
      assert.are.equal("foobar", escape.base64_decode("Zm9v\r\nYmFy"))
      assert.are.equal("foobar", escape.base64_decode(" Zm 9v Ym Fy "))
      assert.are.equal("f", escape.base64_decode("Zg"))
      assert.are.equal("fo", escape.base64_decode("Zm8"))
    end)

    it("round-trips all byte values and large inputs", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local s = table.concat(bytes)
      for cut = 0, 5 do
        local piece = s:sub(1, #s - cut)
        assert.are.equal(piece, escape.base64_decode(escape.base64_encode(piece)))
      end
      local big = string.rep(s, 400)
      assert.are.equal(big, escape.base64_decode(escape.base64_encode(big)))
    end)

    it("rejects non-string input", function()
      assert.has_error(function() escape.base64_encode(nil) end)
      assert.has_error(function() escape.base64_decode({}) end)
    end)
  end)
end)
