//! Scale-out, end to end: worker processes (`core.workers`) sharing one port
//! with SO_REUSEPORT, and a chat room shared through a real `redis-server`
//! that each test starts on a loopback port of its own and stops afterwards.
//!
//! - clients on different worker processes see each other's messages;
//! - killing Redis mid-test loses no process, the WebSocket side keeps
//!   serving, and delivery resumes once Redis is back;
//! - a Redis that never comes back gives clear errors, serving goes on, and
//!   SIGTERM still stops everything cleanly;
//! - two "machines" (network namespaces joined by veth pairs, or the
//!   loopback addresses 127.0.0.2 and 127.0.0.3 where namespaces cannot be
//!   made) share a room through one Redis.
//!
//! Needs `redis-server` and `redis-cli` (Debian package redis-server).

mod support;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use support::{frame, read_frame, read_head, root, upgrade_request};

/// The chat server: optional `workers(n)`, one Redis hub per process with
/// the room subscribed, every WebSocket message published to the room, and
/// every room message sent to the process's clients. A publish that Redis
/// cannot take is answered to the sender as "error KIND: MESSAGE".
const CHAT_SERVER: &str = r#"
io.stdout:setvbuf("line")
local ffi = require "ffi"
ffi.cdef "int getpid(void);"
local turbo_ws = require "turbo_ws"
local core = turbo_ws.core
local env = os.getenv
local name = env("TWS_NAME")
local n = tonumber(env("TWS_WORKERS"))
local id = 0
if n > 0 then id = core.workers(n, { grace = 1 }) end
local clients = {}
local hub = turbo_ws.pubsub.new{
  backend = "redis", url = env("TWS_REDIS"), timeout = 1, ping_interval = 1,
  reconnect_delay = 0.05, max_reconnect_delay = 0.3,
  on_error = function(kind, msg)
    io.stderr:write(name .. " worker " .. id .. " redis " .. kind .. ": " .. msg .. "\n")
  end,
  on_connect = function() print("connected " .. id) end,
}
hub:subscribe("room", function(m) for c in pairs(clients) do c:send(m) end end)
core.listen({ host = env("TWS_HOST"), port = tonumber(env("TWS_PORT")), reuse_port = true }, function(req)
  local conn = req:upgrade()
  if not conn then return end
  clients[conn] = true
  conn:set_callbacks{
    on_message = function(m)
      local ok, kind, err = hub:publish("room", m)
      if not ok then conn:send("error " .. kind .. ": " .. err) end
    end,
    on_close = function() clients[conn] = nil end,
  }
  conn:send("hello " .. name .. " " .. id .. " " .. ffi.C.getpid())
end)
print("ready " .. id .. " " .. ffi.C.getpid())
turbo_ws.run()
print("stopped " .. id)
"#;

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0)).expect("bind a free port").local_addr().unwrap().port()
}

/// A free port below the kernel's ephemeral range, for a Redis the test
/// kills (or never starts): while it is down the hubs keep reconnecting, and a
/// connect to an ephemeral port nobody listens on can be given that very
/// port as its source (TCP's self-connect), which then holds it so that
/// the restarted Redis cannot bind.
fn free_port_below_ephemeral(ip: &str) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Tests run in parallel threads: each call starts somewhere else.
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let nth = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = 10_000 + ((std::process::id() as u16 % 10_000) + nth * 101) % 20_000;
    (start..low.max(start + 1))
        .chain(10_000..start.min(low))
        .find(|&p| TcpListener::bind((ip, p)).is_ok())
        .expect("a free port below the ephemeral range")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("turbo_ws_scale_{}_{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A redis-server of the test's own; killed on drop.
struct Redis {
    port: u16,
    binds: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    fn start(binds: &[&str]) -> Redis {
        let dir = scratch("redis");
        let mut redis = Redis {
            port: free_port_below_ephemeral("127.0.0.1"),
            binds: binds.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        self.child = Some(self.spawn());
        // Right after a kill the port may not be free yet: a redis-server
        // that could not bind exits, and is started again.
        wait_for("redis-server to answer", Duration::from_secs(10), || {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                thread::sleep(Duration::from_millis(100));
                self.child = Some(self.spawn());
            }
            self.cli(&["ping"]).contains("PONG")
        });
    }

    fn spawn(&self) -> std::process::Child {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--port").arg(self.port.to_string()).arg("--bind");
        cmd.args(&self.binds);
        cmd.args(["--save", "", "--appendonly", "no", "--protected-mode", "no", "--dir"]).arg(&self.dir);
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)")
    }

    /// SIGKILL: Redis goes away at once, as on a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .expect("redis-cli must be installed (apt-get install redis-server)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How many connections are subscribed to `channel`.
    fn numsub(&self, channel: &str) -> i64 {
        self.cli(&["pubsub", "numsub", channel])
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(-1)
    }

    fn url(&self, host: &str) -> String {
        format!("redis://{host}:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The chat server program; stopped with SIGTERM (then SIGKILL) on drop.
struct Chat {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Chat {
    /// `prefix`: e.g. `ip netns exec NAME` to run it on another "machine".
    fn start(prefix: &[&str], name: &str, host: &str, port: u16, redis_url: &str, workers: u32) -> Chat {
        let so = root().join("build/turbo_ws.so");
        assert!(so.exists(), "{} is missing: run `make build` first", so.display());
        let stderr = scratch(&format!("chat_{name}_{port}")).join("stderr");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg("luajit");
                c
            }
            None => Command::new("luajit"),
        };
        let mut child = cmd
            .arg("-e")
            .arg(CHAT_SERVER)
            .env("LUA_CPATH", format!("{}/build/?.so;;", root().display()))
            .env("TWS_NAME", name)
            .env("TWS_HOST", host)
            .env("TWS_PORT", port.to_string())
            .env("TWS_REDIS", redis_url)
            .env("TWS_WORKERS", workers.to_string())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("luajit must be installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Chat { child, lines, stderr }
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    fn expect(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line starting with {prefix:?}; stderr:\n{}", self.stderr()),
            }
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits for the process to end; returns its exit code.
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A WebSocket client on a raw socket.
struct Client {
    s: TcpStream,
    /// The server's greeting: "hello NAME WORKER PID".
    greeting: String,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(upgrade_request("").as_bytes()).unwrap();
        let (status, head) = read_head(&mut s);
        assert_eq!(status, 101, "{head}");
        let mut c = Client { s, greeting: String::new() };
        c.greeting = c.recv().expect("greeting");
        c
    }

    fn worker(&self) -> &str {
        self.greeting.split_whitespace().nth(2).unwrap_or("")
    }

    fn pid(&self) -> i32 {
        self.greeting.split_whitespace().nth(3).and_then(|p| p.parse().ok()).unwrap_or(0)
    }

    fn send(&mut self, text: &str) {
        self.s.write_all(&frame(true, 0, 1, text.as_bytes(), true)).unwrap();
    }

    /// The next text message (None on timeout or close).
    fn recv(&mut self) -> Option<String> {
        loop {
            let f = read_frame(&mut self.s)?;
            match f.opcode {
                1 => return Some(String::from_utf8_lossy(&f.payload).into_owned()),
                8 => return None,
                _ => {}
            }
        }
    }

    /// The next message must be `text`.
    fn expect(&mut self, text: &str) {
        match self.recv() {
            Some(m) if m == text => {}
            Some(m) => panic!("expected {text:?}, got {m:?}"),
            None => panic!("expected {text:?}, got nothing"),
        }
    }
}

/// Opens clients until there is one on worker 1 and one on worker 2.
fn clients_on_both_workers(addr: SocketAddr) -> (Client, Client) {
    let (mut one, mut two) = (None, None);
    for _ in 0..60 {
        let c = Client::connect(addr);
        match c.worker() {
            "1" if one.is_none() => one = Some(c),
            "2" if two.is_none() => two = Some(c),
            _ => {}
        }
        if one.is_some() && two.is_some() {
            break;
        }
    }
    (
        one.expect("no connection reached worker 1 (SO_REUSEPORT)"),
        two.expect("no connection reached worker 2 (SO_REUSEPORT)"),
    )
}

fn start_workers(redis: &Redis) -> (Chat, SocketAddr) {
    let port = free_port("127.0.0.1");
    let chat = Chat::start(&[], "local", "127.0.0.1", port, &redis.url("127.0.0.1"), 2);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    chat.expect("ready");
    chat.expect("ready");
    wait_for("both workers to subscribe on Redis", Duration::from_secs(10), || redis.numsub("room") == 2);
    (chat, addr)
}

#[test]
fn clients_on_different_workers_share_a_room() {
    let redis = Redis::start(&["127.0.0.1"]);
    let (mut chat, addr) = start_workers(&redis);
    let (mut a, mut b) = clients_on_both_workers(addr);
    assert_ne!(a.pid(), b.pid(), "{} / {}", a.greeting, b.greeting);

    a.send("from a");
    a.expect("from a");
    b.expect("from a");
    b.send("from b");
    b.expect("from b");
    a.expect("from b");
    // A burst keeps its order across processes.
    for i in 0..200 {
        a.send(&format!("burst {i}"));
    }
    for i in 0..200 {
        b.expect(&format!("burst {i}"));
    }

    // SIGTERM to the supervisor: clients get 1001, every process ends with 0.
    chat.signal(libc::SIGTERM);
    let close = support::read_until_close(&mut a.s);
    assert_eq!(close, Some(1001));
    assert_eq!(chat.wait_exit(Duration::from_secs(10)), Some(0), "stderr:\n{}", chat.stderr());
    assert!(!process_alive(a.pid()) && !process_alive(b.pid()));
}

#[test]
fn redis_restart_loses_no_process_and_delivery_resumes() {
    let mut redis = Redis::start(&["127.0.0.1"]);
    let (chat, addr) = start_workers(&redis);
    let (mut a, mut b) = clients_on_both_workers(addr);
    a.send("before");
    b.expect("before");
    a.expect("before");

    redis.kill();
    wait_for("both workers to notice", Duration::from_secs(10), || {
        chat.stderr().matches("redis disconnected: lost the subscribing connection").count() >= 2
    });
    // Publishing is refused with a clear error while Redis is away.
    wait_for("a refused publish", Duration::from_secs(10), || {
        a.send("during");
        match a.recv() {
            Some(m) if m.starts_with("error disconnected: not connected to Redis at redis://127.0.0.1:") => {
                true
            }
            Some(m) => panic!("unexpected {m:?}"),
            None => false,
        }
    });
    // The WebSocket side keeps serving: new connections are greeted.
    let c = Client::connect(addr);
    assert!(c.greeting.starts_with("hello local "), "{}", c.greeting);

    // An outage long enough for a few reconnect attempts.
    thread::sleep(Duration::from_millis(800));
    redis.restart();
    wait_for("both workers to resubscribe", Duration::from_secs(10), || redis.numsub("room") == 2);
    wait_for("publishing to work again", Duration::from_secs(10), || {
        a.send("after");
        match a.recv() {
            Some(m) if m == "after" => true,
            Some(m) if m.starts_with("error disconnected") => false,
            other => panic!("unexpected {other:?}"),
        }
    });
    // Nothing published while Redis was away arrives late.
    b.expect("after");
    b.send("from b again");
    a.expect("from b again");
    for pid in [chat.pid(), a.pid(), b.pid()] {
        assert!(process_alive(pid), "process {pid} died");
    }
    let stderr = chat.stderr();
    assert!(stderr.contains("redis connect: cannot connect to Redis at redis://127.0.0.1:"), "{stderr}");
}

#[test]
fn redis_that_never_comes_back_gives_clear_errors_and_serving_goes_on() {
    let dead = free_port_below_ephemeral("127.0.0.1");
    let port = free_port("127.0.0.1");
    let url = format!("redis://127.0.0.1:{dead}");
    let mut chat = Chat::start(&[], "local", "127.0.0.1", port, &url, 2);
    chat.expect("ready");
    chat.expect("ready");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (mut a, mut b) = clients_on_both_workers(addr);
    a.send("anyone?");
    let reply = a.recv().expect("an answer");
    assert!(reply.starts_with(&format!("error disconnected: not connected to Redis at {url}: ")), "{reply}");
    thread::sleep(Duration::from_secs(2));
    let stderr = chat.stderr();
    for worker in ["local worker 1", "local worker 2"] {
        let line = format!("{worker} redis connect: cannot connect to Redis at {url} (subscribing): ");
        assert!(stderr.contains(&line), "no {line:?} in:\n{stderr}");
    }
    // Still serving after repeated failures.
    b.send("still there?");
    assert!(b.recv().expect("an answer").starts_with("error disconnected"));
    let c = Client::connect(addr);
    assert!(c.greeting.starts_with("hello local "));
    for pid in [chat.pid(), a.pid(), b.pid()] {
        assert!(process_alive(pid), "process {pid} died");
    }
    // And SIGTERM still stops everything cleanly.
    chat.signal(libc::SIGTERM);
    assert_eq!(chat.wait_exit(Duration::from_secs(10)), Some(0), "stderr:\n{}", chat.stderr());
}

/// Two network namespaces, each joined to this one by a veth pair; deleted on drop.
struct Machines {
    names: Vec<String>,
}

impl Machines {
    /// Creates the namespaces; returns them and, per machine, (its address,
    /// the address of this namespace on its link). None when not possible.
    /// TURBO_WS_NO_NETNS=1 skips them (then 127.0.0.2 and 127.0.0.3 are used).
    fn create() -> Option<(Machines, Vec<(String, String)>)> {
        if std::env::var_os("TURBO_WS_NO_NETNS").is_some() {
            return None;
        }
        let pid = std::process::id();
        let net = 1 + pid % 250;
        let mut machines = Machines { names: Vec::new() };
        let mut addrs = Vec::new();
        for (i, tag) in ["a", "b"].iter().enumerate() {
            let ns = format!("tws{tag}{pid}");
            let veth = format!("tw{tag}{}", pid % 100_000);
            let (ours, theirs) =
                (format!("10.231.{net}.{}", 4 * i + 1), format!("10.231.{net}.{}", 4 * i + 2));
            let steps: Vec<Vec<String>> = vec![
                vec!["netns".into(), "add".into(), ns.clone()],
                vec![
                    "link".into(),
                    "add".into(),
                    veth.clone(),
                    "type".into(),
                    "veth".into(),
                    "peer".into(),
                    "name".into(),
                    format!("{veth}p"),
                ],
                vec!["link".into(), "set".into(), format!("{veth}p"), "netns".into(), ns.clone()],
                vec!["addr".into(), "add".into(), format!("{ours}/30"), "dev".into(), veth.clone()],
                vec!["link".into(), "set".into(), veth.clone(), "up".into()],
                vec![
                    "-n".into(),
                    ns.clone(),
                    "addr".into(),
                    "add".into(),
                    format!("{theirs}/30"),
                    "dev".into(),
                    format!("{veth}p"),
                ],
                vec!["-n".into(), ns.clone(), "link".into(), "set".into(), format!("{veth}p"), "up".into()],
                vec!["-n".into(), ns.clone(), "link".into(), "set".into(), "lo".into(), "up".into()],
            ];
            for (n, step) in steps.iter().enumerate() {
                let ok =
                    Command::new("ip").args(step).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
                if n == 0 && ok {
                    machines.names.push(ns.clone());
                }
                if !ok {
                    let _ = Command::new("ip").args(["link", "del", &veth]).stderr(Stdio::null()).status();
                    return None;
                }
            }
            addrs.push((theirs, ours));
        }
        Some((machines, addrs))
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for ns in &self.names {
            // Deleting the namespace deletes its veth end, and so the pair.
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn two_machines_share_a_room_through_one_redis() {
    let port = free_port("127.0.0.1");
    // (machine address, Redis address seen from it) and the command prefix running a machine's program.
    let made = Machines::create();
    let (hosts, prefixes): (Vec<(String, String)>, Vec<Vec<String>>) = match &made {
        Some((machines, addrs)) => {
            eprintln!("two machines: network namespaces {:?}", machines.names);
            let prefixes = machines
                .names
                .iter()
                .map(|ns| vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()])
                .collect();
            (addrs.clone(), prefixes)
        }
        None => {
            eprintln!("two machines: network namespaces unavailable, using 127.0.0.2 and 127.0.0.3");
            let hosts =
                vec![("127.0.0.2".into(), "127.0.0.1".into()), ("127.0.0.3".into(), "127.0.0.1".into())];
            (hosts, vec![vec![], vec![]])
        }
    };
    let binds: Vec<&str> = std::iter::once("127.0.0.1")
        .chain(hosts.iter().map(|(_, ours)| ours.as_str()).filter(|a| *a != "127.0.0.1"))
        .collect();
    let redis = Redis::start(&binds);
    let mut chats = Vec::new();
    for (i, ((host, redis_host), prefix)) in hosts.iter().zip(&prefixes).enumerate() {
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let name = ["A", "B"][i];
        let chat = Chat::start(&prefix, name, host, port, &redis.url(redis_host), 0);
        chat.expect("ready");
        chats.push(chat);
    }
    wait_for("both machines to subscribe on Redis", Duration::from_secs(10), || redis.numsub("room") == 2);
    let mut a = Client::connect(format!("{}:{port}", hosts[0].0).parse().unwrap());
    let mut b = Client::connect(format!("{}:{port}", hosts[1].0).parse().unwrap());
    assert!(a.greeting.starts_with("hello A 0 "), "{}", a.greeting);
    assert!(b.greeting.starts_with("hello B 0 "), "{}", b.greeting);
    a.send("hello from machine A");
    b.expect("hello from machine A");
    a.expect("hello from machine A");
    b.send("hello from machine B");
    a.expect("hello from machine B");
    b.expect("hello from machine B");
    drop(chats);
}
