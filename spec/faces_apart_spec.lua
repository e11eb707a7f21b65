-- The coro-websocket and evlua faces stand on the core alone: a program
-- that only asks for them (through turbo_ws.compat) gets none of the Turbo
-- face's modules or globals, while `require "turbo_ws"` (a drop-in for
-- `require "turbo"`) still defines them. Each case is a fresh process.
local function run(code)
  local p = assert(io.popen(("LUA_CPATH='./build/?.so;;' luajit -e %q 2>&1"):format(code)))
  local out = p:read("*a")
  p:close()
  return (out:gsub("%s+$", ""))
end

local PROBE = [[
  local turbo_face = {}
  for _, m in ipairs({ "turbo_ws", "turbo_ws.main", "turbo_ws.web", "turbo_ws.websocket", "turbo_ws.escape" }) do
    if package.loaded[m] then turbo_face[#turbo_face + 1] = m end
  end
  print(type(rawget(_G, "class")), table.concat(turbo_face, ","))
]]

describe("faces apart", function()
  it("coro-websocket through turbo_ws.compat loads no Turbo module and defines no class", function()
    assert.are.equal("nil", run([[require "turbo_ws.compat"; assert(require("coro-websocket").connect)]] .. PROBE))
  end)

  it("evlua's modules through turbo_ws.compat load no Turbo module and define no class", function()
    assert.are.equal("nil", run([[require "turbo_ws.compat"
      assert(require("service_utils.WS.web_socket").connect)
      assert(require("service_utils.WS.ws_util").send_msg)]] .. PROBE))
  end)

  it("require 'turbo' through turbo_ws.compat, or require 'turbo_ws', defines Turbo's globals", function()
    assert.truthy(run([[require "turbo_ws.compat"; require "turbo"]] .. PROBE):match("^table\tturbo_ws"))
    assert.truthy(run([[require "turbo_ws"]] .. PROBE):match("^table\tturbo_ws"))
  end)

  it("turbo_ws.compat's return value reads through to the turbo_ws table", function()
    assert.are.equal("function\ttrue", run([[local t = require "turbo_ws.compat"
      print(type(t.run), t.websocket == require("turbo_ws").websocket)]]))
  end)
end)
