--- turbo_ws.evlua -- the evlua face: `require("turbo_ws").evlua`.
--
-- `web_socket`, `ws_util` and `ws_const` are evlua's
-- `service_utils.WS.*` modules (turbo_ws.compat aliases those names to the
-- same tables); `serve` is the server entry that evlua's C++ server
-- provides: it runs `handle_request(request, response)` per HTTP request
-- and, once `ws.accept` succeeds, dispatches the connection's frames to
-- the handler module named by the URL path.
local wait = require "turbo_ws.evlua.wait"
local core = require "turbo_ws.core"

return {
  web_socket = require "turbo_ws.evlua.web_socket",
  ws_util = require "turbo_ws.evlua.ws_util",
  ws_const = require "turbo_ws.evlua.ws_const",
  serve = require("turbo_ws.evlua.http").serve,
  -- The one evlua platform call its WebSocket samples need:
  -- `platform.ev_hibernate(seconds)` sleeps without blocking the loop.
  platform = { ev_hibernate = wait.sleep },
  -- turbo_ws extension: graceful stop of every connection (close 1001) and
  -- server, then on_done(); see docs/core.md.
  shutdown = core.shutdown,
}
