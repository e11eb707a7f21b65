-- turbo_ws.pubsub: the memory backend's delivery rules, argument checks,
-- and the Redis backend against a real redis-server started here on a
-- loopback port of its own (stopped afterwards): delivery between hubs,
-- tables as JSON, errors while Redis is away, resubscribe after a restart.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local pubsub = turbo_ws.pubsub
local L = require "spec.support.loop"
local free_port = L.free_port
local assert_error_with = L.assert_error_with
local run_bounded = L.run_bounded
local run_until = L.run_until

local sh = require("spec.support.peer").output

-- A redis-server of our own on 127.0.0.1:port.
local Redis = {}
Redis.__index = Redis

function Redis.start(port)
  local self = setmetatable({ port = port or free_port() }, Redis)
  self.dir = os.tmpname()
  os.remove(self.dir)
  os.execute("mkdir -p " .. self.dir)
  self:restart()
  return self
end

function Redis:restart()
  local out = sh(string.format(
    "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes " ..
    "--dir %s --pidfile %s/redis.pid --logfile %s/redis.log", self.port, self.dir, self.dir, self.dir))
  assert(not out:find("not found"), "redis-server is missing (apt-get install redis-server): " .. out)
  -- Ready when it answers PING.
  for _ = 1, 100 do
    if sh("redis-cli -p " .. self.port .. " ping"):find("PONG") then return end
    sh("sleep 0.05")
  end
  error("redis-server did not start on port " .. self.port .. ": " .. sh("cat " .. self.dir .. "/redis.log"))
end

function Redis:stop()
  sh("redis-cli -p " .. self.port .. " shutdown nosave")
  for _ = 1, 100 do
    if not sh("redis-cli -p " .. self.port .. " ping"):find("PONG") then return end
    sh("sleep 0.05")
  end
end

function Redis:numsub(channel)
  return tonumber(sh("redis-cli -p " .. self.port .. " pubsub numsub " .. channel):match("\n(%d+)")) or -1
end

function Redis:cleanup()
  self:stop()
  sh("rm -rf " .. self.dir)
end

describe("turbo_ws.pubsub (memory)", function()
  it("delivers on the next loop turn, never from inside publish", function()
    local hub = pubsub.new()
    local seen = {}
    hub:subscribe("room", function(message, channel) seen[#seen + 1] = channel .. "=" .. message end)
    assert.is_true(hub:publish("room", "one"))
    assert.is_true(hub:publish("room", "two"))
    assert.are.same({}, seen)
    run_bounded()
    assert.are.same({ "room=one", "room=two" }, seen)
    hub:close()
  end)

  it("keeps run() going only until the messages are delivered", function()
    local hub = pubsub.new()
    local got
    hub:subscribe("c", function(m) got = m end)
    hub:publish("c", "x")
    run_bounded(2000)
    assert.are.equal("x", got)
    -- Nothing pending: run() returns at once although the hub has a subscriber.
    run_bounded(2000)
    hub:close()
  end)

  it("queues what a subscriber publishes for a later turn", function()
    local hub = pubsub.new()
    local seen = {}
    hub:subscribe("a", function(m)
      seen[#seen + 1] = "a:" .. m
      hub:publish("b", m .. "!")
      seen[#seen + 1] = "a-done"
    end)
    hub:subscribe("b", function(m) seen[#seen + 1] = "b:" .. m end)
    hub:publish("a", "x")
    run_bounded()
    assert.are.same({ "a:x", "a-done", "b:x!" }, seen)
    hub:close()
  end)

  it("reaches every memory hub of the process, only on the channel published to", function()
    local h1, h2 = pubsub.new{ backend = "memory" }, pubsub.new()
    local seen = {}
    h1:subscribe("news", function(m) seen[#seen + 1] = "h1 " .. m end)
    h2:subscribe("news", function(m) seen[#seen + 1] = "h2 " .. m end)
    h2:subscribe("other", function(m) seen[#seen + 1] = "other " .. m end)
    h1:publish("news", "hi")
    run_bounded()
    assert.are.same({ "h1 hi", "h2 hi" }, seen)
    h1:close(); h2:close()
  end)

  it("sends tables as JSON", function()
    local hub = pubsub.new()
    local got
    hub:subscribe("j", function(m) got = m end)
    hub:publish("j", { text = "hé", n = 3, list = { 1, 2 } })
    run_bounded()
    assert.are.same({ text = "hé", n = 3, list = { 1, 2 } }, turbo_ws.escape.json_decode(got))
    -- The very bytes of the Turbo face's encoder (the one in turbo_ws.json).
    assert.are.equal('{"list":[1,2],"n":3,"text":"hé"}', got)
    assert.are.equal(turbo_ws.escape.json_encode({ text = "hé", n = 3, list = { 1, 2 } }), got)
    assert.are.equal(require("turbo_ws.json").encode, turbo_ws.escape.json_encode)
    hub:close()
  end)

  it("encodes tables without loading a face (a fresh coro-websocket program)", function()
    local p = assert(io.popen([[LUA_CPATH='./build/?.so;;' luajit -e '
      require "turbo_ws.compat"
      local core = require "turbo_ws.core"
      local hub, got = core.pubsub(), nil
      hub:subscribe("j", function(m) got = m end)
      hub:publish("j", { a = { true, false }, s = "x\ny" })
      core.run()
      print(got, package.loaded["turbo_ws.escape"], package.loaded["turbo_ws.main"])' 2>&1]]))
    local out = p:read("*a")
    p:close()
    assert.are.equal('{"a":[true,false],"s":"x\\ny"}\tnil\tnil\n', out)
  end)

  it("unsubscribes by token and by channel", function()
    local hub = pubsub.new()
    local seen = {}
    local t1 = hub:subscribe("c", function(m) seen[#seen + 1] = "1" .. m end)
    hub:subscribe("c", function(m) seen[#seen + 1] = "2" .. m end)
    hub:subscribe("d", function(m) seen[#seen + 1] = "d" .. m end)
    assert.are.same({ "c", "d" }, hub:channels())
    assert.is_true(hub:unsubscribe(t1))
    assert.is_false(hub:unsubscribe(t1))
    hub:publish("c", "x")
    run_bounded()
    assert.are.same({ "2x" }, seen)
    assert.are.equal(1, hub:unsubscribe("c"))
    assert.are.equal(0, hub:unsubscribe("c"))
    assert.are.same({ "d" }, hub:channels())
    hub:publish("c", "y")
    run_bounded()
    assert.are.same({ "2x" }, seen)
    hub:close()
  end)

  it("skips a subscriber that an earlier one unsubscribed for the same message", function()
    local hub = pubsub.new()
    local seen, t2 = {}, nil
    hub:subscribe("c", function() seen[#seen + 1] = 1; hub:unsubscribe(t2) end)
    t2 = hub:subscribe("c", function() seen[#seen + 1] = 2 end)
    hub:publish("c", "x")
    run_bounded()
    assert.are.same({ 1 }, seen)
    hub:close()
  end)

  it("goes on with the other subscribers when one raises", function()
    local hub = pubsub.new()
    local seen = {}
    hub:subscribe("c", function() error("boom") end)
    hub:subscribe("c", function(m) seen[#seen + 1] = m end)
    hub:publish("c", "x")
    run_bounded()
    assert.are.same({ "x" }, seen)
    hub:close()
  end)

  it("runs each subscriber in its own coroutine", function()
    local hub = pubsub.new()
    local threads = {}
    hub:subscribe("c", function() threads[#threads + 1] = coroutine.running(); coroutine.yield() end)
    hub:subscribe("c", function() threads[#threads + 1] = coroutine.running() end)
    hub:publish("c", "x")
    run_bounded()
    assert.are.equal(2, #threads)
    assert.are_not.equal(threads[1], threads[2])
    hub:close()
  end)

  it("refuses work once closed", function()
    local hub = pubsub.new()
    local seen = {}
    hub:subscribe("c", function(m) seen[#seen + 1] = m end)
    hub:publish("c", "x")
    hub:close()
    run_bounded()
    assert.are.same({}, seen)
    assert.is_true(hub:closed())
    local ok, kind, msg = hub:publish("c", "y")
    assert.are.same({ nil, "closed" }, { ok, kind })
    assert.truthy(msg:find("closed"))
    assert.is_false(hub:unsubscribe(1))
    assert_error_with("hub is closed", function() hub:subscribe("c", function() end) end)
    hub:close() -- twice is fine
  end)

  it("checks its arguments", function()
    local hub = pubsub.new()
    assert.are.equal("memory", hub:backend())
    assert.is_true(hub:connected())
    assert_error_with("turbo_ws.pubsub.new: bad option 'backend'", function() pubsub.new{ backend = "kafka" } end)
    assert_error_with("bad argument #1 'options' (table expected, got string)", function() pubsub.new("redis") end)
    assert_error_with("bad option 'on_error' (function expected, got number)", function() pubsub.new{ on_error = 1 } end)
    assert_error_with("bad argument #1 'channel' (string expected, got nil)", function() hub:subscribe(nil, print) end)
    assert_error_with("bad argument #1 'channel' (must not be empty)", function() hub:publish("", "x") end)
    assert_error_with("bad argument #2 'callback' (function expected, got string)", function() hub:subscribe("c", "f") end)
    assert_error_with("bad argument #2 'message' (string or table expected, got number)", function() hub:publish("c", 1) end)
    assert_error_with("bad argument #1 'token or channel'", function() hub:unsubscribe(true) end)
    assert_error_with("turbo_ws.pubsub hub:unsubscribe: bad argument #1 'channel' (must not be empty)",
      function() hub:unsubscribe("") end)
    assert_error_with("turbo_ws.pubsub hub:publish: bad argument #2 'message' (a table JSON can encode "
      .. "expected: can't convert function to JSON)", function() hub:publish("c", { f = print }) end)
    hub:close()
  end)
end)

describe("turbo_ws.pubsub (redis)", function()
  local redis

  setup(function() redis = Redis.start() end)
  teardown(function() if redis then redis:cleanup() end end)

  local function url() return "redis://127.0.0.1:" .. redis.port end

  it("checks its options", function()
    assert_error_with("bad option 'url'", function() pubsub.new{ backend = "redis", url = "http://x" } end)
    assert_error_with("bad option 'timeout' (must be more than 0)", function()
      pubsub.new{ backend = "redis", url = url(), timeout = 0 }
    end)
    assert_error_with("bad option 'max_pending'", function()
      pubsub.new{ backend = "redis", url = url(), max_pending = -1 }
    end)
  end)

  it("delivers between hubs through Redis, tables as JSON, and on_connect fires", function()
    local errors, connects = {}, 0
    local opts = { backend = "redis", url = url(), on_error = function(k, m) errors[#errors + 1] = k .. ": " .. m end,
                   on_connect = function() connects = connects + 1 end }
    local a, b = pubsub.new(opts), pubsub.new(opts)
    finally(function() a:close(); b:close() end)
    assert.are.equal("redis", a:backend())
    local got = {}
    b:subscribe("room:1", function(m, ch) got[#got + 1] = ch .. " " .. m end)
    run_until(function() return connects == 2 and a:connected() and redis:numsub("room:1") == 1 end, 5000, "subscribed")
    assert.is_true(a:publish("room:1", "hello"))
    assert.is_true(a:publish("room:1", { n = 1 }))
    assert.is_true(a:publish("room:2", "not for b"))
    run_until(function() return #got == 2 end, 5000, "two messages")
    assert.are.same({ "room:1 hello", 'room:1 {"n":1}' }, got)
    -- The last subscriber gone: the channel is unsubscribed on Redis too.
    b:unsubscribe("room:1")
    run_until(function() return redis:numsub("room:1") == 0 end, 5000, "unsubscribed on Redis")
    a:close(); b:close()
    run_bounded() -- closed hubs no longer keep the loop going
    assert.are.same({}, errors)
  end)

  it("keeps order for many messages", function()
    local hub = pubsub.new{ backend = "redis", url = url() }
    finally(function() hub:close() end)
    local got = {}
    hub:subscribe("seq", function(m) got[#got + 1] = tonumber(m) end)
    run_until(function() return hub:connected() and redis:numsub("seq") == 1 end, 5000, "subscribed")
    for i = 1, 5000 do assert(hub:publish("seq", tostring(i))) end
    run_until(function() return #got == 5000 end, 10000, "5000 messages")
    for i = 1, 5000 do if got[i] ~= i then error("message " .. i .. " was " .. tostring(got[i])) end end
    hub:close()
  end)

  it("reports errors, refuses publishes while Redis is down, and resubscribes when it is back", function()
    local errors, connects = {}, 0
    local hub = pubsub.new{ backend = "redis", url = url(), timeout = 1, ping_interval = 1,
                            reconnect_delay = 0.05, max_reconnect_delay = 0.2,
                            on_error = function(kind, m) errors[#errors + 1] = { kind, m } end,
                            on_connect = function() connects = connects + 1 end }
    finally(function() hub:close() end)
    local got = {}
    hub:subscribe("r", function(m) got[#got + 1] = m end)
    run_until(function() return connects == 1 and hub:connected() and redis:numsub("r") == 1 end, 5000, "subscribed")
    hub:publish("r", "before")
    run_until(function() return #got == 1 end, 5000, "first message")

    redis:stop()
    run_until(function() return not hub:connected() end, 5000, "the loss to be noticed")
    local ok, kind, msg = hub:publish("r", "lost")
    assert.is_nil(ok)
    assert.are.equal("disconnected", kind)
    assert.truthy(msg:find("not connected to Redis at redis://127.0.0.1:" .. redis.port, 1, true), msg)
    run_until(function()
      for _, e in ipairs(errors) do if e[1] == "connect" then return true end end
    end, 5000, "a connect error")
    local kinds = {}
    for _, e in ipairs(errors) do kinds[e[1]] = e[2] end
    assert.truthy(kinds.disconnected, "no 'disconnected' error")
    assert.truthy(kinds.connect:find("cannot connect to Redis at redis://127.0.0.1:" .. redis.port, 1, true), kinds.connect)

    redis:restart()
    run_until(function() return connects == 2 and hub:connected() and redis:numsub("r") == 1 end, 5000, "resubscribed")
    assert.is_true(hub:publish("r", "after"))
    run_until(function() return #got == 2 end, 5000, "message after the restart")
    assert.are.same({ "before", "after" }, got)
    hub:close()
  end)

  it("never gives up on a Redis that is not there, and close() ends it", function()
    local dead = free_port()
    local errors = {}
    local hub = pubsub.new{ backend = "redis", url = "redis://127.0.0.1:" .. dead, timeout = 1,
                            reconnect_delay = 0.05, max_reconnect_delay = 0.1,
                            on_error = function(kind, m) errors[#errors + 1] = kind .. ": " .. m end }
    finally(function() hub:close() end)
    hub:subscribe("x", function() end)
    run_until(function() return #errors >= 6 end, 5000, "repeated connect errors")
    for _, e in ipairs(errors) do
      assert.truthy(e:find("^connect: cannot connect to Redis at redis://127.0.0.1:" .. dead), e)
    end
    assert.is_false(hub:connected())
    local ok, kind = hub:publish("x", "y")
    assert.are.same({ nil, "disconnected" }, { ok, kind })
    hub:close()
    local n = #errors
    run_bounded(2000) -- nothing keeps the loop going any more
    assert.are.equal(n, #errors, "errors reported after close()")
  end)
end)
