-- Specs for turbo_ws.log: Turbo's log line format, streams and categories.

local log = require "turbo_ws.log"

-- A stand-in for io.stdout / io.stderr that records what is written.
local function fake_stream()
  local stream = { text = "", flushes = 0 }
  function stream:write(...)
    for i = 1, select("#", ...) do self.text = self.text .. select(i, ...) end
    return self
  end
  function stream:flush() self.flushes = self.flushes + 1; return true end
  return stream
end

local TIME = "%d%d%d%d/%d%d/%d%d %d%d:%d%d:%d%d"

describe("turbo_ws.log", function()
  local real_stdout, real_stderr, out, err

  before_each(function()
    real_stdout, real_stderr = io.stdout, io.stderr
    out, err = fake_stream(), fake_stream()
    io.stdout, io.stderr = out, err
    log.enable_all()
  end)

  after_each(function()
    io.stdout, io.stderr = real_stdout, real_stderr
    log.enable_all()
  end)

  local function line_pattern(colour, letter, msg)
    local reset = colour ~= "" and "\27%[0m" or ""
    return "^" .. colour .. "%[" .. letter .. " " .. TIME .. "%] " .. msg
      .. reset .. "\n$"
  end

  it("writes each level in Turbo's format to the right stream", function()
    local cases = {
      { log.success, out, "\27%[32m", "S" },
      { log.notice, out, "", "I" },
      { log.warning, err, "\27%[33m", "W" },
      { log.error, err, "\27%[31m", "E" },
      { log.debug, out, "", "D" },
      { log.devel, out, "\27%[36m", "d" },
    }
    for _, case in ipairs(cases) do
      local fn, stream, colour, letter = case[1], case[2], case[3], case[4]
      out.text, err.text = "", ""
      fn("hello world")
      assert.matches(line_pattern(colour, letter, "hello world"), stream.text)
      local other = stream == out and err or out
      assert.are.equal("", other.text)
    end
  end)

  it("uses the local time of the moment", function()
    local before = os.date("%Y/%m/%d %H:%M")
    log.notice("x")
    local after = os.date("%Y/%m/%d %H:%M")
    local stamp = out.text:match("^%[I (%d+/%d+/%d+ %d+:%d+):%d+%]")
    assert.is_true(stamp == before or stamp == after)
  end)

  it("flushes every line", function()
    log.notice("a")
    log.error("b")
    assert.are.equal(1, out.flushes)
    assert.are.equal(1, err.flushes)
  end)

  it("accepts messages that are not strings", function()
    log.notice(42)
    log.notice(nil)
    log.notice(true)
    local t = setmetatable({}, { __tostring = function() return "a table" end })
    log.warning(t)
    assert.matches("%] 42\n%[I ", out.text)
    assert.matches("%] nil\n", out.text)
    assert.matches("%] true\n$", out.text)
    assert.matches("%] a table\27%[0m\n$", err.text)
  end)

  it("keeps long messages and special characters intact", function()
    local long = string.rep("x", 10000) .. "%s%d"
    log.error(long)
    assert.are.equal(long, err.text:match("%] (.*)\27%[0m\n$"))
    assert.are.equal("", out.text)
  end)

  it("silences a category set to false, and only that one", function()
    log.categories.notice = false
    log.notice("hidden")
    log.debug("shown")
    assert.is_nil(out.text:find("hidden", 1, true))
    assert.matches("shown", out.text)
  end)

  it("treats a missing category entry as enabled, like Turbo", function()
    log.categories.development = nil
    log.devel("still here")
    assert.matches("still here", out.text)
  end)

  it("honours a replaced categories table", function()
    log.categories = { success = false }
    log.success("no")
    log.notice("yes")
    assert.is_nil(out.text:find("no", 1, true))
    assert.matches("yes", out.text)
  end)

  it("disable_all silences everything and enable_all restores it", function()
    local categories = log.categories
    log.disable_all()
    assert.are.equal(categories, log.categories)
    log.success("a"); log.notice("b"); log.warning("c"); log.error("d")
    log.debug("e"); log.devel("f"); log.stacktrace("g")
    assert.are.equal("", out.text)
    assert.are.equal("", err.text)
    log.enable_all()
    log.notice("back")
    log.stacktrace("trace")
    assert.matches("back", out.text)
    assert.are.equal("trace\n", err.text)
  end)

  it("exposes Turbo's categories, all enabled by default", function()
    for _, name in ipairs({ "success", "notice", "warning", "error", "debug",
                            "development", "stacktrace" }) do
      assert.is_true(log.categories[name], name)
    end
  end)

  it("stacktrace writes the raw text to stderr", function()
    log.stacktrace("stack traceback:\n\t[C]: in ?")
    assert.are.equal("stack traceback:\n\t[C]: in ?\n", err.text)
    assert.are.equal("", out.text)
  end)

  describe("stringify / dump", function()
    it("prints scalars with a name", function()
      assert.are.equal('v = "x"', log.stringify("x", "v"))
      assert.are.equal("__unnamed__ = 3", log.stringify(3))
    end)

    it("prints nested tables deterministically", function()
      local text = log.stringify({ b = { 1 }, a = "s", [2] = true }, "t")
      assert.are.equal('t = {\n   [2] = true;\n   ["a"] = "s";\n'
        .. '   ["b"] = {\n      [1] = 1;\n   };\n};\n', text)
    end)

    it("survives self references", function()
      local t = { name = "loop" }
      t.me = t
      local text = log.stringify(t, "t")
      assert.matches('%["me"%] = {}; %-%- t %(self reference%)', text)
    end)

    it("dump writes to stdout", function()
      log.dump({}, "empty")
      assert.are.equal("empty = {};\n\n", out.text)
    end)
  end)
end)
