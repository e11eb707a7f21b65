-- The Turbo face's turbo.structs: the deque (Turbo 2.1.5's doc/structs.rst
-- and turbo/structs/deque.lua).
local turbo = require "turbo_ws"

describe("turbo.structs.deque", function()
  local deque

  setup(function()
    require "turbo_ws.compat"
    deque = require "turbo.structs.deque"
  end)

  it("is turbo.structs.deque, a class", function()
    assert.equal(turbo.structs.deque, deque)
    local d = deque()
    assert.is_true(instanceOf(deque, d))
    assert.equal("Deque", d.class.name)
  end)

  it("adds and removes at both ends", function()
    local d = deque()
    assert.same({ 0, false }, { d:size(), d:not_empty() })
    d:append(2)
    d:append(3)
    d:appendleft(1)
    d:appendleft(0)
    assert.same({ 4, true }, { d:size(), d:not_empty() })
    assert.same({ 0, 3 }, { d:peekfirst(), d:peeklast() })
    assert.equal(3, d:pop())
    assert.equal(0, d:popleft())
    assert.same({ 1, 2 }, { d:peekfirst(), d:peeklast() })
    assert.equal(2, d:pop())
    assert.equal(1, d:pop())
    assert.same({ 0, false }, { d:size(), d:not_empty() })
    assert.is_nil(d:pop())
    assert.is_nil(d:popleft())
    assert.equal(0, d:size())
    -- Usable again once emptied.
    d:appendleft("x")
    assert.same({ "x", "x", 1 }, { d:peekfirst(), d:peeklast(), d:size() })
    assert.equal("x", d:popleft())
  end)

  it("works as a FIFO queue over many items", function()
    local d = deque()
    for i = 1, 1000 do d:append(i) end
    local sum = 0
    while d:not_empty() do sum = sum + d:popleft() end
    assert.equal(500500, sum)
    for i = 1, 10 do d:appendleft(i) end
    assert.same({ 1, 10 }, { d:pop(), d:popleft() })
  end)

  it("gets the item at a position counted from 0 at the head", function()
    local d = deque()
    for _, v in ipairs({ "a", "b", "c" }) do d:append(v) end
    assert.same({ "a", "b", "c" }, { d:getn(0), d:getn(1), d:getn(2) })
    assert.is_nil(d:getn(3))
    assert.is_nil(d:getn(-1))
    d:appendleft("z")
    assert.equal("z", d:getn(0))
  end)

  it("measures and concatenates string items", function()
    local d = deque()
    assert.same({ 0, "" }, { d:strlen(), d:concat() })
    d:append("world")
    d:appendleft("hello ")
    d:append("!")
    assert.equal(12, d:strlen())
    assert.equal("hello world!", d:concat())
    assert.equal("hello world!", tostring(d))
    assert.equal(">hello world!", ">" .. d)
    assert.equal("hello world!<", d .. "<")
    assert.equal(3, d:size())
  end)
end)
