-- Bench server: echo through the native core API, the message handled in Lua.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
core.listen({ host = "127.0.0.1", port = tonumber(arg[1]), read_buffer_size = tonumber(os.getenv("BENCH_RBS")) }, function(req)
  local conn = req:upgrade()
  if conn then
    conn:set_callbacks{ on_message = function(msg, binary) conn:send(msg, binary) end }
  end
end)
turbo_ws.run()
