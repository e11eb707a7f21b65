//! The benchmark's load generator: written to cost as little as possible per
//! message, so that the figures measure the server, not the generator.
//!
//! Frames are encoded once (masked with a fixed key) and written from one
//! buffer; echoes are parsed in place and counted, never copied. Each
//! connection keeps W messages in flight. Prints one JSON line.
//!
//! How frames reach the socket (`--write=`, echo mode):
//!   each  (default) every message is its own write(2), as a browser's
//!         `ws.send()` is: the server sees one message per segment when
//!         the loop is fast, and pays for its reads accordingly;
//!   batch all messages due at once (the W of a connection's burst, or the
//!         echoes counted in one read) go out in one write(2): the server
//!         reads several frames per system call. A second, labelled figure.
//!
//! What the messages carry (`--payload=`, echo mode):
//!   distinct (default) every message is pseudo-random bytes (text: letters,
//!         digits, '+', '/') cut from a random place of a 1 MiB pool, as
//!         real traffic differs from message to message: a server that keeps equal strings once (Lua interns
//!         its strings) must not be measured on one payload it made a
//!         string of long ago;
//!   same  every message is the same bytes (the figures before 2026-12-03).
//!
//! Modes:
//!   loadgen echo  URL CONNS INFLIGHT SIZE text|binary SECONDS [WARMUP] [--write=each|batch] [--payload=distinct|same]
//!   loadgen idle  URL CONNS HOLD_SECONDS          (opens CONNS, holds them)
//!   loadgen churn URL CYCLES                      (connect, echo once, close)
//!   loadgen soak  URL WORKERS SECONDS             (mixed traffic, see soak_worker)

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn usage() -> ! {
    eprintln!(
        "usage: loadgen echo URL CONNS INFLIGHT SIZE text|binary SECONDS [WARMUP] [--write=each|batch] \
         [--payload=distinct|same] \
         | idle URL CONNS HOLD | churn URL CYCLES | soak URL WORKERS SECONDS"
    );
    std::process::exit(2)
}

/// How echo mode hands frames to the socket; see the module doc.
#[derive(Clone, Copy, PartialEq)]
enum WriteMode {
    EachMessage,
    Batched,
}

impl WriteMode {
    fn label(self) -> &'static str {
        match self {
            WriteMode::EachMessage => "each",
            WriteMode::Batched => "batch",
        }
    }
}

/// Removes every `PREFIX<value>` option from the arguments, leaving the
/// positional ones; the last one's value, which must be one of `choices`.
fn take_option(args: &mut Vec<String>, prefix: &str, choices: &[&'static str]) -> Option<&'static str> {
    let mut chosen = None;
    args.retain(|a| match a.strip_prefix(prefix) {
        Some(value) => {
            chosen = Some(*choices.iter().find(|c| **c == value).unwrap_or_else(|| usage()));
            false
        }
        None => true,
    });
    chosen
}

/// Removes a `--write=` option (see the module doc).
fn take_write_mode(args: &mut Vec<String>) -> WriteMode {
    match take_option(args, "--write=", &["each", "batch"]) {
        Some("batch") => WriteMode::Batched,
        _ => WriteMode::EachMessage,
    }
}

/// Removes a `--payload=` option: whether each message gets its own
/// payload (see the module doc).
fn take_distinct_payloads(args: &mut Vec<String>) -> bool {
    take_option(args, "--payload=", &["distinct", "same"]) != Some("same")
}

/// Bytes that payloads are cut from when they are distinct: pseudo-random
/// (for text: letters, digits, '+' and '/', valid UTF-8), already masked
/// with MASK from index 0. Made once, so a message costs the generator one
/// copy, not a random number per byte (that slowed it enough to change how
/// busy the servers were).
struct PayloadPool(Vec<u8>);

impl PayloadPool {
    const LEN: usize = 1 << 20;

    fn new(size: usize, binary: bool) -> PayloadPool {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let bytes = (0..Self::LEN + size).map(|i| {
            let b = rng.next() as u8;
            let b = if binary { b } else { ALPHABET[(b & 63) as usize] };
            b ^ MASK[i % 4]
        });
        PayloadPool(bytes.collect())
    }

    /// `size` bytes from a random place; the place is a multiple of 4, so
    /// the masking lines up with a payload's start.
    fn cut(&self, rng: &mut Rng, size: usize) -> &[u8] {
        let at = rng.below((Self::LEN / 4) as u64) as usize * 4;
        &self.0[at..at + size]
    }
}

/// A connection's frames to send: one encoded frame (or a burst of them
/// back to back), each given a new payload from the pool before it is sent
/// when payloads are distinct. About one in 2^18 messages repeats one made
/// earlier: too few to matter to a server that keeps equal strings once.
struct Outgoing {
    frame_len: usize,
    header_len: usize,
    size: usize,
    burst: Vec<u8>,
    pool: Option<Rc<PayloadPool>>,
    rng: Rng,
}

impl Outgoing {
    /// `seed` (not 0) starts the connection's own choice of payloads.
    fn new(size: usize, binary: bool, inflight: usize, pool: Option<Rc<PayloadPool>>, seed: u64) -> Outgoing {
        let frame = encode_frame(size, binary);
        Outgoing {
            frame_len: frame.len(),
            header_len: frame.len() - size,
            size,
            burst: frame.iter().copied().cycle().take(frame.len() * inflight).collect(),
            pool,
            rng: Rng(seed),
        }
    }

    /// A new payload for frame `i` of the burst, when payloads are distinct.
    fn refill(&mut self, i: usize) {
        if let Some(pool) = &self.pool {
            let start = i * self.frame_len + self.header_len;
            self.burst[start..start + self.size].copy_from_slice(pool.cut(&mut self.rng, self.size));
        }
    }

    /// Writes `count` frames: one write(2) per frame, or one for all.
    async fn send(&mut self, s: &mut TcpStream, count: usize, mode: WriteMode) -> std::io::Result<()> {
        match mode {
            WriteMode::Batched => {
                (0..count).for_each(|i| self.refill(i));
                s.write_all(&self.burst[..self.frame_len * count]).await
            }
            WriteMode::EachMessage => {
                for _ in 0..count {
                    self.refill(0);
                    s.write_all(&self.burst[..self.frame_len]).await?;
                }
                Ok(())
            }
        }
    }
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| usage())
}

/// host:port and path of a ws:// URL.
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("ws://").unwrap_or_else(|| usage());
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

/// One masked client frame carrying `size` bytes.
fn encode_frame(size: usize, binary: bool) -> Vec<u8> {
    let mut f = vec![0x80 | if binary { 2 } else { 1 }];
    if size < 126 {
        f.push(0x80 | size as u8);
    } else if size < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(size as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(size as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend((0..size).map(|i| b'a' ^ MASK[i % 4]));
    f
}

async fn open(addr: &str, path: &str) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    // Read byte-wise up to the end of the head: nothing of the stream is lost.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(b[0]);
    }
    if !head.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&head).into_owned()));
    }
    Ok(s)
}

/// Length of the first complete server frame in `buf`, if there is one.
fn complete_frame(buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (buf.len() >= header + len).then_some(header + len)
}

struct Stats {
    recording: Cell<bool>,
    stop: Cell<bool>,
    count: Cell<u64>,
    latencies_ns: RefCell<Vec<u32>>,
    errors: Cell<u64>,
}

async fn echo_connection(
    addr: String,
    path: String,
    mut out: Outgoing,
    inflight: usize,
    mode: WriteMode,
    stats: Rc<Stats>,
) {
    let Ok(mut s) = open(&addr, &path).await else {
        stats.errors.set(stats.errors.get() + 1);
        return;
    };
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(inflight);
    let now = Instant::now();
    sent.extend(std::iter::repeat_n(now, inflight));
    if out.send(&mut s, inflight, mode).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut filled = 0;
    while !stats.stop.get() {
        let n = match s.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => {
                stats.errors.set(stats.errors.get() + 1);
                return;
            }
            Ok(n) => n,
        };
        filled += n;
        let mut at = 0;
        let mut echoed = 0;
        let now = Instant::now();
        while let Some(len) = complete_frame(&buf[at..filled]) {
            at += len;
            echoed += 1;
            if let Some(t) = sent.pop_front() {
                if stats.recording.get() {
                    stats
                        .latencies_ns
                        .borrow_mut()
                        .push(now.duration_since(t).as_nanos().min(u32::MAX as u128) as u32);
                }
            }
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        if echoed > 0 {
            if stats.recording.get() {
                stats.count.set(stats.count.get() + echoed as u64);
            }
            sent.extend(std::iter::repeat_n(now, echoed));
            if out.send(&mut s, echoed, mode).await.is_err() {
                return;
            }
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn echo_mode(args: &[String]) {
    let mut args = args.to_vec();
    let mode = take_write_mode(&mut args);
    let distinct = take_distinct_payloads(&mut args);
    let args = &args[..];
    let (addr, path) = split_url(&args[2]);
    let conns: usize = arg(args, 3);
    let inflight: usize = arg(args, 4);
    let size: usize = arg(args, 5);
    let binary = args.get(6).map(String::as_str) == Some("binary");
    let seconds: f64 = arg(args, 7);
    let warmup: f64 = args.get(8).and_then(|a| a.parse().ok()).unwrap_or(1.0);
    let pool = distinct.then(|| Rc::new(PayloadPool::new(size, binary)));
    let stats = Rc::new(Stats {
        recording: Cell::new(false),
        stop: Cell::new(false),
        count: Cell::new(0),
        latencies_ns: RefCell::new(Vec::with_capacity(4 << 20)),
        errors: Cell::new(0),
    });
    for c in 0..conns {
        tokio::task::spawn_local(echo_connection(
            addr.clone(),
            path.clone(),
            Outgoing::new(size, binary, inflight, pool.clone(), 0x2545_f491_4f6c_dd1d ^ (c as u64 + 1)),
            inflight,
            mode,
            stats.clone(),
        ));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    let server = std::env::var("SERVER_PID").ok().and_then(|p| p.parse::<u32>().ok());
    let server_cpu0 = server.map(turbo_ws_bench::process_cpu_seconds);
    let cpu0 = turbo_ws_bench::cpu_seconds();
    let t0 = Instant::now();
    stats.recording.set(true);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stats.recording.set(false);
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = turbo_ws_bench::cpu_seconds() - cpu0;
    let server_cpu = match (server, server_cpu0) {
        (Some(pid), Some(c0)) => turbo_ws_bench::process_cpu_seconds(pid) - c0,
        _ => 0.0,
    };
    stats.stop.set(true);
    let n = stats.count.get();
    let mut lat = std::mem::take(&mut *stats.latencies_ns.borrow_mut());
    lat.sort_unstable();
    println!(
        "{{\"mode\":\"echo\",\"write\":\"{}\",\"payload\":\"{}\",\"conns\":{conns},\"inflight\":{inflight},\"size\":{size},\"binary\":{binary},\"msgs\":{n},\"secs\":{elapsed:.3},\"rate\":{:.0},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"gen_cpu_us_per_msg\":{:.3},\"server_cpu_us_per_msg\":{:.3},\"errors\":{}}}",
        mode.label(),
        if distinct { "distinct" } else { "same" },
        n as f64 / elapsed,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 0.999),
        if n > 0 { cpu * 1e6 / n as f64 } else { 0.0 },
        if n > 0 { server_cpu * 1e6 / n as f64 } else { 0.0 },
        stats.errors.get()
    );
}

async fn idle_mode(args: &[String]) {
    let (addr, path) = split_url(&args[2]);
    let conns: usize = arg(args, 3);
    let hold: f64 = arg(args, 4);
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(conns);
    let mut failed = 0;
    // A bounded number of handshakes at once, so the listen backlog never overflows.
    for chunk in (0..conns).collect::<Vec<_>>().chunks(200) {
        let opens: Vec<_> = chunk
            .iter()
            .map(|_| {
                tokio::task::spawn_local({
                    let (a, p) = (addr.clone(), path.clone());
                    async move { open(&a, &p).await }
                })
            })
            .collect();
        for o in opens {
            match o.await {
                Ok(Ok(s)) => held.push(s),
                _ => failed += 1,
            }
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"idle\",\"conns\":{},\"failed\":{failed},\"open_secs\":{open_secs:.3}}}",
        held.len()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
}

async fn churn_mode(args: &[String]) {
    let (addr, path) = split_url(&args[2]);
    let cycles: usize = arg(args, 3);
    let frame = encode_frame(16, false);
    let t0 = Instant::now();
    let mut failed = 0;
    for _ in 0..cycles {
        let ok = async {
            let mut s = open(&addr, &path).await.ok()?;
            s.write_all(&frame).await.ok()?;
            let mut buf = [0u8; 64];
            let mut filled = 0;
            while complete_frame(&buf[..filled]).is_none() {
                let n = s.read(&mut buf[filled..]).await.ok()?;
                if n == 0 {
                    return None;
                }
                filled += n;
            }
            // Close frame with code 1000, masked.
            let close = [0x88, 0x82, MASK[0], MASK[1], MASK[2], MASK[3], 0x03 ^ MASK[0], 0xe8 ^ MASK[1]];
            s.write_all(&close).await.ok()?;
            let _ = s.read(&mut buf).await;
            Some(())
        }
        .await;
        if ok.is_none() {
            failed += 1;
        }
    }
    println!(
        "{{\"mode\":\"churn\",\"cycles\":{cycles},\"failed\":{failed},\"secs\":{:.3}}}",
        t0.elapsed().as_secs_f64()
    );
}

/// A small xorshift generator: the soak's choices, reproducible per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Mixed traffic until the deadline: connect, exchange a random number of
/// messages of random sizes (1 B to 64 KiB, text and binary) and pings, then
/// close properly or drop the TCP connection abruptly.
async fn soak_worker(addr: String, path: String, seed: u64, until: Instant, stats: Rc<Stats>) {
    let mut rng = Rng(seed | 1);
    while Instant::now() < until {
        let Ok(mut s) = open(&addr, &path).await else {
            stats.errors.set(stats.errors.get() + 1);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let exchanges = 1 + rng.below(50);
        let mut ok = true;
        for _ in 0..exchanges {
            let size = match rng.below(4) {
                0 => rng.below(126) as usize,
                1 => 126 + rng.below(1000) as usize,
                2 => rng.below(16384) as usize,
                _ => rng.below(65536) as usize,
            };
            let mut frame = encode_frame(size, rng.below(2) == 0);
            if rng.below(10) == 0 {
                frame = vec![
                    0x89,
                    0x80 | 4,
                    MASK[0],
                    MASK[1],
                    MASK[2],
                    MASK[3],
                    b'p' ^ MASK[0],
                    b'i' ^ MASK[1],
                    b'n' ^ MASK[2],
                    b'g' ^ MASK[3],
                ];
            }
            if s.write_all(&frame).await.is_err() {
                ok = false;
                break;
            }
            let mut buf = vec![0u8; size + 16];
            let mut filled = 0;
            loop {
                if let Some(_len) = complete_frame(&buf[..filled]) {
                    break;
                }
                if filled == buf.len() {
                    buf.resize(buf.len() * 2, 0);
                }
                match s.read(&mut buf[filled..]).await {
                    Ok(0) | Err(_) => {
                        ok = false;
                        break;
                    }
                    Ok(n) => filled += n,
                }
            }
            if !ok {
                break;
            }
            stats.count.set(stats.count.get() + 1);
        }
        if !ok {
            stats.errors.set(stats.errors.get() + 1);
        }
        if rng.below(3) == 0 {
            // Abrupt: no close frame, maybe with a half-sent frame in flight.
            if rng.below(2) == 0 {
                let _ = s.write_all(&[0x81, 0x80 | 100, 1, 2]).await;
            }
            drop(s);
        } else {
            let close = [0x88, 0x82, MASK[0], MASK[1], MASK[2], MASK[3], 0x03 ^ MASK[0], 0xe8 ^ MASK[1]];
            let _ = s.write_all(&close).await;
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        }
    }
}

async fn soak_mode(args: &[String]) {
    let (addr, path) = split_url(&args[2]);
    let workers: u64 = arg(args, 3);
    let seconds: f64 = arg(args, 4);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let stats = Rc::new(Stats {
        recording: Cell::new(true),
        stop: Cell::new(false),
        count: Cell::new(0),
        latencies_ns: RefCell::new(Vec::new()),
        errors: Cell::new(0),
    });
    let tasks: Vec<_> = (0..workers)
        .map(|i| {
            tokio::task::spawn_local(soak_worker(
                addr.clone(),
                path.clone(),
                0x9E3779B97F4A7C15 ^ i,
                until,
                stats.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "{{\"mode\":\"soak\",\"workers\":{workers},\"seconds\":{seconds},\"messages\":{},\"errors\":{}}}",
        stats.count.get(),
        stats.errors.get()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        match args.get(1).map(String::as_str) {
            Some("echo") => echo_mode(&args).await,
            Some("idle") => idle_mode(&args).await,
            Some("churn") => churn_mode(&args).await,
            Some("soak") => soak_mode(&args).await,
            _ => usage(),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_message_is_the_default_write_mode() {
        let mut a = args(&["loadgen", "echo", "ws://h/", "1", "1", "32", "text", "1"]);
        assert!(take_write_mode(&mut a) == WriteMode::EachMessage);
        assert_eq!(a.len(), 8);
    }

    #[test]
    fn the_write_option_is_taken_out_wherever_it_stands() {
        let mut a = args(&["loadgen", "echo", "--write=batch", "ws://h/", "1", "1", "32", "text", "1", "0.5"]);
        assert!(take_write_mode(&mut a) == WriteMode::Batched);
        assert_eq!(a, args(&["loadgen", "echo", "ws://h/", "1", "1", "32", "text", "1", "0.5"]));
        let mut a = args(&["loadgen", "echo", "ws://h/", "1", "1", "32", "text", "1", "0.5", "--write=each"]);
        assert!(take_write_mode(&mut a) == WriteMode::EachMessage);
        assert_eq!(a.len(), 9);
    }

    /// What `count` frames sent by `out` in `mode` put on the wire.
    async fn sent_bytes(mut out: Outgoing, count: usize, mode: WriteMode) -> Vec<u8> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        out.send(&mut client, count, mode).await.unwrap();
        drop(client);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_message_mode_writes_the_same_bytes_as_batch_mode() {
        let frame = encode_frame(5, false);
        let burst: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 3).collect();
        for mode in [WriteMode::EachMessage, WriteMode::Batched] {
            let got = sent_bytes(Outgoing::new(5, false, 3, None, 1), 3, mode).await;
            assert_eq!(got, burst, "mode {}", mode.label());
        }
    }

    #[test]
    fn payloads_are_distinct_unless_asked_otherwise() {
        let mut a = args(&["loadgen", "echo", "ws://h/", "1", "1", "32", "text", "1"]);
        assert!(take_distinct_payloads(&mut a));
        let mut a = args(&["loadgen", "echo", "--payload=same", "ws://h/", "1", "1", "32", "text", "1"]);
        assert!(!take_distinct_payloads(&mut a));
        assert_eq!(a.len(), 8);
    }

    /// The payloads of the frames in `wire` (frames of `size` bytes, masked
    /// with MASK), unmasked.
    fn payloads(wire: &[u8], size: usize) -> Vec<Vec<u8>> {
        let frame_len = encode_frame(size, true).len();
        wire.chunks(frame_len)
            .map(|f| f[frame_len - size..].iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]).collect())
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn distinct_payloads_differ_and_text_ones_are_utf8() {
        for (size, binary) in [(32, false), (16384, true)] {
            for mode in [WriteMode::EachMessage, WriteMode::Batched] {
                let pool = Some(Rc::new(PayloadPool::new(size, binary)));
                let got = sent_bytes(Outgoing::new(size, binary, 8, pool, 7), 8, mode).await;
                let messages = payloads(&got, size);
                assert_eq!(messages.len(), 8);
                let unique: std::collections::HashSet<_> = messages.iter().collect();
                assert_eq!(unique.len(), 8, "size {size}, mode {}", mode.label());
                if !binary {
                    assert!(messages.iter().all(|m| std::str::from_utf8(m).is_ok()));
                }
            }
        }
    }
}
