-- turbo_ws.pubsub: channels shared between processes and machines.
--
--   local hub = turbo_ws.pubsub.new{ backend = "redis", url = "redis://127.0.0.1:6379",
--                                     on_error = function(kind, message) end }
--   local token = hub:subscribe("room:1", function(message, channel) ... end)
--   hub:publish("room:1", "hello")          -- tables are sent as JSON
--   hub:unsubscribe(token)                  -- or hub:unsubscribe("room:1")
--   hub:close()
--
-- The hub is native (src/engine/pubsub/, src/binding/pubsub.rs); docs/scale-out.md documents it.
local core = require "turbo_ws.core"

return {
  --- new([options]) -> hub. options.backend: "memory" (default) or "redis".
  new = core.pubsub,
  backends = { "memory", "redis" },
}
