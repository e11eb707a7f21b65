-- Autobahn fuzzingserver driver: runs every case with a turbo_ws client
-- that echoes each message, then asks the server to write its reports.
-- Environment: AUTOBAHN_URL, AUTOBAHN_AGENT.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local base = os.getenv("AUTOBAHN_URL") or "ws://127.0.0.1:9001"
local agent = os.getenv("AUTOBAHN_AGENT") or "turbo_ws"

-- Connects to `path`, echoes messages, calls done(first_message) when closed.
local function session(path, done)
  local first
  core.connect(base .. path, { max_message_size = 64 * 1024 * 1024 }, function(conn, kind, msg)
    if not conn then
      io.stderr:write("connect " .. path .. " failed: " .. tostring(kind) .. ": " .. tostring(msg) .. "\n")
      return done(nil)
    end
    conn:set_callbacks{
      on_message = function(data, binary)
        first = first or data
        conn:send(data, binary)
      end,
      on_close = function() done(first) end,
    }
  end)
end

local function run_cases(i, count)
  if i > count then
    session("/updateReports?agent=" .. agent, function()
      print("client driver: ran " .. count .. " cases")
    end)
    return
  end
  session("/runCase?case=" .. i .. "&agent=" .. agent, function()
    run_cases(i + 1, count)
  end)
end

session("/getCaseCount", function(count)
  count = tonumber(count)
  if not count then
    io.stderr:write("client driver: no case count\n")
    os.exit(1)
  end
  run_cases(1, count)
end)

turbo_ws.run()
