-- `require "turbo_ws.compat"` (or `luajit -l turbo_ws.compat app.lua`) lets an
-- unmodified program's `require "turbo"` (and the other faces' original
-- module names) resolve to turbo_ws.
local turbo_ws = require "turbo_ws"

local aliases = {
  turbo = function() return turbo_ws end,
}

for name, loader in pairs(aliases) do
  package.preload[name] = loader
end

return turbo_ws
