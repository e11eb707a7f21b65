-- Helpers shared by the turbo.websocket specs (spec/turbo_websocket_*_spec.lua),
-- on top of spec/turbo_support.lua; not a spec itself. Loaded with
-- `local T = require "spec.support.turbo_websocket"`.
--
--   T.serve(routes, ...)        an Application on a free port, closed when
--                               the spec ends; returns the port and the app
--   T.url(port, path, scheme)   ws://127.0.0.1:port/ws by default
--   T.closed_port()             a port nothing listens on
--   T.Echo                      a WebSocketHandler that echoes
--   T.client_events(address, kwargs, ms)
--                               runs one WebSocketClient to its end and
--                               returns the callbacks it got, in order
--   T.find_event, T.event_names look into that list
-- busted's assert lives in the specs' environment, not in this module's.
local assert = require "luassert"
local turbo = require "turbo_ws"
local S = require "spec.turbo_support"
local ws = turbo.websocket
local web = turbo.web
local core = turbo.core
local errors = ws.errors

local function url(port, path, scheme)
  return (scheme or "ws") .. "://127.0.0.1:" .. port .. (path or "/ws")
end

-- An Application on a free port, closed when the spec ends.
local function serve(routes, app_kwargs, listen_kwargs)
  local app = web.Application(routes, app_kwargs)
  local server = app:listen(0, "127.0.0.1", listen_kwargs)
  S.finally(function() app:close(); S.drain(100) end)
  return server:port(), app
end

-- A port nothing listens on.
local function closed_port()
  local fd, port = S.raw.listen()
  S.raw.close(fd)
  return port
end

local Echo = class("Echo", ws.WebSocketHandler)
function Echo:on_message(msg, binary) self:write_message(msg, binary) end

-- Runs one client against `port` until on_close or on_error; returns the
-- list of events and whether it finished in time.
-- Fails the spec when the client neither closed nor failed within `ms`.
local function client_events(address, kwargs, ms)
  local events = {}
  kwargs = kwargs or {}
  -- Records the call, then runs the spec's own callback, then `after`.
  local function record(name, after)
    local user = kwargs[name]
    kwargs[name] = function(self, ...)
      events[#events + 1] = { name, ... }
      if after then after() end
      if user then return user(self, ...) end
    end
  end
  local ok = S.loop(function(done)
    record("on_close", done)
    -- A failed connect has no on_close: finish soon after on_error.
    record("on_error", function() S.after(100, done) end)
    ws.WebSocketClient(address, kwargs)
  end, ms)
  assert(ok, "the client neither closed nor failed in time")
  return events, ok
end

local function find_event(events, name)
  for _, e in ipairs(events) do
    if e[1] == name then return e end
  end
end

local function event_names(events)
  local names = {}
  for i, e in ipairs(events) do names[i] = e[1] end
  return names
end

return {
  turbo = turbo,
  ws = ws,
  web = web,
  core = core,
  errors = errors,
  url = url,
  serve = serve,
  closed_port = closed_port,
  Echo = Echo,
  client_events = client_events,
  find_event = find_event,
  event_names = event_names,
}
