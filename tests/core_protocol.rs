//! The core's server side against raw-socket peers: the opening handshake
//! (RFC 6455 §4.2), plain HTTP, strict framing, close codes and limits.

mod support;

use std::io::Write;

use support::*;

#[test]
fn handshake_answers_101_with_the_accept_key() {
    let server = echo_server("");
    let mut s = connect(server.port);
    s.write_all(upgrade_request("").as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101, "{head}");
    let accept = derive_accept_key(KEY.as_bytes());
    assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(
        head.to_ascii_lowercase().contains(&format!("sec-websocket-accept: {}", accept.to_ascii_lowercase())),
        "{head}"
    );
    assert_echo(&mut s, "hello");
}

#[test]
fn handshake_accepts_browser_style_token_lists() {
    let server = echo_server("");
    let mut s = connect(server.port);
    let req = format!(
        "GET /chat HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    assert_echo(&mut s, "browser");
}

fn handshake_status(request: &str) -> (u16, String) {
    let server = echo_server("");
    let mut s = connect(server.port);
    s.write_all(request.as_bytes()).unwrap();
    read_head(&mut s)
}

#[test]
fn handshake_with_other_version_gets_426_naming_version_13() {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
    );
    let (status, head) = handshake_status(&req);
    assert_eq!(status, 426);
    assert!(head.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{head}");
}

#[test]
fn handshake_without_a_version_gets_400() {
    let req = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    );
    assert_eq!(handshake_status(&req).0, 400);
}

#[test]
fn handshake_must_use_get() {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(handshake_status(&req).0, 405);
}

#[test]
fn handshake_needs_a_valid_key_and_connection_upgrade() {
    let bad_key = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(handshake_status(bad_key).0, 400);
    let no_key = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(handshake_status(no_key).0, 400);
    let no_connection = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(handshake_status(&no_connection).0, 400);
    let no_host = format!(
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    assert_eq!(handshake_status(&no_host).0, 400);
}

#[test]
fn garbage_instead_of_http_gets_400_and_costs_one_connection() {
    let mut server = echo_server("");
    let mut s = connect(server.port);
    s.write_all(b"\x00\x01\x02 not http at all\r\n\r\n").unwrap();
    let (status, _) = read_head(&mut s);
    assert!(status == 400 || status == 0, "status {status}");
    assert!(server.alive());
    assert_echo(&mut open_ws(server.port), "still serving");
}

#[test]
fn plain_http_requests_reach_lua_and_keep_alive_is_honoured() {
    let server = echo_server("");
    let mut s = connect(server.port);
    for path in ["/a?x=1", "/b"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).unwrap();
        let (status, head) = read_head(&mut s);
        assert_eq!(status, 200, "{head}");
        let body = format!("plain GET {path}");
        assert!(head.to_ascii_lowercase().contains(&format!("content-length: {}", body.len())), "{head}");
        let mut buf = vec![0u8; body.len()];
        std::io::Read::read_exact(&mut s, &mut buf).unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), body);
    }
}

#[test]
fn server_frames_are_unmasked_and_binary_stays_binary() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    s.write_all(&frame(true, 0, 2, &[0, 159, 146, 150, 255], true)).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.masked, f.payload), (2, false, vec![0, 159, 146, 150, 255]));
    s.write_all(&frame(true, 0, 2, b"", true)).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.len()), (2, 0));
}

#[test]
fn fragments_are_reassembled_with_control_frames_between_them() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    s.write_all(&frame(false, 0, 1, b"Hel", true)).unwrap();
    s.write_all(&frame(true, 0, 9, b"mid", true)).unwrap();
    s.write_all(&frame(false, 0, 0, b"lo, ", true)).unwrap();
    s.write_all(&frame(true, 0, 0, b"world", true)).unwrap();
    let pong = read_frame(&mut s).unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid"[..]));
    let msg = read_frame(&mut s).unwrap();
    assert_eq!((msg.opcode, msg.fin, msg.payload.as_slice()), (1, true, &b"Hello, world"[..]));
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    s.write_all(&frame(true, 0, 9, b"payload", true)).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.payload.as_slice()), (10, &b"payload"[..]));
}

/// Sends `bytes` after the handshake; expects a close frame with `code`, then TCP close.
fn expect_failure(bytes: &[u8], code: u16) {
    let mut server = echo_server("max_message_size = 1000, max_frame_size = 500");
    let mut s = open_ws(server.port);
    s.write_all(bytes).unwrap();
    assert_eq!(read_until_close(&mut s), Some(code));
    assert!(tcp_closed(&mut s), "the server must close the TCP connection");
    assert!(server.alive());
    assert_echo(&mut open_ws(server.port), "others keep working");
}

#[test]
fn unmasked_client_frame_fails_with_1002() {
    expect_failure(&frame(true, 0, 1, b"hi", false), 1002);
}

#[test]
fn reserved_bits_fail_with_1002() {
    expect_failure(&frame(true, 4, 1, b"hi", true), 1002);
}

#[test]
fn reserved_opcodes_fail_with_1002() {
    expect_failure(&frame(true, 0, 3, b"", true), 1002);
    expect_failure(&frame(true, 0, 11, b"", true), 1002);
}

#[test]
fn oversized_or_fragmented_control_frames_fail_with_1002() {
    expect_failure(&frame(true, 0, 9, &[b'x'; 126], true), 1002);
    expect_failure(&frame(false, 0, 9, b"x", true), 1002);
}

#[test]
fn continuation_without_start_fails_with_1002() {
    expect_failure(&frame(true, 0, 0, b"x", true), 1002);
    let mut two_starts = frame(false, 0, 1, b"a", true);
    two_starts.extend(frame(true, 0, 1, b"b", true));
    expect_failure(&two_starts, 1002);
}

#[test]
fn invalid_utf8_fails_with_1007_also_across_fragments() {
    expect_failure(&frame(true, 0, 1, &[0xce, 0xba, 0xff], true), 1007);
    let mut split = frame(false, 0, 1, &[b'a', 0xf0, 0x90], true);
    split.extend(frame(true, 0, 0, &[0x80, 0x28], true));
    expect_failure(&split, 1007);
}

#[test]
fn invalid_close_codes_fail_with_1002() {
    for code in [999u16, 1004, 1005, 1006, 1015, 2000, 5000] {
        expect_failure(&frame(true, 0, 8, &code.to_be_bytes(), true), 1002);
    }
    expect_failure(&frame(true, 0, 8, &[0x03], true), 1002);
}

#[test]
fn too_big_frames_and_messages_fail_with_1009() {
    expect_failure(&frame(true, 0, 2, &[0u8; 600], true), 1009);
    let mut msg = Vec::new();
    for _ in 0..3 {
        msg.extend(frame(false, 0, if msg.is_empty() { 2 } else { 0 }, &[0u8; 400], true));
    }
    msg.extend(frame(true, 0, 0, &[0u8; 400], true));
    expect_failure(&msg, 1009);
}

/// §5.2: a 64-bit length's most significant bit MUST be 0, so this is a
/// protocol error (1002), refused from the header alone.
#[test]
fn a_length_of_2_pow_63_costs_one_connection() {
    expect_failure(&binary_header_with_64_bit_length(1 << 63), 1002);
}

/// A length under 2^63 but past max_frame_size is refused with 1009 before
/// any of the payload is awaited.
#[test]
fn an_announced_length_past_the_limit_gets_1009_at_once() {
    expect_failure(&binary_header_with_64_bit_length(1 << 40), 1009);
}

/// A masked binary frame's header announcing `len` in the 64-bit form, no payload.
fn binary_header_with_64_bit_length(len: u64) -> Vec<u8> {
    let mut header = vec![0x82u8, 0x80 | 127];
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    header
}

#[test]
fn close_handshake_echoes_the_code_then_closes_tcp() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    s.write_all(&frame(true, 0, 8, &payload, true)).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.close_code(), Some(1000));
    assert!(tcp_closed(&mut s));
}

/// §5.5.2: a ping is answered until the peer's close arrives, so also
/// after the server sent its own.
#[test]
fn a_ping_after_the_servers_close_is_still_answered() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    s.write_all(&frame(true, 0, 1, b"close 4000", true)).unwrap();
    assert_eq!(read_frame(&mut s).unwrap().close_code(), Some(4000));
    s.write_all(&frame(true, 0, 9, b"late", true)).unwrap();
    let pong = read_frame(&mut s).unwrap();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"late"[..]));
    s.write_all(&frame(true, 0, 8, &4000u16.to_be_bytes(), true)).unwrap();
    assert!(tcp_closed(&mut s));
}

/// The peer's close is its last word: a broken frame after it, even in
/// the same read, costs neither the close reply nor an echo queued before.
#[test]
fn a_bad_frame_after_the_clients_close_is_ignored() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    let mut bytes = frame(true, 0, 1, b"echo me", true);
    bytes.extend(frame(true, 0, 8, &1000u16.to_be_bytes(), true));
    bytes.extend(frame(true, 0, 1, b"unmasked", false));
    s.write_all(&bytes).unwrap();
    let echo = read_frame(&mut s).unwrap();
    assert_eq!((echo.opcode, echo.payload.as_slice()), (1, &b"echo me"[..]));
    assert_eq!(read_frame(&mut s).unwrap().close_code(), Some(1000));
    assert!(tcp_closed(&mut s));
}

#[test]
fn ten_thousand_tiny_fragments_make_one_message() {
    let server = echo_server("");
    let mut s = open_ws(server.port);
    let mut bytes = frame(false, 0, 1, b"a", true);
    for _ in 0..9998 {
        bytes.extend(frame(false, 0, 0, b"a", true));
    }
    bytes.extend(frame(true, 0, 0, b"a", true));
    s.write_all(&bytes).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!(f.payload.len(), 10000);
}

#[test]
fn abrupt_disconnects_cost_nothing_but_that_connection() {
    let mut server = echo_server("");
    for _ in 0..50 {
        let mut s = open_ws(server.port);
        s.write_all(&frame(false, 0, 1, b"half a mess", true)).unwrap();
        drop(s);
    }
    assert!(server.alive());
    assert_echo(&mut open_ws(server.port), "fine");
}
