-- The parts of Turbo's `turbo.util` that WebSocket programs use.
local core = require "turbo_ws.core"

local util = {}

--- Milliseconds on the monotonic clock; `add_timeout` takes these.
util.gettimemonotonic = core.gettimemonotonic
--- Milliseconds since the Unix epoch.
util.gettimeofday = core.gettimeofday

return util
