--- turbo_ws.websocket_stream -- `self.stream` of a WebSocketHandler: the
-- part of Turbo's IOStream that makes sense on an upgraded connection.
--
-- In Turbo a WebSocketHandler's `self.stream` is the connection's raw
-- IOStream. Programs use it to drop a client (`self.stream:close()`:
-- the TCP connection goes at once, without a close frame, and on_close
-- follows), to ask whether it is gone (`closed()`) and to hear of its
-- end (`set_close_callback`). Reading and writing raw bytes would
-- corrupt the WebSocket framing the core owns, so those methods are not
-- offered. What each method does: docs/api/turbo.md.

local class = require "turbo_ws.class"
local log = require "turbo_ws.log"

local type, tostring, xpcall, error = type, tostring, xpcall, error

local IOStream = class("WebSocketIOStream")

--- `owner` is the WebSocketHandler; its core connection is owner._conn
-- (nil until the upgrade).
function IOStream:initialize(owner)
  self._owner = owner
end

--- Drops the TCP connection now: no close frame, queued messages are
-- discarded, on_close follows (with 1006) from the loop. Before the
-- upgrade (in prepare()) the request is refused instead (403), as
-- self:close() there does. Closing twice is harmless.
function IOStream:close()
  local owner = self._owner
  local conn = owner._conn
  if conn == nil then
    owner._closed = true
    return
  end
  if conn:state() ~= "closed" then
    self._dropped = true
    conn:abort()
  end
end

--- True once the connection is closing or closed (or, before the
-- upgrade, once close() was called).
function IOStream:closed()
  local conn = self._owner._conn
  if conn == nil then return self._owner._closed == true end
  local state = conn:state()
  return state == "closing" or state == "closed"
end

--- True from the upgrade until the connection closes: the core reads
-- it all the time.
function IOStream:reading()
  local conn = self._owner._conn
  if conn == nil then return false end
  local state = conn:state()
  return state == "connecting" or state == "open"
end

--- True while bytes are queued for the peer and not yet written.
function IOStream:writing()
  local conn = self._owner._conn
  return conn ~= nil and conn:buffered_amount() > 0
end

--- `callback(arg)` (or `callback()` without arg) is called once when the
-- connection has ended, before the handler's on_close. A later call
-- replaces the callback.
function IOStream:set_close_callback(callback, arg)
  if callback ~= nil and type(callback) ~= "function" then
    error("set_close_callback: bad argument #1 'callback' (function expected, got " .. type(callback) .. ")", 2)
  end
  self._close_callback, self._close_callback_arg = callback, arg
end

--- Accepted for Turbo programs; the largest message is the listener's
-- `max_message_size` (Application:listen kwargs), fixed per connection.
function IOStream:set_max_buffer_size() end

-- Runs the close callback, once, when the connection has ended. An error
-- in it is logged, as Turbo's IOStream did.
function IOStream:_closed_now()
  local callback, arg = self._close_callback, self._close_callback_arg
  if callback == nil then return end
  self._close_callback, self._close_callback_arg = nil, nil
  local ok, err = xpcall(function()
    if arg ~= nil then callback(arg) else callback() end
  end, debug.traceback)
  if not ok then
    log.error("[websocket.lua] Error in the stream's close callback: " .. tostring(err))
  end
end

return IOStream
