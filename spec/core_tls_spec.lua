-- wss through the native core: server identities (RSA, ECDSA, Ed25519),
-- client trust (custom CA, default roots, verification off), host name
-- checks, client certificates, and IPv6.
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core

local dir = os.tmpname()
os.remove(dir)

local function sh(cmd)
  local ok = os.execute("cd " .. dir .. " && " .. cmd .. " >/dev/null 2>&1")
  assert(ok == true or ok == 0, "command failed: " .. cmd)
end

-- A CA, server certificates signed by it for localhost/127.0.0.1 in three
-- key types, one for another host name, a client certificate, and a
-- self-signed certificate nobody trusts.
local function make_certificates()
  os.execute("mkdir -p " .. dir)
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=test-ca -keyout ca.key -out ca.pem")
  local function signed(name, keygen, san, days)
    sh("openssl " .. keygen .. " -out " .. name .. ".key")
    sh("openssl req -new -key " .. name .. ".key -subj /CN=" .. name .. " -out " .. name .. ".csr")
    local ext = io.open(dir .. "/" .. name .. ".ext", "w")
    ext:write("subjectAltName=" .. san .. "\n")
    ext:close()
    sh("openssl x509 -req -in " .. name .. ".csr -CA ca.pem -CAkey ca.key -CAcreateserial -days " .. (days or 2) .. " -extfile " ..
       name .. ".ext -out " .. name .. ".pem")
  end
  local local_names = "DNS:localhost,IP:127.0.0.1,IP:::1"
  signed("rsa", "genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048", local_names)
  signed("ecdsa", "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", local_names)
  signed("ed25519", "genpkey -algorithm ED25519", local_names)
  signed("wronghost", "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", "DNS:wrong.example")
  signed("client", "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", "DNS:client")
  -- Valid until yesterday.
  signed("expired", "genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256", local_names, -1)
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost " ..
     "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout self.key -out self.pem")
  -- The same names and subject, another key; and another host's.
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost " ..
     "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout self2.key -out self2.pem")
  sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=other " ..
     "-addext subjectAltName=DNS:other.example -keyout selfother.key -out selfother.pem")
end

local function path(name) return dir .. "/" .. name end

-- Starts a wss echo server with the given identity; returns its port.
local function wss_server(name, extra)
  local tls = { cert_file = path(name .. ".pem"), key_file = path(name .. ".key") }
  for k, v in pairs(extra or {}) do tls[k] = v end
  local server = core.listen({ host = "127.0.0.1", port = 0, tls = tls }, function(req, info)
    local conn = req:upgrade()
    if conn then conn:set_callbacks{ on_message = function(m, b) conn:send(m, b) end } end
  end)
  return server
end

-- Connects, sends one message, returns "echo:<msg>" or "error:<kind>".
local function try(url, opts)
  local outcome
  local guard = core.set_interval(5000, function() outcome = "guard timeout"; core.close() end, nil, false)
  core.connect(url, opts, function(conn, kind, msg)
    if not conn then
      outcome = "error:" .. kind
      core.close()
      return
    end
    conn:set_callbacks{
      on_message = function(m) outcome = "echo:" .. m; conn:close() end,
      on_close = function() core.close() end,
      on_error = function(k, m) outcome = "failed:" .. k .. " " .. m end,
    }
    conn:send("over tls")
  end)
  core.start()
  core.clear_interval(guard)
  return outcome
end

describe("wss with the native core", function()
  setup(make_certificates)
  teardown(function() os.execute("rm -rf " .. dir) end)

  for _, kind in ipairs({ "rsa", "ecdsa", "ed25519" }) do
    it("serves wss with an " .. kind .. " certificate, trusted through ca_file", function()
      local server = wss_server(kind)
      local url = "wss://127.0.0.1:" .. server:port() .. "/"
      assert.are.equal("echo:over tls", try(url, { tls = { ca_file = path("ca.pem") } }))
      server:close()
    end)
  end

  it("trusts a CA directory given as ca_path", function()
    local server = wss_server("ecdsa")
    os.execute("mkdir -p " .. path("cadir") .. " && cp " .. path("ca.pem") .. " " .. path("cadir/"))
    assert.are.equal("echo:over tls", try("wss://127.0.0.1:" .. server:port() .. "/", { tls = { ca_path = path("cadir") } }))
    server:close()
  end)

  it("checks the name through SNI when connecting by host name", function()
    local server = wss_server("ecdsa")
    assert.are.equal("echo:over tls", try("wss://localhost:" .. server:port() .. "/", { tls = { ca_file = path("ca.pem") } }))
    server:close()
  end)

  it("verifies by default: an unknown issuer is a tls error", function()
    local server = wss_server("self")
    assert.are.equal("error:tls", try("wss://127.0.0.1:" .. server:port() .. "/"))
    server:close()
  end)

  it("rejects a certificate for another host name", function()
    local server = wss_server("wronghost")
    assert.are.equal("error:tls", try("wss://127.0.0.1:" .. server:port() .. "/", { tls = { ca_file = path("ca.pem") } }))
    server:close()
  end)

  it("rejects an expired certificate", function()
    local server = wss_server("expired")
    assert.are.equal("error:tls", try("wss://127.0.0.1:" .. server:port() .. "/", { tls = { ca_file = path("ca.pem") } }))
    server:close()
  end)

  -- OpenSSL (Turbo's, evlua's TLS) trusts a listed self-signed certificate;
  -- webpki alone refuses a CA certificate presented as the server's own.
  it("trusts a self-signed certificate listed in ca_file or ca_path", function()
    local server = wss_server("self")
    local url = "wss://127.0.0.1:" .. server:port() .. "/"
    assert.are.equal("echo:over tls", try(url, { tls = { ca_file = path("self.pem") } }))
    os.execute("mkdir -p " .. path("selfdir") .. " && cp " .. path("self.pem") .. " " .. path("selfdir/"))
    assert.are.equal("echo:over tls", try(url, { tls = { ca_path = path("selfdir") } }))
    assert.are.equal("echo:over tls", try("wss://localhost:" .. server:port() .. "/", { tls = { ca_file = path("self.pem") } }))
    server:close()
  end)

  it("trusts a listed self-signed certificate only itself and only for its names", function()
    local server = wss_server("self")
    local url = "wss://127.0.0.1:" .. server:port() .. "/"
    assert.are.equal("error:tls", try(url, { tls = { ca_file = path("self2.pem") } }))
    server:close()
    server = wss_server("selfother")
    assert.are.equal("error:tls", try("wss://127.0.0.1:" .. server:port() .. "/", { tls = { ca_file = path("selfother.pem") } }))
    server:close()
  end)

  it("connects to an unlisted self-signed server only with verification explicitly off", function()
    local server = wss_server("self")
    assert.are.equal("echo:over tls", try("wss://127.0.0.1:" .. server:port() .. "/", { tls = { verify = false } }))
    server:close()
  end)

  it("presents a client certificate to a server that requires one", function()
    local server = wss_server("ecdsa", { client_ca_file = path("ca.pem") })
    local url = "wss://127.0.0.1:" .. server:port() .. "/"
    assert.are.equal("echo:over tls", try(url, {
      tls = { ca_file = path("ca.pem"), cert_file = path("client.pem"), key_file = path("client.key") },
    }))
    assert.are.equal("error:tls", try(url, { tls = { ca_file = path("ca.pem") } }))
    server:close()
  end)

  it("shutdown reaches a connection still in its TLS handshake", function()
    local server = wss_server("ecdsa")
    -- A TCP client that never sends its ClientHello (handshake_timeout:
    -- 10 s); it leaves once the server drops it.
    local script = "import socket, sys; s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1]))); "
      .. "s.settimeout(30); s.recv(1)"
    os.execute(("timeout 30 python3 -c '%s' %d &"):format(script, server:port()))
    local waited = false
    core.add_timeout(core.gettimemonotonic() + 300, function() waited = true; core.close() end)
    core.start()
    assert.is_true(waited)
    local t0 = core.gettimemonotonic()
    turbo_ws.shutdown(0.2)
    turbo_ws.run()
    local took = core.gettimemonotonic() - t0
    assert.is_true(took < 5000, "run() took " .. took .. " ms")
  end)

  it("reports unreadable certificate files as misuse at listen time", function()
    local ok, err = pcall(core.listen, { port = 0, tls = { cert_file = path("missing.pem"), key_file = path("ecdsa.key") } }, print)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("cannot read certificate", 1, true))
  end)
end)

describe("IPv6", function()
  it("listens on ::1 and connects to a bracketed literal", function()
    local ok, server = pcall(core.listen, { host = "::1", port = 0 }, function(req)
      local conn = req:upgrade()
      if conn then conn:set_callbacks{ on_message = function(m, b) conn:send(m, b) end } end
    end)
    if not ok then
      pending("no IPv6 loopback here: " .. tostring(server))
      return
    end
    local outcome
    local guard = core.set_interval(5000, function() core.close() end, nil, false)
    core.connect("ws://[::1]:" .. server:port() .. "/v6", nil, function(conn, kind)
      if not conn then outcome = "error:" .. kind; core.close(); return end
      conn:set_callbacks{
        on_message = function(m) outcome = m; conn:close() end,
        on_close = function() core.close() end,
      }
      conn:send("six")
    end)
    core.start()
    core.clear_interval(guard)
    server:close()
    assert.are.equal("six", outcome)
  end)
end)
