//! Slow, broken and malicious peers against one server process: each costs
//! at most its own connection; the process survives, other connections keep
//! working, and memory stays bounded (RSS is measured here).

mod support;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

fn assert_healthy(server: &mut LuaProcess, max_rss_kib: u64) {
    assert!(server.alive(), "the server process died");
    assert_echo(&mut open_ws(server.port), "still serving");
    let rss = server.rss_kib();
    assert!(rss < max_rss_kib, "RSS {rss} KiB over {max_rss_kib} KiB");
}

#[test]
fn slowloris_is_cut_off_by_the_handshake_timeout() {
    let mut server = echo_server("handshake_timeout = 0.3");
    let mut silent = connect(server.port);
    let mut partial = connect(server.port);
    partial.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let t0 = Instant::now();
    assert!(tcp_closed(&mut partial), "a half-sent request head must be dropped");
    assert!(tcp_closed(&mut silent), "a connection that sends nothing must be dropped");
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert_healthy(&mut server, 200_000);
}

#[test]
fn oversized_request_heads_are_refused() {
    let mut server = echo_server("max_header_size = 8192, max_headers = 20");
    let mut s = connect(server.port);
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let _ = s.write_all(big.as_bytes());
    let (status, _) = read_head(&mut s);
    assert!(status == 431 || status == 400 || status == 0, "status {status}");
    let mut s = connect(server.port);
    let many: String = (0..50).map(|i| format!("X-H{i}: v\r\n")).collect();
    let _ = s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes());
    let (status, _) = read_head(&mut s);
    assert!(status == 431 || status == 400 || status == 0, "status {status}");
    assert_healthy(&mut server, 200_000);
}

#[test]
fn the_default_head_limit_is_64_kib_whatever_one_read_brings() {
    let mut server = echo_server("");
    let head = |field: usize| format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(field));
    // Just under 64 KiB is served; 70 KB (which hyper's buffer alone let
    // through when it came in one read) is refused with 431.
    let mut s = connect(server.port);
    s.write_all(head(60_000).as_bytes()).unwrap();
    assert_ne!(read_head(&mut s).0, 431);
    let mut s = connect(server.port);
    s.write_all(head(70_000).as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 431);
    assert_healthy(&mut server, 200_000);
}

#[test]
fn a_client_that_never_reads_cannot_grow_the_server_without_bound() {
    let mut server = echo_server("max_buffered = 4194304");
    let mut s = connect(server.port);
    s.write_all(upgrade_request("").replace("GET /ws", "GET /flood").as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    // Never read: the kernel buffers fill, then turbo_ws's queue up to max_buffered.
    thread::sleep(Duration::from_millis(1500));
    let rss = server.rss_kib();
    assert!(rss < 100_000, "RSS {rss} KiB while a peer never reads");
    assert_healthy(&mut server, 100_000);
    drop(s);
}

#[test]
fn a_connection_flood_past_the_limit_gets_503_and_the_server_stays_up() {
    let mut server = echo_server("max_connections = 20");
    let held: Vec<_> = (0..20).map(|_| open_ws(server.port)).collect();
    let mut refused = 0;
    for _ in 0..100 {
        let mut s = connect(server.port);
        let _ = s.write_all(upgrade_request("").as_bytes());
        if read_head(&mut s).0 == 503 {
            refused += 1;
        }
    }
    assert_eq!(refused, 100);
    drop(held);
    thread::sleep(Duration::from_millis(300));
    assert_healthy(&mut server, 200_000);
}

#[test]
fn a_ping_flood_gets_bounded_replies() {
    let mut server = echo_server("");
    let mut s = open_ws(server.port);
    let ping = frame(true, 0, 9, &[b'p'; 125], true);
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 1000).collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || {
            for _ in 0..100 {
                if s.write_all(&burst).is_err() {
                    break;
                }
            }
        })
    };
    // Read slowly for a while: pongs may be coalesced, but nothing piles up.
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < Duration::from_millis(1500) {
        let _ = s.read(&mut buf);
        thread::sleep(Duration::from_millis(5));
    }
    drop(s);
    let _ = writer.join();
    assert_healthy(&mut server, 200_000);
}

#[test]
fn a_peer_that_goes_silent_is_closed_by_the_idle_timeout() {
    let mut server = echo_server("ping_interval = 0.1, idle_timeout = 0.3, close_timeout = 0.3");
    let mut s = open_ws(server.port);
    // Neither answers pings nor closes: the server gives up on it.
    let t0 = Instant::now();
    let mut saw_close = false;
    while let Some(f) = read_frame(&mut s) {
        if f.opcode == 8 {
            saw_close = f.close_code() == Some(1001);
        }
    }
    assert!(saw_close, "expected a close frame with 1001");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_healthy(&mut server, 200_000);
}

#[test]
fn a_peer_that_disappears_mid_close_costs_nothing() {
    let mut server = echo_server("");
    for _ in 0..50 {
        let mut s = open_ws(server.port);
        s.write_all(&frame(true, 0, 8, &1000u16.to_be_bytes(), true)).unwrap();
        drop(s);
    }
    for _ in 0..50 {
        let mut s = open_ws(server.port);
        s.write_all(&frame(true, 0, 1, b"bye", true)).unwrap();
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    assert_healthy(&mut server, 200_000);
}

#[test]
fn garbage_after_the_handshake_costs_one_connection() {
    let mut server = echo_server("");
    let mut seed = 0x2545F4914F6CDD1Du64;
    for _ in 0..30 {
        let mut s = open_ws(server.port);
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = s.write_all(&junk);
        let _ = read_until_close(&mut s);
    }
    assert_healthy(&mut server, 200_000);
}
