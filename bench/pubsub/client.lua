-- Pub/sub bench load: `luajit client.lua PORT SUBSCRIBERS MESSAGES WINDOW RATE LAT_MESSAGES`.
-- Opens SUBSCRIBERS WebSockets on /sub and one on /pub, then
--  1. throughput: publishes MESSAGES with at most WINDOW not yet received by
--     every subscriber;
--  2. latency: publishes LAT_MESSAGES at RATE per second.
-- Latency is from the publisher's send to each subscriber's receipt (one
-- clock: everything runs in this process). Prints one JSON line.
local ffi = require "ffi"
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk, bench_timespec *ts);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local port, nsubs, nmsgs, window, rate, nlat =
  tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]), tonumber(arg[5]), tonumber(arg[6])
local url = "ws://127.0.0.1:" .. port

local function fail(msg) io.stderr:write("client: ", msg, "\n"); os.exit(1) end
core.set_interval(120000, function() fail("timed out") end, nil, false)

local per_worker = {}
local received = {}      -- seq -> subscribers that got it
local sent_at = {}       -- seq -> us
local latencies = {}
local on_message         -- set per phase
local pub
local opened = 0

local function percentile(sorted, p)
  if #sorted == 0 then return 0 end
  return sorted[math.max(1, math.ceil(#sorted * p))]
end

local function summary(list)
  table.sort(list)
  return { p50 = percentile(list, 0.5), p99 = percentile(list, 0.99), max = list[#list] or 0, n = #list }
end

local phase_done

local function subscriber_message(m)
  local seq = tonumber(m:match("^(%d+) "))
  if not seq then return end
  latencies[#latencies + 1] = now_us() - sent_at[seq]
  local n = (received[seq] or 0) + 1
  received[seq] = n
  if n == nsubs then on_message(seq) end
end

local PAD = string.rep("x", 48)
local function publish(seq)
  sent_at[seq] = now_us()
  pub:send(seq .. " " .. PAD)
end

local results = {}

local function latency_phase()
  latencies, received, sent_at = {}, {}, {}
  local done, next_seq = 0, 1
  on_message = function()
    done = done + 1
    if done == nlat then
      results.latency_us = summary(latencies)
      results.latency_rate = rate
      print(turbo_ws.escape.json_encode(results))
      os.exit(0)
    end
  end
  local base = 1000000 -- distinct sequence numbers
  local interval = 1000 / rate
  local ref
  ref = core.set_interval(interval, function()
    if next_seq > nlat then core.clear_interval(ref); return end
    publish(base + next_seq)
    next_seq = next_seq + 1
  end)
end

local function throughput_phase()
  latencies, received, sent_at = {}, {}, {}
  local done, next_seq, t0 = 0, 1, now_us()
  on_message = function()
    done = done + 1
    if next_seq <= nmsgs then publish(next_seq); next_seq = next_seq + 1 end
    if done == nmsgs then
      local secs = (now_us() - t0) / 1e6
      results.messages = nmsgs
      results.subscribers = nsubs
      results.seconds = secs
      results.published_per_sec = nmsgs / secs
      results.deliveries_per_sec = nmsgs * nsubs / secs
      results.saturated_latency_us = summary(latencies)
      results.per_worker = per_worker
      latency_phase()
    end
  end
  while next_seq <= math.min(window, nmsgs) do publish(next_seq); next_seq = next_seq + 1 end
end

-- Warm-up: publishes message 0 until every subscriber has one (so every
-- process's subscription is live).
local function warm_up()
  on_message = function() end
  received, sent_at = {}, {}
  local ref
  ref = core.set_interval(50, function()
    if (received[0] or 0) >= nsubs then
      core.clear_interval(ref)
      throughput_phase()
    else
      publish(0)
    end
  end)
end

local function all_open()
  opened = opened + 1
  if opened == nsubs + 1 then warm_up() end
end

for _ = 1, nsubs do
  core.connect(url .. "/sub", { timeout = 10 }, function(conn, res, msg)
    if not conn then fail("subscriber: " .. tostring(res) .. " " .. tostring(msg)) end
    local greeted = false
    conn:set_callbacks{ on_message = function(m)
      if not greeted then
        greeted = true
        local w = m:match("^worker (%d+)")
        per_worker[w] = (per_worker[w] or 0) + 1
        return all_open()
      end
      subscriber_message(m)
    end }
  end)
end
core.connect(url .. "/pub", { timeout = 10 }, function(conn, res, msg)
  if not conn then fail("publisher: " .. tostring(res) .. " " .. tostring(msg)) end
  pub = conn
  all_open()
end)
turbo_ws.run()
