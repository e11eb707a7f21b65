-- Shared by the luv programs: an echo server on the core, and CPU time.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local M = {}

function M.echo_server()
  return core.listen({ host = "127.0.0.1", port = 0 }, function(req)
    local conn = req:upgrade()
    if conn then conn:set_callbacks{ on_message = function(m, b) conn:send(m, b) end } end
  end)
end

--- This process's CPU time in clock ticks (user + system).
function M.cpu_ticks()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for v in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = v end
  return tonumber(fields[12]) + tonumber(fields[13])
end

return M
