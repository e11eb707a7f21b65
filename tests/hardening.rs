//! Hardening against peers nobody here wrote, on raw sockets: every close
//! code an endpoint may send (RFC 6455 §7.4 and the IANA registry) both
//! ways through the core and the Turbo face, a client that never reads,
//! and a subprotocol the client never offered.

mod support;

use std::io::{Read, Write};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const VALID: [u16; 14] = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999];
const INVALID: [u16; 9] = [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000];

/// A Turbo-face server: `/ws` echoes, and closes with code N on the
/// message "close N"; the code its on_close got last is served at `/last`
/// (as `support::echo_server` does on the core API).
fn turbo_server() -> LuaProcess {
    LuaProcess::start(
        r#"
        local turbo = require "turbo_ws"
        turbo.log.disable_all()
        local last = "none"
        local Ws = class("Ws", turbo.websocket.WebSocketHandler)
        function Ws:on_message(m)
          local code = m:match("^close (%d+)$")
          if code then self:close(tonumber(code)) else self:write_message(m) end
        end
        function Ws:on_close(code) last = tostring(code) end
        local Last = class("Last", turbo.web.RequestHandler)
        function Last:get() self:write(last) end
        local app = turbo.web.Application({ { "^/last$", Last }, { "^/ws$", Ws } })
        local server = app:listen(0, "127.0.0.1")
        print("port " .. server:port())
        io.stdout:flush()
        turbo.ioloop.instance():start()
        "#,
    )
}

/// GET `path` on a fresh connection; the body of the answer.
fn http_get(port: u16, path: &str) -> String {
    let mut s = connect(port);
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()
}

fn close_frame(code: u16) -> Vec<u8> {
    frame(true, 0, 8, &code.to_be_bytes(), true)
}

/// The peer closes with `code`: the server's answer, and what its on_close got.
fn peer_closes_with(port: u16, path: &str, code: u16) -> (Option<u16>, String) {
    let mut s = connect(port);
    s.write_all(upgrade_request("").replace("GET /ws", &format!("GET {path}")).as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    s.write_all(&close_frame(code)).unwrap();
    let answer = read_until_close(&mut s);
    assert!(tcp_closed(&mut s), "the server keeps the connection after the close");
    // on_close runs once TCP is closed; give the loop a moment.
    thread::sleep(Duration::from_millis(50));
    (answer, http_get(port, "/last"))
}

/// The server closes with `code` (asked by a message): the frame seen.
fn server_closes_with(port: u16, path: &str, code: u16) -> Option<u16> {
    let mut s = connect(port);
    s.write_all(upgrade_request("").replace("GET /ws", &format!("GET {path}")).as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    s.write_all(&frame(true, 0, 1, format!("close {code}").as_bytes(), true)).unwrap();
    let seen = read_until_close(&mut s);
    s.write_all(&close_frame(1000)).unwrap();
    seen
}

#[test]
fn every_legal_close_code_from_a_peer_is_echoed_and_reported_core() {
    let server = echo_server("");
    for code in VALID {
        let (answer, reported) = peer_closes_with(server.port, "/ws", code);
        assert_eq!(answer, Some(code), "echo of {code}");
        assert_eq!(reported, code.to_string(), "on_close of {code}");
    }
}

#[test]
fn an_illegal_close_code_from_a_peer_is_a_protocol_error() {
    let server = echo_server("");
    for code in INVALID {
        let (answer, reported) = peer_closes_with(server.port, "/ws", code);
        assert_eq!(answer, Some(1002), "answer to {code}");
        assert_eq!(reported, "1002", "on_close after {code}");
    }
}

#[test]
fn every_legal_close_code_can_be_sent_core_and_turbo() {
    let core = echo_server("");
    for code in VALID {
        assert_eq!(server_closes_with(core.port, "/ws", code), Some(code), "core close({code})");
    }
    let turbo = turbo_server();
    for code in VALID {
        assert_eq!(server_closes_with(turbo.port, "/ws", code), Some(code), "Turbo close({code})");
        let (answer, reported) = peer_closes_with(turbo.port, "/ws", code);
        assert_eq!(answer, Some(code), "Turbo echo of {code}");
        assert_eq!(reported, code.to_string(), "Turbo on_close of {code}");
    }
}

#[test]
fn a_subprotocol_the_client_never_offered_is_refused_by_the_core() {
    let server = echo_server("");
    let mut s = connect(server.port);
    let request = upgrade_request("Sec-WebSocket-Protocol: chat\r\n").replace("GET /ws", "GET /proto");
    s.write_all(request.as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 500, "{head}");
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-protocol"), "{head}");
}

/// A client that upgrades on `/flood` and then never reads.
fn never_reading_client(port: u16) -> std::net::TcpStream {
    let mut s = connect(port);
    s.write_all(upgrade_request("").replace("GET /ws", "GET /flood").as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    s
}

#[test]
fn a_client_that_never_reads_for_20_s_costs_at_most_the_default_limit() {
    let mut server = echo_server("");
    // Warm up: the first connections allocate what every connection shares.
    assert_echo(&mut open_ws(server.port), "warm");
    let before = server.rss_kib();
    let s = never_reading_client(server.port);
    let started = Instant::now();
    let mut peak = before;
    while started.elapsed() < Duration::from_secs(20) {
        thread::sleep(Duration::from_millis(500));
        peak = peak.max(server.rss_kib());
        // Others are still served while it hangs on.
        assert_echo(&mut open_ws(server.port), "others are served");
    }
    // 1 MiB default max_buffered, plus a small constant (allocator slack,
    // the Lua strings of the pushing loop).
    let growth = peak.saturating_sub(before);
    eprintln!("RSS {before} KiB before, peak {peak} KiB: +{growth} KiB");
    assert!(growth < 1024 + 6 * 1024, "RSS grew {growth} KiB while a peer never read");
    assert!(server.alive());
    drop(s);
}

#[test]
fn close_slow_readers_closes_a_peer_that_does_not_read_with_1008() {
    let server = echo_server("close_slow_readers = true, close_timeout = 10");
    let mut s = never_reading_client(server.port);
    thread::sleep(Duration::from_millis(1000));
    // Now read: everything queued arrives, then the close frame.
    assert_eq!(read_until_close(&mut s), Some(1008));
    s.write_all(&close_frame(1008)).unwrap();
    assert!(tcp_closed(&mut s));
}
