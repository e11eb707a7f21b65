--- turbo_ws.evlua.socket -- evlua's stream sockets (the `_ss` of a
-- connection table) over turbo_ws connections.
--
-- Every upgraded connection, server or client side, is one Socket. Its
-- `_ss` handle is a userdata (as evlua's is) that prints as
-- "streamsocket:N" and leads back to the Socket. Incoming frames either go
-- to a handler module one at a time, in order (server sockets, and client
-- sockets opened with a msg_handler), or wait in a queue for
-- `ws_util.recv_frame`.
local core = require "turbo_ws.core"
local toolkit = require "turbo_ws.toolkit"
local wait = require "turbo_ws.evlua.wait"
local fast_send = require "turbo_ws.fast_send"
local C = require "turbo_ws.evlua.ws_const"
local msg = require "turbo_ws.evlua.msg"

local M = {}

--- evlua's default send / receive timeout, seconds.
M.DEFAULT_TIMEOUT = 40
--- How long `close` waits for the closing handshake (the core gives up
-- after its close_timeout, 5 s by default).
M.CLOSE_WAIT = 10

local running = coroutine.running
local traceback = debug.traceback

local new_msg = msg.new
local cbuf, received = msg.cbuf, msg.received

local STATE = {} -- key, in a handle's metatable, of its Socket
local MAIN = {} -- frames key when not in a coroutine
local OP_CLOSE = C.FRAME_OP_CLOSE
local count = 0

local Socket = {}
Socket.__index = Socket

local function now() return core.gettimemonotonic() end

M.cbuf = msg.cbuf

------------------------------------------------------------------------
-- Incoming frames

--- The `msg` table of evlua (turbo_ws.evlua.msg) for a frame this socket
-- received, its `n` bytes in `buf` (made for this frame).
function Socket:make_msg(op, buf, n)
  return new_msg(self.role, op, buf, n, self.proxy)
end

function Socket:push(item)
  self.inbox:push(item)
  if self.handler then
    self:drain()
  else
    -- Every reader looks; the first takes the frame, the rest wait on.
    self:wake_all("recv_waiters")
  end
  -- While a frame waits here (nobody reading, the handler busy), the core
  -- reads nothing more, as evlua did not read a socket nobody read from.
  self.inbox:hold_back()
end

function Socket:wake(slot)
  local waiter = self[slot]
  if waiter then
    self[slot] = nil
    waiter(true)
  end
end

-- Waiters of one kind (coroutines in recv_frame, senders waiting for
-- room), several per socket: each is a wait.wait `finish`, kept in the
-- list self[slot] until the next wake_all(slot) calls them all (a finish
-- called twice, after its timeout, does nothing).
function Socket:add_waiter(slot, finish)
  local waiters = self[slot]
  if not waiters then waiters = {}; self[slot] = waiters end
  waiters[#waiters + 1] = finish
end

function Socket:wake_all(slot)
  local waiters = self[slot]
  if not waiters then return end
  self[slot] = nil
  for i = 1, #waiters do waiters[i](true) end
end

-- The frame each running dispatch is handling, by coroutine:
-- `ws.handle_msg` reads it, as evlua's reads the "accepted stream socket".
local frames = setmetatable({}, { __mode = "k" })
local dispatcher, looked_up

--- Sets the function the loop runs per message: `fn(request, response,
-- frame)` (web_socket's runs `ws.handle_msg`, or the same work on `frame`
-- when ws.handle_msg is not wrapped), and `lookup()`, true when `fn` will
-- ask `current_frame()` for the frame (ws.handle_msg is wrapped).
function M.set_dispatcher(fn, lookup) dispatcher, looked_up = fn, lookup end

--- The frame being dispatched on this coroutine, when the dispatcher
-- looks it up: `{socket=, msg=}` or nil.
function M.current_frame()
  return frames[running() or MAIN]
end

-- The socket's one frame record is reused: a socket dispatches one frame
-- at a time, and the record is only read while its dispatch runs.
-- It is filed under the coroutine only when the dispatcher looks it up:
-- coroutine.running is not compiled by LuaJIT (the trace stops there),
-- and that cost every message ~50 ns.
-- (Local functions, also the Socket's methods: on the path of every
-- message a call of an upvalue costs the JIT's code less than a method
-- looked up through the Socket's metatable.)
local function dispatch(self, op, buf, n)
  if op == nil or op == OP_CLOSE then return end
  local frame = self.frame
  frame.msg = new_msg(self.role, op, buf, n, self.proxy)
  local key, outer
  if looked_up() then
    key = running() or MAIN
    outer = frames[key]
    frames[key] = frame
  end
  local ok, err = xpcall(dispatcher, traceback, self.request, self.response, frame)
  if key then frames[key] = outer end
  frame.msg = nil
  if not ok then toolkit.report("turbo_ws.evlua", "error in handler module '" .. self.handler .. "'", err) end
end

-- One message at a time, in order, each in its own coroutine: a handler
-- that yields holds back the messages behind it; when it finishes, the
-- next one is started from a fresh loop callback.
local function dispatch_one(self, op, buf, n)
  self.busy = true
  dispatch(self, op, buf, n)
  self.busy = false
  if not self.inbox:is_empty() then core.add_callback(Socket.drain, self) end
end
Socket.dispatch_one = dispatch_one

function Socket:drain()
  if self.busy then return end
  local item = self.inbox:pop()
  if item then self:dispatch_one(item.op, item.buf, item.len) end
end

--- An incoming message or PING/PONG, its `n` bytes in `buf` (made for it).
-- With a handler and nothing queued or running it is dispatched at once,
-- without queueing (the same order and the same one-at-a-time rule as
-- going through the queue).
local function deliver(self, op, buf, n)
  if self.handler and not self.busy and self.inbox:is_empty() then
    dispatch_one(self, op, buf, n)
  else
    self:push{ op = op, buf = buf, len = n }
  end
end
Socket.deliver = deliver

-- A PING's or PONG's payload (a string from the core).
function Socket:deliver_control(op, payload)
  self:deliver(op, cbuf(payload), #payload)
end

-- What `recv_frame` gets after the last message.
local function final_item(self, code, reason)
  if self.failure then return { fail = self.failure } end
  if code == C.WS_RESERVED_ABNORMAL_CLOSE then
    return { fail = "the connection was closed without a closing handshake" }
  end
  local payload = toolkit.close_payload(code, reason)
  return { op = C.FRAME_OP_CLOSE, buf = cbuf(payload), len = #payload }
end

-- The peer's close frame (already echoed by the core), for recv_frame as
-- it arrives: a server that holds TCP open afterwards must not delay it.
function Socket:on_closing(code, reason)
  if not self.handler and not self.closing and not self.peer_closed then
    self.peer_closed = true
    self:push(final_item(self, code, reason))
  end
end

function Socket:on_close(code, reason)
  self.open = false
  M.pool_forget(self)
  -- A close we started is not a frame for recv_frame to return; the
  -- peer's was returned by on_closing.
  if not self.handler and not self.closing and not self.peer_closed then
    self:push(final_item(self, code, reason))
  end
  self:wake_all("recv_waiters")
  self:wake("close_waiter")
  self:wake_all("drain_waiters")
end

--- Waits for the next incoming frame; returns its msg table. Raises on
-- timeout (and closes the connection), on a failed or closed connection.
function Socket:recv(what, timeout)
  local deadline = now() + timeout * 1000
  while self.inbox:is_empty() do
    if self.done_reading or self.closing or not self.open then
      self:raise_closed(what)
    end
    local left = deadline - now()
    if left <= 0 then
      self.done_reading = true
      if self:alive() then
        self.closing = true
        self.conn:close(C.WS_ENDPOINT_GOING_AWAY, "receive timeout")
      end
      error(("%s: no frame within %g seconds"):format(what, timeout), 0)
    end
    wait.wait(function(finish) self:add_waiter("recv_waiters", finish) end, left / 1000)
  end
  local item = self.inbox:pop()
  if item.fail then
    self.done_reading = true
    error(what .. ": " .. item.fail, 0)
  end
  if item.op == C.FRAME_OP_CLOSE then self.done_reading = true end
  return self:make_msg(item.op, item.buf, item.len)
end

------------------------------------------------------------------------
-- Outgoing frames

--- Whether frames may still be sent.
function Socket:alive()
  local state = self.conn:state()
  return self.open and (state == "open" or state == "connecting")
end

--- Remembers why the connection failed, `kind: message` (the core's
-- error kind), as the first reason given: what the core reports as the
-- connection ends (on_error) does not replace the cause the face saw
-- first (a send that closed it, a send timeout that aborted it).
function Socket:note_failure(kind, message)
  if not self.failure then self.failure = kind .. ": " .. message end
end

--- Raises `what: the websocket is closed`, followed by the reason the
-- connection failed when there is one: `(<kind>: <message>)`.
function Socket:raise_closed(what)
  local why = self.failure
  if why then error(("%s: the websocket is closed (%s)"):format(what, why), 0) end
  error(what .. ": the websocket is closed", 0)
end

function Socket:check_alive(what)
  if not self:alive() then self:raise_closed(what) end
end

--- Sends one whole message. The core only queues; past `max_buffered`
-- it refuses, and we wait until it says the queue drained (`on_drain`),
-- up to `timeout`: real backpressure, nothing dropped.
-- The core also refuses once the connection is closing, so callers need
-- not ask for its state first (`check_alive`): a first refusal on a
-- connection that is no longer alive raises check_alive's error.
function Socket:send_message(what, payload, binary, timeout)
  -- The common case, queued at once (see turbo_ws.fast_send). Kept apart
  -- from the waiting below: LuaJIT does not compile a function that
  -- makes a closure, and this one runs for every message.
  local handle = self.send_handle
  if handle and type(payload) == "string"
     and fast_send(handle, payload, #payload, binary and 1 or 0) == 0 then
    return
  end
  return self:_send_or_wait(what, payload, binary, timeout)
end

--- Sends the `n` bytes at `ptr` (byte cdata) as one whole message when
-- the core takes it at once: fast_send writes or copies them before it
-- returns, so no Lua string is made of them. False when not sent (no
-- fast path, a fragmented message being collected, or any refusal):
-- nothing changed, and the caller sends the usual way, which raises or
-- waits as always.
function Socket:try_send_bytes(ptr, n, binary)
  local handle = self.send_handle
  return handle ~= nil and self.fragments == nil
     and fast_send(handle, ptr, n, binary and 1 or 0) == 0
end

function Socket:_send_or_wait(what, payload, binary, timeout)
  local deadline
  while true do
    local called, ok, kind, message = pcall(self.conn.send, self.conn, payload, binary)
    if not called then
      -- Misuse the core refused (text that is not UTF-8): evlua's error
      -- form, the core's reason, without its traceback.
      error(("%s: %s"):format(what, toolkit.core_reason(ok)), 0)
    end
    if ok then return end
    if kind ~= "too_big" or not self:alive() then
      -- A refusal for max_buffered that closed the connection
      -- (close_slow_readers, 1008): the reason of every later refusal too.
      if kind == "too_big" then self:note_failure(kind, message) end
      if self.failure or (not deadline and not self:alive()) then self:raise_closed(what) end
      error(("%s: the websocket is closed (%s)"):format(what, message or kind), 0)
    end
    deadline = deadline or now() + timeout * 1000
    local left = deadline - now()
    if left <= 0 then
      error(("%s: timed out waiting to send (%s)"):format(what, message), 0)
    end
    wait.wait(function(finish) self:add_waiter("drain_waiters", finish) end, left / 1000)
  end
end

-- flush_outside_loop's wait, a function of its own: LuaJIT does not
-- compile a function that makes a closure, and the server's per-message
-- path goes through flush_outside_loop (+7,000 instructions per message
-- with the closures there, callgrind, evlua 100x1 32 B).
-- It waits until the queue is written or the connection is over: a
-- closing connection still writes what was queued before its close frame.
local function wait_until_written(sock, timeout)
  wait.wait(function(finish)
    local function check()
      local conn = sock.conn
      if conn:state() == "closed" or conn:buffered_amount() == 0 then return finish() end
      core.add_timeout(now() + 1, check)
    end
    check()
  end, timeout)
end

--- evlua's sends are blocking writes: when one returns, its bytes are in
-- the kernel's buffer, or it raised. Here the loop writes, and on the
-- main thread with no loop running (a plain top-level script, as evlua's
-- client samples are) nothing would: the send runs the loop until the
-- socket took everything queued. A script may end right after a send that
-- returned: nothing it sent is left behind.
-- - The socket did not take it within `timeout` seconds (a peer that does
--   not read): raises `what: timed out waiting to send`, as evlua's write
--   raises on its send timeout, and aborts the connection (no closing
--   handshake: the core's close would still send the queue first). Part of
--   the frame may be in the kernel's buffer and cannot be recalled; with
--   the rest dropped, the peer gets a frame cut short, never the message,
--   so a program that sends it again does not send it twice. (evlua's
--   connection is as unusable after a write that timed out part-way.)
-- - The connection ended first: raises `what: the websocket is closed
--   (<why>)` when the core reported a failure (bytes not sent, a reset);
--   a clean end reports nothing, and means everything was written.
function Socket:flush_outside_loop(what, timeout)
  -- Server sockets send from handlers, with the loop running: their
  -- per-message path stops at this test.
  if self.role ~= "client" then return end
  local co, main = running()
  if (co and not main) or self.conn:buffered_amount() == 0 or core.running() then return end
  wait_until_written(self, timeout)
  if self.conn:state() == "closed" then
    if self.failure then self:raise_closed(what) end
    return
  end
  local left = self.conn:buffered_amount()
  if left > 0 then
    local reason = ("%d bytes not taken by the socket in %g s"):format(left, timeout)
    self:note_failure("timeout", "the connection was aborted after a send timed out (" .. reason .. ")")
    self.conn:abort()
    error(("%s: timed out waiting to send (%s); the connection was aborted: "
           .. "the message will not be delivered"):format(what, reason), 0)
  end
end

-- A CLOSE frame built by the caller: send its code and reason when the
-- code may be sent (the core's rule), else a plain 1000 (evlua's own close
-- payload is free text).
function Socket:close_with_payload(payload)
  local code, reason = toolkit.split_close_payload(payload)
  if not (code and core.valid_close_code(code)) then code, reason = C.WS_NORMAL_CLOSE, "" end
  self.closing = true
  if not pcall(self.conn.close, self.conn, code, reason) then
    self.conn:close(C.WS_NORMAL_CLOSE)
  end
end

--- Sends a control frame (PING, PONG, CLOSE).
function Socket:send_control(what, op, payload)
  if #payload > 125 then
    error(what .. ": a control frame payload must be at most 125 bytes", 0)
  end
  self:check_alive(what)
  if op == C.FRAME_OP_CLOSE then return self:close_with_payload(payload) end
  local send = op == C.FRAME_OP_PING and self.conn.ping or self.conn.pong
  local ok, kind, message = send(self.conn, payload)
  if not ok then
    error(("%s: the websocket is closed (%s)"):format(what, message or kind), 0)
  end
end

--- Sends one data frame of a message. The core sends whole messages only,
-- so fragments are collected here and the message goes out with the FIN
-- frame: the peer receives the same message, in one frame.
function Socket:send_data_frame(what, op, fin, payload, timeout)
  self:check_alive(what)
  local pending = self.fragments
  if op == C.FRAME_OP_CONT then
    if not pending then
      error(what .. ": a continuation frame without a message to continue", 0)
    end
    pending[#pending + 1] = payload
    if not fin then return end
    self.fragments = nil
    return self:send_message(what, table.concat(pending),
                             pending.op == C.FRAME_OP_BINARY, timeout)
  end
  if pending then
    error(what .. ": a new message before the fragmented one was finished", 0)
  end
  if fin then
    return self:send_message(what, payload, op == C.FRAME_OP_BINARY, timeout)
  end
  self.fragments = { op = op, payload }
end

--- Starts the closing handshake with `code` and waits until the
-- connection is closed (the peer answered, or the core gave up). The
-- queue goes out before the CLOSE; when the connection ended with a
-- failure the core reported (messages accepted for sending that were not
-- all written before the close timeout, a reset, a protocol error) it
-- raises `what: <kind>: <message>`, the connection closed all the same.
-- (Once the peer's CLOSE arrived the core reports no reset or timeout,
-- only bytes left unsent: a peer answering ours had read everything.)
function Socket:close(what, code, reason)
  self:check_alive(what)
  self.closing = true
  self.conn:close(code, reason)
  local deadline = now() + M.CLOSE_WAIT * 1000
  while self.open and now() < deadline do
    wait.wait(function(finish) self.close_waiter = finish end,
              (deadline - now()) / 1000)
  end
  if self.failure then error(what .. ": " .. self.failure, 0) end
end

------------------------------------------------------------------------
-- Handles and the pool

-- The core connection's callbacks, shared by every socket: the core
-- passes the socket first (set_callbacks' context), so an open socket
-- keeps no closures of its own (idle memory).
local CALLBACKS = {
  on_ping = function(sock, data) sock:deliver_control(C.FRAME_OP_PING, data) end,
  on_pong = function(sock, data) sock:deliver_control(C.FRAME_OP_PONG, data) end,
  on_error = function(sock, kind, message) sock:note_failure(kind, message) end,
  on_closing = function(sock, code, reason) sock:on_closing(code, reason) end,
  on_close = function(sock, code, reason) sock:on_close(code, reason) end,
  on_drain = function(sock) sock:wake_all("drain_waiters") end,
}
-- Messages go straight into their msg's buf (turbo_ws.message_copy):
-- the copy is made first, before anything could yield.
if msg.copies_messages then
  CALLBACKS._on_message_length = function(sock, n, binary)
    deliver(sock, binary and C.FRAME_OP_BINARY or C.FRAME_OP_TEXT, received(n), n)
  end
else
  CALLBACKS.on_message = function(sock, data, binary)
    sock:deliver(binary and C.FRAME_OP_BINARY or C.FRAME_OP_TEXT, cbuf(data), #data)
  end
end

-- `tostring(_ss)`, from the label its metatable holds.
local function handle_label(proxy) return getmetatable(proxy).label end

--- A Socket for an open core connection. `role` is "server" or "client";
-- `handler` the handler module name (nil: frames wait for recv_frame).
function M.new(conn, role, handler, request, response)
  count = count + 1
  local proxy = newproxy(true)
  local mt = getmetatable(proxy)
  mt.label = "streamsocket:" .. count
  mt.__tostring = handle_label
  local sock = setmetatable({
    conn = conn, role = role, handler = handler, proxy = proxy,
    send_handle = fast_send and conn:_send_handle() or nil,
    request = request, response = response,
    inbox = toolkit.queue(conn), busy = false, open = true,
  }, Socket)
  sock.frame = { socket = sock, msg = nil }
  mt[STATE] = sock
  conn:set_callbacks(CALLBACKS, sock)
  return sock
end

--- The Socket behind an `_ss` handle, or nil.
function M.of(ss)
  if type(ss) ~= "userdata" then return nil end
  local mt = getmetatable(ss)
  return type(mt) == "table" and rawget(mt, STATE) or nil
end

-- The process-wide pool of named sockets (ws_util.add_ws_to_pool): a
-- list per name, handed out in turn (evpoco's pool is a queue per name:
-- the socket taken goes back at its end).
local pool = {}

function M.pool_add(name, sock)
  local list = pool[name]
  if not list then list = {}; pool[name] = list end
  list[#list + 1] = sock
end

--- The next live socket pooled as `name`, or nil (dead ones are dropped).
function M.pool_get(name)
  local list = pool[name]
  while list and #list > 0 do
    local sock = table.remove(list, 1)
    if sock:alive() then
      list[#list + 1] = sock
      return sock
    end
  end
  pool[name] = nil
  return nil
end

function M.pool_forget(sock)
  for name, list in pairs(pool) do
    for i = #list, 1, -1 do
      if list[i] == sock then table.remove(list, i) end
    end
    if #list == 0 then pool[name] = nil end
  end
end

return M
