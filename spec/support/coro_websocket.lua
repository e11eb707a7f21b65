-- Helpers shared by the coro-websocket specs (spec/coro_websocket_*_spec.lua);
-- not a spec itself. Loaded with `local C = require "spec.support.coro_websocket"`.
--
--   C.co_run(body, ms)      runs body in a coroutine, as a luvit program does,
--                           and the loop under a guard that fails, not hangs
--   C.connect(options)      cws.connect, remembered for C.cleanup()
--   C.test_server(...)      a turbo_ws server that echoes and obeys commands
--   C.frame(...)            a frame built here, not by the code under test
--   C.need_certs()          a CA and a certificate it signed (openssl)
--   C.need_peer()           spec/support/coro_peer.py, started once per file
--   C.cleanup, C.stop_peer  for after_each and teardown
--
-- busted's assert and pending live in the specs' environment, not in this
-- module's: a spec file hands pending over as C.pending (see need_certs).
local assert = require "luassert"
local turbo_ws = require "turbo_ws"
-- In development mode (TURBO_WS_LUA_DIR) faces are found through
-- package.path, so load ours by name before checking the `turbo_ws` field.
local cws = require "turbo_ws.coro_websocket"
local loop = require "spec.support.loop"
local P = require "spec.support.peer"
local core = turbo_ws.core

local ROOT = os.getenv("PWD") or "."
local PYTHON = ROOT .. "/tests/conformance/.venv/py3/bin/python"

---------------------------------------------------------------------------
-- Helpers
---------------------------------------------------------------------------

-- The loop under a guard (returns whether it timed out), and under one
-- that fails the spec.
local run_bounded, run_loop = loop.run_guarded, loop.run_bounded

-- What a spec opened, so that a failing spec does not leave connections
-- that keep the next specs' loops busy.
-- Emptied in place, so that the specs' reference to it stays valid.
local opened = { servers = {}, conns = {}, sockets = {} }
local function cleanup()
  for _, s in ipairs(opened.servers) do s:close() end
  for _, c in ipairs(opened.conns) do if not c:closed() then c:abort() end end
  for _, s in ipairs(opened.sockets) do if not s:is_closing() then s:close() end end
  opened.servers, opened.conns, opened.sockets = {}, {}, {}
  run_bounded(2000)
end

-- cws.connect, remembering the socket for cleanup().
local function connect(options)
  local res, read, write = cws.connect(options)
  if res then opened.sockets[#opened.sockets + 1] = res.socket end
  return res, read, write
end

-- Runs body in a coroutine (as a luvit program does) and the loop until
-- idle; an error or failed assertion in the body fails the spec.
local co_run, assert_error_with = loop.co_run, loop.assert_error_with

local function sleep(co_ms)
  local co = coroutine.running()
  core.add_timeout(core.gettimemonotonic() + co_ms, function() coroutine.resume(co) end)
  coroutine.yield()
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- One frame as the raw peer sends it, built here rather than with the code
-- under test: unmasked unless extra.mask (then with the all-zero key, so the
-- payload bytes stay as they are).
local function frame(opcode, payload, extra)
  extra, payload = extra or {}, payload or ""
  local b1 = (extra.fin == false and 0 or 128) + (extra.rsv1 and 64 or 0) + opcode
  local m, len = extra.mask and 128 or 0, #payload
  assert(len < 65536, "frame(): payloads up to 64 KiB")
  local head = len < 126 and string.char(b1, m + len)
    or string.char(b1, m + 126, math.floor(len / 256), len % 256)
  return head .. (extra.mask and "\0\0\0\0" or "") .. payload
end

local read_file, write_file = P.read_file, P.write_file

-- A turbo_ws server for one spec. Echoes, and obeys text commands:
--   "cmd:ping:DATA", "cmd:close:CODE:REASON", "cmd:abort", "cmd:burst:N",
--   "cmd:stream:N" (N distinct binary messages of 64 KiB, 16 every 10 ms).
-- `seen` records the request, pongs and the close code the server got.
local function test_server(listen_opts, upgrade_opts)
  local seen = { pongs = {}, pings = {}, requests = {} }
  local opts = { host = "127.0.0.1", port = 0 }
  for k, v in pairs(listen_opts or {}) do opts[k] = v end
  local server = core.listen(opts, function(req, info)
    seen.requests[#seen.requests + 1] = info
    seen.info = info
    if info.path == "/forbidden" then return req:respond(403, nil, "nope") end
    local conn = assert(req:upgrade(upgrade_opts))
    opened.conns[#opened.conns + 1] = conn
    conn:set_callbacks{
      on_message = function(data, binary)
        local cmd, arg1, arg2 = data:match("^cmd:(%w+):?([^:]*):?(.*)$")
        if cmd == "ping" then conn:ping(arg1)
        elseif cmd == "close" then conn:close(tonumber(arg1), arg2)
        elseif cmd == "abort" then conn:abort()
        elseif cmd == "burst" then
          for i = 1, tonumber(arg1) do conn:send("m" .. i) end
        elseif cmd == "stream" then
          loop.stream(conn, tonumber(arg1))
        else conn:send(data, binary) end
      end,
      on_pong = function(data) seen.pongs[#seen.pongs + 1] = data end,
      on_ping = function(data) seen.pings[#seen.pings + 1] = data end,
      on_close = function(code, reason) seen.close = { code, reason } end,
    }
  end)
  opened.servers[#opened.servers + 1] = server
  return server, server:port(), seen
end

local function header(res_or_list, name)
  for _, h in ipairs(res_or_list) do
    if h[1]:lower() == name then return h[2] end
  end
end

---------------------------------------------------------------------------
-- External peers: certificates (openssl) and the Python peer
---------------------------------------------------------------------------

local M = {}

-- Marks the running spec pending; each spec file sets it to busted's.
function M.pending(why) error("pending: " .. why, 0) end
local function pending(why) M.pending(why) end

local tmpdir
local function temp_dir()
  tmpdir = tmpdir or P.tmpdir()
  return tmpdir
end

local certs -- {ca_file, cert_file, key_file, ca_pem} or false
local function need_certs()
  if certs == nil then
    local d = temp_dir()
    local cmd = "(" .. table.concat({
      "cd " .. d,
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        .. " -subj /CN=turbo-ws-test-ca -addext basicConstraints=critical,CA:TRUE"
        .. " -addext keyUsage=critical,keyCertSign -keyout ca.key -out ca.pem",
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost"
        .. " -keyout key.pem -out leaf.csr",
      "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
        .. "extendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf",
      "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        .. " -extfile ext.cnf -out cert.pem",
    }, " && ") .. ") >/dev/null 2>&1"
    local ok = os.execute(cmd)
    if (ok == true or ok == 0) and read_file(d .. "/cert.pem") then
      certs = { ca_file = d .. "/ca.pem", cert_file = d .. "/cert.pem", key_file = d .. "/key.pem",
        ca_pem = read_file(d .. "/ca.pem") }
    else
      certs = false
    end
  end
  if not certs then pending("openssl is needed to make test certificates") end
  return certs
end

local peer -- {ws, raw, mtls, handle} or false
local function python_ok()
  local ok = os.execute("'" .. PYTHON .. "' -c 'import websockets' >/dev/null 2>&1")
  return ok == true or ok == 0
end

-- Starts spec/support/coro_peer.py once; pending when Python is missing.
local function need_peer()
  if peer == nil then
    peer = false
    if python_ok() then
      local cert_args = ""
      local openssl = os.execute("openssl version >/dev/null 2>&1")
      if openssl == true or openssl == 0 then
        local c = need_certs()
        cert_args = (" '%s' '%s' '%s'"):format(c.ca_file, c.cert_file, c.key_file)
      end
      local handle, ports = P.start(("'%s' '%s/spec/support/coro_peer.py'"):format(PYTHON, ROOT),
        temp_dir(), cert_args)
      peer = {
        handle = handle,
        ws = tonumber(ports:match("ws=(%d+)")),
        raw = tonumber(ports:match("raw=(%d+)")),
        resetter = tonumber(ports:match("resetter=(%d+)")),
        holder = tonumber(ports:match("holder=(%d+)")),
        mtls = tonumber(ports:match("mtls=(%d+)")),
      }
    end
  end
  if not peer then
    pending("skipped: " .. PYTHON .. " with `websockets` is missing (see tests/conformance/install.sh)")
  end
  return peer
end

local function stop_peer()
  if peer then peer.handle:close() end
  peer = nil
  if tmpdir then os.execute("rm -rf '" .. tmpdir .. "'") end
end

M.turbo_ws = turbo_ws
M.cws = cws
M.core = core
M.ROOT = ROOT
M.PYTHON = PYTHON
M.run_bounded = run_bounded
M.run_loop = run_loop
M.opened = opened
M.cleanup = cleanup
M.connect = connect
M.co_run = co_run
M.assert_error_with = assert_error_with
M.sleep = sleep
M.hex = hex
M.frame = frame
M.read_file = read_file
M.write_file = write_file
M.test_server = test_server
M.header = header
M.temp_dir = temp_dir
M.need_certs = need_certs
M.need_peer = need_peer
M.stop_peer = stop_peer
return M
