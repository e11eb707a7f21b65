-- The measuring window both client benches share: one second of warm-up,
-- then `seconds` of counting; prints {"rate":..., "cpu_us_per_msg":...}
-- and exits. The clients keep their counter in an upvalue (the hot path
-- stays theirs): start() is called when counting begins, count() at the end.
-- Loaded with: package.path = <this folder> .. "/?.lua;" .. package.path
-- BENCH_WARMUP=<seconds> changes the warm-up (bench/profile/client_profile.sh
-- sets 0 so that every message of a callgrind run is counted); "msgs" in
-- the output is the count the figures come from.
local core = require("turbo_ws").core
local warmup = tonumber(os.getenv("BENCH_WARMUP") or "1")

return function(seconds, start, count)
  local now = core.gettimemonotonic
  core.add_timeout(now() + warmup * 1000, function()
    start()
    local t0, c0 = now(), os.clock()
    core.add_timeout(now() + seconds * 1000, function()
      local n, secs, cpu = count(), (now() - t0) / 1000, os.clock() - c0
      print(string.format('{"rate":%.0f,"cpu_us_per_msg":%.3f,"msgs":%d}', n / secs, n > 0 and cpu * 1e6 / n or 0, n))
      io.stdout:flush()
      os.exit(0)
    end)
  end)
end
