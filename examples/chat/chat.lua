--- A small chat room: a browser page (static/) talking JSON over WebSocket
-- to this server, written against Turbo.lua's API (turbo.web + turbo.websocket).
--
--   luajit examples/chat/chat.lua [port [host]]       (or `make demo`)
--
-- Defaults: 127.0.0.1:8888; CHAT_PORT and CHAT_HOST set them too, the
-- arguments win. Port 0 picks a free port. The URL to open is printed.
-- Ctrl-C (SIGINT) or SIGTERM: every browser gets close 1001, exit code 0.
--
-- Messages (JSON text), browser -> server:
--   {"type":"join","nick":"ada"}          sign in (once per connection)
--   {"type":"say","text":"hello"}         say something to everyone
-- server -> browser:
--   {"type":"welcome","nick":..,"users":[..],"history":[message..]}
--   {"type":"join"|"leave","nick":..,"time":ms,"users":[..]}
--   {"type":"message","from":..,"text":..,"time":ms}
--   {"type":"error","text":..}
-- Times are milliseconds since the epoch; the page shows them local.
--
-- The room lives on a pub/sub hub: the in-process `memory` backend by
-- default; with REDIS_URL set (e.g. redis://127.0.0.1:6379) the server
-- starts CHAT_WORKERS (default 2) worker processes on the one port, and they
-- share the room through Redis.
_G.TURBO_SSL = true -- Turbo needs it for WebSocket; turbo_ws accepts it
local turbo = require "turbo_ws"

local json_encode, json_decode = turbo.escape.json_encode, turbo.escape.json_decode
local now = turbo.util.gettimeofday -- ms

local MAX_NICK = 20      -- characters
local MAX_TEXT = 500     -- characters
local HISTORY = 50       -- messages a newcomer sees

local redis_url = os.getenv("REDIS_URL")
if redis_url then
  -- First thing: fork the workers before any socket or timer exists.
  turbo.workers(tonumber(os.getenv("CHAT_WORKERS")) or 2)
end
local hub = turbo.pubsub.new(redis_url and {
  backend = "redis", url = redis_url,
  on_error = function(kind, message) turbo.log.warning("chat: redis " .. kind .. ": " .. message) end,
} or { backend = "memory" })

local port = tonumber(arg[1] or os.getenv("CHAT_PORT")) or 8888
local host = arg[2] or os.getenv("CHAT_HOST") or "127.0.0.1"
local here = (arg[0] or ""):match("^(.*)/") or "."
local static = here .. "/static/"

--------------------------------------------------------------------------
-- The room. Every join, leave and message goes through the hub, so all
-- processes see the same events in the same order; each one keeps the
-- room's roster and history from them and passes them to its own browsers.

local ROOM = "chat:room"
local members = {}   -- this process's signed-in handlers -> nick
local roster = {}    -- lower-case nick -> nick, for the whole room
local history = {}

local function nicknames()
  local list = {}
  for _, nick in pairs(roster) do list[#list + 1] = nick end
  table.sort(list, function(a, b) return a:lower() < b:lower() end)
  return list
end

local function publish(event)
  local ok, _, err = hub:publish(ROOM, event)
  if not ok then turbo.log.warning("chat: event not published: " .. tostring(err)) end
end

-- An event from the hub: update the room, then tell this process's browsers.
hub:subscribe(ROOM, function(message)
  local ok, event = pcall(json_decode, message)
  if not ok or type(event) ~= "table" then return end
  if event.type == "join" then
    roster[event.nick:lower()] = event.nick
  elseif event.type == "leave" then
    roster[event.nick:lower()] = nil
  elseif event.type == "message" then
    history[#history + 1] = event
    if #history > HISTORY then table.remove(history, 1) end
  end
  if event.type ~= "message" then event.users = nicknames() end
  local text = json_encode(event)
  for handler in pairs(members) do
    if not handler:closed() then handler:write_message(text) end
  end
end)

-- Number of UTF-8 characters (the core has already checked the encoding).
local function length(s)
  return #s:gsub("[\128-\191]", "")
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- A nickname: 1..MAX_NICK characters, no control characters, not taken.
local function check_nick(nick)
  if type(nick) ~= "string" then return nil, "Choose a nickname." end
  nick = trim(nick)
  if nick == "" then return nil, "Choose a nickname." end
  if length(nick) > MAX_NICK then
    return nil, "Nicknames have at most " .. MAX_NICK .. " characters."
  end
  if nick:find("%c") then return nil, "That nickname has control characters." end
  if roster[nick:lower()] then
    return nil, "“" .. nick .. "” is taken, choose another nickname."
  end
  return nick
end

-- A message: control characters (newlines, tabs) become spaces.
local function check_text(text)
  if type(text) ~= "string" then return nil end
  text = trim(text:gsub("%c", " "))
  if text == "" then return nil end
  if length(text) > MAX_TEXT then
    return nil, "Messages have at most " .. MAX_TEXT .. " characters."
  end
  return text
end

--------------------------------------------------------------------------
-- One WebSocket connection: one browser tab.

local ChatHandler = class("ChatHandler", turbo.websocket.WebSocketHandler)

-- Only pages served by this server may connect (no cross-site sockets).
function ChatHandler:prepare()
  local origin, host_header = self.origin, self.request.headers:get("Host")
  if origin and origin ~= "http://" .. tostring(host_header) then
    turbo.log.warning("chat: refused origin " .. tostring(origin))
    self:close()
  end
end

function ChatHandler:send(event)
  if not self:closed() then self:write_message(json_encode(event)) end
end

function ChatHandler:on_message(msg, binary)
  local ok, event = pcall(json_decode, msg)
  if binary or not ok or type(event) ~= "table" then
    return self:send({ type = "error", text = "Messages are JSON objects." })
  end
  if event.type == "join" then
    if members[self] then return self:send({ type = "error", text = "Already signed in." }) end
    local nick, err = check_nick(event.nick)
    if not nick then return self:send({ type = "error", text = err }) end
    members[self] = nick
    roster[nick:lower()] = nick -- at once, so a second tab here cannot take it too
    self:send({ type = "welcome", nick = nick, users = nicknames(), history = history })
    publish({ type = "join", nick = nick, time = now() })
  elseif event.type == "say" then
    local from = members[self]
    if not from then return self:send({ type = "error", text = "Sign in first." }) end
    local text, err = check_text(event.text)
    if not text then
      if err then self:send({ type = "error", text = err }) end
      return
    end
    publish({ type = "message", from = from, text = text, time = now() })
  else
    self:send({ type = "error", text = "Unknown message type." })
  end
end

function ChatHandler:on_close()
  local nick = members[self]
  if not nick then return end
  members[self] = nil
  publish({ type = "leave", nick = nick, time = now() })
end

--------------------------------------------------------------------------
-- Routes, listening, stopping.

local app = turbo.web.Application({
  { "^/$", turbo.web.StaticFileHandler, static .. "index.html" },
  { "^/static/(.+)$", turbo.web.StaticFileHandler, static },
  { "^/ws$", ChatHandler },
}, { application_name = "turbo_ws chat" })

local server = app:listen(port, host, {
  max_message_size = 8192, -- far more than MAX_TEXT characters need
  ping_interval = 30,      -- notice browsers that vanished without a close
  idle_timeout = 75,
  reuse_port = redis_url ~= nil, -- the workers share the port
})
local shown_host = host:find(":", 1, true) and "[" .. host .. "]" or host
print(("chat: open http://%s:%d/ in a browser (Ctrl-C stops)"):format(shown_host, server:port()))

-- Graceful stop: no new connections, close 1001 ("going away") to every
-- browser, then end the loop so the program exits with 0. Needs the core's
-- on_signal; without it a signal simply ends the process.
local stopping = false
local function stop(name)
  if stopping then return end
  stopping = true
  print("chat: " .. name .. ", closing " .. #nicknames() .. " member(s)")
  app:close()
  turbo.shutdown(3, function()
    hub:close()
    turbo.ioloop.instance():close()
  end)
end

local graceful = turbo.on_signal ~= nil
if graceful then
  turbo.on_signal("SIGINT", function() stop("SIGINT") end)
  turbo.on_signal("SIGTERM", function() stop("SIGTERM") end)
end
print("chat: graceful stop on SIGINT/SIGTERM: " .. (graceful and "yes" or "no"))
io.stdout:flush()

turbo.ioloop.instance():start()
