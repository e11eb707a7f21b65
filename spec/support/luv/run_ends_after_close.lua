-- uv.run() must return when libuv's only work is done in its first
-- "nowait" turn: a handle closed before the loop (libuv is alive until its
-- close callback ran), and again for a second uv.run(), as luvit's init
-- runs it after the program's loop for its exit hooks.
require "turbo_ws"
local uv = require "luv"

local closed = 0
local function close_one()
  local h = uv.new_timer()
  h:close(function() closed = closed + 1 end)
end

close_one()
uv.run()
print("first uv.run returned, closed " .. closed)
close_one()
uv.run()
print("second uv.run returned, closed " .. closed)
