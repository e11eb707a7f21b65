//! Instructions per call: turbo_ws's own frame header parse/format and
//! close-code rule (the engine's real source, included by path) against
//! tungstenite 0.30's `FrameHeader::parse`/`format` and
//! `CloseCode::is_allowed`. `run.sh` runs each mode under callgrind; `check`
//! asserts that both parsers and formatters agree and prints where the
//! close-code rules differ.
//!
//!     frame_header_bench check | MODE ITERS   (MODE: ours-parse, tung-parse, ...)
#![allow(dead_code)]

#[path = "../../../src/engine/frame.rs"]
mod frame;
#[path = "../../../src/engine/random.rs"]
pub mod random;

/// frame.rs names `crate::engine::random`.
mod engine {
    pub use crate::random;
}

use bytes::{BufMut, BytesMut};
use std::hint::black_box;
use std::io::Cursor;
use tungstenite::protocol::frame::{coding::CloseCode, coding::OpCode, FrameHeader};

/// The fields the codec's checks read, whichever parser produced them.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Parsed {
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    header_len: usize,
}

/// Client-to-server headers as the server reads them: masked, 7-, 16- and
/// 64-bit lengths, text/binary/ping/continuation; each followed by junk bytes
/// as if the payload followed.
fn inputs() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let shapes = [
        (true, frame::TEXT, 5usize),
        (true, frame::BINARY, 125),
        (true, frame::BINARY, 300),
        (false, frame::TEXT, 16),
        (true, frame::CONTINUATION, 70000),
        (true, frame::PING, 4),
    ];
    for (fin, op, len) in shapes {
        let mut b = BytesMut::new();
        frame::write_header(&mut b, fin, false, op, len, Some([1, 2, 3, 4]));
        b.extend_from_slice(&[0xAB; 16]);
        v.push(b.to_vec());
    }
    v
}

#[inline(never)]
fn ours_parse(buf: &[u8]) -> Option<Parsed> {
    let (h, n) = frame::parse_header(buf)?;
    Some(Parsed { fin: h.fin, rsv: h.rsv, opcode: h.opcode, mask: h.mask, len: h.len, header_len: n })
}

#[inline(never)]
fn tung_parse(buf: &[u8]) -> Option<Parsed> {
    let mut cursor = Cursor::new(buf);
    // An Err is a reserved opcode; the codec would map it to its own 1002.
    let (h, len) = FrameHeader::parse(&mut cursor).ok()??;
    let rsv = (u8::from(h.rsv1) << 2) | (u8::from(h.rsv2) << 1) | u8::from(h.rsv3);
    Some(Parsed { fin: h.is_final, rsv, opcode: u8::from(h.opcode), mask: h.mask, len, header_len: cursor.position() as usize })
}

#[inline(never)]
fn ours_format(out: &mut BytesMut, fin: bool, op: u8, len: usize, mask: Option<[u8; 4]>) {
    frame::write_header(out, fin, false, op, len, mask);
}

#[inline(never)]
fn tung_format(out: &mut BytesMut, fin: bool, op: u8, len: usize, mask: Option<[u8; 4]>) {
    let h = FrameHeader { is_final: fin, rsv1: false, rsv2: false, rsv3: false, opcode: OpCode::from(op), mask };
    // Writing into a BytesMut cannot fail; the Result still has to be handled.
    if h.format(len as u64, &mut out.writer()).is_err() {
        out.clear();
    }
}

#[inline(never)]
fn ours_close(code: u16) -> bool {
    frame::check_close_code(code)
}

#[inline(never)]
fn tung_close(code: u16) -> bool {
    CloseCode::from(code).is_allowed()
}

#[inline(never)]
fn run_parse(which: &str, inputs: &[Vec<u8>], iters: usize) -> u64 {
    let f: fn(&[u8]) -> Option<Parsed> = if which == "ours" { ours_parse } else { tung_parse };
    let mut acc = 0u64;
    for i in 0..iters {
        let p = black_box(f)(black_box(&inputs[i % inputs.len()]));
        acc = acc.wrapping_add(p.map_or(0, |p| p.len + p.header_len as u64));
    }
    acc
}

#[inline(never)]
fn run_format(which: &str, iters: usize) -> u64 {
    let f: fn(&mut BytesMut, bool, u8, usize, Option<[u8; 4]>) = if which == "ours" { ours_format } else { tung_format };
    let shapes = [(true, 1u8, 5usize, None), (true, 2, 300, None), (false, 1, 70000, None), (true, 2, 125, Some([9, 8, 7, 6]))];
    let mut out = BytesMut::with_capacity(64);
    let mut acc = 0u64;
    for i in 0..iters {
        let (fin, op, len, mask) = shapes[i % shapes.len()];
        out.clear();
        black_box(f)(&mut out, fin, black_box(op), black_box(len), mask);
        acc = acc.wrapping_add(out.len() as u64);
    }
    acc
}

#[inline(never)]
fn run_close(which: &str, iters: usize) -> u64 {
    let f: fn(u16) -> bool = if which == "ours" { ours_close } else { tung_close };
    let codes = [1000u16, 1001, 1002, 1008, 1011, 3000, 4000, 1005, 999, 2000];
    let mut acc = 0u64;
    for i in 0..iters {
        acc += u64::from(black_box(f)(black_box(codes[i % codes.len()])));
    }
    acc
}

fn check_same_behaviour() {
    for input in inputs() {
        for cut in 0..=input.len() {
            assert_eq!(ours_parse(&input[..cut]), tung_parse(&input[..cut]), "cut {cut} of {input:?}");
        }
    }
    for shape in [(true, 1u8, 5usize, None), (false, 2, 300, Some([1, 2, 3, 4])), (true, 0, 70000, None)] {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        ours_format(&mut a, shape.0, shape.1, shape.2, shape.3);
        tung_format(&mut b, shape.0, shape.1, shape.2, shape.3);
        assert_eq!(a, b);
    }
    let differ: Vec<u16> = (0..=u16::MAX).filter(|&c| ours_close(c) != tung_close(c)).collect();
    println!("close codes judged differently (ours, tungstenite): {:?}",
        differ.iter().map(|&c| (c, ours_close(c), tung_close(c))).collect::<Vec<_>>());
    // Reserved opcodes: ours parses them (the codec refuses them after its RSV check), tungstenite errs in parse.
    for op in [3u8, 0xB] {
        let buf = [0x80 | op, 0x80, 1, 2, 3, 4];
        println!("reserved opcode {op:#x}: ours {:?}, tungstenite {:?}", ours_parse(&buf).map(|p| p.opcode),
            FrameHeader::parse(&mut Cursor::new(&buf[..])).map(|o| o.map(|(h, _)| h.opcode)));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("check");
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let inputs = inputs();
    let t = std::time::Instant::now();
    let acc = match mode {
        "check" => { check_same_behaviour(); 0 }
        "ours-parse" => run_parse("ours", &inputs, iters),
        "tung-parse" => run_parse("tung", &inputs, iters),
        "ours-format" => run_format("ours", iters),
        "tung-format" => run_format("tung", iters),
        "ours-close" => run_close("ours", iters),
        "tung-close" => run_close("tung", iters),
        _ => { eprintln!("unknown mode"); std::process::exit(2) }
    };
    println!("{mode} {iters} acc={acc} {:.2} ns/iter", t.elapsed().as_nanos() as f64 / iters as f64);
}
