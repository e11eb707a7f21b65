//! Test support: runs Lua programs against the built library and talks to
//! them over raw sockets, byte by byte, so the tests see exactly what is on
//! the wire.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::Duration;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a Lua client doing `core.connect(url, { opts })` under an 8 s guard.
/// It prints "error KIND MESSAGE", or runs `on_connect` (Lua with `conn` and
/// `res` in scope, printing what the test checks) and then echoes, printing
/// "message M", "failed KIND" and "closed CODE"; last "done". Those lines.
pub fn run_client(url: &str, opts: &str, on_connect: &str) -> Vec<String> {
    lua_output(&format!(
        r#"
        io.stdout:setvbuf("line")
        local turbo_ws = require "turbo_ws"
        local core = turbo_ws.core
        core.set_interval(8000, function() print("guard timeout"); core.close() end, nil, false)
        core.connect({url:?}, {{ {opts} }}, function(conn, res, msg)
          if not conn then print("error " .. res .. " " .. tostring(msg)); return end
          {on_connect}
          conn:set_callbacks{{
            on_message = function(m, b) print("message " .. m); conn:send(m, b) end,
            on_error = function(kind, m) print("failed " .. kind) end,
            on_close = function(code) print("closed " .. code) end,
          }}
        end)
        turbo_ws.run()
        print("done")
        "#
    ))
}

/// A Lua program running under luajit with build/turbo_ws.so; killed on drop.
pub struct LuaProcess {
    pub child: Child,
    pub port: u16,
}

/// `luajit -e script` with build/turbo_ws.so on LUA_CPATH.
fn luajit(script: &str) -> Command {
    let so = root().join("build/turbo_ws.so");
    assert!(so.exists(), "{} is missing: run `make build` first", so.display());
    let mut command = Command::new("luajit");
    command.arg("-e").arg(script).env("LUA_CPATH", format!("{}/build/?.so;;", root().display()));
    command
}

/// Runs a Lua program to its end; the lines it printed.
pub fn lua_output(script: &str) -> Vec<String> {
    let out = luajit(script).output().expect("luajit must be installed (make deps)");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

impl LuaProcess {
    /// Runs `script`, which must print `port N` once it listens.
    pub fn start(script: &str) -> LuaProcess {
        let mut child = luajit(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("luajit must be installed (make deps)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the port line");
        let port = line
            .trim()
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected 'port N' from the Lua program, got {line:?}"));
        LuaProcess { child, port }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resident memory of the process in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for LuaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Lua echo server on the core API with the given extra listen options
/// (Lua table fields). Plain HTTP gets "plain METHOD URI". Beyond echoing:
/// the message "close N" closes with code N, and `/last` answers the code
/// the last connection's on_close got; `/proto` upgrades choosing a
/// subprotocol the client never offered (an upgrade that raises is answered
/// 500 with the error); on `/flood` the server writes 64 KiB messages as fast
/// as `send` accepts them while the connection is open.
pub fn echo_server(listen_options: &str) -> LuaProcess {
    LuaProcess::start(&format!(
        r#"
        local turbo_ws = require "turbo_ws"
        local core = turbo_ws.core
        local last = "none"
        local big = string.rep("x", 65536)
        local server = core.listen({{ host = "127.0.0.1", port = 0, {listen_options} }}, function(req, info)
          if info.path == "/last" then return req:respond(200, nil, last) end
          if not info.websocket then
            return req:respond(200, {{ ["Content-Type"] = "text/plain" }}, "plain " .. info.method .. " " .. info.uri)
          end
          local upgrade_opts = info.path == "/proto" and {{ protocol = "never-offered" }} or nil
          local ok, conn = pcall(req.upgrade, req, upgrade_opts)
          if not ok then return req:respond(500, nil, tostring(conn)) end
          if not conn then return end
          conn:set_callbacks{{
            on_message = function(m, b)
              local code = m:match("^close (%d+)$")
              if code then conn:close(tonumber(code)) else conn:send(m, b) end
            end,
            on_close = function(code) last = tostring(code) end,
          }}
          if info.path == "/flood" then
            local timer
            timer = core.set_interval(1, function()
              while conn:send(big, true) do end
              if conn:state() ~= "open" then core.clear_interval(timer) end
            end)
          end
        end)
        print("port " .. server:port())
        io.stdout:flush()
        turbo_ws.run()
        "#
    ))
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A socket a raw server written in a test accepts.
pub trait RawStream: Read + Write + Send + 'static {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl RawStream for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

impl RawStream for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

/// A listener (TCP or Unix) for [`one_shot_server`].
pub trait RawListener: Send + 'static {
    type Stream: RawStream;
    fn accept_one(&self) -> std::io::Result<Self::Stream>;
}

impl RawListener for TcpListener {
    type Stream = TcpStream;
    fn accept_one(&self) -> std::io::Result<TcpStream> {
        self.accept().map(|(s, _)| s)
    }
}

impl RawListener for UnixListener {
    type Stream = UnixStream;
    fn accept_one(&self) -> std::io::Result<UnixStream> {
        self.accept().map(|(s, _)| s)
    }
}

/// A raw server for one connection, on its own thread: `serve` gets the
/// request head (read with a 10 s timeout) and the stream.
pub fn one_shot_server<L: RawListener>(listener: L, serve: impl FnOnce(String, L::Stream) + Send + 'static) {
    thread::spawn(move || {
        if let Ok(mut s) = listener.accept_one() {
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let head = read_request_head(&mut s);
            serve(head, s);
        }
    });
}

/// Reads a request head up to its blank line (without it).
pub fn read_request_head(s: &mut impl Read) -> String {
    let mut reader = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    head
}

/// The value of header `name` (any case) in a head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A 101 answer to a request head, with its Sec-WebSocket-Accept computed
/// here and `extra` header lines (each ending in CRLF).
pub fn answer_101(head: &str, extra: &str) -> String {
    let key = header(head, "sec-websocket-key").expect("the request has a Sec-WebSocket-Key");
    let accept = derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{extra}\r\n"
    )
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

pub fn upgrade_request(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads an HTTP response head; returns (status, head text).
pub fn read_head(s: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

/// Opens a WebSocket on a raw socket; panics unless the server answers 101.
pub fn open_ws(port: u16) -> TcpStream {
    let mut s = connect(port);
    s.write_all(upgrade_request("").as_bytes()).expect("write");
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101, "{head}");
    s
}

/// One client frame: masked with a fixed key unless `masked` is false.
pub fn frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | (rsv << 4) | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len < 65536 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let key = [0x12u8, 0x34, 0x56, 0x78];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A frame as received: (fin, opcode, masked, payload).
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    /// The RSV bits, RSV1 as 4.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Reads one frame; None when the connection ends first.
pub fn read_frame(s: &mut impl Read) -> Option<Frame> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    let masked = h[1] & 0x80 != 0;
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).ok()?;
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).ok()?;
        len = u64::from_be_bytes(b);
    }
    let mut key = [0u8; 4];
    if masked {
        s.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some(Frame { fin: h[0] & 0x80 != 0, rsv: (h[0] >> 4) & 7, opcode: h[0] & 0x0f, masked, payload })
}

/// Reads frames until a close frame; returns its code (None: no close frame).
pub fn read_until_close(s: &mut impl Read) -> Option<u16> {
    while let Some(f) = read_frame(s) {
        if f.opcode == 8 {
            return Some(f.close_code().unwrap_or(1005));
        }
    }
    None
}

/// True when the server closed the TCP connection (EOF) within the read timeout.
pub fn tcp_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Sends a text message and expects it back unmasked.
pub fn assert_echo(s: &mut TcpStream, text: &str) {
    s.write_all(&frame(true, 0, 1, text.as_bytes(), true)).expect("write");
    let f = read_frame(s).expect("echo frame");
    assert_eq!((f.opcode, f.masked, f.payload.as_slice()), (1, false, text.as_bytes()));
}

/// Sec-WebSocket-Accept for a key, computed here from RFC 6455 §4.2.2
/// rather than with the code under test.
pub fn derive_accept_key(key: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    data_encoding::BASE64.encode(&sha.finalize())
}
