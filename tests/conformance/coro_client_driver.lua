-- Autobahn fuzzingserver driver written against the coro-websocket face:
-- the same protocol as client_driver.lua (which uses the core directly),
-- but as a luvit program would do it: one coroutine, connect/read/write,
-- echoing every text and binary message until read() returns nil.
-- Environment: AUTOBAHN_URL, AUTOBAHN_AGENT.
local turbo_ws = require "turbo_ws"
local websocket = require "turbo_ws.coro_websocket"

local base = os.getenv("AUTOBAHN_URL") or "ws://127.0.0.1:9001"
local agent = os.getenv("AUTOBAHN_AGENT") or "turbo_ws"
local server = assert(websocket.parseUrl(base))

-- One session on `pathname`: echoes every message until the connection is
-- over; returns the first message (the case count for /getCaseCount).
local function session(pathname)
  local res, read, write = websocket.connect({
    host = server.host, port = server.port, tls = server.tls,
    pathname = pathname, -- sent verbatim, query included
    timeout = 60000,
  })
  if not res then
    io.stderr:write("connect " .. pathname .. " failed: " .. tostring(read) .. "\n")
    return nil
  end
  local first
  for msg in read do
    -- Pings are already answered and closes echoed; only data is echoed.
    if msg.opcode == 1 or msg.opcode == 2 then
      first = first or msg.payload
      write({ opcode = msg.opcode, payload = msg.payload })
    end
  end
  return first
end

local function main()
  local count = tonumber(session("/getCaseCount"))
  if not count then
    io.stderr:write("coro client driver: no case count\n")
    os.exit(1)
  end
  for i = 1, count do
    session("/runCase?case=" .. i .. "&agent=" .. agent)
  end
  session("/updateReports?agent=" .. agent)
  print("coro client driver: ran " .. count .. " cases")
end

coroutine.wrap(function()
  local ok, err = xpcall(main, debug.traceback)
  if not ok then
    io.stderr:write("coro client driver: ", tostring(err), "\n")
    os.exit(1)
  end
end)()

turbo_ws.run()
