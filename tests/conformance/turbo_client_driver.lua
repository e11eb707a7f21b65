-- Autobahn fuzzingserver driver written against the Turbo face: one
-- WebSocketClient per case, as a Turbo program would use it, echoing every
-- message (binary stays binary) until the connection is over; the next case
-- starts from on_close / on_error. Environment: AUTOBAHN_URL, AUTOBAHN_AGENT.
local turbo = require "turbo_ws"

local base = os.getenv("AUTOBAHN_URL") or "ws://127.0.0.1:9001"
local agent = os.getenv("AUTOBAHN_AGENT") or "turbo_ws"
local ioloop = turbo.ioloop.instance()
turbo.log.disable_all()

-- One session on `path`; `done(first message)` once it is over.
local function session(path, done)
  local first, over = nil, false
  local function finish()
    if over then return end
    over = true
    done(first)
  end
  turbo.websocket.WebSocketClient(base .. path, {
    request_timeout = 60, connect_timeout = 10,
    on_message = function(self, msg, binary)
      first = first or msg
      self:write_message(msg, binary)
    end,
    on_close = finish,
    on_error = finish,
  })
end

session("/getCaseCount", function(first)
  local count = tonumber(first)
  if not count then
    io.stderr:write("turbo client driver: no case count\n")
    os.exit(1)
  end
  local case = 0
  local function next_case()
    case = case + 1
    if case <= count then
      session("/runCase?case=" .. case .. "&agent=" .. agent, next_case)
    else
      session("/updateReports?agent=" .. agent, function()
        print("turbo client driver: ran " .. count .. " cases")
        ioloop:close()
      end)
    end
  end
  next_case()
end)

ioloop:start()
