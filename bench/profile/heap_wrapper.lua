-- Runs a bench server (arg[1]: its file; the rest: its arguments) and
-- writes the Lua heap in KiB, after a full collection, to the file
-- $HEAP_OUT once a second. $PAUSE sets the GC pause first. With
-- $GARBAGE set the collector is stopped and nothing is collected: the
-- figure is then everything Lua allocated (live objects and garbage).
local core = require("turbo_ws").core
if os.getenv("PAUSE") then collectgarbage("setpause", tonumber(os.getenv("PAUSE"))) end
local garbage = os.getenv("GARBAGE") ~= nil
if garbage then collectgarbage("stop") end
local out = assert(os.getenv("HEAP_OUT"), "HEAP_OUT not set")
core.set_interval(1000, function()
  if not garbage then collectgarbage("collect") end
  local f = assert(io.open(out, "w"))
  f:write(string.format("%.1f\n", collectgarbage("count")))
  f:close()
end, nil, false)
local file = table.remove(arg, 1)
dofile(file)
