-- A write to a connection the peer has dropped fails for that connection
-- only: turbo_ws ignores SIGPIPE (as Turbo's IOLoop and luvit do), so the
-- writev of a TLS record to a reset socket cannot end the process.
local P = require "spec.support.peer"

describe("SIGPIPE", function()
  it("is ignored once turbo_ws is loaded", function()
    local status, out = P.run_luajit([[
require "turbo_ws"
for line in io.lines("/proc/self/status") do
  local mask = line:match("^SigIgn:%s*(%x+)")
  if mask then print("SIGPIPE ignored", math.floor(tonumber(mask:sub(-4), 16) / 0x1000) % 2 == 1) end
end
]])
    assert.are.equal(0, status, out)
    assert.truthy(out:find("SIGPIPE ignored\ttrue", 1, true), out)
  end)

  it("does not end a wss server whose TLS clients drop their connections", function()
    local dir = P.tmpdir()
    local ok = os.execute(("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
      .. "-days 2 -subj /CN=localhost -keyout key.pem -out cert.pem >/dev/null 2>&1"):format(dir))
    assert(ok == true or ok == 0, "openssl failed")
    P.write_file(dir .. "/server.lua", ([[
local core = require("turbo_ws").core
local server = core.listen({ host = "127.0.0.1", port = 0,
  tls = { cert_file = "%s/cert.pem", key_file = "%s/key.pem" } }, function(req) req:respond(200) end)
local f = io.open("%s/port", "w"); f:write(server:port()); f:close()
core.add_timeout(core.gettimemonotonic() + 6000, function() core.close() end)
core.start()
print("server ran to the end")
]]):format(dir, dir, dir))
    local status, out = P.run(("cd '%s' && (LUA_CPATH='%s/build/?.so;;' timeout 20 luajit server.lua > server.out 2>&1; "
      .. "echo \"server exit $?\" >> server.out) & "
      .. "for i in $(seq 100); do [ -s '%s/port' ] && break; sleep 0.1; done; "
      .. "timeout 15 python3 '%s/spec/support/tls_drop_peer.py' $(cat '%s/port') 40; wait; cat '%s/server.out'")
      :format(dir, os.getenv("PWD"), dir, os.getenv("PWD"), dir, dir))
    os.execute("rm -rf '" .. dir .. "'")
    assert.are.equal(0, status, out)
    assert.truthy(out:find("dropped 40", 1, true), out)
    assert.truthy(out:find("server ran to the end\nserver exit 0", 1, true), out)
  end)
end)
