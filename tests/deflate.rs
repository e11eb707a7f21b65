//! permessage-deflate (RFC 7692) seen from a raw socket: negotiation, and
//! compressed frames made and read with flate2 here, independently of the
//! server's own code.

mod support;

use std::io::Write;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use support::*;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    z.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

/// Inflates one message with the connection's inflater (kept across
/// messages, as a peer must unless it agreed to no context takeover).
fn inflate(z: &mut Decompress, data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(1 << 20);
    z.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
    out
}

fn open_deflate(port: u16) -> std::net::TcpStream {
    let mut s = connect(port);
    s.write_all(upgrade_request(OFFER).as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101, "{head}");
    let expected = "sec-websocket-extensions: permessage-deflate; server_no_context_takeover\r\n";
    assert!(head.to_ascii_lowercase().contains(expected), "{head}");
    s
}

#[test]
fn compressed_messages_are_inflated_and_echoes_compressed() {
    let server = echo_server("");
    let mut s = open_deflate(server.port);
    let text = "a compressible sentence, again and again. ".repeat(40);
    // Whole, then in three fragments with a ping between them.
    s.write_all(&frame(true, 4, 1, &deflate(text.as_bytes()), true)).unwrap();
    let packed = deflate(text.as_bytes());
    let (a, rest) = packed.split_at(packed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    s.write_all(&frame(false, 4, 1, a, true)).unwrap();
    s.write_all(&frame(false, 0, 0, b, true)).unwrap();
    s.write_all(&frame(true, 0, 9, b"mid", true)).unwrap();
    s.write_all(&frame(true, 0, 0, c, true)).unwrap();
    let mut inflater = Decompress::new(false);
    let mut echoes = 0;
    while echoes < 2 {
        let f = read_frame(&mut s).expect("a frame");
        if f.opcode == 10 {
            continue;
        }
        assert_eq!((f.opcode, f.rsv, f.masked), (1, 4, false));
        assert_eq!(inflate(&mut inflater, &f.payload), text.as_bytes());
        echoes += 1;
    }
    // Short messages go uncompressed.
    s.write_all(&frame(true, 0, 2, b"tiny", true)).unwrap();
    let f = read_frame(&mut s).unwrap();
    assert_eq!((f.opcode, f.rsv, f.payload.as_slice()), (2, 0, &b"tiny"[..]));
}

#[test]
fn switched_off_the_offer_is_declined_and_rsv1_is_an_error() {
    let server = echo_server("permessage_deflate = false");
    let mut s = connect(server.port);
    s.write_all(upgrade_request(OFFER).as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101);
    assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{head}");
    s.write_all(&frame(true, 4, 1, &deflate(b"hello"), true)).unwrap();
    assert_eq!(read_until_close(&mut s), Some(1002));
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_is_an_error() {
    let server = echo_server("");
    for bad in [
        [frame(false, 4, 1, &deflate(b"ab"), true), frame(true, 4, 0, b"", true)].concat(),
        frame(true, 4, 9, b"", true),
    ] {
        let mut s = open_deflate(server.port);
        s.write_all(&bad).unwrap();
        assert_eq!(read_until_close(&mut s), Some(1002));
    }
}

#[test]
fn a_message_inflating_past_the_limit_gets_1009_and_corrupt_data_1007() {
    let server = echo_server("max_message_size = 100000");
    let mut s = open_deflate(server.port);
    s.write_all(&frame(true, 4, 2, &deflate(&vec![0u8; 1 << 24]), true)).unwrap();
    assert_eq!(read_until_close(&mut s), Some(1009));
    let mut s = open_deflate(server.port);
    s.write_all(&frame(true, 4, 2, &[0xff; 16], true)).unwrap();
    assert_eq!(read_until_close(&mut s), Some(1007));
    assert_echo(&mut open_ws(server.port), "others keep working");
}
