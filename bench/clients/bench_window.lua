-- The measuring window both client benches share: one second of warm-up,
-- then `seconds` of counting; prints {"rate":..., "cpu_us_per_msg":...}
-- and exits. The clients keep their counter in an upvalue (the hot path
-- stays theirs): start() is called when counting begins, count() at the end.
-- Loaded with: package.path = <this folder> .. "/?.lua;" .. package.path
local core = require("turbo_ws").core

return function(seconds, start, count)
  local now = core.gettimemonotonic
  core.add_timeout(now() + 1000, function()
    start()
    local t0, c0 = now(), os.clock()
    core.add_timeout(now() + seconds * 1000, function()
      local n, secs, cpu = count(), (now() - t0) / 1000, os.clock() - c0
      print(string.format('{"rate":%.0f,"cpu_us_per_msg":%.3f}', n / secs, n > 0 and cpu * 1e6 / n or 0))
      io.stdout:flush()
      os.exit(0)
    end)
  end)
end
